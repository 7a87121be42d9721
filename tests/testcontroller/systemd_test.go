package testcontroller

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/tests/dbustest"
)

// fakeSystemd serves the few org.freedesktop.systemd1 Manager methods SystemdNode uses.
type fakeSystemd struct {
	conn *dbus.Conn
	mu   sync.Mutex
	next uint32
	// early makes StartUnit emit JobRemoved before its reply (the race SystemdNode must handle).
	early bool
}

func (f *fakeSystemd) Subscribe() *dbus.Error { return nil }

func (f *fakeSystemd) ListUnits() ([]UnitInfo, *dbus.Error) {
	return []UnitInfo{{Name: "a.service", Description: "a", LoadState: "loaded", ActiveState: "active",
		SubState: "running", Path: unitPath("a.service"), JobPath: "/"}}, nil
}

func (f *fakeSystemd) StartUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	if unit == "missing.service" {
		return "", dbus.NewError(ErrNoSuchUnit, []any{"Unit missing.service not found."})
	}
	f.mu.Lock()
	f.next++
	id := f.next
	early := f.early
	f.mu.Unlock()
	path := sysJobPath(id)
	emit := func() {
		_ = f.conn.Emit(path, propertiesIface+".PropertiesChanged", systemdJobIface,
			map[string]dbus.Variant{"State": dbus.MakeVariant("running")}, []string{})
		_ = f.conn.Emit(unitPath(unit), propertiesIface+".PropertiesChanged", systemdUnitIface,
			map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("active"), "SubState": dbus.MakeVariant("running")}, []string{})
		_ = f.conn.Emit(systemdPath, systemdManagerIfc+".JobRemoved", id, path, unit, "done")
	}
	if early {
		emit()
	} else {
		go func() { time.Sleep(20 * time.Millisecond); emit() }()
	}
	return path, nil
}

func startFakeSystemd(t *testing.T, dir string) (*dbustest.Daemon, *fakeSystemd) {
	t.Helper()
	d, err := dbustest.Start(context.Background(), dir, false)
	require.NoError(t, err)
	conn, err := dbus.Dial(d.Address)
	require.NoError(t, err)
	require.NoError(t, conn.Auth(nil))
	require.NoError(t, conn.Hello())
	f := &fakeSystemd{conn: conn}
	require.NoError(t, conn.ExportWithMap(f, map[string]string{}, systemdPath, systemdManagerIfc))
	reply, err := conn.RequestName(systemdDest, dbus.NameFlagDoNotQueue)
	require.NoError(t, err)
	require.Equal(t, dbus.RequestNameReplyPrimaryOwner, reply)
	t.Cleanup(func() { conn.Close(); d.Stop() })
	return d, f
}

func TestSystemdNodeAgainstFakeSystemd(t *testing.T) {
	skipIfNotRoot(t)
	dir, err := os.MkdirTemp("", "qmsd")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sd, fake := startFakeSystemd(t, dir)

	backend := NewSystemdNode("real1", sd.Address, "::ffff:10.231.7.11")
	backend.RetryInterval = 50 * time.Millisecond
	backend.HeartbeatInterval = 100 * time.Millisecond
	h := Start(t, WithMemoryNodes(), WithBackend("real1", backend))
	conn := dial(t, h.Address)
	node := dbus.ObjectPath(NodePath("real1"))
	status := func() string {
		var s string
		require.NoError(t, call(t, conn, node, propertiesIface+".Get", NodeIface, "Status").Store(&s))
		return s
	}
	require.Eventually(t, func() bool { return status() == "online" }, 5*time.Second, 20*time.Millisecond)

	ch := signals(t, conn, dbus.WithMatchSender(BusName))
	var mon dbus.ObjectPath
	require.NoError(t, call(t, conn, ControllerPath, ControllerIface+".CreateMonitor").Store(&mon))
	require.NoError(t, call(t, conn, mon, MonitorIface+".Subscribe", "real1", "a.service").Err)
	s := next(t, ch, MonitorIface+".UnitNew")
	require.Equal(t, []any{"real1", "a.service", "virtual"}, s.Body)

	for _, early := range []bool{false, true} {
		fake.mu.Lock()
		fake.early = early
		fake.mu.Unlock()
		var job dbus.ObjectPath
		require.NoError(t, call(t, conn, node, NodeIface+".StartUnit", "a.service", "replace").Store(&job), "early=%v", early)
		s := next(t, ch, ControllerIface+".JobRemoved")
		require.Equal(t, job, s.Body[1], "early=%v", early)
		require.Equal(t, "done", s.Body[4], "early=%v", early)
	}
	err = call(t, conn, node, NodeIface+".StartUnit", "missing.service", "replace").Err
	require.Equal(t, ErrNoSuchUnit, err.(dbus.Error).Name)

	// The node's bus goes away: offline, virtual events; it comes back: online again.
	fake.conn.Close()
	sd.Stop()
	s = next(t, ch, MonitorIface+".UnitRemoved")
	require.Equal(t, []any{"real1", "a.service", "virtual"}, s.Body)
	require.Equal(t, "offline", status())
	err = call(t, conn, node, NodeIface+".ListUnits").Err
	require.Equal(t, ErrOffline, err.(dbus.Error).Name)

	_, _ = startFakeSystemd(t, dir)
	require.Eventually(t, func() bool { return status() == "online" }, 5*time.Second, 20*time.Millisecond)
	s = next(t, ch, MonitorIface+".UnitNew")
	require.Equal(t, []any{"real1", "a.service", "virtual"}, s.Body)
	var units []UnitInfo
	require.NoError(t, call(t, conn, node, NodeIface+".ListUnits").Store(&units))
	require.Equal(t, "a.service", units[0].Name)
	var ip string
	require.NoError(t, call(t, conn, node, propertiesIface+".Get", NodeIface, "PeerIp").Store(&ip))
	require.Equal(t, "::ffff:10.231.7.11", ip)
}
