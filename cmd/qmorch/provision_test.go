package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/deploy"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

// provTree writes files (paths relative to the root) into a new temp root.
func provTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
	return root
}

// provRun runs one qmorch command line in-process.
func provRun(t *testing.T, connect connectFunc, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	d := deps{streams: IOStreams{In: strings.NewReader(""), Out: &o, ErrOut: &e}, connect: connect}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code = run(ctx, args, d)
	return o.String(), e.String(), code
}

const (
	provAgentConf = "etc/bluechi/agent.conf"
	provQMDropIn  = "etc/qm/bluechi/agent.conf.d/99-qmorch.conf"
)

func TestProvisionQMAgentLocalCLI(t *testing.T) {
	t.Parallel()
	root := provTree(t, map[string]string{
		provAgentConf:                           "[bluechi-agent]\n#NodeName=\nControllerHost=10.0.0.1\nControllerPort=8420\nBogus=1\n",
		"etc/bluechi/agent.conf.d/50-name.conf": "[bluechi-agent]\nNodeName=node1\n",
		"etc/hostname":                          "ignored-because-NodeName-is-set\n",
	})

	// --dry-run prints the file and a diff and writes nothing.
	out, errOut, code := provRun(t, nil, "provision", "qm-agent", "--root", root, "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "# /etc/qm/bluechi/agent.conf.d/99-qmorch.conf (would-change)\n")
	require.Contains(t, out, "+++ /etc/qm/bluechi/agent.conf.d/99-qmorch.conf\n")
	require.Contains(t, out, "+NodeName=qm.node1\n")
	require.Contains(t, errOut, "warning: host agent: /etc/bluechi/agent.conf:5: unknown key Bogus")
	require.NoFileExists(t, filepath.Join(root, provQMDropIn))

	// First run: changed (exit code as asked), second: unchanged (exit 0), same bytes.
	out, errOut, code = provRun(t, nil, "provision", "qm-agent", "--root", root, "--changed-exit-code", "10")
	require.Equal(t, 10, code, errOut)
	require.NotContains(t, errOut, "error")
	require.Regexp(t, `99-qmorch.conf\s+changed`, out)
	first, err := os.ReadFile(filepath.Join(root, provQMDropIn))
	require.NoError(t, err)
	require.Contains(t, string(first), "\nNodeName=qm.node1\nControllerHost=10.0.0.1\nControllerPort=8420\nControllerAddress=\n")

	out, errOut, code = provRun(t, nil, "provision", "qm-agent", "--root", root, "--changed-exit-code", "10", "-o", "json")
	require.Equal(t, 0, code, errOut)
	var doc ProvisionOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.Equal(t, "QMAgentProvision", doc.Kind)
	require.False(t, doc.Changed)
	require.Equal(t, "qm.node1", doc.NodeName)
	require.Equal(t, "tcp", doc.Mode)
	require.Len(t, doc.Files, 1)
	require.Equal(t, "unchanged", doc.Files[0].Action)
	require.Contains(t, strings.Join(doc.Warnings, "\n"), "unknown key Bogus")
	second, err := os.ReadFile(filepath.Join(root, provQMDropIn))
	require.NoError(t, err)
	require.Equal(t, first, second)
}

func TestProvisionQMAgentLocalCLIErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		files   map[string]string
		args    []string
		want    string
		wantOut string // must be on stdout too ("" = stdout empty)
	}{
		{"syntax error names file:line", map[string]string{provAgentConf: "[bluechi-agent]\nNodeName=n\nbroken line\n"},
			nil, "error: host agent configuration: /etc/bluechi/agent.conf:3: line is neither", ""},
		{"over-long line", map[string]string{provAgentConf: "[bluechi-agent]\nNodeName=" + strings.Repeat("n", 600) + "\n"},
			nil, "/etc/bluechi/agent.conf:", ""},
		{"bad port", map[string]string{provAgentConf: "[bluechi-agent]\nNodeName=n\nControllerHost=10.0.0.1\nControllerPort=99999\n"},
			nil, "bad port", ""},
		{"loopback in tcp mode", map[string]string{provAgentConf: "[bluechi-agent]\nNodeName=n\n"},
			[]string{"--mode", "tcp"}, "loopback", ""},
		{"bad mode", nil, []string{"--mode", "udp"}, "--mode must be auto, socket or tcp", ""},
		{"socket with a host", nil, []string{"--mode", "socket", "--controller-host", "10.0.0.1"}, "--controller-host is for tcp mode", ""},
		{"bad controller host", nil, []string{"--controller-host", "a;b"}, "not allowed", ""},
		{"bad prefix", nil, []string{"--prefix", "q m"}, "--prefix", ""},
		{"reserved exit code", nil, []string{"--changed-exit-code", "2"}, "4-125", ""},
		{"name with whitespace", map[string]string{provAgentConf: "[bluechi-agent]\nNodeName=a b\n"}, nil, "whitespace", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := provTree(t, tc.files)
			args := append([]string{"provision", "qm-agent", "--root", root, "--hostname", "h"}, tc.args...)
			out, errOut, code := provRun(t, nil, args...)
			require.Equal(t, ExitUsage, code, errOut)
			require.Contains(t, errOut, tc.want)
			require.Equal(t, tc.wantOut, out)
			require.NoFileExists(t, filepath.Join(root, provQMDropIn))
		})
	}
}

