package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/deploy"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

// noHangRun runs one command line in-process and fails if it has not returned after a
// generous grace period (the defects tested here were hangs).
func noHangRun(t *testing.T, d deps, args ...string) int {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, d) }()
	select {
	case code := <-done:
		return code
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("qmorch %s did not return: it blocks", strings.Join(args, " "))
		return -1
	}
}

func localRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = noHangRun(t, deps{streams: IOStreams{In: strings.NewReader(""), Out: &o, ErrOut: &e}}, args...)
	return o.String(), e.String(), code
}

// mkSpecial makes a special file at p: "fifo", "chr" (a /dev/zero device node; skips the test
// without root), "dir", "zero" (symlink to /dev/zero), "big" (MaxFileSize+1 bytes).
func mkSpecial(t *testing.T, p, kind string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	switch kind {
	case "fifo":
		require.NoError(t, syscall.Mkfifo(p, 0o644))
	case "chr":
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o644, 1<<8|5); err != nil {
			t.Skipf("mknod (needs root): %v", err)
		}
	case "dir":
		require.NoError(t, os.Mkdir(p, 0o755))
	case "zero":
		require.NoError(t, os.Symlink("/dev/zero", p))
	case "big":
		require.NoError(t, os.WriteFile(p, append([]byte("[Container]\nImage=x\n#"), make([]byte, deploy.MaxFileSize)...), 0o644))
	default:
		t.Fatalf("bad kind %q", kind)
	}
}

// Defect 1: deploy read its FILE with os.ReadFile: /dev/zero grew memory without bound, a FIFO
// or /dev/stdin blocked forever. Now only a regular file of at most 1 MiB is read (exit 2).
func TestDeployRefusesSpecialFiles(t *testing.T) {
	tests := []struct {
		kind, file string
		want       string
	}{
		{"zero", "zero.container", "zero.container: not a regular file (character device)"},
		{"fifo", "fifo.container", "fifo.container: not a regular file (FIFO)"},
		{"chr", "chr.container", "chr.container: not a regular file (character device)"},
		{"dir", "dir.container", "dir.container: not a regular file (directory)"},
		{"big", "big.container", fmt.Sprintf("big.container: file is %d bytes, more than the %d bytes", deploy.MaxFileSize+21, deploy.MaxFileSize)},
	}
	for _, tc := range tests {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			dir, root := t.TempDir(), t.TempDir()
			file := filepath.Join(dir, tc.file)
			mkSpecial(t, file, tc.kind)
			out, errOut, code := localRun(t, "deploy", "--root", root, file)
			require.Equal(t, ExitUsage, code, "stdout %s\nstderr %s", out, errOut)
			require.Contains(t, errOut, tc.want)
			entries, err := os.ReadDir(root)
			require.NoError(t, err)
			require.Empty(t, entries, "nothing written")
		})
	}
	t.Run("stdin", func(t *testing.T) {
		// /dev/stdin as the file (a pipe in tests, a tty or pipe in real use): refused by name,
		// before anything is opened.
		_, errOut, code := localRun(t, "deploy", "--root", t.TempDir(), "/dev/stdin")
		require.Equal(t, ExitUsage, code)
		require.Contains(t, errOut, `file name "stdin"`)
	})
	t.Run("stdin symlink", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "in.container")
		require.NoError(t, os.Symlink("/dev/stdin", file))
		r, w, err := os.Pipe()
		require.NoError(t, err)
		defer r.Close()
		defer w.Close()
		// Point this process's stdin at a pipe nobody writes to: a read would block forever.
		old, err := syscall.Dup(0)
		require.NoError(t, err)
		require.NoError(t, syscall.Dup2(int(r.Fd()), 0))
		defer func() { _ = syscall.Dup2(old, 0); _ = syscall.Close(old) }()
		_, errOut, code := localRun(t, "deploy", "--root", t.TempDir(), file)
		require.Equal(t, ExitUsage, code)
		require.Contains(t, errOut, "in.container: not a regular file (FIFO)")
	})
	t.Run("missing file stays a usage error", func(t *testing.T) {
		_, errOut, code := localRun(t, "deploy", "--root", t.TempDir(), filepath.Join(t.TempDir(), "none.container"))
		require.Equal(t, ExitUsage, code)
		require.Contains(t, errOut, "none.container: no such file or directory")
	})
}

