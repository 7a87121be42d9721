package conformance

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
)

// The same checks through the product client: the double is an independent implementation, so
// a client that misreads the API fails here.

func newClient(t *testing.T, tg *target) *controller.Client {
	t.Helper()
	c, err := controller.New(ctxT(t, 10*time.Second), controller.WithAddress(tg.addr))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestClientListNodesAndGetNode(t *testing.T) {
	tg := setup(t)
	c := newClient(t, tg)
	ctx := ctxT(t, 10*time.Second)
	nodes, err := c.ListNodes(ctx)
	require.NoError(t, err)
	var found bool
	for _, n := range nodes {
		if n.Name == tg.node {
			found = true
			require.Equal(t, controller.NodeOnline, n.Status)
		}
	}
	require.True(t, found)
	_, err = c.GetNode(ctx, "no-such-node-qmorch")
	require.ErrorIs(t, err, controller.ErrNodeNotFound)
	n, err := c.GetNode(ctx, tg.node)
	require.NoError(t, err)
	st, err := n.Status(ctx)
	require.NoError(t, err)
	require.Equal(t, controller.NodeOnline, st)
	seen, err := n.LastSeen(ctx)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), seen, 10*time.Minute)
	status, err := c.Status(ctx)
	require.NoError(t, err)
	require.Contains(t, []string{"up", "degraded", "down"}, status)
}

func TestClientJobWait(t *testing.T) {
	tg := setup(t)
	if tg.unit == "" {
		t.Skipf("set %s", envUnit)
	}
	c := newClient(t, tg)
	ctx := ctxT(t, 60*time.Second)
	n, err := c.GetNode(ctx, tg.node)
	require.NoError(t, err)
	j1, err := n.StartUnit(ctx, tg.unit, controller.JobReplace)
	require.NoError(t, err)
	res, err := j1.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, controller.JobDone, res)
	j2, err := n.StopUnit(ctx, tg.unit, controller.JobReplace)
	require.NoError(t, err)
	require.Greater(t, j2.ID, j1.ID)
	res, err = j2.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, controller.JobDone, res)

	_, err = n.StartUnit(ctx, "qmorch-no-such-unit-4711.service", controller.JobReplace)
	require.ErrorIs(t, err, controller.ErrNoSuchUnit)
}

func TestClientResultsFromDouble(t *testing.T) {
	tg := setup(t)
	if !tg.double() {
		t.Skip("needs the double's failing and crashing units")
	}
	c := newClient(t, tg)
	ctx := ctxT(t, 30*time.Second)
	n, err := c.GetNode(ctx, tg.node)
	require.NoError(t, err)
	for _, tc := range []struct {
		unit   string
		result controller.JobResult
		active string
	}{
		{"fail.service", controller.JobFailed, "failed"},
		{"crash.service", controller.JobDone, "failed"}, // done does not mean healthy
	} {
		j, err := n.StartUnit(ctx, tc.unit, controller.JobReplace)
		require.NoError(t, err, tc.unit)
		res, err := j.Wait(ctx)
		require.NoError(t, err, tc.unit)
		require.Equal(t, tc.result, res, tc.unit)
		require.Eventually(t, func() bool {
			v, err := n.GetUnitProperty(ctx, tc.unit, "org.freedesktop.systemd1.Unit", "ActiveState")
			return err == nil && v.Value() == tc.active
		}, 5*time.Second, 20*time.Millisecond, tc.unit)
	}
}

