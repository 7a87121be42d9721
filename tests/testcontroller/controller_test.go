package testcontroller

import (
	"context"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"
)

func dial(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Dial(addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.Auth(nil))
	require.NoError(t, conn.Hello())
	return conn
}

func skipIfNotRoot(t *testing.T) {
	if !IsRoot() {
		t.Skip("root-only bus policy: run as root")
	}
}

func call(t *testing.T, conn *dbus.Conn, path dbus.ObjectPath, method string, args ...any) *dbus.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return conn.Object(BusName, path).CallWithContext(ctx, method, 0, args...)
}

func signals(t *testing.T, conn *dbus.Conn, opts ...dbus.MatchOption) chan *dbus.Signal {
	t.Helper()
	require.NoError(t, conn.AddMatchSignal(opts...))
	ch := make(chan *dbus.Signal, 1000)
	conn.Signal(ch)
	return ch
}

func next(t *testing.T, ch chan *dbus.Signal, name string) *dbus.Signal {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case s := <-ch:
			if s.Name == name {
				return s
			}
		case <-deadline:
			t.Fatalf("no %s signal within 5s", name)
		}
	}
}

func TestPathEncode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"node1", "node1"},
		{"node-1", "node_2d1"},
		{"qm.node1", "qm_2enode1"},
		{"1node", "_31node"},
		{"", "_"},
		{"a_b", "a_5fb"},
	} {
		require.Equal(t, tc.want, PathEncode(tc.in), tc.in)
	}
}

func TestNormalizeVariantStruct(t *testing.T) {
	t.Parallel()
	// a(sasb) as godbus decodes it: [][]any inside a variant.
	sig := dbus.ParseSignatureMust("a(sasb)")
	raw := dbus.MakeVariantWithSignature([][]any{{"/bin/true", []string{"/bin/true"}, false}}, sig)
	n := normalize(raw).(dbus.Variant)
	require.Equal(t, "a(sasb)", n.Signature().String())
	require.Equal(t, "a(sasb)", dbus.SignatureOf(n.Value()).String())
}

func TestListNodesAndJob(t *testing.T) {
	skipIfNotRoot(t)
	h := Start(t)
	conn := dial(t, h.Address)
	var nodes []struct {
		Name   string
		Path   dbus.ObjectPath
		Status string
		IP     string
	}
	require.NoError(t, call(t, conn, ControllerPath, ControllerIface+".ListNodes").Store(&nodes))
	require.Len(t, nodes, 3)
	require.Equal(t, "qm.node1", nodes[2].Name)
	require.Equal(t, dbus.ObjectPath("/org/eclipse/bluechi/node/qm_2enode1"), nodes[2].Path)
	require.Equal(t, "online", nodes[2].Status)
	require.Equal(t, "::ffff:10.231.7.13", nodes[2].IP)

	ch := signals(t, conn, dbus.WithMatchSender(BusName))
	var jobPath dbus.ObjectPath
	require.NoError(t, call(t, conn, nodes[0].Path, NodeIface+".StartUnit", "test.service", "replace").Store(&jobPath))
	require.Equal(t, dbus.ObjectPath("/org/eclipse/bluechi/job/1"), jobPath)
	s := next(t, ch, ControllerIface+".JobNew")
	require.Equal(t, []any{uint32(1), jobPath}, s.Body)
	s = next(t, ch, ControllerIface+".JobRemoved")
	require.Equal(t, []any{uint32(1), jobPath, "node1", "test.service", "done"}, s.Body)
	var mono uint64
	require.NoError(t, call(t, conn, nodes[0].Path, propertiesIface+".Get", NodeIface, "LastSeenTimestampMonotonic").Store(&mono))
	require.InDelta(t, float64(monotonicMicros()), float64(mono), 10e6, "CLOCK_MONOTONIC µs")
	a, sub := h.Node("node1").UnitState("test.service")
	require.Equal(t, "active", a)
	require.Equal(t, "running", sub)
}

func dialWithInterceptor(t *testing.T, addr string, f func(*dbus.Message)) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Dial(addr, dbus.WithIncomingInterceptor(f))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.Auth(nil))
	require.NoError(t, conn.Hello())
	return conn
}

func TestJobNewBeforeReplyAndJobRemovedAfter(t *testing.T) {
	skipIfNotRoot(t)
	h := Start(t)
	events := make(chan string, 100)
	conn := dialWithInterceptor(t, h.Address, func(m *dbus.Message) {
		switch m.Type {
		case dbus.TypeMethodReply:
			if s, _ := m.Headers[dbus.FieldSender].Value().(string); s != "org.freedesktop.DBus" {
				events <- "reply"
			}
		case dbus.TypeSignal:
			if mem, _ := m.Headers[dbus.FieldMember].Value().(string); mem == "JobNew" || mem == "JobRemoved" {
				events <- mem
			}
		}
	})
	require.NoError(t, conn.AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchInterface(ControllerIface)))
	require.NoError(t, call(t, conn, dbus.ObjectPath(NodePath("node1")), NodeIface+".StartUnit", "test.service", "replace").Err)
	var got []string
	for len(got) < 3 {
		select {
		case e := <-events:
			got = append(got, e)
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far: %v", got)
		}
	}
	require.Equal(t, []string{"JobNew", "reply", "JobRemoved"}, got)
}

