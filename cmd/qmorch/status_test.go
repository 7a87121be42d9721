package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

// stNodes is the fleet of the status tests: a control node without QM and two nodes with twins.
var stNodes = []string{"control", "node1", "node2", "qm.node1", "qm.node2"}

func stHarness(t *testing.T) *testcontroller.Harness {
	t.Helper()
	if !testcontroller.IsRoot() {
		t.Skip("the test controller's bus admits only root")
	}
	h := testcontroller.Start(t, testcontroller.WithMemoryNodes(stNodes...))
	h.Node("node1").SetPeerIP("::ffff:10.231.7.12")
	h.Node("node2").SetPeerIP("::ffff:10.231.7.13")
	// Re-register so the peer IPs are reported.
	for _, n := range []string{"node1", "node2"} {
		h.SetOnline(n, false)
		h.SetOnline(n, true)
	}
	return h
}

func stDeps(out, errOut io.Writer) deps {
	return deps{streams: IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut}, connect: connectController}
}

// stRun runs one qmorch command line in-process against h.
func stRun(t *testing.T, h *testcontroller.Harness, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, append(args, "--bus-address", h.Address), stDeps(&out, &errOut))
	return out.String(), errOut.String(), code
}

func TestStatusNodesTable(t *testing.T) {
	h := stHarness(t)
	h.SetOnline("qm.node2", false)
	out, stderr, code := stRun(t, h, "status")
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4)
	require.Equal(t, []string{"NODE", "HOST", "QM", "IP", "LAST", "SEEN"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"control", "online", "-", "-", "now"}, strings.Fields(lines[1]))
	require.Equal(t, []string{"node1", "online", "online", "10.231.7.12", "now"}, strings.Fields(lines[2]))
	f := strings.Fields(lines[3])
	require.Equal(t, []string{"node2", "online", "offline", "10.231.7.13"}, f[:4])
	require.NotEqual(t, "now", f[4], "an offline twin shows its last heartbeat")

	out, stderr, code = stRun(t, h, "status", "node*", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var doc NodeStatusOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.Equal(t, "qmorch/v1", doc.APIVersion)
	require.Equal(t, "NodeStatusList", doc.Kind)
	require.Len(t, doc.Results, 2)
	require.Equal(t, "node2", doc.Results[1].Node)
	require.Equal(t, "online", doc.Results[1].Host.Status)
	require.Nil(t, doc.Results[1].Host.LastSeen)
	require.NotNil(t, doc.Results[1].QM)
	require.Equal(t, "offline", doc.Results[1].QM.Status)
	require.NotNil(t, doc.Results[1].QM.LastSeen, out)
	_, err := time.Parse(time.RFC3339, *doc.Results[1].QM.LastSeen)
	require.NoError(t, err)
}

