package agent

import (
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

const agentDefault = "usr/share/bluechi-agent/config/agent.conf"

func TestLoadProvenance(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		agentDefault:                              {Data: []byte("[bluechi-agent]\n#NodeName=\n")},
		"etc/bluechi/agent.conf":                  {Data: []byte("[bluechi-agent]\nNodeName=foo\nControllerPort=2000\nBogus=1\n")},
		"etc/bluechi/agent.conf.d/50-x.conf":      {Data: []byte("[bluechi-agent]\nNodeName=bar\n")},
		"etc/bluechi/agent.conf.d/40-broken.conf": {Data: []byte("[bluechi-agent]\nNodeName=never\nbroken\n")},
		"etc/bluechi/agent.conf.d/60-wrong.conf":  {Data: []byte("[bluechi-controller]\nAllowedNodeNames=x\n")},
		"etc/bluechi/agent.conf.d/README":         {Data: []byte("junk")},
	}
	cfg, err := LoadAgent(LoadOptions{FS: fsys, Hostname: "h", Env: map[string]string{"BC_LOG_LEVEL": "debug"}})
	require.NoError(t, err)

	e := cfg.Lookup(SectionAgent, "NodeName")
	require.Equal(t, "bar", e.Value)
	require.Equal(t, Origin{Kind: OriginFile, Path: "/etc/bluechi/agent.conf.d/50-x.conf", Lines: []int{2}}, e.Origin)
	require.Equal(t, []Assignment{
		{Value: "h", Origin: Origin{Kind: OriginBuiltin}},
		{Value: "foo", Origin: Origin{Kind: OriginFile, Path: "/etc/bluechi/agent.conf", Lines: []int{2}}},
	}, e.Replaced)

	lvl := cfg.Lookup(SectionAgent, "LogLevel")
	require.Equal(t, "debug", lvl.Value)
	require.Equal(t, OriginEnv, lvl.Origin.Kind)

	kinds := map[WarningKind]int{}
	for _, w := range cfg.Warnings {
		kinds[w.Kind]++
	}
	require.Equal(t, map[WarningKind]int{WarnUnknownKey: 1, WarnSkippedDropIn: 1, WarnWrongSection: 1, WarnBadLogLevel: 1}, kinds)
	require.False(t, cfg.DumpVisible())

	a, err := cfg.Agent(AgentFlags{})
	require.NoError(t, err)
	require.Equal(t, "bar", a.NodeName)
	require.Equal(t, uint16(2000), a.ControllerPort)
	require.Equal(t, int64(2000), a.HeartbeatInterval)
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(data), 0o644))
	}
	write(agentDefault, "")
	write("etc/bluechi/agent.conf.d/10-a.conf", "[bluechi-agent]\nNodeName=a\n")
	require.NoError(t, os.Symlink("/nonexistent/qmorch-test.conf", filepath.Join(dir, "etc/bluechi/agent.conf.d/20-dangling.conf")))
	write("etc/bluechi/agent.conf.d/30-broken.conf", "broken\n")

	_, err := LoadAgent(LoadOptions{FS: os.DirFS(dir), Hostname: "h"})
	var pe *ParseError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "Error loading confd file '/etc/bluechi/agent.conf.d/20-dangling.conf' on line -2.\n"+
		"Error loading configuration from conf.d dir '/etc/bluechi/agent.conf.d': 'No such file or directory'.\n", pe.Stderr)

	require.NoError(t, os.Remove(filepath.Join(dir, "etc/bluechi/agent.conf.d/20-dangling.conf")))
	_, err = LoadAgent(LoadOptions{FS: os.DirFS(dir), Hostname: "h"})
	require.ErrorAs(t, err, &pe)
	require.Equal(t, "/etc/bluechi/agent.conf.d/30-broken.conf", pe.Path)
	require.Equal(t, 1, pe.Line)
	require.Empty(t, pe.Stderr, "BlueChi exits without a message on a broken last drop-in")
}

func TestControllerNodes(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"usr/share/bluechi/config/controller.conf": {Data: []byte("")},
		"etc/bluechi/controller.conf": {Data: []byte("[bluechi-controller]\nAllowedNodeNames=,b, c,b,\n" +
			"[node a]\nAllowed=yes\n[node b]\nAllowed=true\nAllowDependenciesOn=a,c\n[node z]\nAllowed=1\n")},
	}
	cfg, err := LoadController(LoadOptions{FS: fsys})
	require.NoError(t, err)
	cc, err := cfg.Controller(ControllerFlags{Port: "1234"})
	require.NoError(t, err)
	require.Equal(t, []string{"b", " c", "a"}, cc.Nodes)
	require.Equal(t, uint16(1234), cc.ControllerPort)
	require.Equal(t, []string{"a", "c"}, cc.NodeSections[1].AllowDependenciesOn)
	kinds := map[WarningKind]int{}
	for _, w := range cc.Warnings {
		kinds[w.Kind]++
	}
	require.Equal(t, map[WarningKind]int{WarnNodeNameSpace: 1, WarnDuplicateNode: 1, WarnNodeSectionUnread: 1}, kinds)
}
