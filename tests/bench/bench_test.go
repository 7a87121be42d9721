// Package bench measures qmorch against the BlueChi test double with in-memory nodes:
// deploy fan-out (parallel qmorch vs. a sequential per-node loop), status of a large fleet
// through the built binary, start-up time and peak RSS. tests/bench/run.sh turns the output of
// `go test -bench` into the Markdown table in README.md ("Performance").
//
// QMORCH_BIN names the built binary for the end-to-end benchmarks (run.sh sets it); without
// it those are skipped. BENCH_SHORT=1 limits the fan-out to N <= 32.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/deploy"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

// The unit every benchmark deploys: a Quadlet file whose service exists on every memory twin.
const (
	benchFile = "bench.container"
	benchUnit = "bench.service"
)

var benchContent = []byte("[Container]\nImage=localhost/busybox:latest\nExec=sleep infinity\n")

func short() bool { return os.Getenv("BENCH_SHORT") != "" }

func sizes() []int {
	if short() {
		return []int{1, 8, 32}
	}
	return []int{1, 8, 32, 128}
}

// nodeModel is how long the in-memory nodes take for what real nodes take time for.
type nodeModel struct {
	name      string
	job       time.Duration // every job on a twin (start of the nested unit)
	call      time.Duration // every call to a node (agent round trip)
	reload    time.Duration // daemon-reload on a twin, on top of call
	transient time.Duration // run time of the delivery unit on a host (0: 1 ms)
}

// testbedModel models the real-systemd testbed (docs/testbed.md, README timings): a D-Bus
// call to a node 6-12 ms end to end (~5 ms of it the node), daemon-reload on a QM node
// ~150 ms, a nested container start 100-260 ms, the delivery oneshot ~30 ms.
var testbedModel = nodeModel{name: "testbed-model", job: 150 * time.Millisecond, call: 5 * time.Millisecond,
	reload: 150 * time.Millisecond, transient: 30 * time.Millisecond}

// fleet starts the test controller with n host nodes (h000...) and their QM twins
// (qm.h000...), each twin with benchUnit plus units filler units; jobDelay is the time every
// job on a twin takes.
func fleet(b testing.TB, n, units int, jobDelay time.Duration) (*testcontroller.Harness, []string) {
	return fleetModel(b, n, units, nodeModel{job: jobDelay})
}

// fleetModel is fleet with the node timings of m.
func fleetModel(b testing.TB, n, units int, m nodeModel) (*testcontroller.Harness, []string) {
	b.Helper()
	if !testcontroller.IsRoot() {
		b.Skip("the test controller's bus admits only root")
	}
	var nodes []*testcontroller.MemoryNode
	var hosts []string
	for i := range n {
		host := fmt.Sprintf("h%03d", i)
		hosts = append(hosts, host)
		twinUnits := append(testcontroller.FillerUnits("u", units), testcontroller.UnitSpec{Name: benchUnit, Description: "bench"})
		twin := testcontroller.NewMemoryNode("qm."+host, twinUnits...)
		twin.SetJobDelay(m.job)
		twin.SetCallDelay(m.call)
		twin.SetReloadDelay(m.reload)
		hostNode := testcontroller.NewMemoryNode(host, testcontroller.UnitSpec{Name: "bluechi-agent.service", ActiveState: "active"})
		hostNode.SetCallDelay(m.call)
		hostNode.SetTransientDelay(m.transient)
		nodes = append(nodes, hostNode, twin)
	}
	// pprof label: CPU profiles of the bench tell the double's goroutines (and the godbus
	// reader of its connection, which inherits the label) from qmorch's.
	var h *testcontroller.Harness
	pprof.Do(context.Background(), pprof.Labels("side", "double"), func(context.Context) {
		h = testcontroller.Start(b, testcontroller.WithMemoryNodes(), testcontroller.WithNodes(nodes...))
	})
	// Memory nodes register asynchronously: wait (on the Status signals) until all are online.
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name())
	}
	if err := deploy.New(deploy.FromClient(client(b, h)), deploy.WithTimeout(time.Minute)).WaitOnline(context.Background(), names); err != nil {
		b.Fatal(err)
	}
	return h, hosts
}

