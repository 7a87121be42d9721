package controller

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/tests/dbustest"
)

// fakeController is a minimal, test-local org.eclipse.bluechi: enough objects to drive the
// client's wire paths (the full test double lives in tests/testcontroller).
type fakeController struct {
	t    *testing.T
	conn *dbus.Conn

	mu      sync.Mutex
	status  map[dbus.ObjectPath]string // node path -> Status
	nextJob uint32
	nextMon uint32
	// onStart runs inside StartUnit before the reply is sent (emit signals "too early" here).
	onStart func(node, job dbus.ObjectPath, id uint32, unit string)
}

func newFakeController(t *testing.T, addr string, nodes ...string) *fakeController {
	t.Helper()
	conn := connectRetry(t, addr)
	t.Cleanup(func() { _ = conn.Close() })
	f := &fakeController{t: t, conn: conn, status: map[dbus.ObjectPath]string{}}
	known := map[string]dbus.ObjectPath{}
	for _, n := range nodes {
		p := EscapePath(n)
		known[n] = p
		f.status[p] = string(NodeOnline)
		require.NoError(t, conn.ExportMethodTable(map[string]any{
			"StartUnit": func(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
				return f.startUnit(p, unit)
			},
		}, p, NodeInterface))
		require.NoError(t, conn.ExportMethodTable(map[string]any{
			"Get": func(iface, name string) (dbus.Variant, *dbus.Error) {
				if iface != NodeInterface || name != PropStatus {
					return dbus.Variant{}, dbus.NewError("org.freedesktop.DBus.Error.UnknownProperty", []any{"no"})
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				return dbus.MakeVariant(f.status[p]), nil
			},
		}, p, PropertiesInterface))
	}
	require.NoError(t, conn.ExportMethodTable(map[string]any{
		"GetNode": func(name string) (dbus.ObjectPath, *dbus.Error) {
			if p, ok := known[name]; ok {
				return p, nil
			}
			return "", dbus.NewError(ErrorNameServiceUnknown, []any{"Node not found"})
		},
		"CreateMonitor": func(sender dbus.Sender) (dbus.ObjectPath, *dbus.Error) {
			f.mu.Lock()
			f.nextMon++
			p := MonitorPathPrefix + dbus.ObjectPath(fmt.Sprintf("/%d", f.nextMon))
			f.mu.Unlock()
			require.NoError(t, conn.ExportMethodTable(map[string]any{
				"Subscribe": func(node, unit string) (uint32, *dbus.Error) { return 1, nil },
				"Close":     func() *dbus.Error { return nil },
			}, p, MonitorInterface))
			return p, nil
		},
	}, ControllerPath, ControllerInterface))
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	require.NoError(t, err)
	require.Equal(t, dbus.RequestNameReplyPrimaryOwner, reply)
	return f
}

func (f *fakeController) startUnit(node dbus.ObjectPath, unit string) (dbus.ObjectPath, *dbus.Error) {
	f.mu.Lock()
	if f.status[node] != string(NodeOnline) {
		f.mu.Unlock()
		return "", dbus.NewError(ErrorNameOffline, []any{"Node is offline"})
	}
	f.nextJob++
	id := f.nextJob
	hook := f.onStart
	f.mu.Unlock()
	job := JobPathPrefix + dbus.ObjectPath(fmt.Sprintf("/%d", id))
	if hook != nil {
		hook(node, job, id, unit)
	}
	return job, nil
}

func (f *fakeController) setOnStart(fn func(node, job dbus.ObjectPath, id uint32, unit string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onStart = fn
}

func (f *fakeController) jobRemoved(id uint32, job dbus.ObjectPath, node, unit, result string) {
	require.NoError(f.t, f.conn.Emit(ControllerPath, signalJobRemovedFull, id, job, node, unit, result))
}

// setStatus changes a node's Status; with emit, PropertiesChanged is sent like BlueChi does.
func (f *fakeController) setStatus(node dbus.ObjectPath, s NodeStatus, emit bool) {
	f.mu.Lock()
	f.status[node] = string(s)
	f.mu.Unlock()
	if emit {
		require.NoError(f.t, f.conn.Emit(node, signalPropertiesChangedFu, NodeInterface,
			map[string]dbus.Variant{PropStatus: dbus.MakeVariant(string(s))}, []string{}))
	}
}

// emitTo sends a signal to one connection only, as BlueChi does for monitor signals.
func (f *fakeController) emitTo(dest string, path dbus.ObjectPath, iface, member string, body ...any) {
	msg := &dbus.Message{
		Type: dbus.TypeSignal,
		Headers: map[dbus.HeaderField]dbus.Variant{
			dbus.FieldPath:        dbus.MakeVariant(path),
			dbus.FieldInterface:   dbus.MakeVariant(iface),
			dbus.FieldMember:      dbus.MakeVariant(member),
			dbus.FieldDestination: dbus.MakeVariant(dest),
		},
		Body: body,
	}
	if len(body) > 0 {
		msg.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(body...))
	}
	call := f.conn.Send(msg, nil)
	require.NoError(f.t, call.Err)
}

// connectRetry works around dbustest.Start returning as soon as the socket file exists, which
// can be before dbus-daemon calls listen() (ECONNREFUSED for a few milliseconds).
func connectRetry(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := dbus.Connect(addr)
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			require.NoError(t, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newTestClient(t *testing.T, nodes ...string) (*Client, *fakeController) {
	t.Helper()
	bus := dbustest.New(t, false)
	f := newFakeController(t, bus.Address, nodes...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, WithAddress(bus.Address))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, f
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestWireJobRemovedBeforeReply(t *testing.T) {
	c, f := newTestClient(t, "node1", "qm.node1")
	f.setOnStart(func(node, job dbus.ObjectPath, id uint32, unit string) {
		name, _ := nodeNameFromPath(node)
		// Sent before the StartUnit reply: the client must still deliver it to Wait.
		f.jobRemoved(id, job, name, unit, string(JobDone))
	})
	ctx := testCtx(t, 10*time.Second)
	for _, name := range []string{"node1", "qm.node1"} {
		n, err := c.GetNode(ctx, name)
		require.NoError(t, err)
		require.Equal(t, EscapePath(name), n.Path)
		// Concurrent calls: every early JobRemoved reaches its own job.
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				unit := fmt.Sprintf("u%d.service", i)
				j, err := n.StartUnit(ctx, unit, JobReplace)
				require.NoError(t, err)
				require.Equal(t, unit, j.Unit)
				require.NotZero(t, j.ID)
				res, err := j.Wait(testCtx(t, 5*time.Second))
				require.NoError(t, err)
				require.Equal(t, JobDone, res)
				require.True(t, res.Success())
				// A second Wait returns the same outcome.
				res, err = j.Wait(ctx)
				require.NoError(t, err)
				require.Equal(t, JobDone, res)
			}()
		}
		wg.Wait()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.waiters)
	require.Empty(t, c.early)
	require.Zero(t, c.inflight)
}

func TestWireJobRemovedAfterReply(t *testing.T) {
	c, f := newTestClient(t, "node1")
	n, err := c.GetNode(testCtx(t, 5*time.Second), "node1")
	require.NoError(t, err)
	j, err := n.StartUnit(testCtx(t, 5*time.Second), "late.service", JobReplace)
	require.NoError(t, err)
	go func() {
		time.Sleep(50 * time.Millisecond)
		f.jobRemoved(j.ID, j.Path, "node1", "late.service", string(JobFailed))
	}()
	res, err := j.Wait(testCtx(t, 5*time.Second))
	require.NoError(t, err)
	require.Equal(t, JobFailed, res)
	require.False(t, res.Success())
}

func TestWireWaitNodeOffline(t *testing.T) {
	tests := []struct {
		name string
		// how the node goes offline after the job exists
		setup func(f *fakeController)
		after func(f *fakeController, node dbus.ObjectPath)
	}{
		{
			name:  "PropertiesChanged after the reply",
			after: func(f *fakeController, node dbus.ObjectPath) { f.setStatus(node, NodeOffline, true) },
		},
		{
			name: "PropertiesChanged before the reply",
			setup: func(f *fakeController) {
				f.setOnStart(func(node, job dbus.ObjectPath, id uint32, unit string) { f.setStatus(node, NodeOffline, true) })
			},
		},
		{
			name: "offline without a signal the client saw (Status read after creation)",
			setup: func(f *fakeController) {
				f.setOnStart(func(node, job dbus.ObjectPath, id uint32, unit string) { f.setStatus(node, NodeOffline, false) })
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, f := newTestClient(t, "node-1")
			if tt.setup != nil {
				tt.setup(f)
			}
			n, err := c.GetNode(testCtx(t, 5*time.Second), "node-1")
			require.NoError(t, err)
			j, err := n.StartUnit(testCtx(t, 5*time.Second), "a.service", JobReplace)
			require.NoError(t, err)
			if tt.after != nil {
				go func() {
					time.Sleep(50 * time.Millisecond)
					tt.after(f, n.Path)
				}()
			}
			start := time.Now()
			_, err = j.Wait(testCtx(t, 10*time.Second))
			require.ErrorIs(t, err, ErrNodeOffline)
			require.NotErrorIs(t, err, ErrTimeout)
			require.Contains(t, err.Error(), "node-1")
			require.Less(t, time.Since(start), 5*time.Second)
		})
	}
}

func TestWireStartOnOfflineNode(t *testing.T) {
	c, f := newTestClient(t, "node1")
	n, err := c.GetNode(testCtx(t, 5*time.Second), "node1")
	require.NoError(t, err)
	f.setStatus(n.Path, NodeOffline, true)
	_, err = n.StartUnit(testCtx(t, 5*time.Second), "a.service", JobReplace)
	require.ErrorIs(t, err, ErrNodeOffline)
	require.Contains(t, err.Error(), ErrorNameOffline)
	require.Contains(t, err.Error(), "node node1: start a.service")
}

func TestWireWaitDeadlineAndCancel(t *testing.T) {
	c, _ := newTestClient(t, "node1")
	n, err := c.GetNode(testCtx(t, 5*time.Second), "node1")
	require.NoError(t, err)
	j, err := n.StartUnit(testCtx(t, 5*time.Second), "slow.service", JobReplace)
	require.NoError(t, err)

	_, err = j.Wait(testCtx(t, 100*time.Millisecond))
	require.ErrorIs(t, err, ErrTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = j.Wait(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrTimeout)

	// The job is still tracked: closing the client ends the wait.
	done := make(chan error, 1)
	go func() { _, err := j.Wait(context.Background()); done <- err }()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, c.Close())
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrDisconnected)
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not end when the client closed")
	}
}

