package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Ctrl-C while jobs are in flight: they are cancelled through Job.Cancel, the table says
// "cancelled" for every line, the exit code is 1 and the command returns (nothing keeps waiting).
func TestLifecycleCtrlC(t *testing.T) {
	f := newFLFleet(t)
	for _, n := range []string{"qm.node1", "qm.node2"} {
		f.nodes[n].Hold("")
	}
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	d := deps{streams: IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, connect: connectController}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"restart", "--all", "test", "web", "--bus-address", f.h.Address}, d)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for f.nodes["qm.node1"].Calls("RestartUnit")+f.nodes["qm.node2"].Calls("RestartUnit") < 2 {
		require.True(t, time.Now().Before(deadline), "restart jobs never reached both twins")
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	require.Equal(t, ExitFailed, <-code)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 5, out.String())
	for _, l := range lines[1:] {
		require.Equal(t, "cancelled", strings.Fields(l)[3], l)
	}
	require.Contains(t, errOut.String(), "interrupted, job cancelled")
	require.Contains(t, errOut.String(), "qmorch: interrupted")
	// BlueChi answers Job.Cancel at once and cancels in the background: wait for the nodes.
	for _, n := range []string{"qm.node1", "qm.node2"} {
		for f.nodes[n].Calls("JobCancel") != 1 {
			require.True(t, time.Now().Before(deadline), "no Job.Cancel reached %s", n)
			time.Sleep(5 * time.Millisecond)
		}
		for active, _ := f.nodes[n].UnitState("test.service"); active != "inactive"; active, _ = f.nodes[n].UnitState("test.service") {
			require.True(t, time.Now().Before(deadline), "the cancelled restart did not restore %s", n)
			time.Sleep(5 * time.Millisecond)
		}
	}
}
