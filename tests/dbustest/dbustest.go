// Package dbustest runs a private dbus-daemon for tests and for the BlueChi test double.
// The bus policy copies what a BlueChi install ships: only root may talk to org.eclipse.bluechi.
package dbustest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Daemon is a dbus-daemon process this package started.
type Daemon struct {
	Address string // unix:path=... D-Bus address of the bus
	Socket  string // the socket path
	cmd     *exec.Cmd
	done    chan struct{}
	stderr  bytes.Buffer
}

// Config text for the private bus. When rootOnly is set, everyone may connect but only uid 0 may
// send to org.eclipse.bluechi (the real package's policy), so access-denied paths can be tested.
func configText(socket string, rootOnly bool) string {
	policy := `<policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <allow user="*"/>
  </policy>`
	if rootOnly {
		policy = `<policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
    <deny send_destination="org.eclipse.bluechi"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.eclipse.bluechi"/>
    <allow own="org.eclipse.bluechi"/>
  </policy>`
	}
	return fmt.Sprintf(`<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  %s
  <limit name="max_replies_per_connection">50000</limit>
  <limit name="max_connections_per_user">4096</limit>
  <limit name="max_match_rules_per_connection">50000</limit>
</busconfig>
`, socket, policy)
}

// Start launches dbus-daemon with its socket and config in dir (which must exist) and waits
// until the socket accepts connections or the timeout passes.
func Start(ctx context.Context, dir string, rootOnly bool) (*Daemon, error) {
	socket := filepath.Join(dir, "bus.sock")
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(configText(socket, rootOnly)), 0o644); err != nil {
		return nil, fmt.Errorf("dbus-daemon config: %w", err)
	}
	d := &Daemon{Address: "unix:path=" + socket, Socket: socket, done: make(chan struct{})}
	d.cmd = exec.Command("dbus-daemon", "--nofork", "--nopidfile", "--config-file="+conf)
	d.cmd.Stderr = &d.stderr
	// Own process group: a Ctrl-C meant for the test runner must not kill the bus first.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dbus-daemon: %w", err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		// The socket file appears before dbus-daemon listens on it: wait for a real connect.
		if c, err := net.DialTimeout("unix", socket, time.Second); err == nil {
			c.Close()
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("dbus-daemon exited: %s", d.stderr.String())
		case <-ctx.Done():
			d.Stop()
			return nil, ctx.Err()
		case <-deadline.C:
			d.Stop()
			return nil, errors.New("dbus-daemon: socket did not appear within 10s")
		case <-tick.C:
		}
	}
}

// Stop ends the daemon (only the process this package started) and waits for it.
func (d *Daemon) Stop() {
	if d == nil || d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// New starts a private bus for a test and stops it when the test ends.
func New(t testing.TB, rootOnly bool) *Daemon {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		t.Skip("dbus-daemon not installed")
	}
	dir := t.TempDir()
	// Unix socket paths are limited to 108 bytes; t.TempDir can be long.
	if len(dir) > 80 {
		d, err := os.MkdirTemp("", "qmbus")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	d, err := Start(context.Background(), dir, rootOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}
