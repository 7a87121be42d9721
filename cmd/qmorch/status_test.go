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
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("watch ended before a line with %q", parts)
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
		case <-deadline:
			w.mu.Lock()
			defer w.mu.Unlock()
			t.Fatalf("no line with %q (stderr: %s)", parts, w.stderr.String())
		}
	}
}

// all waits for lines matching each of the patterns, in any order (the monitor's unit events
// and the node status signals travel on different channels).
func (w *stWatch) all(t *testing.T, patterns ...[]string) {
	t.Helper()
	left := append([][]string(nil), patterns...)
	deadline := time.After(20 * time.Second)
	for len(left) > 0 {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("watch ended while waiting for %q", left)
			}
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
			t.Fatalf("no lines with %q (stderr: %s)", left, w.stderr.String())
		}
	}
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