func TestStatusUnitsTable(t *testing.T) {
	h := stHarness(t)
	require.NoError(t, h.Node("qm.node1").SetUnitState("web.service", "active", "running"))
	require.NoError(t, h.Node("node2").SetUnitState("test.service", "failed", "failed"))
	tests := []struct {
		name string
		args []string
		code int
		want [][]string // Fields of the data lines, in order
	}{
		{"named units on twins, no suffix means .service", []string{"status", "node1,node2", "web", "test.service"}, 0, [][]string{
			{"qm.node1", "web.service", "loaded", "active", "running", "-", "-"},
			{"qm.node1", "test.service", "loaded", "inactive", "dead", "-", "-"},
			{"qm.node2", "web.service", "loaded", "inactive", "dead", "-", "-"},
			{"qm.node2", "test.service", "loaded", "inactive", "dead", "-", "-"},
		}},
		{"--host reads the host agents", []string{"status", "node2", "test", "--host"}, 0, [][]string{
			{"node2", "test.service", "loaded", "failed", "failed", "-", "-"},
		}},
		{"--all takes every argument as a unit", []string{"status", "--all", "web"}, 0, [][]string{
			{"qm.node1", "web.service", "loaded", "active", "running", "-", "-"},
			{"qm.node2", "web.service", "loaded", "inactive", "dead", "-", "-"},
		}},
		{"a unit that is not loaded is not an error", []string{"status", "node1", "nothere"}, 0, [][]string{
			{"qm.node1", "nothere.service", "not-found", "inactive", "dead", "-", "-"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := stRun(t, h, tc.args...)
			require.Equal(t, tc.code, code, stderr)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			require.Equal(t, []string{"NODE", "UNIT", "LOADED", "ACTIVE", "SUB", "SINCE", "SOURCE"}, strings.Fields(lines[0]))
			var got [][]string
			for _, l := range lines[1:] {
				got = append(got, strings.Fields(l))
			}
			require.Equal(t, tc.want, got)
		})
	}

	t.Run("--units lists every loaded unit from one fleet call", func(t *testing.T) {
		out, stderr, code := stRun(t, h, "status", "--all", "--units", "-o", "json")
		require.Equal(t, 0, code, stderr)
		var doc UnitStatusOutput
		require.NoError(t, json.Unmarshal([]byte(out), &doc))
		require.Equal(t, "UnitStatusList", doc.Kind)
		require.True(t, doc.OK)
		n := len(testcontroller.DefaultUnits())
		require.Len(t, doc.Results, 2*n)
		require.Equal(t, "qm.node1", doc.Results[0].BlueChiNode)
		require.Equal(t, "node1", doc.Results[0].Node)
		require.Equal(t, "bluechi-agent.service", doc.Results[0].Unit)
		require.Equal(t, "qm.node2", doc.Results[n].BlueChiNode)
	})

	t.Run("an offline twin is an error row and exit 1", func(t *testing.T) {
		h.SetOnline("qm.node2", false)
		defer h.SetOnline("qm.node2", true)
		out, stderr, code := stRun(t, h, "status", "node1,node2", "web", "-o", "json")
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "node qm.node2")
		require.Contains(t, stderr, "offline")
		var doc UnitStatusOutput
		require.NoError(t, json.Unmarshal([]byte(out), &doc))
		require.False(t, doc.OK)
		require.Len(t, doc.Results, 2)
		require.Equal(t, "active", doc.Results[0].ActiveState)
		require.Contains(t, doc.Results[1].Error, "offline")
	})
}

