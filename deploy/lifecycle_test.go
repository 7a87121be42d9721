package deploy

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

// fleet starts the BlueChi test double with in-memory nodes node1, node2 and their QM twins
// and returns it with a Deployer talking to it through the real D-Bus client.
func fleet(t *testing.T, opts ...Option) (*testcontroller.Harness, *Deployer) {
	t.Helper()
	if !testcontroller.IsRoot() {
		t.Skip("the test double's bus admits only root")
	}
	h := testcontroller.Start(t, testcontroller.WithMemoryNodes("node1", "node2", "qm.node1", "qm.node2"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := controller.New(ctx, controller.WithAddress(h.Address))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return h, New(FromClient(c), append([]Option{WithTimeout(10 * time.Second), WithSettle(0)}, opts...)...)
}

// waitFor polls cond until it holds (a synchronisation point, not a timed assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func outcomes(rep *LifecycleReport) map[string]Outcome {
	m := map[string]Outcome{}
	for _, r := range rep.Results {
		m[r.Node+"/"+r.Unit] = r.Outcome
	}
	return m
}

func TestLifecycleActionsOnBothTwins(t *testing.T) {
	t.Parallel()
	h, d := fleet(t)
	ctx := context.Background()
	cases := []struct {
		action      LifecycleAction
		units       []string
		wantActive  string
		wantOutcome Outcome
		wantJob     string
	}{
		{LifecycleStart, []string{"test", "web.service"}, "active", OutcomeOK, "done"},
		{LifecycleReload, []string{"test"}, "active", OutcomeOK, "done"},
		{LifecycleRestart, []string{"test"}, "active", OutcomeOK, "done"},
		{LifecycleStop, []string{"test", "web"}, "inactive", OutcomeOK, "done"},
		{LifecycleStart, []string{"fail"}, "failed", OutcomeFailed, "failed"}, // job fails
		{LifecycleStart, []string{"crash"}, "failed", OutcomeFailed, "done"},  // done, then dead
		{LifecycleReload, []string{"test"}, "inactive", OutcomeFailed, ""},    // not active after reload
	}
	for _, tc := range cases {
		rep, err := d.Lifecycle(ctx, LifecycleRequest{Action: tc.action, Nodes: []string{"node*"}, Units: tc.units})
		require.NotNil(t, rep, "%s %v: %v", tc.action, tc.units, err)
		require.Len(t, rep.Results, 2*len(tc.units))
		for _, r := range rep.Results {
			require.Equal(t, "qm."+r.Node, r.Target)
			require.Equal(t, tc.wantOutcome, r.Outcome, "%s %s on %s: %v", tc.action, r.Unit, r.Node, r.Err)
			if tc.wantOutcome == OutcomeOK {
				require.NoError(t, r.Err)
				require.Equal(t, tc.wantJob, r.JobResult)
				require.Equal(t, tc.wantActive, r.ActiveState)
				active, _ := h.Node(r.Target).UnitState(r.Unit)
				require.Equal(t, tc.wantActive, active, "state on the node itself")
			} else {
				require.Error(t, err)
				require.ErrorContains(t, r.Err, "node "+r.Node+": "+string(tc.action)+" "+r.Unit+" on qm."+r.Node)
			}
		}
		if tc.wantOutcome == OutcomeOK {
			require.NoError(t, err)
		}
	}
	// The host nodes were never touched.
	require.Zero(t, h.Node("node1").Calls("StartUnit"))
	require.Zero(t, h.Node("node2").Calls("StopUnit"))
}

func TestLifecycleHostUnits(t *testing.T) {
	t.Parallel()
	h, d := fleet(t)
	rep, err := d.Lifecycle(context.Background(), LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1"}, Units: []string{"test"}, Host: true})
	require.NoError(t, err)
	require.Equal(t, "node1", rep.Results[0].Target)
	active, _ := h.Node("node1").UnitState("test.service")
	require.Equal(t, "active", active)
	require.Zero(t, h.Node("qm.node1").Calls("StartUnit"))
}

func TestLifecycleBadRequests(t *testing.T) {
	t.Parallel()
	h, d := fleet(t)
	cases := []struct {
		name  string
		req   LifecycleRequest
		want  string
		class error
	}{
		{"unknown node", LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1,nodeX"}, Units: []string{"test"}}, `unknown node "nodeX"`, ErrInvalid},
		{"glob matches nothing", LifecycleRequest{Action: LifecycleStart, Nodes: []string{"car*"}, Units: []string{"test"}}, "matches no host node", ErrInvalid},
		{"bad unit", LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1"}, Units: []string{"a b"}}, "not allowed in a unit name", ErrInvalid},
		{"template", LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1"}, Units: []string{"getty@.service"}}, "template", ErrInvalid},
		{"quadlet file", LifecycleRequest{Action: LifecycleStop, Nodes: []string{"node1"}, Units: []string{"nested.container"}}, "nested.service", ErrInvalid},
		{"no units", LifecycleRequest{Action: LifecycleStop, Nodes: []string{"node1"}}, "no units", ErrInvalid},
		{"bad action", LifecycleRequest{Action: "enable", Nodes: []string{"node1"}, Units: []string{"test"}}, "unknown action", ErrInvalid},
		{"nodes and all", LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1"}, All: true, Units: []string{"test"}}, "not both", ErrInvalid},
	}
	for _, tc := range cases {
		rep, err := d.Lifecycle(context.Background(), tc.req)
		require.Nil(t, rep, tc.name)
		require.ErrorIs(t, err, tc.class, tc.name)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	for _, n := range []string{"node1", "qm.node1"} {
		require.Zero(t, h.Node(n).Calls("StartUnit")+h.Node(n).Calls("StopUnit"), "nothing touched on %s", n)
	}
}

func TestNormalizeUnitName(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want, err string }{
		{"nested", "nested.service", ""},
		{"nested.service", "nested.service", ""},
		{"app.timer", "app.timer", ""},
		{"my.app", "my.app.service", ""}, // not a unit type: systemctl adds .service too
		{"getty@tty1", "getty@tty1.service", ""},
		{`dev-disk-by\x2dlabel.device`, `dev-disk-by\x2dlabel.device`, ""},
		{"getty@.service", "", "template"},
		{"", "", "empty"},
		{".service", "", "empty name"},
		{"a/b.service", "", "not allowed"},
		{"a;b", "", "not allowed"},
		{"$x", "", "not allowed"},
		{"x.container", "", "Quadlet"},
		{string(make([]byte, 256)), "", "255"},
		// systemd's unit_name_is_valid allows '@' anywhere after the first: instance "b@c".
		{"a@b@c", "a@b@c.service", ""},
		{"@b", "", "empty name"},
		{"a@b@c@.service", "a@b@c@.service", ""},
		{"é", "", `character 'é' is not allowed`},
		{"a\xffb", "", `byte \xff (not UTF-8) is not allowed`},
		{"a@é", "", `character 'é' is not allowed`},
	}
	for _, tc := range cases {
		got, err := NormalizeUnitName(tc.in)
		if tc.err != "" {
			require.ErrorIs(t, err, ErrInvalid, tc.in)
			require.ErrorContains(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got)
	}
}

func TestLifecycleOfflineTwinFailsOnlyThatNode(t *testing.T) {
	t.Parallel()
	h, d := fleet(t)
	h.SetOnline("qm.node2", false)
	rep, err := d.Lifecycle(context.Background(), LifecycleRequest{Action: LifecycleStart, All: true, Units: []string{"test", "web"}})
	require.Error(t, err)
	require.Equal(t, map[string]Outcome{
		"node1/test.service": OutcomeOK, "node1/web.service": OutcomeOK,
		"node2/test.service": OutcomeOffline, "node2/web.service": OutcomeOffline,
	}, outcomes(rep))
	require.ErrorIs(t, rep.Results[2].Err, controller.ErrNodeOffline)
	require.ErrorContains(t, rep.Results[2].Err, "QM twin qm.node2 is offline")
}

// A node that drops while its job runs ends with an offline error (Job.Wait returns on the
// node's status change, not on the timeout) while the other node completes.
func TestLifecycleNodeDropsMidJob(t *testing.T) {
	t.Parallel()
	h, d := fleet(t, WithTimeout(time.Minute))
	h.Node("qm.node1").Hold("test.service")
	done := make(chan struct{})
	var rep *LifecycleReport
	var err error
	go func() {
		defer close(done)
		rep, err = d.Lifecycle(context.Background(), LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1,node2"}, Units: []string{"test", "web"}})
	}()
	waitFor(t, "the start job on qm.node1", func() bool { return h.Node("qm.node1").Calls("StartUnit") == 1 })
	h.SetOnline("qm.node1", false)
	<-done
	require.Error(t, err)
	require.Equal(t, map[string]Outcome{
		"node1/test.service": OutcomeOffline, "node1/web.service": OutcomeOffline,
		"node2/test.service": OutcomeOK, "node2/web.service": OutcomeOK,
	}, outcomes(rep))
	require.ErrorIs(t, rep.Results[0].Err, controller.ErrNodeOffline)
	require.ErrorContains(t, rep.Results[0].Err, "node node1: start test.service on qm.node1")
	require.ErrorIs(t, rep.Results[1].Err, controller.ErrNodeOffline, "the next unit is not tried on a node that is gone")
	require.Equal(t, 1, h.Node("qm.node1").Calls("StartUnit"))
	require.Less(t, rep.Results[0].Duration, time.Minute)
	active, _ := h.Node("qm.node2").UnitState("web.service")
	require.Equal(t, "active", active)
}

// --timeout bounds every wait: a held job ends "timeout" and is cancelled; the other node and
// the other units are unaffected.
func TestLifecycleTimeoutBoundsEveryWait(t *testing.T) {
	t.Parallel()
	h, d := fleet(t, WithTimeout(300*time.Millisecond))
	h.Node("qm.node1").Hold("test.service")
	rep, err := d.Lifecycle(context.Background(), LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1", "node2"}, Units: []string{"test", "web"}})
	require.Error(t, err)
	require.Equal(t, map[string]Outcome{
		"node1/test.service": OutcomeTimeout, "node1/web.service": OutcomeOK,
		"node2/test.service": OutcomeOK, "node2/web.service": OutcomeOK,
	}, outcomes(rep))
	require.ErrorIs(t, rep.Results[0].Err, controller.ErrTimeout)
	require.ErrorContains(t, rep.Results[0].Err, "no result within 300ms, job cancelled")
	// BlueChi answers Job.Cancel at once and cancels in the background: wait for the node to see it.
	waitFor(t, "Job.Cancel on qm.node1", func() bool { return h.Node("qm.node1").Calls("JobCancel") == 1 })
	waitFor(t, "the cancelled job to restore the unit", func() bool {
		active, _ := h.Node("qm.node1").UnitState("test.service")
		return active == "inactive"
	})
}

// Ctrl-C: the jobs in flight are cancelled through Job.Cancel, the remaining units are
// reported cancelled without a call, and Lifecycle returns promptly.
func TestLifecycleCancelIssuesJobCancel(t *testing.T) {
	t.Parallel()
	h, d := fleet(t, WithTimeout(time.Minute))
	h.Node("qm.node1").Hold("")
	h.Node("qm.node2").Hold("")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var rep *LifecycleReport
	var err error
	go func() {
		defer close(done)
		rep, err = d.Lifecycle(ctx, LifecycleRequest{Action: LifecycleRestart, All: true, Units: []string{"test", "web"}})
	}()
	waitFor(t, "restart jobs on both twins", func() bool {
		return h.Node("qm.node1").Calls("RestartUnit") == 1 && h.Node("qm.node2").Calls("RestartUnit") == 1
	})
	cancel()
	<-done
	require.ErrorIs(t, err, context.Canceled)
	for _, r := range rep.Results {
		require.Equal(t, OutcomeCancelled, r.Outcome, "%s %s", r.Node, r.Unit)
	}
	require.ErrorContains(t, rep.Results[0].Err, "interrupted, job cancelled")
	require.ErrorContains(t, rep.Results[1].Err, "not started")
	for _, n := range []string{"qm.node1", "qm.node2"} {
		// BlueChi answers Job.Cancel at once and cancels in the background.
		waitFor(t, "Job.Cancel on "+n, func() bool { return h.Node(n).Calls("JobCancel") == 1 })
		require.Equal(t, 1, h.Node(n).Calls("RestartUnit"), "web.service was never restarted on %s", n)
	}
}

func TestLifecycleParallelBound(t *testing.T) {
	t.Parallel()
	// With parallel 1 the second node only starts after the first finished: hold both twins'
	// jobs and check only one was called while the first is held.
	h, d := fleet(t, WithParallel(1), WithTimeout(time.Minute))
	h.Node("qm.node1").Hold("test.service")
	h.Node("qm.node2").Hold("test.service")
	calls := func() int { return h.Node("qm.node1").Calls("StartUnit") + h.Node("qm.node2").Calls("StartUnit") }
	done := make(chan error, 1)
	go func() {
		_, err := d.Lifecycle(context.Background(), LifecycleRequest{Action: LifecycleStart, All: true, Units: []string{"test"}})
		done <- err
	}()
	waitFor(t, "the first node's job", func() bool { return calls() == 1 })
	h.Sync()
	require.Equal(t, 1, calls(), "the other node waits for the first one")
	h.Node("qm.node1").ReleaseAll()
	h.Node("qm.node2").ReleaseAll()
	require.NoError(t, <-done)
	require.Equal(t, 2, calls())
}

// A unit that ends failed after stop is reported as failed (deploy fake: its StopUnit leaves
// failed units failed, as systemd does for a unit that failed while stopping).
func TestLifecycleStopLeavesFailed(t *testing.T) {
	t.Parallel()
	f := newFleetFake("node1", "qm.node1")
	f.setUnit("qm.node1", "app.service", "failed", "failed")
	rep, err := newFleetDeployer(f).Lifecycle(context.Background(),
		LifecycleRequest{Action: LifecycleStop, Nodes: []string{"node1"}, Units: []string{"app"}})
	require.Error(t, err)
	r := rep.Results[0]
	require.Equal(t, OutcomeFailed, r.Outcome)
	require.Equal(t, "failed", r.ActiveState)
	require.ErrorContains(t, r.Err, "unit is failed/failed after stop, want inactive")
}

func TestLifecycleNoController(t *testing.T) {
	t.Parallel()
	_, err := New(nil).Lifecycle(context.Background(), LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1"}, Units: []string{"x"}})
	require.ErrorIs(t, err, ErrUnreachable)
	f := newFake()
	f.listErr = fmt.Errorf("org.freedesktop.DBus.Error.AccessDenied: %w", controller.ErrAccessDenied)
	_, err = newTestDeployer(f).Lifecycle(context.Background(), LifecycleRequest{Action: LifecycleStart, Nodes: []string{"node1"}, Units: []string{"x"}})
	require.ErrorIs(t, err, ErrUnreachable)
	require.True(t, errors.Is(err, controller.ErrAccessDenied))
}

// A unit that dies right after its start job reported "done" fails the settle window.
func TestLifecycleSettleCatchesEarlyExit(t *testing.T) {
	t.Parallel()
	f := newFleetFake("node1", "qm.node1", "node2", "qm.node2")
	f.setUnit("qm.node1", "app.service", "inactive", "dead")
	f.setUnit("qm.node2", "app.service", "inactive", "dead")
	f.crash["qm.node1"] = "fail" // dies 5ms after the job
	rep, err := newFleetDeployer(f, WithSettle(time.Second)).Lifecycle(context.Background(),
		LifecycleRequest{Action: LifecycleStart, All: true, Units: []string{"app"}})
	require.Error(t, err)
	require.Equal(t, map[string]Outcome{"node1/app.service": OutcomeFailed, "node2/app.service": OutcomeOK}, outcomes(rep))
	require.Equal(t, "done", rep.Results[0].JobResult)
	require.Equal(t, "failed", rep.Results[0].ActiveState)
	require.ErrorContains(t, rep.Results[0].Err, "unit left the active state within 1s: failed/failed")
}
