//go:build e2e

// Package e2e runs qmorch against the nspawn testbed (real systemd nodes, QM with real podman and
// Quadlet inside node1 and node2) through the BlueChi test controller. Bring the testbed up first
// (`make testbed-up`, or `make e2e` which does everything).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
	tb "github.com/qmorch/qmorch/tests/testbed"
)

// Nodes of the testbed: host nodes and the ones with a QM partition.
var (
	hostNodes = []string{"control", "node1", "node2"}
	qmNodes   = []string{"node1", "node2"}
)

// suite is the state TestMain sets up for every test.
var suite struct {
	repo       string // repository root
	tbScript   string // tests/testbed/testbed.sh
	qmorch     string // built qmorch binary
	ctrlBin    string // built bluechi-testcontroller
	ctrl       *exec.Cmd
	ctrlDone   chan struct{}
	ctrlLog    *os.File
	busAddress string
	env        map[string]string
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: needs root (nspawn testbed)")
		return 1
	}
	wd, _ := os.Getwd()
	suite.repo = filepath.Clean(filepath.Join(wd, "..", ".."))
	suite.tbScript = filepath.Join(suite.repo, "tests", "testbed", "testbed.sh")
	env, err := readEnv()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v (bring the testbed up with `make testbed-up`)\n", err)
		return 1
	}
	suite.env = env
	work, err := os.MkdirTemp("", "qmorch-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(work)
	// qmorch records deploys in a state dir: keep the suite's records out of /var/lib/qmorch.
	if os.Getenv("QMORCH_STATE_DIR") == "" {
		os.Setenv("QMORCH_STATE_DIR", filepath.Join(work, "state"))
	}
	if err := buildBinaries(work); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := installIntoNodes(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := startController(work); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		stopController()
		return 1
	}
	defer stopController()
	if err := waitOnline(60*time.Second, allNodeNames()...); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// readEnv returns the raw KEY=VALUE map of $TB/testbed.env, read by the testbed package.
func readEnv() (map[string]string, error) {
	env, err := tb.Load("")
	if err != nil {
		return nil, fmt.Errorf("testbed not up: %w", err)
	}
	return env.Raw, nil
}

func refreshEnv(t *testing.T) {
	t.Helper()
	env, err := readEnv()
	require.NoError(t, err)
	suite.env = env
}

func buildBinaries(dir string) error {
	suite.qmorch = filepath.Join(dir, "qmorch")
	suite.ctrlBin = filepath.Join(dir, "bluechi-testcontroller")
	for _, b := range [][2]string{{suite.qmorch, "./cmd/qmorch"}, {suite.ctrlBin, "./tests/cmd/bluechi-testcontroller"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Dir = suite.repo
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	return nil
}

// installIntoNodes puts the qmorch binary into every node's /usr/local/bin (provisioning runs it
// on the node). Written atomically into the node's root tree from the host.
func installIntoNodes() error {
	data, err := os.ReadFile(suite.qmorch)
	if err != nil {
		return err
	}
	for _, n := range hostNodes {
		root := suite.env["NODE_"+n+"_ROOT"]
		if root == "" {
			return fmt.Errorf("testbed.env has no NODE_%s_ROOT", n)
		}
		dir := filepath.Join(root, "usr", "local", "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		tmp := filepath.Join(dir, ".qmorch.tmp")
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, "qmorch")); err != nil {
			return err
		}
	}
	return nil
}

func allNodeNames() []string {
	names := append([]string{}, hostNodes...)
	for _, n := range qmNodes {
		names = append(names, "qm."+n)
	}
	return names
}

// startController runs the BlueChi test double on a private bus with real-systemd backends: each
// host node's system bus and each QM's own system bus (the QM twin "qm.NODE").
func startController(work string) error {
	busDir := filepath.Join(work, "bus")
	if err := os.MkdirAll(busDir, 0o755); err != nil {
		return err
	}
	args := []string{"--bus-dir", busDir}
	for _, n := range hostNodes {
		args = append(args, "--node", n+"="+suite.env["NODE_"+n+"_BUS"])
		if ip := suite.env["NODE_"+n+"_ADDR"]; ip != "" {
			args = append(args, "--peer-ip", n+"=::ffff:"+ip)
		}
	}
	for _, n := range qmNodes {
		args = append(args, "--node", "qm."+n+"="+suite.env["QM_"+n+"_BUS"])
		if ip := suite.env["NODE_"+n+"_ADDR"]; ip != "" {
			args = append(args, "--peer-ip", "qm."+n+"=::ffff:"+ip)
		}
	}
	logf, err := os.Create(filepath.Join(os.TempDir(), "qmorch-e2e-controller.log"))
	if err != nil {
		return err
	}
	suite.ctrlLog = logf
	cmd := exec.Command(suite.ctrlBin, args...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start test controller: %w", err)
	}
	suite.ctrl = cmd
	suite.ctrlDone = make(chan struct{})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { _ = cmd.Wait(); close(suite.ctrlDone) }()
	select {
	case l, ok := <-lines:
		if !ok || !strings.HasPrefix(l, "BUS=") {
			return fmt.Errorf("test controller did not print BUS= (got %q); log: %s", l, logf.Name())
		}
		suite.busAddress = strings.TrimPrefix(l, "BUS=")
	case <-time.After(30 * time.Second):
		return errors.New("test controller did not start within 30s")
	}
	return nil
}

// stopController ends the test double we started (by PID) and waits for it.
func stopController() {
	if suite.ctrl == nil || suite.ctrl.Process == nil {
		return
	}
	_ = suite.ctrl.Process.Signal(syscall.SIGTERM)
	select {
	case <-suite.ctrlDone:
	case <-time.After(10 * time.Second):
		_ = suite.ctrl.Process.Kill()
		<-suite.ctrlDone
	}
	if suite.ctrlLog != nil {
		suite.ctrlLog.Close()
	}
}

func newClient(ctx context.Context) (*controller.Client, error) {
	return controller.New(ctx, controller.WithAddress(suite.busAddress))
}

// client returns a controller client on the test controller's bus, closed when the test ends.
func client(t *testing.T) *controller.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := newClient(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// waitOnline waits until every named node is online on the controller.
func waitOnline(timeout time.Duration, names ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := newClient(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var missing []string
	for {
		nodes, err := c.ListNodes(ctx)
		if err == nil {
			status := map[string]controller.NodeStatus{}
			for _, n := range nodes {
				status[n.Name] = n.Status
			}
			missing = missing[:0]
			for _, n := range names {
				if status[n] != controller.NodeOnline {
					missing = append(missing, n)
				}
			}
			if len(missing) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodes not online within %s: %v (last error: %v)", timeout, missing, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// testbedEnv gives tests the testbed's paths.
type testbed struct{ env map[string]string }

func testbedEnv(t *testing.T) testbed {
	t.Helper()
	return testbed{env: suite.env}
}

// NodeRoot is the host path of the node's root directory (its overlay).
func (tb testbed) NodeRoot(node string) string { return tb.env["NODE_"+node+"_ROOT"] }

// QMEtc is the host path of the node's /etc/qm (QM's /etc).
func (tb testbed) QMEtc(node string) string { return tb.env["QM_"+node+"_ETC"] }

// runQmorch runs the qmorch binary with the test controller's bus address and returns its output
// and exit code. A run that does not end within 3 minutes fails the test.
func runQmorch(t *testing.T, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.qmorch, args...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+suite.busAddress)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		exit = ee.ExitCode()
	default:
		t.Fatalf("run qmorch %v: %v", args, err)
	}
	t.Logf("qmorch %s -> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), exit, o.String(), e.String())
	return o.String(), e.String(), exit
}

// testbedCmd runs tests/testbed/testbed.sh with argv (no shell interpolation of test data).
func testbedCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{suite.tbScript}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	require.NoError(t, err, "testbed.sh %v: %s", args, e.String())
	return o.String()
}

// testbedTry is testbedCmd for commands that may fail (cleanup): it returns the output and error.
func testbedTry(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{suite.tbScript}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("testbed.sh %v: %w: %s", args, err, e.String())
	}
	return o.String(), nil
}

// qmTry runs argv inside the node's QM partition and returns its error instead of failing the
// test (e.g. stopping a unit that may not be loaded).
func qmTry(node string, argv ...string) (string, error) {
	return testbedTry(append([]string{"qm-exec", node}, argv...)...)
}

// nodeExec runs argv inside a host node (nsenter; quick checks only).
func nodeExec(t *testing.T, node string, argv ...string) string {
	t.Helper()
	return testbedCmd(t, append([]string{"exec", node}, argv...)...)
}

// qmExec runs argv inside the node's QM partition.
func qmExec(t *testing.T, node string, argv ...string) string {
	t.Helper()
	return testbedCmd(t, append([]string{"qm-exec", node}, argv...)...)
}

// unitState reads ActiveState/SubState of unit on a BlueChi node through the controller.
func unitState(t *testing.T, c *controller.Client, node, unit string) (active, sub string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.GetNode(ctx, node)
	require.NoError(t, err)
	props, err := n.GetUnitProperties(ctx, unit, "org.freedesktop.systemd1.Unit")
	require.NoError(t, err)
	a, _ := props["ActiveState"].Value().(string)
	s, _ := props["SubState"].Value().(string)
	return a, s
}
