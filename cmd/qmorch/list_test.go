package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/tests/dbustest"
)

const flQuadlet = "[Container]\nImage=localhost/busybox:latest\nExec=sleep infinity\n"

func flWriteQuadlet(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "nested.container")
	require.NoError(t, os.WriteFile(p, []byte(flQuadlet), 0o644))
	return p
}

// The whole fleet workflow through the CLI, with the JSON of every command pinned in golden
// files: deploy, start/stop, a failing start, list (in sync, then drifted), remove, remove again.
func TestFleetJSONGolden(t *testing.T) {
	f := newFLFleet(t)
	file := flWriteQuadlet(t)
	state := "--state-dir=" + f.stateDir
	step := func(golden string, wantCode int, args ...string) string {
		t.Helper()
		out, stderr, code := f.run(t, args...)
		require.Equal(t, wantCode, code, "qmorch %v\nstdout: %s\nstderr: %s", args, out, stderr)
		assertGolden(t, golden, out)
		return out
	}
	step("deploy", 0, "deploy", "node1,node2", file, "--settle=0", state, "-o", "json")
	step("lifecycle_restart", 0, "restart", "node*", "nested", "-o", "json")
	step("lifecycle_stop_table", 0, "stop", "--all", "nested.service")
	step("lifecycle_failed", 1, "start", "node1", "fail", "crash", "test", "-o", "json")
	step("list", 0, "list", state, "-o", "json")

	// Change the file on node1 behind qmorch's back, and drop an unmanaged Quadlet on node2.
	f.fs.put("node1", flQuadletDir+"/nested.container", []byte(flQuadlet+"# edited on the node\n"))
	f.fs.put("node2", flQuadletDir+"/other.container", []byte(flQuadlet))
	reloadTwin(t, f, "qm.node2")
	out := step("list_drift", 0, "list", state, "-o", "json")
	var doc ListOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.Equal(t, 2, doc.Drifted)
	require.Equal(t, []string{"modified"}, doc.Results[0].Units[0].Drift)
	step("list_drift_table", 0, "list", state)

	step("remove", 0, "remove", "node1,node2", "nested.container", state, "-o", "json")
	step("remove_unchanged", 0, "remove", "--all", "nested.container", state, "-o", "json")
	step("list_after_remove", 0, "list", "node1", state, "-o", "json")
	for _, n := range []string{"node1", "node2"} {
		_, ok := f.fs.get(n, flQuadletDir+"/nested.container")
		require.False(t, ok, "file removed on %s", n)
		active, _ := f.nodes["qm."+n].UnitState("nested.service")
		require.Empty(t, active, "unit unloaded on qm.%s", n)
	}
}

// reloadTwin runs daemon-reload on a twin through the controller (as a node-side change plus
// `systemctl daemon-reload` in QM would).
func reloadTwin(t *testing.T, f *flFleet, twin string) {
	t.Helper()
	c, err := controller.New(t.Context(), controller.WithAddress(f.h.Address))
	require.NoError(t, err)
	defer c.Close()
	n, err := c.GetNode(t.Context(), twin)
	require.NoError(t, err)
	require.NoError(t, n.Reload(t.Context()))
}

// Exit codes: 0 ok, 1 a node or unit failed, 2 usage or validation, 3 controller unreachable.
func TestFleetExitCodes(t *testing.T) {
	f := newFLFleet(t)
	file := flWriteQuadlet(t)
	noController := dbustest.New(t, true) // a bus where nobody owns org.eclipse.bluechi
	corrupt := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(corrupt, "manifest.json"), []byte("{oops"), 0o644))
	state := "--state-dir=" + f.stateDir

	cases := []struct {
		name   string
		args   []string
		bus    string // overrides the fleet's bus
		code   int
		stderr string
	}{
		{"start ok", []string{"start", "node1,node2", "test"}, "", 0, ""},
		{"stop ok", []string{"stop", "--all", "test.service"}, "", 0, ""},
		{"reload host unit", []string{"reload", "--host", "node1", "bluechi-agent"}, "", 0, ""},
		{"deploy ok", []string{"deploy", "node1", file, "--settle=0", state}, "", 0, ""},
		{"list ok", []string{"list", state}, "", 0, ""},
		{"remove ok", []string{"remove", "node1", "nested.container", state}, "", 0, ""},

		{"unit fails", []string{"start", "node1,node2", "fail"}, "", 1, "error: node node1: start fail.service on qm.node1: job failed"},
		{"unit dies after start", []string{"restart", "node1", "crash"}, "", 1, "unit is failed/failed after restart"},
		{"unit not found", []string{"start", "node1", "nosuch"}, "", 1, "nosuch.service"},
		{"remove still loaded", []string{"remove", "node1", "web.container", state}, "", 1, "unit still loaded on qm.node1"},

		{"bad unit name", []string{"start", "node1", "a b"}, "", 2, `unit "a b": character ' ' is not allowed`},
		{"quadlet name as unit", []string{"stop", "node1", "nested.container"}, "", 2, "nested.service"},
		{"unknown node", []string{"restart", "node1,nodeX", "test"}, "", 2, `unknown node "nodeX" (known nodes: node1, node2, qm.node1, qm.node2)`},
		{"glob matches nothing", []string{"start", "car*", "test"}, "", 2, "matches no host node"},
		{"missing unit", []string{"stop", "node1"}, "", 2, "need NODES and at least one UNIT"},
		{"bad output", []string{"start", "node1", "test", "-o", "yaml"}, "", 2, "--output must be table or json"},
		{"bad parallel", []string{"stop", "node1", "test", "--parallel", "0"}, "", 2, "--parallel"},
		{"remove bad file", []string{"remove", "node1", "nested.service", state}, "", 2, "NAME.container"},
		{"remove unknown node", []string{"remove", "nodeX", "nested.container", state}, "", 2, "unknown node"},
		{"list unknown node", []string{"list", "nodeX", state}, "", 2, "unknown node"},
		{"list nodes and all", []string{"list", "node1", "--all", state}, "", 2, "not both"},
		{"corrupt record", []string{"list", "--state-dir", corrupt}, "", 2, "manifest.json is corrupt"}, // bad local input, read before any node

		{"bad bus address", []string{"start", "node1", "test"}, "unix:path=/nonexistent/qmorch-test.sock", 3, ""},
		{"list bad bus address", []string{"list", state}, "unix:path=/nonexistent/qmorch-test.sock", 3, ""},
		{"controller not on the bus", []string{"stop", "node1", "test"}, noController.Address, 3, ""},
		{"remove: controller not on the bus", []string{"remove", "node1", "nested.container", state}, noController.Address, 3, ""},
		{"list: controller not on the bus", []string{"list", state}, noController.Address, 3, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args
			if tc.bus != "" {
				args = append(args, "--bus-address", tc.bus)
			}
			out, stderr, code := f.run(t, args...)
			require.Equal(t, tc.code, code, "qmorch %v\nstdout: %s\nstderr: %s", args, out, stderr)
			require.Contains(t, stderr, tc.stderr)
			if tc.code >= 2 {
				require.Empty(t, out, "request errors print nothing on stdout")
			}
		})
	}
}
