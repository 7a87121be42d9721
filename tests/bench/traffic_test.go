package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qmorch/qmorch/deploy"
)

// TestDeployTraffic lists the D-Bus traffic of one deploy per node, as the test controller
// sees it: the method calls it received and the signals it sent (the dbus-daemon's own
// AddMatch/RemoveMatch are not included). Run with -v to read the table; it asserts only that
// the deploy worked.
func TestDeployTraffic(t *testing.T) {
	const n = 4
	h, hosts := fleet(t, n, 0, 0)
	d := deploy.New(deploy.FromClient(client(t, h)), deploy.WithSettle(0), deploy.WithTimeout(time.Minute))
	for _, pass := range []string{"first (content new)", "second (content unchanged)"} {
		h.Controller.Traffic(true)
		if err := deployOnce(context.Background(), d, hosts); err != nil {
			t.Fatal(err)
		}
		h.Sync()
		calls, signals := h.Controller.Traffic(true)
		t.Logf("deploy to %d nodes, %s: per node", n, pass)
		t.Log(trafficTable(calls, signals, n))
	}
}

func trafficTable(calls, signals map[string]int, n int) string {
	var b strings.Builder
	total := 0
	for _, k := range slices.Sorted(maps.Keys(calls)) {
		fmt.Fprintf(&b, "\n  call   %-55s %6.2f", k, float64(calls[k])/float64(n))
		total += calls[k]
	}
	fmt.Fprintf(&b, "\n  calls total %55.2f", float64(total)/float64(n))
	total = 0
	for _, k := range slices.Sorted(maps.Keys(signals)) {
		fmt.Fprintf(&b, "\n  signal %-55s %6.2f", k, float64(signals[k])/float64(n))
		total += signals[k]
	}
	fmt.Fprintf(&b, "\n  signals total %53.2f", float64(total)/float64(n))
	return b.String()
}
