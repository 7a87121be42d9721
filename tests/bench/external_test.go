package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/deploy"
)

// BenchmarkDeployExternal is the deploy benchmark against an existing BlueChi controller
// instead of the in-process test double, so the double's own speed is out of the numbers:
//
//	QMORCH_BENCH_BUS=unix:path=/run/dbus/system_bus_socket \
//	  go test -run '^$' -bench DeployExternal -benchtime 5x ./tests/bench/
//
// It deploys bench.container (QMORCH_BENCH_FILE names another Quadlet file to use, e.g. one
// with an image the nodes have) to every host node with a QM twin, with a different comment line
// each iteration so that every iteration writes, reloads and restarts; at the end it removes
// the file and the unit again. QMORCH_BENCH_NODES (a comma list) limits it to those host nodes;
// QMORCH_BENCH_SEQUENTIAL=1 deploys to them one after another (the per-node loop baseline).
// Skipped without QMORCH_BENCH_BUS.
func BenchmarkDeployExternal(b *testing.B) {
	addr := os.Getenv("QMORCH_BENCH_BUS")
	if addr == "" {
		b.Skip("QMORCH_BENCH_BUS not set")
	}
	file, content := benchFile, benchContent
	if f := os.Getenv("QMORCH_BENCH_FILE"); f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		file, content = filepath.Base(f), data
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	c, err := controller.New(ctx, controller.WithAddress(addr))
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	d := deploy.New(deploy.FromClient(c), deploy.WithSettle(0), deploy.WithTimeout(5*time.Minute))
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err := d.Remove(ctx, deploy.RemoveRequest{All: true, File: file}); err != nil {
			b.Logf("cleanup: remove %s: %v", file, err) // e.g. the in-memory double keeps its units
		}
	})
	b.ResetTimer()
	for i := range b.N {
		body := append(append([]byte{}, content...), fmt.Sprintf("# qmorch bench %d %d\n", time.Now().UnixNano(), i)...)
		n := 0
		for _, nodes := range benchNodeGroups() {
			req := deploy.Request{All: nodes == nil, Nodes: nodes, File: file, Source: file, Content: body}
			rep, err := d.Deploy(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			n += len(rep.Results)
		}
		b.ReportMetric(float64(n), "nodes")
	}
}

// benchNodeGroups is what one iteration deploys to: nil = every host with a QM twin; with
// QMORCH_BENCH_NODES, those nodes at once, or one group per node with QMORCH_BENCH_SEQUENTIAL=1.
func benchNodeGroups() [][]string {
	list := os.Getenv("QMORCH_BENCH_NODES")
	if list == "" {
		return [][]string{nil}
	}
	nodes := strings.Split(list, ",")
	if os.Getenv("QMORCH_BENCH_SEQUENTIAL") != "1" {
		return [][]string{nodes}
	}
	groups := make([][]string, len(nodes))
	for i, n := range nodes {
		groups[i] = []string{n}
	}
	return groups
}