func TestStatusUsageErrors(t *testing.T) {
	h := stHarness(t)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"bad unit name", []string{"status", "node1", "we/b"}, 2, "not allowed in a unit name"},
		{"unknown node", []string{"status", "nodeX", "web"}, 2, `unknown node "nodeX"`},
		{"glob matching nothing", []string{"status", "zz*"}, 2, "matches no host node"},
		{"units and names", []string{"status", "node1", "web", "--units"}, 2, "not both"},
		{"--host without units", []string{"status", "node1", "--host"}, 2, "--host"},
		{"bad output", []string{"status", "-o", "yaml"}, 2, "--output"},
		{"--wait-online with args", []string{"status", "node1", "--wait-online", "node1"}, 2, "--wait-online"},
		{"--wait-online unknown node", []string{"status", "--wait-online", "nodeX"}, 2, `unknown node "nodeX"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := stRun(t, h, tc.args...)
			require.Equal(t, tc.code, code, stderr)
			require.Contains(t, stderr, tc.msg)
		})
	}
}

func TestStatusWaitOnline(t *testing.T) {
	h := stHarness(t)
	h.SetOnline("qm.node2", false)
	h.SetOnline("node2", false)

	t.Run("times out naming the nodes still offline", func(t *testing.T) {
		_, stderr, code := stRun(t, h, "status", "--wait-online", "node1,node2,qm.node2", "--timeout", "300ms")
		require.Equal(t, 1, code)
		require.Contains(t, stderr, "nodes still offline after 300ms: node2, qm.node2")
	})

	t.Run("returns once the nodes come online", func(t *testing.T) {
		type result struct {
			out, stderr string
			code        int
		}
		done := make(chan result, 1)
		started := make(chan struct{})
		go func() {
			var out, errOut bytes.Buffer
			close(started)
			code := run(context.Background(), []string{"status", "--wait-online", "node2,qm.node2", "--timeout", "60s",
				"--bus-address", h.Address, "-o", "json"}, stDeps(&out, &errOut))
			done <- result{out.String(), errOut.String(), code}
		}()
		<-started
		h.SetOnline("node2", true)
		h.SetOnline("qm.node2", true)
		r := <-done
		require.Equal(t, 0, r.code, r.stderr)
		var doc WaitOnlineOutput
		require.NoError(t, json.Unmarshal([]byte(r.out), &doc))
		require.Equal(t, "NodesOnline", doc.Kind)
		require.Equal(t, []string{"node2", "qm.node2"}, doc.Nodes)
	})
}

// stWatch runs `qmorch status ... -w` in-process and delivers its stdout line by line.
type stWatch struct {
	lines  chan string
	cancel context.CancelFunc
	done   chan int
	mu     sync.Mutex
	stderr bytes.Buffer
}

func stStartWatch(t *testing.T, h *testcontroller.Harness, args ...string) *stWatch {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	w := &stWatch{lines: make(chan string, 1024), cancel: cancel, done: make(chan int, 1)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	go func() {
		code := run(ctx, append(append([]string{"status"}, args...), "-w", "--bus-address", h.Address),
			stDeps(pw, lockedWriter{&w.mu, &w.stderr}))
		pw.Close()
		w.done <- code
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// next returns the next line that contains every part (skipping others); the deadline only
// guards against a hang.
func (w *stWatch) next(t *testing.T, parts ...string) string {
	t.Helper()
	var skipped []string
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("watch ended before a line with %q; skipped %q", parts, skipped)
			}
			match := true
			for _, p := range parts {
				if !strings.Contains(l, p) {
					match = false
					break
				}
			}
			if match {
				return l
			}
			skipped = append(skipped, l)
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no line with %q; skipped %q (stderr: %s)", parts, skipped, w.stderr.String())
		}
	}
}

// all waits for lines matching each of the patterns, in any order (the monitor's unit events
// and the node status signals travel on different channels). It returns the lines it read.
func (w *stWatch) all(t *testing.T, patterns ...[]string) []string {
	t.Helper()
	var got []string
	left := append([][]string(nil), patterns...)
	deadline := time.After(20 * time.Second)
	for len(left) > 0 {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("watch ended while waiting for %q", left)
			}
			got = append(got, l)
			for i, parts := range left {
				match := true
				for _, p := range parts {
					if !strings.Contains(l, p) {
						match = false
						break
					}
				}
				if match {
					left = append(left[:i], left[i+1:]...)
					break
				}
			}
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no lines with %q; got %q (stderr: %s)", left, got, w.stderr.String())
		}
	}
	return got
}

// stop ends the watch like Ctrl-C and returns its exit code.
func (w *stWatch) stop(t *testing.T) int {
	w.cancel()
	select {
	case code := <-w.done:
		w.done <- code
		return code
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not end after cancel")
		return -1
	}
}

// stJob runs a job on a node from a separate client ("another process").
func stJob(t *testing.T, h *testcontroller.Harness, node, method, unit string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := controller.New(ctx, controller.WithAddress(h.Address))
	require.NoError(t, err)
	defer c.Close()
	n, err := c.GetNode(ctx, node)
	require.NoError(t, err)
	var j *controller.Job
	switch method {
	case "start":
		j, err = n.StartUnit(ctx, unit, controller.JobReplace)
	case "stop":
		j, err = n.StopUnit(ctx, unit, controller.JobReplace)
	}
	require.NoError(t, err)
	res, err := j.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, controller.JobDone, res)
}

func TestStatusWatchTransitionsAndNodes(t *testing.T) {
	h := stHarness(t)
	require.NoError(t, h.Node("qm.node1").SetUnitState("web.service", "active", "running"))
	require.NoError(t, h.Node("qm.node2").SetUnitState("web.service", "active", "running"))
	w := stStartWatch(t, h, "node1,node2", "web")
	// First the current state: nodes, then the units (virtual events of the subscription).
	w.all(t, []string{"qm.node2", " node ", "online"}, []string{"qm.node1", "web.service", "active/running"},
		[]string{"qm.node2", "web.service", "active/running"})

	stJob(t, h, "qm.node1", "stop", "web.service")
	w.next(t, "qm.node1", "web.service", "inactive/dead")

	h.SetOnline("node2", false)
	h.SetOnline("qm.node2", false)
	w.all(t, []string{" node2 ", " node ", "offline"}, []string{"qm.node2", " node ", "offline"},
		[]string{"qm.node2", "web.service", "inactive/agent-offline", "(virtual)"})

	h.SetOnline("node2", true)
	h.SetOnline("qm.node2", true)
	w.all(t, []string{" node2 ", " node ", "online"}, []string{"qm.node2", " node ", "online"},
		[]string{"qm.node2", "web.service", "active/running"})

	stJob(t, h, "qm.node2", "stop", "web.service")
	w.next(t, "qm.node2", "web.service", "inactive/dead")
	require.Equal(t, 0, w.stop(t), "Ctrl-C ends the watch with exit 0")
}

func TestStatusWatchJSONAllUnits(t *testing.T) {
	h := stHarness(t)
	w := stStartWatch(t, h, "node1", "--units", "--host", "-o", "json")
	w.next(t, `"event":"node"`, `"bluechiNode":"qm.node1"`)
	stJob(t, h, "node1", "start", "test.service")
	l := w.next(t, `"unit":"test.service"`, `"activeState":"active"`)
	var ev StatusEventOutput
	require.NoError(t, json.Unmarshal([]byte(l), &ev))
	require.Equal(t, StatusEventOutput{APIVersion: "qmorch/v1", Kind: "StatusEvent", Time: ev.Time, Event: "unit",
		Node: "node1", BlueChiNode: "node1", Unit: "test.service", LoadState: "loaded", ActiveState: "active",
		SubState: "running", Reason: "real"}, ev)
	_, err := time.Parse(time.RFC3339Nano, ev.Time)
	require.NoError(t, err)
	// Units of unwatched nodes stay silent; the next line is node1's.
	stJob(t, h, "node2", "start", "test.service")
	stJob(t, h, "node1", "stop", "test.service")
	l = w.next(t, `"unit":"test.service"`)
	require.Contains(t, l, `"bluechiNode":"node1"`)
}

// TestStatusWatchControllerRestart replaces the controller on the same bus (the name owner of
// org.eclipse.bluechi changes): the watch re-subscribes and reports again.
func TestStatusWatchControllerRestart(t *testing.T) {
	h := stHarness(t)
	require.NoError(t, h.Node("qm.node1").SetUnitState("web.service", "active", "running"))
	w := stStartWatch(t, h, "node1", "web")
	w.next(t, "qm.node1", "web.service", "active/running")

	require.NoError(t, h.Controller.Close())
	w.next(t, "monitor ended")
	specs := make([]testcontroller.NodeSpec, 0, len(stNodes))
	for _, n := range stNodes {
		specs = append(specs, testcontroller.NodeSpec{Name: n, Backend: h.Node(n)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c2, err := testcontroller.New(ctx, testcontroller.Options{Address: h.Address, Nodes: specs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c2.Close() })
	h.Controller = c2
	w.next(t, "re-subscribed")

	stJob(t, h, "qm.node1", "stop", "web.service")
	w.next(t, "qm.node1", "web.service", "inactive/dead")
	require.Equal(t, 0, w.stop(t))
}

// TestStatusGolden pins the documented JSON (docs/json.md) and the tables.
func TestStatusGolden(t *testing.T) {
	h := stHarness(t)
	require.NoError(t, h.Node("qm.node1").SetUnitState("web.service", "active", "running"))
	h.SetOnline("qm.node2", false)
	for _, tc := range []struct {
		golden string
		code   int
		args   []string
	}{
		{"status_nodes", 0, []string{"status", "-o", "json"}},
		{"status_nodes_table", 0, []string{"status", "node1,node2"}},
		{"status_units", 1, []string{"status", "node1,node2", "web", "-o", "json"}},
		{"status_units_host_table", 0, []string{"status", "node1", "web", "test", "--host"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, stderr, code := stRun(t, h, tc.args...)
			require.Equal(t, tc.code, code, stderr)
			// The table's LAST SEEN of an offline node is a local wall-clock time.
			out = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d`).ReplaceAllString(out, "2006-01-02 15:04:05")
			assertGolden(t, tc.golden, out)
		})
	}
}

