//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// statusProbe is the Quadlet the status tests deploy (its own name: other suites use theirs).
const statusProbe = "statusprobe.container"

func deployStatusProbe(t *testing.T) {
	t.Helper()
	for _, n := range qmNodes {
		resetNested(t, n, statusProbe)
	}
	t.Cleanup(func() {
		for _, n := range qmNodes {
			resetNested(t, n, statusProbe)
		}
	})
	src := filepath.Join(t.TempDir(), statusProbe)
	require.NoError(t, os.WriteFile(src, []byte("[Container]\nImage=localhost/busybox:latest\nExec=sleep infinity\nPodmanArgs=--init\n\n[Service]\nSuccessExitStatus=143\n"), 0o644))
	_, _, exit := runQmorch(t, "deploy", "node1,node2", src)
	require.Equal(t, 0, exit)
}

// Acceptance 1 (status part): `status` shows both QM twins and the unit states.
func TestStatusShowsTwinsAndUnits(t *testing.T) {
	deployStatusProbe(t)
	stdout, _, exit := runQmorch(t, "status")
	require.Equal(t, 0, exit)
	rows := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n")[1:] {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	for _, n := range qmNodes {
		require.Equal(t, []string{n, "online", "online"}, rows[n][:3], "node %s with its QM twin", n)
	}
	require.Equal(t, "-", rows["control"][2], "control has no QM twin")

	stdout, _, exit = runQmorch(t, "status", "node1,node2", "statusprobe")
	require.Equal(t, 0, exit)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 3)
	for i, n := range qmNodes {
		f := strings.Fields(lines[i+1])
		require.Equal(t, []string{"qm." + n, "statusprobe.service", "loaded", "active", "running"}, f[:5])
		require.Contains(t, f[len(f)-1], statusProbe, "SOURCE is the Quadlet file")
	}
}

// watchProc is `qmorch status -w` running in the background, its stdout read line by line.
type watchProc struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{}
	mu    sync.Mutex
	all   []string
	errb  bytes.Buffer
}

func startWatch(t *testing.T, args ...string) *watchProc {
	t.Helper()
	w := &watchProc{lines: make(chan string, 1024), done: make(chan struct{})}
	w.cmd = exec.Command(suite.qmorch, append([]string{"status"}, args...)...)
	w.cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+suite.busAddress)
	w.cmd.Stderr = &w.errb
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := w.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, w.cmd.Start())
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			w.mu.Lock()
			w.all = append(w.all, sc.Text())
			w.mu.Unlock()
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			_ = w.cmd.Process.Kill() // only our child, by PID
			_ = w.cmd.Wait()
		}
		w.mu.Lock()
		t.Logf("status -w output:\n%s\nstderr:\n%s", strings.Join(w.all, "\n"), w.errb.String())
		w.mu.Unlock()
	})
	return w
}

// expect waits (bounded, to fail instead of hang) until lines matching every pattern were
// printed, in any order: unit events and node status signals travel separately.
func (w *watchProc) expect(t *testing.T, timeout time.Duration, patterns ...[]string) {
	t.Helper()
	left := append([][]string(nil), patterns...)
	deadline := time.After(timeout)
	for len(left) > 0 {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("status -w ended while waiting for %q", left)
			}
			for i, parts := range left {
				match := true
				for _, p := range parts {
					match = match && strings.Contains(l, p)
				}
				if match {
					left = append(left[:i], left[i+1:]...)
					break
				}
			}
		case <-deadline:
			t.Fatalf("status -w printed no line with %q within %s", left, timeout)
		}
	}
}

// Acceptance 2: `status -w` prints the transition when the unit is stopped from another
// process, prints node2 going offline when it is stopped, and picks it up again after start.
func TestStatusWatchFollowsUnitsAndNodes(t *testing.T) {
	deployStatusProbe(t)
	w := startWatch(t, "node1,node2", "statusprobe", "-w")
	w.expect(t, 30*time.Second,
		[]string{"qm.node1", "statusprobe.service", "active/running"},
		[]string{"qm.node2", "statusprobe.service", "active/running"},
		[]string{"qm.node2", " node ", "online"})

	// Stopped from another process: systemctl inside node1's QM.
	qmExec(t, "node1", "systemctl", "stop", "statusprobe.service")
	w.expect(t, 30*time.Second, []string{"qm.node1", "statusprobe.service", "inactive/dead"})

	testbedCmd(t, "node-stop", "node2")
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			testbedCmd(t, "node-start", "node2")
			refreshEnv(t)
			require.NoError(t, waitOnline(90*time.Second, "node2", "qm.node2"))
		}
	})
	w.expect(t, 60*time.Second,
		[]string{" node2 ", " node ", "offline"},
		[]string{"qm.node2", " node ", "offline"})

	testbedCmd(t, "node-start", "node2")
	restarted = true
	refreshEnv(t)
	w.expect(t, 90*time.Second,
		[]string{" node2 ", " node ", "online"},
		[]string{"qm.node2", " node ", "online"})
	// The subscription carried over: a start inside the restarted QM is reported.
	qmExec(t, "node2", "systemctl", "start", "statusprobe.service")
	w.expect(t, 60*time.Second, []string{"qm.node2", "statusprobe.service", "active/running"})

	// Ctrl-C ends the watch with exit 0.
	require.NoError(t, w.cmd.Process.Signal(os.Interrupt))
	err := w.cmd.Wait()
	require.NoError(t, err, "status -w exits 0 on Ctrl-C; stderr: %s", w.errb.String())
}
