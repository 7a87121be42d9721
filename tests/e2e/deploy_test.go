//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
)

// deployOutput is the documented `qmorch deploy -o json` shape (the fields the tests read).
type deployOutput struct {
	OK      bool `json:"ok"`
	Results []struct {
		Node        string `json:"node"`
		QMNode      string `json:"qmNode"`
		Unit        string `json:"unit"`
		Path        string `json:"path"`
		Action      string `json:"action"`
		ActiveState string `json:"activeState"`
		DurationMs  int64  `json:"durationMs"`
		Error       string `json:"error"`
	} `json:"results"`
}

func parseDeploy(t *testing.T, stdout string) deployOutput {
	t.Helper()
	var out deployOutput
	require.NoError(t, json.Unmarshal([]byte(stdout), &out), "stdout: %s", stdout)
	return out
}

func byNode(out deployOutput) map[string]int {
	m := map[string]int{}
	for i, r := range out.Results {
		m[r.Node] = i
	}
	return m
}

// resetNested removes a nested Quadlet from a node's QM (test setup, straight on the node tree).
func resetNested(t *testing.T, node, name string) {
	t.Helper()
	unit := strings.TrimSuffix(name, ".container") + ".service"
	// the unit may not be loaded (first run): stopping it is best effort
	_, _ = qmTry(node, "systemctl", "stop", unit)
	_, _ = qmTry(node, "systemctl", "reset-failed")
	p := filepath.Join(testbedEnv(t).QMEtc(node), "containers", "systemd", name)
	require.NoError(t, removeIfExists(p))
	qmExec(t, node, "systemctl", "daemon-reload")
}

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

func example(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(suite.repo, "examples", name)
}

// Acceptance 1: the nested container really runs in node1's QM, with QM's OOM score for nested
// containers, and the file is on node1 with mode 0644.
func TestDeployNestedToNode1(t *testing.T) {
	resetNested(t, "node1", "nested.container")
	src := example(t, "nested.container")
	stdout, _, exit := runQmorch(t, "deploy", "node1", src, "-o", "json")
	require.Equal(t, 0, exit)
	out := parseDeploy(t, stdout)
	require.True(t, out.OK)
	require.Len(t, out.Results, 1)
	r := out.Results[0]
	require.Equal(t, "node1", r.Node)
	require.Equal(t, "qm.node1", r.QMNode)
	require.Equal(t, "nested.service", r.Unit)
	require.Equal(t, "deployed", r.Action)
	require.Equal(t, "active", r.ActiveState)

	c := client(t)
	active, sub := unitState(t, c, "qm.node1", "nested.service")
	require.Equal(t, "active", active)
	require.Equal(t, "running", sub)

	names := qmExec(t, "node1", "podman", "ps", "--format", "{{.Names}}")
	require.Contains(t, strings.Fields(names), "systemd-nested", "podman ps in QM")

	pid := strings.TrimSpace(qmExec(t, "node1", "podman", "inspect", "--format", "{{.State.Pid}}", "systemd-nested"))
	require.NotEmpty(t, pid)
	oom := strings.TrimSpace(qmExec(t, "node1", "cat", "/proc/"+pid+"/oom_score_adj"))
	require.Equal(t, "750", oom, "nested container oom_score_adj")

	p := filepath.Join(testbedEnv(t).QMEtc("node1"), "containers", "systemd", "nested.container")
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	want, err := os.ReadFile(src)
	require.NoError(t, err)
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, want, got)
	requireNoDeliveryUnits(t, c, "node1")
}

