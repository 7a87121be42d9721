//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fleetLifecycle is the documented `qmorch start|stop|restart|reload -o json` shape (the fields
// the tests read).
type fleetLifecycle struct {
	Kind    string `json:"kind"`
	Action  string `json:"action"`
	OK      bool   `json:"ok"`
	Results []struct {
		Node        string `json:"node"`
		Target      string `json:"target"`
		Unit        string `json:"unit"`
		Result      string `json:"result"`
		JobResult   string `json:"jobResult"`
		ActiveState string `json:"activeState"`
		Error       string `json:"error"`
	} `json:"results"`
}

type fleetRemove struct {
	Kind    string `json:"kind"`
	OK      bool   `json:"ok"`
	Results []struct {
		Node        string `json:"node"`
		Action      string `json:"action"`
		FileRemoved bool   `json:"fileRemoved"`
		LoadState   string `json:"loadState"`
		Error       string `json:"error"`
	} `json:"results"`
}

type fleetList struct {
	Kind    string `json:"kind"`
	OK      bool   `json:"ok"`
	Results []struct {
		Node  string `json:"node"`
		Error string `json:"error"`
		Units []struct {
			Unit        string   `json:"unit"`
			Managed     bool     `json:"managed"`
			ActiveState string   `json:"activeState"`
			FileState   string   `json:"fileState"`
			Drift       []string `json:"drift"`
		} `json:"units"`
	} `json:"results"`
}

func fleetJSON(t *testing.T, stdout string, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal([]byte(stdout), v), "stdout: %s", stdout)
}

const fleetName = "fleetprobe"

// fleetUnits returns, per node that lists the managed fleetprobe.service, its ActiveState then its drift.
func fleetUnits(out fleetList) map[string][]string {
	m := map[string][]string{}
	for _, n := range out.Results {
		for _, u := range n.Units {
			if u.Unit == fleetName+".service" && u.Managed {
				m[n.Node] = append([]string{u.ActiveState}, u.Drift...)
			}
		}
	}
	return m
}

func podmanNames(t *testing.T, node string) []string {
	t.Helper()
	return strings.Fields(qmExec(t, node, "podman", "ps", "--format", "{{.Names}}"))
}

func qmLoadState(t *testing.T, node, unit string) string {
	t.Helper()
	out := qmExec(t, node, "systemctl", "show", "-p", "LoadState", "--value", unit)
	return strings.TrimSpace(out)
}