func TestShutdownCancelsJobs(t *testing.T) {
	skipIfNotRoot(t)
	h := Start(t)
	h.Node("node1").Hold("")
	conn := dial(t, h.Address)
	ch := signals(t, conn, dbus.WithMatchSender(BusName), dbus.WithMatchMember("JobRemoved"))
	var job dbus.ObjectPath
	require.NoError(t, call(t, conn, dbus.ObjectPath(NodePath("node1")), NodeIface+".StartUnit", "web.service", "replace").Store(&job))
	require.NoError(t, h.Controller.Close())
	s := next(t, ch, ControllerIface+".JobRemoved")
	require.Equal(t, []any{uint32(1), job, "node1", "web.service", ResultShutdown}, s.Body)
}

func TestMonitorPeersAndIDs(t *testing.T) {
	skipIfNotRoot(t)
	h := Start(t)
	owner := dial(t, h.Address)
	peer := dial(t, h.Address)
	var mon dbus.ObjectPath
	require.NoError(t, call(t, owner, ControllerPath, ControllerIface+".CreateMonitor").Store(&mon))
	require.Equal(t, dbus.ObjectPath("/org/eclipse/bluechi/monitor/1"), mon)
	peerSigs := signals(t, peer, dbus.WithMatchInterface(MonitorIface))

	var subID, sub2 uint32
	require.NoError(t, call(t, owner, mon, MonitorIface+".Subscribe", "node1", "test.service").Store(&subID))
	require.Equal(t, uint32(2), subID, "BlueChi's first subscription id is 2")
	require.NoError(t, call(t, owner, mon, MonitorIface+".SubscribeList", "*", []string{"a.service", "b.service"}).Store(&sub2))
	require.Equal(t, uint32(3), sub2)
	err := call(t, owner, mon, MonitorIface+".Unsubscribe", uint32(99)).Err
	require.Equal(t, ErrFailed, err.(dbus.Error).Name)

	for _, bad := range []string{"org.example.Name", ":", ":1..2", owner.Names()[0]} {
		err := call(t, owner, mon, MonitorIface+".AddPeer", bad).Err
		require.Error(t, err, bad)
		require.Equal(t, ErrInvalidArgs, err.(dbus.Error).Name, bad)
	}
	var peerID uint32
	require.NoError(t, call(t, owner, mon, MonitorIface+".AddPeer", peer.Names()[0]).Store(&peerID))
	require.Equal(t, uint32(1), peerID)

	require.NoError(t, call(t, owner, dbus.ObjectPath(NodePath("node1")), NodeIface+".StartUnit", "test.service", "replace").Err)
	s := next(t, peerSigs, MonitorIface+".UnitStateChanged")
	require.Equal(t, []any{"node1", "test.service", "activating", "start", "real"}, s.Body)
	s = next(t, peerSigs, MonitorIface+".UnitStateChanged")
	require.Equal(t, []any{"node1", "test.service", "active", "running", "real"}, s.Body)

	require.NoError(t, call(t, owner, mon, MonitorIface+".RemovePeer", peerID, "bye").Err)
	s = next(t, peerSigs, MonitorIface+".PeerRemoved")
	require.Equal(t, []any{"bye"}, s.Body)
	err = call(t, owner, mon, MonitorIface+".RemovePeer", peerID, "again").Err
	require.Equal(t, ErrFailed, err.(dbus.Error).Name)

	require.NoError(t, call(t, owner, mon, MonitorIface+".Close").Err)
	err = call(t, owner, mon, MonitorIface+".Close").Err
	require.Equal(t, ErrUnknownObject, err.(dbus.Error).Name)
}

func TestSubscribeLoadedUnitGetsVirtualEvents(t *testing.T) {
	skipIfNotRoot(t)
	h := Start(t)
	a := dial(t, h.Address)
	ch := signals(t, a, dbus.WithMatchInterface(MonitorIface))
	var mon dbus.ObjectPath
	require.NoError(t, call(t, a, ControllerPath, ControllerIface+".CreateMonitor").Store(&mon))
	require.NoError(t, call(t, a, mon, MonitorIface+".Subscribe", "node1", "dbus.service").Err)
	s := next(t, ch, MonitorIface+".UnitNew")
	require.Equal(t, []any{"node1", "dbus.service", "virtual"}, s.Body)
	s = next(t, ch, MonitorIface+".UnitStateChanged")
	require.Equal(t, []any{"node1", "dbus.service", "active", "running", "virtual"}, s.Body)

	h.SetOnline("node1", false)
	s = next(t, ch, MonitorIface+".UnitStateChanged")
	require.Equal(t, []any{"node1", "dbus.service", "inactive", "agent-offline", "virtual"}, s.Body)
	s = next(t, ch, MonitorIface+".UnitRemoved")
	require.Equal(t, []any{"node1", "dbus.service", "virtual"}, s.Body)
}