// TestProvisionArgvAccepted: the command line remote provisioning runs on a node is one the CLI
// accepts, flag for flag.
func TestProvisionArgvAccepted(t *testing.T) {
	t.Parallel()
	for _, argv := range [][]string{
		deploy.ProvisionArgv(nil, "qm.", "", ""),
		deploy.ProvisionArgv(nil, "qm-", "tcp", "10.0.0.1"),
		deploy.ProvisionArgv([]string{"/usr/local/bin/qmorch"}, "qm.", "socket", ""),
	} {
		i := slices.Index(argv, "qmorch")
		if i < 0 {
			i = 0
		}
		root := NewRootCmd(deps{streams: IOStreams{Out: &bytes.Buffer{}, ErrOut: &bytes.Buffer{}}})
		cmd, rest, err := root.Find(argv[i+1:])
		require.NoError(t, err)
		require.Equal(t, "qm-agent", cmd.Name())
		require.NoError(t, cmd.ParseFlags(rest), "%v", argv)
		require.Empty(t, cmd.Flags().Args())
		for _, name := range []string{"root", "prefix", "changed-exit-code", "output"} {
			require.True(t, cmd.Flags().Changed(name), name)
		}
		require.Equal(t, "/", cmd.Flags().Lookup("root").Value.String())
		require.Equal(t, "10", cmd.Flags().Lookup("changed-exit-code").Value.String())
	}
}

func TestProvisionControllerCLI(t *testing.T) {
	t.Parallel()
	root := provTree(t, map[string]string{
		"etc/bluechi/controller.conf":              "[bluechi-controller]\nAllowedNodeNames=control,node9\nAllowedNodeNames=,node8\n",
		"usr/share/bluechi/config/controller.conf": "[bluechi-controller]\n",
	})
	var nodes []string
	for i := range 60 {
		nodes = append(nodes, "ecu-node-with-a-long-name-"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	out, errOut, code := provRun(t, nil, "provision", "controller", "--root", root, "--nodes", strings.Join(nodes, ","), "-o", "json")
	require.Equal(t, 0, code, errOut)
	var doc ProvisionOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.True(t, doc.Changed)
	require.Len(t, doc.Names, 123)
	require.Equal(t, []string{"control", "node9", "node8"}, doc.Names[:3], "names allowed today are kept")
	require.Contains(t, errOut, "warning: /etc/bluechi/controller.conf:3: AllowedNodeNames set again in the same file")
	data, err := os.ReadFile(filepath.Join(root, "etc/bluechi/controller.conf.d/99-qmorch.conf"))
	require.NoError(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		require.Less(t, len(l), 500)
	}

	out, errOut, code = provRun(t, nil, "provision", "controller", "--root", root, "--nodes", strings.Join(nodes, ","), "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "(unchanged)")

	_, errOut, code = provRun(t, nil, "provision", "controller", "--root", root)
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "--nodes is required")

	_, errOut, code = provRun(t, nil, "provision", "controller", "--root", root, "--nodes", "a_b,c d")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "whitespace")

	// An entry with a space today is refused rather than carried or silently changed.
	bad := provTree(t, map[string]string{"etc/bluechi/controller.conf": "[bluechi-controller]\nAllowedNodeNames=control, node9\n",
		"usr/share/bluechi/config/controller.conf": "[bluechi-controller]\n"})
	_, errOut, code = provRun(t, nil, "provision", "controller", "--root", bad, "--nodes", "node1")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, `" node9" contains whitespace`)
	require.NoFileExists(t, filepath.Join(bad, "etc/bluechi/controller.conf.d/99-qmorch.conf"))

	// bluechi-controller refuses to start without its default file: so does qmorch.
	noDefault := provTree(t, map[string]string{"etc/bluechi/controller.conf": "[bluechi-controller]\n"})
	_, errOut, code = provRun(t, nil, "provision", "controller", "--root", noDefault, "--nodes", "node1")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "/usr/share/bluechi/config/controller.conf is missing")
	require.NoDirExists(t, filepath.Join(noDefault, "etc/bluechi/controller.conf.d"))
}