func TestWireWaitEndsWhenBusConnectionCloses(t *testing.T) {
	c, _ := newTestClient(t, "node1")
	n, err := c.GetNode(testCtx(t, 5*time.Second), "node1")
	require.NoError(t, err)
	j, err := n.StartUnit(testCtx(t, 5*time.Second), "a.service", JobReplace)
	require.NoError(t, err)
	require.NoError(t, c.Conn().Close()) // the connection dies underneath the client
	_, err = j.Wait(testCtx(t, 5*time.Second))
	require.ErrorIs(t, err, ErrDisconnected)
}

func TestWireWaitEndsWhenControllerLeaves(t *testing.T) {
	c, f := newTestClient(t, "node1")
	n, err := c.GetNode(testCtx(t, 5*time.Second), "node1")
	require.NoError(t, err)
	j, err := n.StartUnit(testCtx(t, 5*time.Second), "a.service", JobReplace)
	require.NoError(t, err)
	require.NoError(t, f.conn.Close())
	_, err = j.Wait(testCtx(t, 5*time.Second))
	require.ErrorIs(t, err, ErrControllerUnavailable)
}

func TestWireGetNodeNotFound(t *testing.T) {
	c, _ := newTestClient(t, "node1")
	_, err := c.GetNode(testCtx(t, 5*time.Second), "nope")
	require.ErrorIs(t, err, ErrNodeNotFound)
	require.Contains(t, err.Error(), "Node not found")
	require.Contains(t, err.Error(), ErrorNameServiceUnknown)
}