// Defect 1, trees: a FIFO or device among the files read under --root hung config show, qm show,
// provision (and qm set / deploy --root at the destination). Each is now refused, naming the
// file, or replaced when it is only a write destination.
func TestRootTreeSpecialFiles(t *testing.T) {
	agentTree := func(t *testing.T) string {
		return provTree(t, map[string]string{
			"usr/share/bluechi-agent/config/agent.conf": "[bluechi-agent]\n",
			provAgentConf: "[bluechi-agent]\nNodeName=node1\nControllerHost=10.0.0.1\n",
		})
	}
	for _, kind := range []string{"fifo", "chr"} {
		t.Run("config show drop-in "+kind, func(t *testing.T) {
			root := agentTree(t)
			mkSpecial(t, filepath.Join(root, "etc/bluechi/agent.conf.d/10-f.conf"), kind)
			_, errOut, code := localRun(t, "config", "show", "--root", root)
			require.NotEqual(t, 0, code)
			require.Contains(t, errOut, "/etc/bluechi/agent.conf.d/10-f.conf: not a regular file")
		})
		t.Run("config show main file "+kind, func(t *testing.T) {
			root := agentTree(t)
			require.NoError(t, os.Remove(filepath.Join(root, provAgentConf)))
			mkSpecial(t, filepath.Join(root, provAgentConf), kind)
			_, errOut, code := localRun(t, "config", "show", "--root", root)
			require.NotEqual(t, 0, code)
			require.Contains(t, errOut, "/etc/bluechi/agent.conf: not a regular file")
		})
		t.Run("provision qm-agent "+kind, func(t *testing.T) {
			root := agentTree(t)
			mkSpecial(t, filepath.Join(root, "etc/bluechi/agent.conf.d/10-f.conf"), kind)
			_, errOut, code := localRun(t, "provision", "qm-agent", "--root", root, "--dry-run")
			require.NotEqual(t, 0, code)
			require.Contains(t, errOut, "10-f.conf: not a regular file")
		})
		t.Run("qm show drop-in "+kind, func(t *testing.T) {
			root := qmTree(t)
			mkSpecial(t, filepath.Join(root, "etc/containers/systemd/qm.container.d/20-f.conf"), kind)
			_, errOut, code := localRun(t, "qm", "show", "--root", root)
			require.NotEqual(t, 0, code)
			require.Contains(t, errOut, "/etc/containers/systemd/qm.container.d/20-f.conf: not a regular file")
		})
	}
	t.Run("qm set replaces a FIFO at its destination", func(t *testing.T) {
		root := qmTree(t)
		dest := filepath.Join(root, "etc/containers/systemd/qm.container.d/50-qmorch-memory-high.conf")
		mkSpecial(t, dest, "fifo")
		_, errOut, code := localRun(t, "qm", "set", "--root", root, "MemoryHigh=2G")
		require.Equal(t, 0, code, errOut)
		fi, err := os.Lstat(dest)
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular())
	})
	t.Run("deploy --root replaces a FIFO at its destination", func(t *testing.T) {
		root, dir := t.TempDir(), t.TempDir()
		file := filepath.Join(dir, "web.container")
		require.NoError(t, os.WriteFile(file, []byte("[Container]\nImage=quay.io/x/y\n"), 0o644))
		dest := filepath.Join(root, deploy.DefaultRWETCFS, "containers/systemd/web.container")
		mkSpecial(t, dest, "fifo")
		_, errOut, code := localRun(t, "deploy", "--root", root, file)
		require.Equal(t, 0, code, errOut)
		b, err := os.ReadFile(dest)
		require.NoError(t, err)
		require.Equal(t, "[Container]\nImage=quay.io/x/y\n", string(b))
	})
}

// silentSocket accepts connections and never writes: a "bus" that hangs the D-Bus handshake.
func silentSocket(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "silent.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return "unix:path=" + sock
}

// Defect 3: a bus socket that accepts but never answers hung every command, --timeout ignored.
func TestConnectSilentBusTimesOut(t *testing.T) {
	addr := silentSocket(t)
	for _, args := range [][]string{
		{"status"},
		{"status", "-w"},
		{"list"},
		{"restart", "node1", "web.service", "--settle", "0"},
		{"qm", "show", "node1"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var o, e bytes.Buffer
			d := deps{streams: IOStreams{In: strings.NewReader(""), Out: &o, ErrOut: &e}, connect: connectController}
			code := noHangRun(t, d, append(args, "--timeout", "300ms", "--bus-address", addr)...)
			require.Equal(t, ExitUnreachable, code, e.String())
			require.Contains(t, e.String(), "connect to the BlueChi controller (--timeout 300ms): controller bus "+addr+" did not answer within the timeout")
		})
	}
}