// Acceptance 2: two nodes in parallel, then the same deploy again is `unchanged` (no restart).
func TestDeployTwoNodesThenUnchanged(t *testing.T) {
	// Start from nothing on both nodes, so the first deploy must really deploy.
	for _, n := range []string{"node1", "node2"} {
		resetNested(t, n, "nested.container")
		t.Cleanup(func() { resetNested(t, n, "nested.container") })
	}
	src := example(t, "nested.container")
	stdout, _, exit := runQmorch(t, "deploy", "node1,node2", src, "-o", "json")
	require.Equal(t, 0, exit)
	out := parseDeploy(t, stdout)
	require.True(t, out.OK)
	require.Len(t, out.Results, 2)
	for _, r := range out.Results {
		require.Equal(t, "deployed", r.Action, r.Node)
		require.Equal(t, "active", r.ActiveState, r.Node)
	}

	c := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.GetNode(ctx, "qm.node2")
	require.NoError(t, err)
	before, err := n.GetUnitProperty(ctx, "nested.service", "org.freedesktop.systemd1.Unit", "InvocationID")
	require.NoError(t, err)

	stdout, _, exit = runQmorch(t, "deploy", "node1,node2", src, "-o", "json")
	require.Equal(t, 0, exit)
	out = parseDeploy(t, stdout)
	for _, r := range out.Results {
		require.Equal(t, "unchanged", r.Action, r.Node)
		require.Equal(t, "active", r.ActiveState, r.Node)
	}
	after, err := n.GetUnitProperty(ctx, "nested.service", "org.freedesktop.systemd1.Unit", "InvocationID")
	require.NoError(t, err)
	require.Equal(t, before.Value(), after.Value(), "unchanged deploy must not restart the unit")

	names := qmExec(t, "node2", "podman", "ps", "--format", "{{.Names}}")
	require.Contains(t, strings.Fields(names), "systemd-nested")
}

// Acceptance 3: node2 stopped -> node1 succeeds, node2 fails with an offline error within the
// timeout, exit non-zero, nothing half-written on node1.
func TestDeployWithNodeOffline(t *testing.T) {
	name := "offprobe.container"
	dir := t.TempDir()
	src := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(src, []byte("[Container]\nImage=localhost/busybox:latest\nExec=sleep infinity\nPodmanArgs=--init\n\n[Service]\nSuccessExitStatus=143\n"), 0o644))
	resetNested(t, "node1", name)
	t.Cleanup(func() { resetNested(t, "node1", name) })

	testbedCmd(t, "node-stop", "node2")
	t.Cleanup(func() {
		testbedCmd(t, "node-start", "node2")
		refreshEnv(t)
		require.NoError(t, waitOnline(90*time.Second, "node2", "qm.node2"))
	})
	// The double notices the closed node bus; wait until the controller says so.
	c := client(t)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		nodes, err := c.ListNodes(ctx)
		if err != nil {
			return false
		}
		for _, n := range nodes {
			if n.Name == "node2" {
				return n.Status == "offline"
			}
		}
		return false
	}, 30*time.Second, 100*time.Millisecond)

	start := time.Now()
	stdout, _, exit := runQmorch(t, "deploy", "node1,node2", src, "-o", "json", "--timeout", "20s")
	elapsed := time.Since(start)
	require.Equal(t, 1, exit)
	require.Less(t, elapsed, 25*time.Second, "offline must end the operation within the timeout")
	out := parseDeploy(t, stdout)
	require.False(t, out.OK)
	idx := byNode(out)
	require.Contains(t, idx, "node1")
	require.Contains(t, idx, "node2")
	r1, r2 := out.Results[idx["node1"]], out.Results[idx["node2"]]
	require.Equal(t, "deployed", r1.Action, r1.Error)
	require.Equal(t, "active", r1.ActiveState)
	require.Equal(t, "failed", r2.Action)
	require.Contains(t, strings.ToLower(r2.Error), "offline")

	// Nothing half-written on node1: only complete Quadlet files, no temp files.
	qdir := filepath.Join(testbedEnv(t).QMEtc("node1"), "containers", "systemd")
	entries, err := os.ReadDir(qdir)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, strings.HasPrefix(e.Name(), "."), "temp file left: %s", e.Name())
		require.True(t, strings.HasSuffix(e.Name(), ".container") || e.IsDir(), "unexpected file: %s", e.Name())
	}
	got, err := os.ReadFile(filepath.Join(qdir, name))
	require.NoError(t, err)
	want, _ := os.ReadFile(src)
	require.Equal(t, want, got)
	requireNoDeliveryUnits(t, c, "node1")
}

