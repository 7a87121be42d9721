package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

const (
	envBus    = "QMORCH_CONFORMANCE_BUS"
	envNode   = "QMORCH_CONFORMANCE_NODE"
	envUnit   = "QMORCH_CONFORMANCE_UNIT"
	envHelper = "QMORCH_CONFORMANCE_HELPER_BUS" // set in the child process of TestAccessDenied

	busName        = "org.eclipse.bluechi"
	controllerPath = dbus.ObjectPath("/org/eclipse/bluechi")
	controllerIf   = "org.eclipse.bluechi.Controller"
	nodeIf         = "org.eclipse.bluechi.Node"
	jobIf          = "org.eclipse.bluechi.Job"
	monitorIf      = "org.eclipse.bluechi.Monitor"
	propsIf        = "org.freedesktop.DBus.Properties"
)

// TestMain doubles as the non-root helper of TestAccessDenied: re-executed as uid 65534 with
// envHelper set, it calls the API once and prints the D-Bus error name.
func TestMain(m *testing.M) {
	if addr := os.Getenv(envHelper); addr != "" {
		os.Exit(accessHelper(addr))
	}
	os.Exit(m.Run())
}

func accessHelper(addr string) int {
	conn, err := dbus.Dial(addr)
	if err != nil {
		fmt.Println("DIAL", err)
		return 2
	}
	defer conn.Close()
	if err := conn.Auth(nil); err != nil {
		fmt.Println("AUTH", err)
		return 2
	}
	if err := conn.Hello(); err != nil {
		fmt.Println("HELLO", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	obj := conn.Object(busName, controllerPath)
	for _, c := range []struct {
		label  string
		method string
		args   []any
	}{
		{"ListNodes", controllerIf + ".ListNodes", nil},
		{"GetStatus", propsIf + ".Get", []any{controllerIf, "Status"}},
	} {
		err := obj.CallWithContext(ctx, c.method, 0, c.args...).Err
		var de dbus.Error
		switch {
		case err == nil:
			fmt.Println(c.label, "OK")
		case errors.As(err, &de):
			fmt.Println(c.label, de.Name)
		default:
			fmt.Println(c.label, "ERR", err)
		}
	}
	return 0
}

// target is the bus under test.
type target struct {
	addr    string
	node    string // an online node
	unit    string // a unit that can be started and stopped on node ("" = skip job checks)
	harness *testcontroller.Harness
	socket  string // bus socket path when known (AccessDenied check)
}

func (tg *target) double() bool { return tg.harness != nil }

func setup(t *testing.T) *target {
	t.Helper()
	if addr := os.Getenv(envBus); addr != "" {
		node := os.Getenv(envNode)
		if node == "" {
			t.Fatalf("%s is set: set %s to an online node as well", envBus, envNode)
		}
		tg := &target{addr: addr, node: node, unit: os.Getenv(envUnit)}
		if p, ok := strings.CutPrefix(addr, "unix:path="); ok {
			tg.socket = strings.SplitN(p, ",", 2)[0]
		}
		return tg
	}
	if os.Geteuid() != 0 {
		t.Skip("the double's bus is root-only (BlueChi's policy): run as root")
	}
	h := testcontroller.Start(t)
	return &target{addr: h.Address, node: "node1", unit: "test.service", harness: h, socket: h.Bus.Socket}
}

func dial(t *testing.T, addr string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Dial(addr)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	require.NoError(t, conn.Auth(nil))
	require.NoError(t, conn.Hello())
	return conn
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func rawCall(t *testing.T, conn *dbus.Conn, path dbus.ObjectPath, method string, args ...any) *dbus.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return conn.Object(busName, path).CallWithContext(ctx, method, 0, args...)
}

func errName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	return ""
}

func errText(err error) string {
	var de dbus.Error
	if errors.As(err, &de) && len(de.Body) > 0 {
		s, _ := de.Body[0].(string)
		return s
	}
	return ""
}

type sigStream struct {
	ch chan *dbus.Signal
}

func subscribe(t *testing.T, conn *dbus.Conn, opts ...dbus.MatchOption) *sigStream {
	t.Helper()
	require.NoError(t, conn.AddMatchSignal(opts...))
	ch := make(chan *dbus.Signal, 4096)
	conn.Signal(ch)
	return &sigStream{ch: ch}
}

// wait returns the first signal for which match is true, or fails after d.
func (s *sigStream) wait(t *testing.T, d time.Duration, what string, match func(*dbus.Signal) bool) *dbus.Signal {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case sig := <-s.ch:
			if match(sig) {
				return sig
			}
		case <-deadline.C:
			t.Fatalf("no %s within %s", what, d)
			return nil
		}
	}
}