func TestConfigShowCLI(t *testing.T) {
	t.Parallel()
	root := provTree(t, map[string]string{
		"usr/share/bluechi-agent/config/agent.conf": "[bluechi-agent]\n#NodeName=\n",
		provAgentConf: "[bluechi-agent]\nNodeName=a\nNodeName=b\nLogLevel=debug\n[bluechi-controller]\nUseTCP=false\n",
		"etc/bluechi/agent.conf.d/10-broken.conf": "broken\n",
		"etc/bluechi/agent.conf.d/20-port.conf":   "[bluechi-agent]\nControllerPort=8420\n",
	})
	out, errOut, code := provRun(t, nil, "config", "show", "--root", root, "--hostname", "testhost", "--explain")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "# /etc/bluechi/agent.conf:2,3\n#   replaced \"testhost\" (built-in default)\nNodeName=ab\n")
	require.Contains(t, out, "# /etc/bluechi/agent.conf.d/20-port.conf:2\n#   replaced \"842\" (built-in default)\nControllerPort=8420\n")
	require.Contains(t, out, "#   skipped   drop-in  /etc/bluechi/agent.conf.d/10-broken.conf\n")
	for _, w := range []string{
		"warning: /etc/bluechi/agent.conf:3: NodeName set again in the same file",
		"warning: /etc/bluechi/agent.conf:6: [bluechi-controller] is never read",
		"warning: /etc/bluechi/agent.conf.d/10-broken.conf:1: drop-in skipped whole",
		`LogLevel "debug" is not one of`,
	} {
		require.Contains(t, errOut, w)
	}

	out, errOut, code = provRun(t, nil, "config", "show", "--root", root, "--hostname", "testhost", "-o", "json")
	require.Equal(t, 0, code, errOut)
	var doc ConfigOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.Len(t, doc.Warnings, 4)
	require.Contains(t, errOut, "warning:", "warnings go to stderr with -o json too")

	// The broken drop-in sorting last is fatal: file:line, exit 2, nothing on stdout.
	require.NoError(t, os.Remove(filepath.Join(root, "etc/bluechi/agent.conf.d/20-port.conf")))
	out, errOut, code = provRun(t, nil, "config", "show", "--root", root, "--hostname", "testhost")
	require.Equal(t, ExitUsage, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "/etc/bluechi/agent.conf.d/10-broken.conf:1:")

	// Controller: spaces in AllowedNodeNames.
	croot := provTree(t, map[string]string{
		"usr/share/bluechi/config/controller.conf": "",
		"etc/bluechi/controller.conf":              "[bluechi-controller]\nAllowedNodeNames=node1, node2\nControllerPort=70000\n",
	})
	_, errOut, code = provRun(t, nil, "config", "show", "--controller", "--root", croot)
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "ControllerPort (/etc/bluechi/controller.conf:3)")

	_, errOut, code = provRun(t, nil, "config", "show", "--agent", "--controller")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "exclude each other")
}

// execNode is an in-memory node that really runs what remote provisioning starts on it: the
// transient unit's `qmorch provision qm-agent --root=/ ...` runs in-process (run()) against the
// node's own temp tree instead of "/", and its exit status becomes the unit's ExecMainStatus.
// Everything else is the MemoryNode's.
type execNode struct {
	*testcontroller.MemoryNode
	root string

	mu   sync.Mutex
	runs [][]string
	logs []string
}