// Defect 2: after the first SIGINT/SIGTERM the default handling is back, so a second one kills
// a process stuck in something that ignores the context. Runs this test binary as the child.
func TestNotifyContextSecondSignalKills(t *testing.T) {
	if os.Getenv("QMORCH_SIGNAL_CHILD") == "1" {
		ctx, stop := notifyContext(context.Background())
		defer stop()
		fmt.Println("ready")
		<-ctx.Done()
		fmt.Println("first")
		select {} // ignore the context from now on: only the default action can end this
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestNotifyContextSecondSignalKills$")
			cmd.Env = append(os.Environ(), "QMORCH_SIGNAL_CHILD=1")
			stdout, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			lines := bufio.NewScanner(stdout)
			require.True(t, lines.Scan())
			require.Equal(t, "ready", lines.Text())
			require.NoError(t, cmd.Process.Signal(sig))
			require.True(t, lines.Scan())
			require.Equal(t, "first", lines.Text(), "the first signal cancels the context")
			// Default handling is restored right after ctx is done, in a goroutine: repeat the
			// signal until it takes (a signal that races the restore is only consumed).
			waited := make(chan error, 1)
			go func() { waited <- cmd.Wait() }()
			var werr error
		loop:
			for i := 0; ; i++ {
				require.NoError(t, cmd.Process.Signal(sig))
				select {
				case werr = <-waited:
					break loop
				case <-time.After(100 * time.Millisecond):
					require.Less(t, i, 300, "the second signal did not kill the process")
				}
			}
			var ee *exec.ExitError
			require.ErrorAs(t, werr, &ee)
			ws := ee.Sys().(syscall.WaitStatus)
			require.True(t, ws.Signaled(), "killed by the signal, got %v", werr)
			require.Equal(t, sig, ws.Signal())
		})
	}
}

// Defect 2 on the real binary: SIGINT ends `status -w` cleanly, and ends a connect to a silent
// bus long before its --timeout.
func TestSignalBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if !testcontroller.IsRoot() {
		t.Skip("the test controller's bus admits only root")
	}
	bin := filepath.Join(buildQmorchBinary(t, "v0.0.0-test", "0000000"), "qmorch")
	h := testcontroller.Start(t, testcontroller.WithMemoryNodes("node1", "qm.node1"))
	silent := silentSocket(t)

	start := func(t *testing.T, args ...string) (*exec.Cmd, *bufio.Scanner, *bytes.Buffer) {
		cmd := exec.Command(bin, args...)
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		return cmd, bufio.NewScanner(stdout), &errOut
	}
	t.Run("status -w: first SIGINT exits cleanly", func(t *testing.T) {
		cmd, lines, errOut := start(t, "status", "-w", "--bus-address", h.Address)
		require.True(t, lines.Scan(), "first watch line; stderr: %s", errOut)
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		for lines.Scan() {
		}
		err := cmd.Wait()
		require.NoError(t, err, "stderr: %s", errOut)
	})
	t.Run("silent bus: SIGINT ends the connect", func(t *testing.T) {
		cmd, _, errOut := start(t, "status", "--timeout", "1h", "--bus-address", silent)
		// Wait until the connection is made (the command is then in the handshake).
		require.Eventually(t, func() bool { return connectionsTo(t, strings.TrimPrefix(silent, "unix:path=")) }, 20*time.Second, 20*time.Millisecond)
		require.NoError(t, cmd.Process.Signal(os.Interrupt))
		err := cmd.Wait()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		require.False(t, ee.Sys().(syscall.WaitStatus).Signaled(), "exited on its own")
		require.Contains(t, errOut.String(), "qmorch: interrupted")
	})
}

// connectionsTo says whether a unix socket has a connected peer (from /proc/net/unix).
func connectionsTo(t *testing.T, sock string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/net/unix")
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(line, " "+sock) {
			n++
		}
	}
	return n > 1 // the listener and at least one accepted connection
}