// none fails if a matching signal arrives within d.
func (s *sigStream) none(t *testing.T, d time.Duration, what string, match func(*dbus.Signal) bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		select {
		case sig := <-s.ch:
			if match(sig) {
				t.Fatalf("unexpected %s: %s %v", what, sig.Name, sig.Body)
			}
		case <-deadline.C:
			return
		}
	}
}

func nodePath(t *testing.T, conn *dbus.Conn, name string) dbus.ObjectPath {
	t.Helper()
	var p dbus.ObjectPath
	require.NoError(t, rawCall(t, conn, controllerPath, controllerIf+".GetNode", name).Store(&p))
	return p
}

// sdPathEncode is written here again on purpose (not imported): the check is independent.
func sdPathEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9' && i > 0) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "_%02x", c)
	}
	return b.String()
}

// replySignature makes one call on a fresh connection and returns the signature header of its
// reply as sent on the wire (godbus' decoded Body loses struct types).
func replySignature(t *testing.T, addr string, path dbus.ObjectPath, method string, args ...any) string {
	t.Helper()
	sigs := make(chan string, 16)
	conn, err := dbus.Dial(addr, dbus.WithIncomingInterceptor(func(m *dbus.Message) {
		if m.Type != dbus.TypeMethodReply {
			return
		}
		if sender, _ := m.Headers[dbus.FieldSender].Value().(string); sender == "org.freedesktop.DBus" {
			return
		}
		sig, _ := m.Headers[dbus.FieldSignature].Value().(dbus.Signature)
		select {
		case sigs <- sig.String():
		default:
		}
	}))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.Auth(nil))
	require.NoError(t, conn.Hello())
	require.NoError(t, rawCall(t, conn, path, method, args...).Err)
	select {
	case s := <-sigs:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("no reply seen for %s", method)
		return ""
	}
}

// ---------------------------------------------------------------------------------------------
// Raw wire checks

func TestListNodes(t *testing.T) {
	tg := setup(t)
	conn := dial(t, tg.addr)
	require.Equal(t, "a(soss)", replySignature(t, tg.addr, controllerPath, controllerIf+".ListNodes"),
		"ListNodes reply signature")
	call := rawCall(t, conn, controllerPath, controllerIf+".ListNodes")
	require.NoError(t, call.Err)
	require.Len(t, call.Body, 1)
	var nodes []struct {
		Name   string
		Path   dbus.ObjectPath
		Status string
		PeerIP string
	}
	require.NoError(t, call.Store(&nodes))
	found := false
	for _, n := range nodes {
		require.Equal(t, dbus.ObjectPath("/org/eclipse/bluechi/node/"+sdPathEncode(n.Name)), n.Path, n.Name)
		require.Contains(t, []string{"online", "offline"}, n.Status, n.Name)
		if n.PeerIP != "" {
			require.NotNil(t, net.ParseIP(n.PeerIP), "PeerIp %q of %s", n.PeerIP, n.Name)
		}
		if n.Name == tg.node {
			found = true
			require.Equal(t, "online", n.Status)
			require.Equal(t, n.Path, nodePath(t, conn, n.Name), "GetNode agrees with ListNodes")
		}
	}
	require.True(t, found, "node %s listed", tg.node)
	if tg.double() {
		require.Equal(t, "::ffff:10.231.7.11", nodes[0].PeerIP)
	}
}

func TestGetNodeUnknown(t *testing.T) {
	tg := setup(t)
	conn := dial(t, tg.addr)
	err := rawCall(t, conn, controllerPath, controllerIf+".GetNode", "no-such-node-qmorch").Err
	require.Error(t, err)
	require.Equal(t, "org.freedesktop.DBus.Error.ServiceUnknown", errName(err))
	require.Equal(t, "Node not found", errText(err))
}