// logText is what the node-side runs printed on stderr (read under the lock: runs happen on the
// test controller's goroutines).
func (n *execNode) logText() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return strings.Join(n.logs, "")
}

func (n *execNode) Call(ctx context.Context, method string, args []any) ([]any, error) {
	if method != "StartTransientUnit" {
		return n.MemoryNode.Call(ctx, method, args)
	}
	var name, mode string
	var props []testcontroller.Property
	var aux []testcontroller.AuxUnit
	if err := dbus.Store(args, &name, &mode, &props, &aux); err != nil {
		return nil, err
	}
	var argv []string
	for _, p := range props {
		if p.Name != "ExecStart" {
			continue
		}
		var cmds []struct {
			Path   string
			Argv   []string
			Ignore bool
		}
		if err := dbus.Store([]any{p.Value.Value()}, &cmds); err != nil {
			return nil, err
		}
		argv = cmds[0].Argv
	}
	if i := slices.Index(argv, "qmorch"); i >= 0 && slices.Contains(argv, "--root=/") {
		cli := slices.Clone(argv[i+1:])
		cli[slices.Index(cli, "--root=/")] = "--root=" + n.root
		var o, e bytes.Buffer
		code := run(ctx, cli, deps{streams: IOStreams{In: strings.NewReader(""), Out: &o, ErrOut: &e}})
		n.mu.Lock()
		n.runs = append(n.runs, argv)
		n.logs = append(n.logs, e.String())
		n.mu.Unlock()
		props = append(props, testcontroller.Property{Name: "ExecMainStatus", Value: dbus.MakeVariant(int32(code))})
	}
	return n.MemoryNode.Call(ctx, method, []any{name, mode, props, aux})
}

func (n *execNode) ranArgv() [][]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.runs)
}

func TestProvisionQMAgentRemoteCLI(t *testing.T) {
	t.Parallel()
	hostFiles := func(name string) map[string]string {
		return map[string]string{
			provAgentConf:                           "[bluechi-agent]\n#NodeName=\nControllerHost=10.231.7.11\n",
			"etc/bluechi/agent.conf.d/50-name.conf": "[bluechi-agent]\nNodeName=" + name + "\n",
		}
	}
	node1 := &execNode{MemoryNode: testcontroller.NewMemoryNode("node1"), root: provTree(t, hostFiles("node1"))}
	broken := hostFiles("node2")
	broken[provAgentConf] = "[bluechi-agent]\nbroken\n"
	node2 := &execNode{MemoryNode: testcontroller.NewMemoryNode("node2"), root: provTree(t, broken)}
	node3 := &execNode{MemoryNode: testcontroller.NewMemoryNode("node3"), root: provTree(t, hostFiles("node3"))}
	h := testcontroller.Start(t, testcontroller.WithRootOnly(false),
		testcontroller.WithMemoryNodes("qm.node1", "qm.node2"),
		testcontroller.WithBackend("node1", node1), testcontroller.WithBackend("node2", node2),
		testcontroller.WithBackend("node3", node3))
	connect := func(ctx context.Context, _ string, log *slog.Logger) (deploy.Controller, func() error, error) {
		return connectController(ctx, h.Address, log)
	}
	restarts := func() int { return h.Node("qm.node1").Calls("RestartUnit") }

	// Dry run: the plan, nothing runs on the nodes.
	out, errOut, code := provRun(t, connect, "provision", "qm-agent", "--nodes", "node1", "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Node.StartTransientUnit")
	require.Contains(t, out, "/usr/bin/env qmorch provision qm-agent --root=/ --prefix=qm. --changed-exit-code=10 --output=json")
	require.Empty(t, node1.ranArgv())

	// First run: changed, the QM agent is restarted.
	out, errOut, code = provRun(t, connect, "provision", "qm-agent", "--nodes", "node1", "-o", "json")
	require.Equal(t, 0, code, errOut)
	var doc RemoteProvisionOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.True(t, doc.OK)
	require.Len(t, doc.Results, 1)
	require.Equal(t, "changed", doc.Results[0].Action, node1.logText())
	require.Equal(t, "restarted", doc.Results[0].AgentRestart)
	require.Equal(t, "qm.node1", doc.Results[0].QMNode)
	require.Equal(t, 1, restarts())
	data, err := os.ReadFile(filepath.Join(node1.root, provQMDropIn))
	require.NoError(t, err)
	require.Contains(t, string(data), "\nNodeName=qm.node1\n")
	require.Contains(t, string(data), "\nControllerHost=10.231.7.11\n")

	// Second run: unchanged, no restart.
	out, errOut, code = provRun(t, connect, "provision", "qm-agent", "--nodes", "node1")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `node1\s+qm\.node1\s+unchanged\s+not-needed`, out)
	require.Equal(t, 1, restarts())
	require.Len(t, node1.ranArgv(), 2)

	// A node whose host config bluechi-agent would refuse: failed, with the reason; exit 1.
	out, errOut, code = provRun(t, connect, "provision", "qm-agent", "--nodes", "node2")
	require.Equal(t, ExitFailed, code)
	require.Regexp(t, `node2\s+qm\.node2\s+failed`, out)
	require.Contains(t, errOut, "exited 2: invalid host configuration or flags")
	require.Contains(t, node2.logText(), "/etc/bluechi/agent.conf:2:")
	require.Equal(t, 0, h.Node("qm.node2").Calls("RestartUnit"))

	// A node without a registered twin: changed, restart skipped with a warning.
	out, errOut, code = provRun(t, connect, "provision", "qm-agent", "--nodes", "node3")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `node3\s+qm\.node3\s+changed\s+skipped`, out)
	require.Contains(t, errOut, "warning: node node3: QM twin qm.node3 is not registered")

	// --all picks the hosts that have a twin; unknown names are usage errors.
	out, errOut, code = provRun(t, connect, "provision", "qm-agent", "--all", "--dry-run")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "node1")
	require.Contains(t, out, "node2")
	require.NotContains(t, out, "node3")
	_, errOut, code = provRun(t, connect, "provision", "qm-agent", "--nodes", "nodeX")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, `unknown node "nodeX"`)
	_, errOut, code = provRun(t, connect, "provision", "qm-agent", "--nodes", "node1", "--root", "/tmp")
	require.Equal(t, ExitUsage, code)
	require.Contains(t, errOut, "--root works on a local tree")
}