func TestClientOffline(t *testing.T) {
	tg := setup(t)
	if !tg.double() {
		t.Skip("needs the double's control hooks")
	}
	c := newClient(t, tg)
	ctx := ctxT(t, 30*time.Second)
	n, err := c.GetNode(ctx, "node2")
	require.NoError(t, err)

	// A wait on a job whose node disconnects must end (BlueChi sends no JobRemoved).
	tg.harness.Node("node2").Hold("")
	t.Cleanup(func() { tg.harness.Node("node2").ReleaseAll(); tg.harness.SetOnline("node2", true) })
	j, err := n.StartUnit(ctx, "test.service", controller.JobReplace)
	require.NoError(t, err)
	waited := make(chan error, 1)
	go func() {
		_, err := j.Wait(ctx)
		waited <- err
	}()
	time.Sleep(50 * time.Millisecond)
	tg.harness.SetOnline("node2", false)
	select {
	case err := <-waited:
		require.ErrorIs(t, err, controller.ErrNodeOffline)
	case <-time.After(10 * time.Second):
		t.Fatal("Job.Wait still waiting 10s after its node went offline")
	}

	_, err = n.StartUnit(ctx, "test.service", controller.JobReplace)
	require.ErrorIs(t, err, controller.ErrNodeOffline)
	st, err := n.Status(ctx)
	require.NoError(t, err, "property reads work on an offline node")
	require.Equal(t, controller.NodeOffline, st)
	ip, err := n.PeerIP(ctx)
	require.NoError(t, err)
	require.Equal(t, "", ip)
}

func TestClientCancel(t *testing.T) {
	tg := setup(t)
	if !tg.double() {
		t.Skip("needs the double's Hold hook")
	}
	tg.harness.Node(tg.node).Hold(tg.unit)
	t.Cleanup(func() { tg.harness.Node(tg.node).ReleaseAll() })
	c := newClient(t, tg)
	ctx := ctxT(t, 30*time.Second)
	n, err := c.GetNode(ctx, tg.node)
	require.NoError(t, err)
	j, err := n.StartUnit(ctx, tg.unit, controller.JobReplace)
	require.NoError(t, err)
	jt, err := j.JobType(ctx)
	require.NoError(t, err)
	require.Equal(t, "start", jt)
	require.NoError(t, j.Cancel(ctx))
	res, err := j.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, controller.JobCanceled, res)
}

func TestClientTransientUnitAndMonitor(t *testing.T) {
	tg := setup(t)
	c := newClient(t, tg)
	ctx := ctxT(t, 60*time.Second)
	n, err := c.GetNode(ctx, tg.node)
	require.NoError(t, err)
	m, err := c.CreateMonitor(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close(ctxT(t, 5*time.Second)) })
	unit := fmt.Sprintf("qmorch-conformance-c%d.service", time.Now().UnixNano())
	_, err = m.Subscribe(ctx, tg.node, unit)
	require.NoError(t, err)

	jobs, stop, err := c.WatchJobs(ctx)
	require.NoError(t, err)
	defer stop()

	path, err := n.StartTransientUnit(ctx, unit, controller.JobReplace, transientProps(), nil)
	require.NoError(t, err)
	require.False(t, strings.HasPrefix(string(path), "/org/eclipse/bluechi/"), path)

	var kinds []controller.EventKind
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case ev, ok := <-m.Events():
			require.True(t, ok, "monitor events closed")
			if ev.Unit != unit {
				continue
			}
			kinds = append(kinds, ev.Kind)
			if ev.Kind == controller.EventUnitRemoved {
				require.Equal(t, tg.node, ev.Node)
				require.Equal(t, "real", ev.Reason, "UnitRemoved reason read from the third argument")
				done = true
			}
		case <-deadline:
			t.Fatalf("no UnitRemoved for %s; events: %v", unit, kinds)
		}
	}
	require.Contains(t, kinds, controller.EventUnitNew)
	require.Contains(t, kinds, controller.EventUnitStateChanged)
	select {
	case ev := <-jobs:
		t.Fatalf("job event after StartTransientUnit: %+v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestClientErrorsAreTyped(t *testing.T) {
	tg := setup(t)
	c := newClient(t, tg)
	ctx := ctxT(t, 10*time.Second)
	// An unknown-node error keeps the D-Bus name in its text and matches only its sentinel.
	_, err := c.GetNode(ctx, "no-such-node-qmorch")
	require.Error(t, err)
	require.True(t, errors.Is(err, controller.ErrNodeNotFound))
	require.False(t, errors.Is(err, controller.ErrNodeOffline))
	require.Contains(t, err.Error(), "org.freedesktop.DBus.Error.ServiceUnknown")
}