func TestNodeProperties(t *testing.T) {
	tg := setup(t)
	conn := dial(t, tg.addr)
	path := nodePath(t, conn, tg.node)
	var all map[string]dbus.Variant
	require.NoError(t, rawCall(t, conn, path, propsIf+".GetAll", nodeIf).Store(&all))
	want := map[string]string{"Name": "s", "Status": "s", "PeerIp": "s", "LastSeenTimestamp": "t", "LastSeenTimestampMonotonic": "t"}
	for name, sig := range want {
		v, ok := all[name]
		require.True(t, ok, "property %s", name)
		require.Equal(t, sig, v.Signature().String(), name)
	}
	require.Equal(t, tg.node, all["Name"].Value())
	require.Equal(t, "online", all["Status"].Value())
	seen := time.UnixMicro(int64(all["LastSeenTimestamp"].Value().(uint64)))
	require.WithinDuration(t, time.Now(), seen, 10*time.Minute, "LastSeenTimestamp is µs realtime")
	var st string
	require.NoError(t, rawCall(t, conn, controllerPath, propsIf+".Get", controllerIf, "Status").Store(&st))
	require.Contains(t, []string{"up", "degraded", "down"}, st)
}

func TestOfflineNode(t *testing.T) {
	tg := setup(t)
	if !tg.double() {
		t.Skip("needs a node that can be taken offline (the double's control hooks)")
	}
	conn := dial(t, tg.addr)
	path := nodePath(t, conn, "node2")
	props := subscribe(t, conn, dbus.WithMatchObjectPath(path), dbus.WithMatchInterface(propsIf))
	tg.harness.SetOnline("node2", false)
	props.wait(t, 5*time.Second, "Status PropertiesChanged", func(s *dbus.Signal) bool {
		ch, _ := s.Body[1].(map[string]dbus.Variant)
		return s.Body[0] == nodeIf && ch["Status"].Value() == "offline"
	})

	err := rawCall(t, conn, path, nodeIf+".StartUnit", "test.service", "replace").Err
	require.Equal(t, "org.eclipse.bluechi.Offline", errName(err))
	require.Equal(t, "Node is offline", errText(err))
	err = rawCall(t, conn, path, nodeIf+".ListUnits").Err
	require.Equal(t, "org.eclipse.bluechi.Offline", errName(err))

	// Property reads still work.
	var status, name, ip string
	require.NoError(t, rawCall(t, conn, path, propsIf+".Get", nodeIf, "Status").Store(&status))
	require.NoError(t, rawCall(t, conn, path, propsIf+".Get", nodeIf, "Name").Store(&name))
	require.NoError(t, rawCall(t, conn, path, propsIf+".Get", nodeIf, "PeerIp").Store(&ip))
	require.Equal(t, "offline", status)
	require.Equal(t, "node2", name)
	require.Equal(t, "", ip)
	var last uint64
	require.NoError(t, rawCall(t, conn, path, propsIf+".Get", nodeIf, "LastSeenTimestamp").Store(&last))
	require.NotZero(t, last)

	var cs string
	require.NoError(t, rawCall(t, conn, controllerPath, propsIf+".Get", controllerIf, "Status").Store(&cs))
	require.Equal(t, "degraded", cs)

	// Controller.ListUnits only asks online nodes.
	var units map[string][]any
	require.NoError(t, rawCall(t, conn, controllerPath, controllerIf+".ListUnits").Store(&units))
	require.NotContains(t, units, "node2")
	require.Contains(t, units, "node1")

	tg.harness.SetOnline("node2", true)
	require.NoError(t, rawCall(t, conn, path, propsIf+".Get", nodeIf, "Status").Store(&status))
	require.Equal(t, "online", status)
}