func client(b testing.TB, h *testcontroller.Harness) *controller.Client {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var c *controller.Client
	var err error
	pprof.Do(ctx, pprof.Labels("side", "qmorch"), func(ctx context.Context) {
		c, err = controller.New(ctx, controller.WithAddress(h.Address))
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

func deployOnce(ctx context.Context, d *deploy.Deployer, nodes []string) error {
	rep, err := d.Deploy(ctx, deploy.Request{Nodes: nodes, File: benchFile, Source: benchFile, Content: benchContent})
	if err != nil {
		return err
	}
	if f := rep.Failed(); f > 0 {
		return fmt.Errorf("%d nodes failed", f)
	}
	return nil
}

// BenchmarkDeploy deploys one unit to N nodes (job<delay>ms/<mode>/N<n>): mode qmorch is one parallel qmorch deploy,
// mode sequential the per-node loop scripts use with bluechictl (one node after another, each
// waited for). The delay is the time each job takes on a twin (0: the memory backend finishes at
// once, so the numbers are qmorch + D-Bus overhead; 100ms: about a nested container start on
// the testbed).
//
// The testbed-model rows (qmorch mode only: the sequential loop would take ~n x 0.4 s) give the
// memory nodes the latencies of testbedModel.
func BenchmarkDeploy(b *testing.B) {
	models := []nodeModel{{name: "job0ms"}, {name: "job100ms", job: 100 * time.Millisecond}, testbedModel}
	for _, m := range models {
		for _, mode := range []string{"qmorch", "sequential"} {
			if m.name == testbedModel.name && mode == "sequential" {
				continue
			}
			for _, n := range sizes() {
				b.Run(fmt.Sprintf("%s/%s/N%d", m.name, mode, n), func(b *testing.B) {
					h, hosts := fleetModel(b, n, 0, m)
					d := deploy.New(deploy.FromClient(client(b, h)), deploy.WithSettle(0), deploy.WithTimeout(5*time.Minute))
					ctx := pprof.WithLabels(context.Background(), pprof.Labels("side", "qmorch"))
					pprof.SetGoroutineLabels(ctx)
					b.ResetTimer()
					for range b.N {
						if mode == "qmorch" {
							if err := deployOnce(ctx, d, hosts); err != nil {
								b.Fatal(err)
							}
							continue
						}
						for _, host := range hosts {
							if err := deployOnce(ctx, d, []string{host}); err != nil {
								b.Fatal(err)
							}
						}
					}
				})
			}
		}
	}
}

func qmorchBin(b *testing.B) string {
	b.Helper()
	bin := os.Getenv("QMORCH_BIN")
	if bin == "" {
		b.Skip("QMORCH_BIN not set (tests/bench/run.sh builds and sets it)")
	}
	return bin
}

// runBin runs the binary once and returns its peak RSS in KiB.
func runBin(b *testing.B, bin, bus string, args ...string) int64 {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+bus)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, errOut.String())
	}
	return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
}

// BenchmarkStatusBinary runs the built binary end to end (process start included) on 100 QM
// twins with 50 units each: --units (every loaded unit, one Controller.ListUnits) and 50 named
// units (5000 GetUnitProperties, with SINCE and SOURCE).
func BenchmarkStatusBinary(b *testing.B) {
	bin := qmorchBin(b)
	h, _ := fleet(b, 100, 49, 0) // 49 fillers + bench.service = 50 units per twin
	named := []string{"status", "--all"}
	for i := range 49 {
		named = append(named, fmt.Sprintf("u-%d", i))
	}
	named = append(named, benchUnit)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"units-all", []string{"status", "--all", "--units"}},
		{"units-named", named},
		{"nodes", []string{"status"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if short() && tc.name == "units-named" {
				b.Skip("BENCH_SHORT")
			}
			for range b.N {
				runBin(b, bin, h.Address, tc.args...)
			}
		})
	}
}

// BenchmarkVersionStartup is `qmorch --version`: process start-up.
func BenchmarkVersionStartup(b *testing.B) {
	bin := qmorchBin(b)
	for range b.N {
		runBin(b, bin, "unix:path=/nonexistent", "--version")
	}
}

// BenchmarkDeployBinary128 is `qmorch deploy --all` to 128 nodes through the binary; it
// reports the peak RSS of the qmorch process.
func BenchmarkDeployBinary128(b *testing.B) {
	bin := qmorchBin(b)
	if short() {
		b.Skip("BENCH_SHORT: N <= 32")
	}
	h, _ := fleet(b, 128, 0, 0)
	dir := b.TempDir()
	file := dir + "/" + benchFile
	if err := os.WriteFile(file, benchContent, 0o644); err != nil {
		b.Fatal(err)
	}
	var peak int64
	b.ResetTimer()
	for range b.N {
		peak = max(peak, runBin(b, bin, h.Address, "deploy", "--all", "--settle", "0", file))
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
}