// Issue 4, acceptance 1 (without status): a nested unit on node1 and node2 stopped, started and
// restarted on both at once; list shows it and then the drift of a file changed on node1;
// remove leaves no file and no loaded unit, and repeating it is "unchanged".
func TestFleetLifecycleListRemove(t *testing.T) {
	nodes := []string{"node1", "node2"}
	file := fleetName + ".container"
	unit := fleetName + ".service"
	container := "systemd-" + fleetName
	for _, n := range nodes {
		resetNested(t, n, file)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			resetNested(t, n, file)
		}
	})
	state := "--state-dir=" + t.TempDir()
	src := filepath.Join(t.TempDir(), file)
	content, err := os.ReadFile(example(t, "nested.container"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(src, content, 0o644))

	_, _, exit := runQmorch(t, "deploy", "node1,node2", src, state)
	require.Equal(t, 0, exit, "deploy")

	c := client(t)
	lifecycle := func(wantActive string, args ...string) {
		t.Helper()
		start := time.Now()
		stdout, _, exit := runQmorch(t, append(args, "-o", "json")...)
		require.Equal(t, 0, exit, "qmorch %v", args)
		var out fleetLifecycle
		fleetJSON(t, stdout, &out)
		require.Equal(t, "LifecycleResult", out.Kind)
		require.Equal(t, args[0], out.Action)
		require.True(t, out.OK)
		require.Len(t, out.Results, 2)
		for i, r := range out.Results {
			require.Equal(t, nodes[i], r.Node)
			require.Equal(t, "qm."+nodes[i], r.Target)
			require.Equal(t, unit, r.Unit)
			require.Equal(t, "ok", r.Result, r.Error)
			require.Equal(t, "done", r.JobResult)
			require.Equal(t, wantActive, r.ActiveState)
			active, _ := unitState(t, c, "qm."+r.Node, unit)
			require.Equal(t, wantActive, active, "controller view of %s on qm.%s", unit, r.Node)
			if wantActive == "active" {
				require.Contains(t, podmanNames(t, r.Node), container, "podman in QM of %s", r.Node)
			} else {
				require.NotContains(t, podmanNames(t, r.Node), container, "podman in QM of %s", r.Node)
			}
		}
		t.Logf("%v took %s", args, time.Since(start))
	}
	lifecycle("inactive", "stop", "node1,node2", fleetName)
	lifecycle("active", "start", "node*", fleetName)
	ids := map[string]string{}
	for _, n := range nodes {
		ids[n] = strings.TrimSpace(qmExec(t, n, "podman", "inspect", "--format", "{{.Id}}", container))
	}
	lifecycle("active", "restart", "--all", unit)
	for _, n := range nodes {
		id := strings.TrimSpace(qmExec(t, n, "podman", "inspect", "--format", "{{.Id}}", container))
		require.NotEqual(t, ids[n], id, "restart made a new container on %s", n)
	}

	// list: the unit on both nodes, in sync.
	stdout, _, exit := runQmorch(t, "list", "node1,node2", state, "-o", "json")
	require.Equal(t, 0, exit)
	var listed fleetList
	fleetJSON(t, stdout, &listed)
	require.True(t, listed.OK)
	require.Equal(t, map[string][]string{"node1": {"active"}, "node2": {"active"}}, fleetUnits(listed))

	// Change the file on node1 directly: list reports the drift there, node2 stays in sync.
	onNode := filepath.Join(testbedEnv(t).QMEtc("node1"), "containers", "systemd", file)
	require.NoError(t, os.WriteFile(onNode, append(content, []byte("# edited on the node\n")...), 0o644))
	stdout, _, exit = runQmorch(t, "list", "node1,node2", state, "-o", "json")
	require.Equal(t, 0, exit)
	listed = fleetList{}
	fleetJSON(t, stdout, &listed)
	require.Equal(t, map[string][]string{"node1": {"active", "modified"}, "node2": {"active"}}, fleetUnits(listed))
	table, _, _ := runQmorch(t, "list", "node1", state)
	require.Regexp(t, `node1\s+`+fleetName+`\.service\s+`+fleetName+`\.container\s+active/running\s+modified`, table)

	// remove: no file, no loaded unit; again: unchanged.
	stdout, _, exit = runQmorch(t, "remove", "node1,node2", file, state, "-o", "json")
	require.Equal(t, 0, exit)
	var removed fleetRemove
	fleetJSON(t, stdout, &removed)
	require.True(t, removed.OK)
	for i, r := range removed.Results {
		require.Equal(t, nodes[i], r.Node)
		require.Equal(t, "removed", r.Action, r.Error)
		require.True(t, r.FileRemoved)
		require.Equal(t, "not-found", r.LoadState)
		_, err := os.Stat(filepath.Join(testbedEnv(t).QMEtc(r.Node), "containers", "systemd", file))
		require.ErrorIs(t, err, os.ErrNotExist, "file on %s", r.Node)
		require.Equal(t, "not-found", qmLoadState(t, r.Node, unit), "unit in QM of %s", r.Node)
		require.NotContains(t, podmanNames(t, r.Node), container)
	}
	stdout, _, exit = runQmorch(t, "remove", "node1,node2", file, state, "-o", "json")
	require.Equal(t, 0, exit)
	removed = fleetRemove{}
	fleetJSON(t, stdout, &removed)
	for _, r := range removed.Results {
		require.Equal(t, "unchanged", r.Action, r.Node)
	}

	// list no longer shows it.
	stdout, _, exit = runQmorch(t, "list", "--all", state, "-o", "json")
	require.Equal(t, 0, exit)
	listed = fleetList{}
	fleetJSON(t, stdout, &listed)
	require.Empty(t, fleetUnits(listed))
}

// A failing unit through the real stack: start exits 1 and says why; nothing is left queued.
func TestFleetStartFailingUnitExits1(t *testing.T) {
	file := "fleetfail.container"
	for _, n := range []string{"node1", "node2"} {
		resetNested(t, n, file)
	}
	t.Cleanup(func() {
		for _, n := range []string{"node1", "node2"} {
			resetNested(t, n, file)
		}
	})
	src := filepath.Join(t.TempDir(), file)
	require.NoError(t, os.WriteFile(src, []byte("[Container]\nImage=localhost/busybox:latest\nExec=false\n"), 0o644))
	_, _, exit := runQmorch(t, "deploy", "node1", src, "--no-start", "--state-dir="+t.TempDir())
	require.Equal(t, 0, exit)

	stdout, stderr, exit := runQmorch(t, "start", "node1", "fleetfail", "-o", "json", "--timeout", "90s")
	require.Equal(t, 1, exit)
	var out fleetLifecycle
	fleetJSON(t, stdout, &out)
	require.False(t, out.OK)
	require.Equal(t, "failed", out.Results[0].Result)
	require.Contains(t, stderr, "error: node node1: start fleetfail.service on qm.node1")
}