// startJob starts tg.unit and returns the job path plus the collected JobNew/JobRemoved.
func TestJobLifecycle(t *testing.T) {
	tg := setup(t)
	if tg.unit == "" {
		t.Skipf("set %s to a unit that may be started and stopped on %s", envUnit, tg.node)
	}
	conn := dial(t, tg.addr)
	path := nodePath(t, conn, tg.node)
	sigs := subscribe(t, conn, dbus.WithMatchSender(busName))

	var job1 dbus.ObjectPath
	require.NoError(t, rawCall(t, conn, path, nodeIf+".StartUnit", tg.unit, "replace").Store(&job1))
	require.True(t, strings.HasPrefix(string(job1), "/org/eclipse/bluechi/job/"), job1)
	newSig := sigs.wait(t, 5*time.Second, "JobNew", func(s *dbus.Signal) bool {
		return s.Name == controllerIf+".JobNew" && s.Body[1] == job1
	})
	require.Equal(t, "uo", dbus.SignatureOf(newSig.Body...).String())
	id1 := newSig.Body[0].(uint32)
	require.Equal(t, fmt.Sprintf("/org/eclipse/bluechi/job/%d", id1), string(job1))
	running := false
	removed := sigs.wait(t, 30*time.Second, "JobRemoved", func(s *dbus.Signal) bool {
		if s.Name == propsIf+".PropertiesChanged" && s.Path == job1 && s.Body[0] == jobIf {
			ch, _ := s.Body[1].(map[string]dbus.Variant)
			if ch["State"].Value() == "running" {
				running = true
			}
		}
		return s.Name == controllerIf+".JobRemoved" && s.Body[1] == job1
	})
	require.Equal(t, "uosss", dbus.SignatureOf(removed.Body...).String())
	require.Equal(t, []any{id1, job1, tg.node, tg.unit, "done"}, removed.Body)
	if tg.double() {
		require.True(t, running, "Job PropertiesChanged State=running before JobRemoved")
	} else if !running {
		t.Log("no Job State=running PropertiesChanged seen (systemd may finish a job before it reports running)")
	}
	// The job object is gone once the job ended.
	err := rawCall(t, conn, job1, propsIf+".Get", jobIf, "State").Err
	require.Error(t, err)

	var job2 dbus.ObjectPath
	require.NoError(t, rawCall(t, conn, path, nodeIf+".StopUnit", tg.unit, "replace").Store(&job2))
	sig2 := sigs.wait(t, 5*time.Second, "JobNew", func(s *dbus.Signal) bool {
		return s.Name == controllerIf+".JobNew" && s.Body[1] == job2
	})
	require.Greater(t, sig2.Body[0].(uint32), id1, "job ids increase")
	sigs.wait(t, 30*time.Second, "JobRemoved", func(s *dbus.Signal) bool {
		return s.Name == controllerIf+".JobRemoved" && s.Body[1] == job2
	})
}

func TestStartUnitSystemdError(t *testing.T) {
	tg := setup(t)
	conn := dial(t, tg.addr)
	path := nodePath(t, conn, tg.node)
	sigs := subscribe(t, conn, dbus.WithMatchSender(busName), dbus.WithMatchMember("JobNew"))
	err := rawCall(t, conn, path, nodeIf+".StartUnit", "qmorch-no-such-unit-4711.service", "replace").Err
	require.Equal(t, "org.freedesktop.systemd1.NoSuchUnit", errName(err), "systemd's error passes through")
	sigs.none(t, 300*time.Millisecond, "JobNew for a refused start", func(*dbus.Signal) bool { return true })
}

func TestJobCancel(t *testing.T) {
	tg := setup(t)
	if !tg.double() {
		t.Skip("needs a job that stays running (the double's Hold hook)")
	}
	tg.harness.Node(tg.node).Hold(tg.unit)
	t.Cleanup(func() { tg.harness.Node(tg.node).ReleaseAll() })
	conn := dial(t, tg.addr)
	path := nodePath(t, conn, tg.node)
	sigs := subscribe(t, conn, dbus.WithMatchSender(busName), dbus.WithMatchMember("JobRemoved"))
	var job dbus.ObjectPath
	require.NoError(t, rawCall(t, conn, path, nodeIf+".StartUnit", tg.unit, "replace").Store(&job))
	var jt, state, unit, node string
	var id uint32
	require.NoError(t, rawCall(t, conn, job, propsIf+".Get", jobIf, "JobType").Store(&jt))
	require.NoError(t, rawCall(t, conn, job, propsIf+".Get", jobIf, "Unit").Store(&unit))
	require.NoError(t, rawCall(t, conn, job, propsIf+".Get", jobIf, "Node").Store(&node))
	require.NoError(t, rawCall(t, conn, job, propsIf+".Get", jobIf, "Id").Store(&id))
	require.NoError(t, rawCall(t, conn, job, propsIf+".Get", jobIf, "State").Store(&state))
	require.Equal(t, "start", jt)
	require.Equal(t, tg.unit, unit)
	require.Equal(t, tg.node, node)
	require.Contains(t, []string{"waiting", "running"}, state)
	require.Equal(t, job, dbus.ObjectPath(fmt.Sprintf("/org/eclipse/bluechi/job/%d", id)))

	require.NoError(t, rawCall(t, conn, job, jobIf+".Cancel").Err)
	removed := sigs.wait(t, 5*time.Second, "JobRemoved", func(s *dbus.Signal) bool { return s.Body[1] == job })
	require.Equal(t, "canceled", removed.Body[4])
}