func TestWireControllerNotOnBus(t *testing.T) {
	bus := dbustest.New(t, false)
	connectRetry(t, bus.Address).Close()
	c, err := New(testCtx(t, 5*time.Second), WithAddress(bus.Address))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.ListNodes(testCtx(t, 5*time.Second))
	require.ErrorIs(t, err, ErrControllerUnavailable)
	require.NotErrorIs(t, err, ErrNodeNotFound)
}

func TestWireMonitorEvents(t *testing.T) {
	c, f := newTestClient(t, "node1")
	ctx := testCtx(t, 10*time.Second)
	m, err := c.CreateMonitor(ctx)
	require.NoError(t, err)
	other, err := c.CreateMonitor(ctx)
	require.NoError(t, err)
	_, err = m.Subscribe(ctx, "*", "*")
	require.NoError(t, err)

	dest := c.Conn().Names()[0]
	props := map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("active")}
	f.emitTo(dest, m.Path, MonitorInterface, SignalUnitNew, "node1", "a.service", "real")
	f.emitTo(dest, m.Path, MonitorInterface, SignalUnitStateChanged, "node1", "a.service", "active", "running", "real")
	f.emitTo(dest, m.Path, MonitorInterface, SignalUnitPropertiesChanged, "node1", "a.service", SystemdUnitInterface, props)
	f.emitTo(dest, other.Path, MonitorInterface, SignalUnitNew, "node1", "not-mine.service", "real") // other monitor
	f.emitTo(dest, m.Path, MonitorInterface, SignalUnitRemoved, "node1", "a.service", "virtual")     // 3 args (real BlueChi)
	f.emitTo(dest, m.Path, MonitorInterface, SignalUnitRemoved, "node1", "b.service")                // 2 args (introspection)
	// Broadcast (no destination) also reaches the monitor through its match rule.
	require.NoError(t, f.conn.Emit(m.Path, MonitorInterface+"."+SignalPeerRemoved, "bye"))

	want := []Event{
		{Kind: EventUnitNew, Node: "node1", Unit: "a.service", Reason: "real"},
		{Kind: EventUnitStateChanged, Node: "node1", Unit: "a.service", ActiveState: "active", SubState: "running", Reason: "real"},
		{Kind: EventUnitPropertiesChanged, Node: "node1", Unit: "a.service", Iface: SystemdUnitInterface, Props: props},
		{Kind: EventUnitRemoved, Node: "node1", Unit: "a.service", Reason: "virtual"},
		{Kind: EventUnitRemoved, Node: "node1", Unit: "b.service"},
		{Kind: EventPeerRemoved, Reason: "bye"},
	}
	for i, w := range want {
		select {
		case ev := <-m.Events():
			require.Equal(t, w, ev, "event %d", i)
		case <-ctx.Done():
			t.Fatalf("event %d (%s) not delivered", i, w.Kind)
		}
	}
	select {
	case ev := <-other.Events():
		require.Equal(t, "not-mine.service", ev.Unit)
	case <-ctx.Done():
		t.Fatal("other monitor's event not delivered")
	}

	require.NoError(t, m.Close(ctx))
	_, open := <-m.Events()
	require.False(t, open, "Events must be closed after Close")
	require.NoError(t, c.Close())
	_, open = <-other.Events()
	require.False(t, open, "Events must be closed when the client closes")
}