func TestControllerStatus(t *testing.T) {
	skipIfNotRoot(t)
	h := Start(t, WithMemoryNodes("a", "b"))
	conn := dial(t, h.Address)
	ch := signals(t, conn, dbus.WithMatchObjectPath(ControllerPath), dbus.WithMatchInterface(propertiesIface))
	get := func() string {
		var s string
		require.NoError(t, call(t, conn, ControllerPath, propertiesIface+".Get", ControllerIface, "Status").Store(&s))
		return s
	}
	require.Equal(t, "up", get())
	for _, step := range []struct {
		node   string
		online bool
		want   string
	}{{"a", false, "degraded"}, {"b", false, "down"}, {"a", true, "degraded"}, {"b", true, "up"}} {
		h.SetOnline(step.node, step.online)
		// A Status change queued while the nodes registered may still arrive after the match
		// was added: skip changes until the wanted one (next fails the test on its timeout).
		for {
			s := next(t, ch, propertiesIface+".PropertiesChanged")
			if s.Body[1].(map[string]dbus.Variant)["Status"].Value() == step.want {
				break
			}
		}
		require.Equal(t, step.want, get())
	}
}

func TestIntrospectAndErrors(t *testing.T) {
	skipIfNotRoot(t)
	h := Start(t)
	conn := dial(t, h.Address)
	var xml string
	require.NoError(t, call(t, conn, ControllerPath, introspectIface+".Introspect").Store(&xml))
	require.Contains(t, xml, `<interface name="org.eclipse.bluechi.Controller">`)
	require.Contains(t, xml, `<node name="node"/>`)
	require.NoError(t, call(t, conn, NodePathPrefix, introspectIface+".Introspect").Store(&xml))
	require.Contains(t, xml, `<node name="qm_2enode1"/>`)

	for _, tc := range []struct {
		name string
		path dbus.ObjectPath
		meth string
		args []any
		want string
	}{
		{"unknown object", "/org/eclipse/bluechi/job/999", JobIface + ".Cancel", nil, ErrUnknownObject},
		{"unknown method", ControllerPath, ControllerIface + ".Nope", nil, ErrUnknownMethod},
		{"bad args", ControllerPath, ControllerIface + ".GetNode", []any{uint32(1)}, ErrInvalidArgs},
		{"bad log level", ControllerPath, ControllerIface + ".SetLogLevel", []any{"debug"}, ErrInvalidArgs},
		{"metrics off twice", ControllerPath, ControllerIface + ".DisableMetrics", nil, ErrInconsistentMessage},
		{"read-only property", ControllerPath, propertiesIface + ".Set", []any{ControllerIface, "Status", dbus.MakeVariant("up")}, ErrPropertyReadOnly},
		{"no such unit", dbus.ObjectPath(NodePath("node1")), NodeIface + ".StopUnit", []any{"nope.service", "replace"}, ErrNoSuchUnit},
	} {
		err := call(t, conn, tc.path, tc.meth, tc.args...).Err
		require.Error(t, err, tc.name)
		require.Equal(t, tc.want, err.(dbus.Error).Name, tc.name)
	}
	require.NoError(t, call(t, conn, ControllerPath, ControllerIface+".SetLogLevel", "DEBUG").Err)
	require.NoError(t, call(t, conn, ControllerPath, ControllerIface+".EnableMetrics").Err)
}

func TestTransientUnitPassthrough(t *testing.T) {
	skipIfNotRoot(t)
	h := Start(t)
	conn := dial(t, h.Address)
	node := dbus.ObjectPath(NodePath("node1"))
	type execCmd struct {
		Path string
		Argv []string
		Ign  bool
	}
	props := []Property{
		{"Type", dbus.MakeVariant("oneshot")},
		{"RemainAfterExit", dbus.MakeVariant(true)},
		{"ExecStart", dbus.MakeVariant([]execCmd{{"/bin/true", []string{"/bin/true"}, false}})},
	}
	var job dbus.ObjectPath
	require.NoError(t, call(t, conn, node, NodeIface+".StartTransientUnit", "deliver.service", "replace", props, []AuxUnit{}).Store(&job))
	require.Contains(t, string(job), "/org/freedesktop/systemd1/job/")
	require.Eventually(t, func() bool {
		a, s := h.Node("node1").UnitState("deliver.service")
		return a == "active" && s == "exited"
	}, 5*time.Second, 10*time.Millisecond)
	// The ExecStart variant went through the wire and back with its real type.
	var v dbus.Variant
	require.NoError(t, call(t, conn, node, NodeIface+".GetUnitProperty", "deliver.service", "org.freedesktop.systemd1.Service", "ExecStart").Store(&v))
	require.Equal(t, "a(sasb)", v.Signature().String())
	err := call(t, conn, node, NodeIface+".StartTransientUnit", "deliver.service", "replace", props, []AuxUnit{}).Err
	require.Equal(t, ErrUnitExists, err.(dbus.Error).Name)
}