func TestJobDroppedOnDisconnect(t *testing.T) {
	tg := setup(t)
	if !tg.double() {
		t.Skip("needs the double's control hooks")
	}
	tg.harness.Node("node2").Hold("")
	t.Cleanup(func() { tg.harness.Node("node2").ReleaseAll(); tg.harness.SetOnline("node2", true) })
	conn := dial(t, tg.addr)
	path := nodePath(t, conn, "node2")
	sigs := subscribe(t, conn, dbus.WithMatchSender(busName), dbus.WithMatchMember("JobRemoved"))
	var job dbus.ObjectPath
	require.NoError(t, rawCall(t, conn, path, nodeIf+".StartUnit", "test.service", "replace").Store(&job))
	tg.harness.SetOnline("node2", false)
	sigs.none(t, 300*time.Millisecond, "JobRemoved for a dropped job", func(*dbus.Signal) bool { return true })
	require.Error(t, rawCall(t, conn, job, propsIf+".Get", jobIf, "State").Err, "job object gone")
}

func transientProps() []controller.Property {
	type execCmd struct {
		Path   string
		Argv   []string
		Ignore bool
	}
	return []controller.Property{
		{Name: "Type", Value: dbus.MakeVariant("oneshot")},
		{Name: "ExecStart", Value: dbus.MakeVariant([]execCmd{{"/bin/true", []string{"/bin/true"}, false}})},
	}
}

func TestStartTransientUnitAndMonitor(t *testing.T) {
	tg := setup(t)
	connA := dial(t, tg.addr)
	connB := dial(t, tg.addr)
	path := nodePath(t, connA, tg.node)
	unit := fmt.Sprintf("qmorch-conformance-%d.service", time.Now().UnixNano())

	var mon dbus.ObjectPath
	require.NoError(t, rawCall(t, connA, controllerPath, controllerIf+".CreateMonitor").Store(&mon))
	t.Cleanup(func() { rawCall(t, connA, mon, monitorIf+".Close") })
	sigA := subscribe(t, connA, dbus.WithMatchSender(busName))
	// B did not create the monitor: it listens for the same signals and must get none.
	sigB := subscribe(t, connB, dbus.WithMatchSender(busName), dbus.WithMatchInterface(monitorIf))
	var subID uint32
	require.NoError(t, rawCall(t, connA, mon, monitorIf+".Subscribe", tg.node, unit).Store(&subID))

	var job dbus.ObjectPath
	require.NoError(t, rawCall(t, connA, path, nodeIf+".StartTransientUnit", unit, "replace",
		transientProps(), []controller.AuxUnit{}).Store(&job))
	require.False(t, strings.HasPrefix(string(job), "/org/eclipse/bluechi/"), "systemd's job path, not BlueChi's: %s", job)

	sawJobNew := false
	var states []string
	removed := sigA.wait(t, 30*time.Second, "UnitRemoved of the transient unit", func(s *dbus.Signal) bool {
		switch s.Name {
		case controllerIf + ".JobNew":
			sawJobNew = true
		case monitorIf + ".UnitStateChanged":
			require.Equal(t, "sssss", dbus.SignatureOf(s.Body...).String())
			if s.Body[1] == unit {
				states = append(states, s.Body[2].(string)+"/"+s.Body[3].(string)+"/"+s.Body[4].(string))
			}
		case monitorIf + ".UnitNew":
			require.Equal(t, "sss", dbus.SignatureOf(s.Body...).String())
		}
		return s.Name == monitorIf+".UnitRemoved" && s.Body[1] == unit
	})
	require.Equal(t, mon, removed.Path)
	require.Len(t, removed.Body, 3, "UnitRemoved carries node, unit, reason")
	require.Equal(t, []any{tg.node, unit, "real"}, removed.Body)
	require.False(t, sawJobNew, "StartTransientUnit emits no JobNew")
	require.NotEmpty(t, states, "UnitStateChanged seen")
	sigB.none(t, 300*time.Millisecond, "monitor signal on a connection that did not create the monitor",
		func(*dbus.Signal) bool { return true })
}

