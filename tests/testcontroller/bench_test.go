package testcontroller

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"
)

// BenchmarkFleetStartStop starts and stops 50 units on each of 128 in-memory nodes per iteration,
// waiting for every JobRemoved.
func BenchmarkFleetStartStop(b *testing.B) {
	if !IsRoot() {
		b.Skip("root-only bus policy: run as root")
	}
	const nodes, units = 128, 50
	var mem []*MemoryNode
	for i := 0; i < nodes; i++ {
		mem = append(mem, NewMemoryNode(fmt.Sprintf("n%03d", i), FillerUnits("u", units)...))
	}
	h := Start(b, WithMemoryNodes(), WithNodes(mem...))
	conn, err := dbus.Dial(h.Address)
	require.NoError(b, err)
	defer conn.Close()
	require.NoError(b, conn.Auth(nil))
	require.NoError(b, conn.Hello())
	require.NoError(b, conn.AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchMember("JobRemoved")))
	removed := make(chan *dbus.Signal, nodes*units*2)
	conn.Signal(removed)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var listed map[string][]UnitInfo
	require.NoError(b, conn.Object(BusName, ControllerPath).CallWithContext(ctx, ControllerIface+".ListUnits", 0).Store(&listed))
	require.Len(b, listed, nodes)

	round := func(method string) {
		var wg sync.WaitGroup
		errs := make(chan error, nodes*units)
		for _, m := range mem {
			path := dbus.ObjectPath(NodePath(m.Name()))
			wg.Add(1)
			go func() {
				defer wg.Done()
				for u := 0; u < units; u++ {
					err := conn.Object(BusName, path).CallWithContext(ctx, NodeIface+"."+method, 0,
						fmt.Sprintf("u-%d.service", u), "replace").Err
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		for i := 0; i < nodes*units; i++ {
			select {
			case <-removed:
			case <-ctx.Done():
				b.Fatalf("%s: only %d of %d JobRemoved", method, i, nodes*units)
			}
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round("StartUnit")
		round("StopUnit")
	}
}