func TestMonitorOverflow(t *testing.T) {
	t.Parallel()
	m := &Monitor{events: make(chan Event, 2)}
	for i := range 5 {
		m.push(Event{Kind: EventUnitNew, Unit: fmt.Sprint(i)})
	}
	require.EqualValues(t, 3, m.Dropped())
	require.Equal(t, "0", (<-m.Events()).Unit)
	require.Equal(t, "1", (<-m.Events()).Unit)
	m.push(Event{Kind: EventUnitNew, Unit: "5"})
	ov := <-m.Events()
	require.Equal(t, EventOverflow, ov.Kind)
	require.EqualValues(t, 3, ov.Dropped)
	require.Equal(t, "5", (<-m.Events()).Unit)
}

func TestWireWatchNodeStatus(t *testing.T) {
	c, f := newTestClient(t, "node1", "qm.node1")
	ctx := testCtx(t, 10*time.Second)
	ch, stop := c.WatchNodeStatus(ctx)
	ch2, stop2 := c.WatchNodeStatus(ctx)
	defer stop2()
	f.setStatus(EscapePath("qm.node1"), NodeOffline, true)
	f.setStatus(EscapePath("qm.node1"), NodeOnline, true)
	for _, w := range []NodeStatus{NodeOffline, NodeOnline} {
		for _, c := range []<-chan NodeStatusEvent{ch, ch2} {
			select {
			case ev := <-c:
				require.Equal(t, NodeStatusEvent{Node: "qm.node1", Path: EscapePath("qm.node1"), Status: w}, ev)
			case <-ctx.Done():
				t.Fatal("status event not delivered")
			}
		}
	}
	stop()
	stop() // idempotent
	_, open := <-ch
	require.False(t, open)
	require.NoError(t, c.Close())
	_, open = <-ch2
	require.False(t, open)
}

func TestNewUnreachable(t *testing.T) {
	t.Parallel()
	addr := "unix:path=" + t.TempDir() + "/missing.sock"
	_, err := New(testCtx(t, 5*time.Second), WithAddress(addr))
	require.ErrorIs(t, err, ErrUnreachable)
	require.Contains(t, err.Error(), "controller bus "+addr+" unreachable: ")
	require.Contains(t, err.Error(), "no such file")
}

func TestNewWithConn(t *testing.T) {
	bus := dbustest.New(t, false)
	f := newFakeController(t, bus.Address, "node1")
	conn := connectRetry(t, bus.Address)
	defer conn.Close()
	c, err := New(testCtx(t, 5*time.Second), WithConn(conn))
	require.NoError(t, err)
	f.setOnStart(func(node, job dbus.ObjectPath, id uint32, unit string) { f.jobRemoved(id, job, "node1", unit, "done") })
	n, err := c.GetNode(testCtx(t, 5*time.Second), "node1")
	require.NoError(t, err)
	j, err := n.StartUnit(testCtx(t, 5*time.Second), "a.service", JobReplace)
	require.NoError(t, err)
	res, err := j.Wait(testCtx(t, 5*time.Second))
	require.NoError(t, err)
	require.Equal(t, JobDone, res)
	require.NoError(t, c.Close())
	require.True(t, conn.Connected(), "Close must not close a WithConn connection")
}
