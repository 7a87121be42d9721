package testbed

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	env := `# comment
TB=/x
TB_NODES="control node1"
TB_QM_NODES="node1"
NODE_control_BUS=unix:path=/x/nodes/control/dbus/system_bus_socket
NODE_control_PID=10
NODE_node1_BUS=unix:path=/x/nodes/node1/dbus/system_bus_socket
NODE_node1_PID=
NODE_node1_ADDR=10.231.7.12
QM_node1_BUS=unix:path=/x/nodes/node1/qmdbus/system_bus_socket
QM_node1_PID=42
`
	if err := os.WriteFile(filepath.Join(dir, "testbed.env"), []byte(env), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := e.Node("node1")
	if err != nil {
		t.Fatal(err)
	}
	if n.QMBus != "unix:path=/x/nodes/node1/qmdbus/system_bus_socket" || n.QMPID != 42 || n.PID != 0 || n.Addr != "10.231.7.12" {
		t.Fatalf("node1: %+v", n)
	}
	if c, _ := e.Node("control"); c.PID != 10 || c.QMBus != "" {
		t.Fatalf("control: %+v", c)
	}
	if _, err := e.Node("nope"); err == nil {
		t.Fatal("want error")
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNotUp) {
		t.Fatalf("want ErrNotUp, got %v", err)
	}
}