// until returns the lines up to and including the next one that contains every part.
func (w *stWatch) until(t *testing.T, parts ...string) []string {
	t.Helper()
	var got []string
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("watch ended before a line with %q; got %q", parts, got)
			}
			got = append(got, l)
			match := true
			for _, p := range parts {
				if !strings.Contains(l, p) {
					match = false
					break
				}
			}
			if match {
				return got
			}
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no line with %q; got %q (stderr: %s)", parts, got, w.stderr.String())
		}
	}
}

// stRestart replaces h's controller on the same bus with one that has only the given nodes;
// the watches must have printed "monitor ended" before the new one starts (waitEnded).
func stRestart(t *testing.T, h *testcontroller.Harness, waitEnded func(), nodes ...string) {
	t.Helper()
	require.NoError(t, h.Controller.Close())
	waitEnded()
	specs := make([]testcontroller.NodeSpec, 0, len(nodes))
	for _, n := range nodes {
		specs = append(specs, testcontroller.NodeSpec{Name: n, Backend: h.Node(n)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testcontroller.New(ctx, testcontroller.Options{Address: h.Address, Nodes: specs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	h.Controller = c
}

// stLineState is (BlueChi node, what) -> state of a watch table line: "qm.node1 web.service" ->
// "active/running", "qm.node1 node" -> "online"; ok false for monitor lines.
func stLineState(l string) (key, state string, ok bool) {
	f := strings.Fields(l)
	if len(f) < 4 || f[1] == "-" {
		return "", "", false
	}
	return f[1] + " " + f[2], f[3], true
}

// stNoRepeats: a line never repeats the state last printed for the same node or unit.
func stNoRepeats(t *testing.T, lines []string) {
	t.Helper()
	last := map[string]string{}
	for _, l := range lines {
		key, state, ok := stLineState(l)
		if !ok {
			continue
		}
		require.NotEqual(t, last[key], state, "state printed twice in a row: %q\nin:\n%s", l, strings.Join(lines, "\n"))
		last[key] = state
	}
}

// TestStatusWatchRestartSameNodes (a): the controller comes back with the same nodes; after
// re-subscribing the watch prints what changed while it was away (a state change, a unit
// systemd unloaded) and nothing it had printed already.
func TestStatusWatchRestartSameNodes(t *testing.T) {
	h := stHarness(t)
	require.NoError(t, h.Node("qm.node1").SetUnitState("web.service", "active", "running"))
	require.NoError(t, h.Node("qm.node2").SetUnitState("web.service", "active", "running"))
	require.NoError(t, h.Node("qm.node2").SetUnitState("test.service", "active", "running"))
	w := stStartWatch(t, h, "node1,node2", "web", "test")
	seen := w.all(t, []string{"qm.node2", "test.service", "active/running"},
		[]string{"qm.node1", "web.service", "active/running"}, []string{"qm.node2", "web.service", "active/running"})

	var lines []string
	stRestart(t, h, func() { lines = append(lines, w.until(t, "monitor ended")...) }, stNodes...)
	// While nobody listened: web failed on qm.node2, test.service was unloaded there.
	require.NoError(t, h.Node("qm.node2").SetUnitState("web.service", "failed", "failed"))
	h.Node("qm.node2").RemoveUnit("test.service")
	lines = append(lines, w.until(t, "re-subscribed")...)
	// A transition after the restart marks the end of what the re-subscription printed.
	stJob(t, h, "qm.node1", "stop", "web.service")
	lines = append(lines, w.until(t, "qm.node1", "web.service", "inactive/dead")...)

	all := strings.Join(lines, "\n")
	t.Log(all)
	require.Regexp(t, `qm\.node2\s+web\.service\s+failed/failed`, all)
	require.Regexp(t, `qm\.node2\s+test\.service\s+not-loaded`, all)
	require.NotContains(t, all, "not registered")
	stNoRepeats(t, append(seen, lines...))
	require.Equal(t, 0, w.stop(t))
}

// TestStatusWatchRestartWithoutNodes (b, c): the controller comes back without qm.node2 and
// node3: the watch says they are gone (node and unit lines), reports the subscription it could
// not make, and picks the nodes up again when a later controller has them.
func TestStatusWatchRestartWithoutNodes(t *testing.T) {
	if !testcontroller.IsRoot() {
		t.Skip("the test controller's bus admits only root")
	}
	fleet := []string{"node1", "qm.node1", "node2", "qm.node2", "node3"}
	h := testcontroller.Start(t, testcontroller.WithMemoryNodes(fleet...))
	require.NoError(t, h.Node("qm.node1").SetUnitState("web.service", "active", "running"))
	require.NoError(t, h.Node("qm.node2").SetUnitState("web.service", "active", "running"))

	nodes := stStartWatch(t, h)                                     // status -w
	units := stStartWatch(t, h, "node1,node2", "web", "-o", "json") // status -w node1,node2 web -o json
	nodes.all(t, []string{"node3", " node ", "online"}, []string{"qm.node2", " node ", "online"})
	units.all(t, []string{`"bluechiNode":"qm.node1"`, `"activeState":"active"`},
		[]string{`"bluechiNode":"qm.node2"`, `"activeState":"active"`})

	// Both watches have their monitor (the nodes watch prints its first lines before).
	require.Eventually(t, func() bool {
		calls, _ := h.Controller.Traffic(false)
		return calls["org.eclipse.bluechi.Controller.CreateMonitor"] >= 2
	}, 20*time.Second, 10*time.Millisecond)
	ended := func() { nodes.next(t, "monitor ended"); units.next(t, `monitor ended`) }
	stRestart(t, h, ended, "node1", "qm.node1", "node2")

	// (b) The gone nodes, with the reason, and the unit on the gone twin.
	nodes.all(t, []string{"qm.node2", " node ", "offline", "(not registered on the controller)"},
		[]string{"node3", " node ", "offline", "(not registered on the controller)"},
		[]string{"re-subscribed"})
	var gotNode, gotUnit, gotPending bool
	for !gotNode || !gotUnit || !gotPending {
		l := units.next(t, `"qmorch/v1"`)
		var ev StatusEventOutput
		require.NoError(t, json.Unmarshal([]byte(l), &ev))
		require.NotEqual(t, "re-subscribed", ev.Message, "qm.node2 could not be subscribed")
		switch {
		case ev.Event == "node" && ev.BlueChiNode == "qm.node2":
			require.Equal(t, StatusEventOutput{APIVersion: "qmorch/v1", Kind: "StatusEvent", Time: ev.Time, Event: "node",
				Node: "node2", BlueChiNode: "qm.node2", Status: "offline", Detail: "not registered on the controller"}, ev)
			gotNode = true
		case ev.Event == "unit" && ev.BlueChiNode == "qm.node2":
			require.Equal(t, StatusEventOutput{APIVersion: "qmorch/v1", Kind: "StatusEvent", Time: ev.Time, Event: "unit",
				Node: "node2", BlueChiNode: "qm.node2", Unit: "web.service", LoadState: "loaded", ActiveState: "inactive",
				SubState: "agent-offline", Reason: "virtual", Detail: "not registered on the controller"}, ev)
			gotUnit = true
		case ev.Event == "monitor" && strings.Contains(ev.Message, "not subscribed"):
			require.Equal(t, []string{"qm.node2"}, ev.Nodes)
			require.Contains(t, ev.Message, "not registered on the controller")
			gotPending = true
		}
	}
	// The nodes still there go on reporting.
	stJob(t, h, "qm.node1", "stop", "web.service")
	units.next(t, `"bluechiNode":"qm.node1"`, `"activeState":"inactive"`)

	// (c) A later controller has them again: they and their units are picked up.
	ended = func() { nodes.next(t, "monitor ended"); units.next(t, `monitor ended`) }
	stRestart(t, h, ended, fleet...)
	nodes.all(t, []string{"qm.node2", " node ", "online", "(registered on the controller again)"},
		[]string{"node3", " node ", "online", "(registered on the controller again)"})
	units.all(t, []string{`"event":"monitor"`, `"message":"re-subscribed"`},
		[]string{`"event":"node"`, `"bluechiNode":"qm.node2"`, `"status":"online"`},
		[]string{`"event":"unit"`, `"bluechiNode":"qm.node2"`, `"activeState":"active"`, `"subState":"running"`})
	stJob(t, h, "qm.node2", "stop", "web.service")
	units.next(t, `"bluechiNode":"qm.node2"`, `"activeState":"inactive"`, `"subState":"dead"`)
	require.Equal(t, 0, nodes.stop(t))
	require.Equal(t, 0, units.stop(t))
}
