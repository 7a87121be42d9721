package plans

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/agent"
	"github.com/qmorch/qmorch/qmconf"
)

// fleetDir is examples/fleet: one root tree per host, read the way BlueChi reads them.
var fleetDir = filepath.Join(repoRoot, "examples", "fleet")

// hostFS is the host's root tree from examples/fleet/HOST plus the file BlueChi's package ships
// under /usr/share (only the section header matters here).
func hostFS(t *testing.T, host, pkgFile, section string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{pkgFile: {Data: []byte("[" + section + "]\n")}}
	dir := filepath.Join(fleetDir, host)
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fsys[filepath.ToSlash(rel)] = &fstest.MapFile{Data: data}
		return nil
	}))
	return fsys
}

func TestFleetExampleController(t *testing.T) {
	fsys := hostFS(t, "controller", "usr/share/bluechi/config/controller.conf", agent.SectionController)
	cfg, err := agent.LoadController(agent.LoadOptions{FS: fsys, Env: map[string]string{}})
	require.NoError(t, err)
	require.Empty(t, cfg.Warnings)
	cc, err := cfg.Controller(agent.ControllerFlags{})
	require.NoError(t, err)
	require.Equal(t, []string{"node1", "node2", "qm.node1", "qm.node2"}, cc.AllowedNodeNames)
	require.EqualValues(t, 842, cc.ControllerPort)
}

func TestFleetExampleNodes(t *testing.T) {
	tests := []struct{ node string }{{"node1"}, {"node2"}}
	for _, tt := range tests {
		t.Run(tt.node, func(t *testing.T) {
			fsys := hostFS(t, tt.node, "usr/share/bluechi-agent/config/agent.conf", agent.SectionAgent)
			cfg, err := agent.LoadAgent(agent.LoadOptions{FS: fsys, Hostname: "localhost", Env: map[string]string{}})
			require.NoError(t, err)
			require.Empty(t, cfg.Warnings)
			ac, err := cfg.Agent(agent.AgentFlags{})
			require.NoError(t, err)
			require.Equal(t, tt.node, ac.NodeName)
			require.Equal(t, "controller.example", ac.ControllerHost, "fleet-setup.sh replaces this placeholder")
			require.EqualValues(t, 842, ac.ControllerPort)
		})
	}
}

func TestFleetExampleQuadlet(t *testing.T) {
	p := filepath.Join(fleetDir, "quadlets", "hello.container")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	_, unit, err := qmconf.ValidateQuadlet(p, data)
	require.NoError(t, err)
	require.Equal(t, "hello.service", unit)
}