// TestProvisionQMAgentRemoteAgentDropsJob: restarting the QM agent drops the restart job (the
// twin goes offline while it is pending). That is expected: qmorch waits until the twin is back.
func TestProvisionQMAgentRemoteAgentDropsJob(t *testing.T) {
	t.Parallel()
	node1 := &execNode{MemoryNode: testcontroller.NewMemoryNode("node1"), root: provTree(t, map[string]string{
		provAgentConf: "[bluechi-agent]\nNodeName=node1\nControllerHost=10.231.7.11\n",
	})}
	twin := testcontroller.NewMemoryNode("qm.node1")
	twin.Hold("bluechi-agent.service") // the job never finishes by itself
	h := testcontroller.Start(t, testcontroller.WithRootOnly(false), testcontroller.WithMemoryNodes(),
		testcontroller.WithNodes(twin), testcontroller.WithBackend("node1", node1))
	connect := func(ctx context.Context, _ string, log *slog.Logger) (deploy.Controller, func() error, error) {
		return connectController(ctx, h.Address, log)
	}
	type result struct {
		out, errOut string
		code        int
	}
	done := make(chan result, 1)
	go func() {
		out, errOut, code := provRun(t, connect, "provision", "qm-agent", "--nodes", "node1", "--timeout", "30s")
		done <- result{out, errOut, code}
	}()
	// Once the restart is pending, the agent "restarts": offline (job dropped), then online.
	deadline := time.Now().Add(20 * time.Second)
	for twin.Calls("RestartUnit") == 0 {
		require.True(t, time.Now().Before(deadline), "no RestartUnit on qm.node1")
		time.Sleep(10 * time.Millisecond)
	}
	h.SetOnline("qm.node1", false)
	h.SetOnline("qm.node1", true)
	r := <-done
	require.Equal(t, 0, r.code, r.errOut)
	require.Regexp(t, `node1\s+qm\.node1\s+changed\s+restarted`, r.out)
}