func TestMonitorWildcardVirtual(t *testing.T) {
	tg := setup(t)
	if !tg.double() {
		t.Skip("needs the double's control hooks to disconnect a node")
	}
	conn := dial(t, tg.addr)
	var mon dbus.ObjectPath
	require.NoError(t, rawCall(t, conn, controllerPath, controllerIf+".CreateMonitor").Store(&mon))
	sigs := subscribe(t, conn, dbus.WithMatchSender(busName), dbus.WithMatchInterface(monitorIf))
	var id uint32
	require.NoError(t, rawCall(t, conn, mon, monitorIf+".Subscribe", "node2", "*").Store(&id))
	isWild := func(member string) func(*dbus.Signal) bool {
		return func(s *dbus.Signal) bool { return s.Name == monitorIf+"."+member && s.Body[1] == "*" }
	}
	s := sigs.wait(t, 5*time.Second, "virtual UnitNew for *", isWild("UnitNew"))
	require.Equal(t, []any{"node2", "*", "virtual"}, s.Body)

	t.Cleanup(func() { tg.harness.SetOnline("node2", true) })
	tg.harness.SetOnline("node2", false)
	s = sigs.wait(t, 5*time.Second, "virtual UnitStateChanged for *", isWild("UnitStateChanged"))
	require.Equal(t, []any{"node2", "*", "inactive", "agent-offline", "virtual"}, s.Body)
	s = sigs.wait(t, 5*time.Second, "virtual UnitRemoved for *", isWild("UnitRemoved"))
	require.Equal(t, []any{"node2", "*", "virtual"}, s.Body)

	tg.harness.SetOnline("node2", true)
	s = sigs.wait(t, 5*time.Second, "virtual UnitNew for * on reconnect", isWild("UnitNew"))
	require.Equal(t, []any{"node2", "*", "virtual"}, s.Body)
}

func TestMonitorClosedWhenOwnerLeaves(t *testing.T) {
	tg := setup(t)
	owner, err := dbus.Dial(tg.addr)
	require.NoError(t, err)
	defer owner.Close()
	require.NoError(t, owner.Auth(nil))
	require.NoError(t, owner.Hello())
	var mon dbus.ObjectPath
	require.NoError(t, rawCall(t, owner, controllerPath, controllerIf+".CreateMonitor").Store(&mon))
	other := dial(t, tg.addr)
	require.NoError(t, rawCall(t, other, mon, monitorIf+".Subscribe", tg.node, "x.service").Err,
		"anyone may call the monitor while it exists")
	owner.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := rawCall(t, other, mon, monitorIf+".Subscribe", tg.node, "x.service").Err
		if err != nil {
			require.Equal(t, "org.freedesktop.DBus.Error.UnknownObject", errName(err))
			return
		}
		require.True(t, time.Now().Before(deadline), "monitor still exists 5s after its owner left")
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAccessDenied(t *testing.T) {
	tg := setup(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper as uid 65534")
	}
	if tg.socket == "" {
		t.Skip("bus address is not a unix:path socket")
	}
	if tg.double() {
		// The private bus lives in 0700 test temp dirs: let uid 65534 reach the socket.
		for d := filepath.Dir(tg.socket); d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
			require.NoError(t, os.Chmod(d, 0o755))
		}
	}
	exe, err := os.Executable()
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "qmorch-conf")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	helper := filepath.Join(dir, "helper")
	copyFile(t, exe, helper)

	ctx := ctxT(t, 30*time.Second)
	cmd := exec.CommandContext(ctx, helper)
	cmd.Env = []string{envHelper + "=" + tg.addr, "PATH=/usr/bin:/bin"}
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "helper output: %s", out)
	require.Contains(t, string(out), "ListNodes org.freedesktop.DBus.Error.AccessDenied", string(out))
	require.Contains(t, string(out), "GetStatus org.freedesktop.DBus.Error.AccessDenied", string(out))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}