// requireNoDeliveryUnits checks that qmorch collected its transient delivery units on node.
func requireNoDeliveryUnits(t *testing.T, c *controller.Client, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.GetNode(ctx, node)
	require.NoError(t, err)
	units, err := n.ListUnits(ctx)
	require.NoError(t, err)
	for _, u := range units {
		require.False(t, strings.HasPrefix(u.Name, "qmorch-deliver-"), "delivery unit left on %s: %s (%s)", node, u.Name, u.ActiveState)
	}
}

// Acceptance 4: a container that exits at once is a failure, not `done`.
func TestDeployCrashingContainerFails(t *testing.T) {
	resetNested(t, "node1", "crashing.container")
	t.Cleanup(func() { resetNested(t, "node1", "crashing.container") })
	src := filepath.Join(suite.repo, "tests", "e2e", "testdata", "crashing.container")
	stdout, _, exit := runQmorch(t, "deploy", "node1", src, "-o", "json")
	require.Equal(t, 1, exit)
	out := parseDeploy(t, stdout)
	require.False(t, out.OK)
	require.Len(t, out.Results, 1)
	require.Equal(t, "failed", out.Results[0].Action)
	require.Contains(t, out.Results[0].Error, "crashing.service")
	require.NotEqual(t, "active", out.Results[0].ActiveState)
	// the real unit in QM agrees: not running
	active, _ := unitState(t, client(t), "qm.node1", "crashing.service")
	require.NotEqual(t, "active", active)
}

// Acceptance 5 on a real node: content that a shell or systemd would interpret (quotes, $(),
// backticks, $VAR, %n, $$, a trailing backslash, newlines, NUL-free binary-ish bytes) arrives in
// node1's QM byte-identical with mode 0644, nothing in it is executed, and the same content
// again is `unchanged`.
func TestDeployContentByteIdentical(t *testing.T) {
	const name = "verbatim.container"
	resetNested(t, "node1", name)
	t.Cleanup(func() { resetNested(t, "node1", name) })
	marker := filepath.Join(testbedEnv(t).NodeRoot("node1"), "etc", "qmorch-e2e-pwned")
	require.NoError(t, removeIfExists(marker))
	content := "[Unit]\n" +
		"Description=\"dq\" 'sq' $(touch /etc/qmorch-e2e-pwned) `touch /etc/qmorch-e2e-pwned` $HOME ${HOME} %n %% $$ ;x\n\n" +
		"[Container]\nImage=localhost/busybox:latest\n" +
		"Exec=sh -c 'echo \"$0\" > /dev/null; sleep 1'\n" +
		"# bytes: \x01\x02\x7f\xc3\xa9\xef\xbb\xbf\xff\xfe\ttab \\\n" +
		"#   continued after a backslash\n\n"
	src := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(src, []byte(content), 0o600))

	stdout, _, exit := runQmorch(t, "deploy", "node1", src, "--no-start", "-o", "json")
	require.Equal(t, 0, exit)
	out := parseDeploy(t, stdout)
	require.Len(t, out.Results, 1)
	require.Equal(t, "installed", out.Results[0].Action)

	p := filepath.Join(testbedEnv(t).QMEtc("node1"), "containers", "systemd", name)
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, []byte(content), got, "file on node1 differs from the source")
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "mode 0644 although the source is 0600")
	require.NoFileExists(t, marker, "content was executed on the node")

	stdout, _, exit = runQmorch(t, "deploy", "node1", src, "--no-start", "-o", "json")
	require.Equal(t, 0, exit)
	require.Equal(t, "unchanged", parseDeploy(t, stdout).Results[0].Action)
}
