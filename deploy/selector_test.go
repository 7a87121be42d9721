package deploy

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
)

func TestSelectHosts(t *testing.T) {
	t.Parallel()
	var infos []controller.NodeInfo
	for _, n := range []string{"control", "node1", "qm.node1", "node2", "qm.node2", "node-3.x", "qm.node-3.x"} {
		infos = append(infos, controller.NodeInfo{Name: n})
	}
	tests := []struct {
		name string
		sel  []string
		all  bool
		want []string
		err  string
	}{
		{name: "one", sel: []string{"node1"}, want: []string{"node1"}},
		{name: "comma list and duplicates", sel: []string{"node2,node1", "node1"}, want: []string{"node1", "node2"}},
		{name: "glob skips twins", sel: []string{"*node*"}, want: []string{"node-3.x", "node1", "node2"}},
		{name: "glob", sel: []string{"node?"}, want: []string{"node1", "node2"}},
		{name: "all has twins only", all: true, want: []string{"node-3.x", "node1", "node2"}},
		{name: "unknown", sel: []string{"node9,node8"}, err: `unknown node "node9", "node8" (known nodes: control, node-3.x`},
		{name: "glob without match", sel: []string{"edge*"}, err: `node pattern "edge*" matches no host node`},
		{name: "bad glob", sel: []string{"node["}, err: `node pattern "node["`},
		{name: "bad name", sel: []string{"../x"}, err: `node name`},
		{name: "all and names", sel: []string{"node1"}, all: true, err: "not both"},
		{name: "nothing", sel: []string{","}, err: "no nodes given"},
		{name: "twin named", sel: []string{"node1,qm.node1"}, err: "node qm.node1 is a QM twin; name its host node node1"},
		{name: "twins named", sel: []string{"qm.node2", "qm.node-3.x"}, err: "nodes qm.node2, qm.node-3.x are QM twins; name their host nodes node2, node-3.x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SelectHosts(infos, tc.sel, tc.all, "qm.")
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.ErrorIs(t, err, ErrInvalid)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// Read-only views (status) map a twin's exact name to its host instead.
func TestSelectHostsOrTwins(t *testing.T) {
	t.Parallel()
	var infos []controller.NodeInfo
	for _, n := range []string{"control", "node1", "qm.node1", "node2", "qm.node2"} {
		infos = append(infos, controller.NodeInfo{Name: n})
	}
	got, err := SelectHostsOrTwins(infos, []string{"qm.node2,node1", "qm.node1"}, false, "qm.")
	require.NoError(t, err)
	require.Equal(t, []string{"node1", "node2"}, got)
}

func TestFanOutBoundsAndSkips(t *testing.T) {
	t.Parallel()
	var running, peak atomic.Int32
	done := make([]bool, 10)
	fanOut(context.Background(), 10, 3, func(i int) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		done[i] = true
		running.Add(-1)
	}, func(int, error) { t.Fatal("nothing is skipped") })
	require.LessOrEqual(t, peak.Load(), int32(3))
	for _, d := range done {
		require.True(t, d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var skipped atomic.Int32
	fanOut(ctx, 5, 1, func(int) {}, func(_ int, err error) {
		require.ErrorIs(t, err, context.Canceled)
		skipped.Add(1)
	})
	require.LessOrEqual(t, skipped.Load(), int32(5)) // select may still pick the free slot
}
