package testbed

import (
	"errors"
	"os"
	"testing"

	"github.com/godbus/dbus/v5"
)

// TestLiveBuses connects to every node bus and QM bus of a running testbed the way qmorch does
// (godbus Dial + EXTERNAL Auth as root + Hello) and reads systemd's SystemState. Skipped when the
// testbed is not up.
func TestLiveBuses(t *testing.T) {
	e, err := Load("")
	if errors.Is(err, ErrNotUp) || os.Geteuid() != 0 {
		t.Skip("testbed not up (make testbed-up) or not root")
	}
	if err != nil {
		t.Fatal(err)
	}
	check := func(what, addr string) {
		conn, err := dbus.Dial(addr)
		if err != nil {
			t.Fatalf("%s: dial %s: %v", what, addr, err)
		}
		defer conn.Close()
		if err := conn.Auth(nil); err != nil {
			t.Fatalf("%s: auth: %v", what, err)
		}
		if err := conn.Hello(); err != nil {
			t.Fatalf("%s: hello: %v", what, err)
		}
		v, err := conn.Object("org.freedesktop.systemd1", "/org/freedesktop/systemd1").
			GetProperty("org.freedesktop.systemd1.Manager.SystemState")
		if err != nil {
			t.Fatalf("%s: SystemState: %v", what, err)
		}
		t.Logf("%s: %s", what, v.Value())
	}
	for _, name := range e.Order {
		n := e.Nodes[name]
		if n.PID == 0 {
			t.Logf("%s: not running", name)
			continue
		}
		check("node "+name, n.Bus)
		if n.QMBus != "" {
			check("qm "+name, n.QMBus)
		}
	}
}
