package qmconf

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/agent"
)

func TestRenderAllowList60Nodes(t *testing.T) {
	t.Parallel()
	var nodes, want []string
	for i := 1; i <= 60; i++ {
		n := fmt.Sprintf("vehicle-ecu-node-%02d.fleet.example.com", i)
		nodes = append(nodes, n)
		want = append(want, n, "qm."+n)
	}
	al, err := RenderAllowList(nil, nodes, AllowListOptions{})
	require.NoError(t, err)
	require.Equal(t, "/etc/bluechi/controller.conf.d/99-qmorch.conf", al.Path)
	require.Len(t, al.Names, 120)

	lines := strings.Split(strings.TrimSuffix(string(al.Content), "\n"), "\n")
	require.Greater(t, len(lines), 5, "the list must be wrapped")
	for _, l := range lines {
		require.Less(t, len(l)+1, 500, "line %q", l)
	}

	// Read it back on top of a controller.conf that lists other nodes: the
	// drop-in replaces the list as a whole.
	fsys := fstest.MapFS{
		"usr/share/bluechi/config/controller.conf":     {Data: nil},
		"etc/bluechi/controller.conf":                  {Data: []byte("[bluechi-controller]\nAllowedNodeNames=old1,old2\n")},
		"etc/bluechi/controller.conf.d/99-qmorch.conf": {Data: al.Content},
	}
	cfg, err := agent.LoadController(agent.LoadOptions{FS: fsys})
	require.NoError(t, err)
	require.Empty(t, cfg.Warnings)
	cc, err := cfg.Controller(agent.ControllerFlags{})
	require.NoError(t, err)
	require.Equal(t, want, cc.Nodes)
}

func TestRenderAllowListKeepsCurrent(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"usr/share/bluechi/config/controller.conf": {Data: nil},
		"etc/bluechi/controller.conf":              {Data: []byte("[bluechi-controller]\nAllowedNodeNames=control,node1\n")},
	}
	cur, err := agent.LoadController(agent.LoadOptions{FS: fsys})
	require.NoError(t, err)
	al, err := RenderAllowList(cur, []string{"node1", "node2"}, AllowListOptions{Prefix: "qm-"})
	require.NoError(t, err)
	require.Equal(t, []string{"control", "node1", "qm-node1", "node2", "qm-node2"}, al.Names)
}

func TestRenderAllowListRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		nodes []string
		want  string
	}{
		{"space", []string{"a b"}, "whitespace"},
		{"comma", []string{"a,b"}, "','"},
		{"already a twin", []string{"qm.node1"}, "QM prefix"},
		{"too long for a line", []string{strings.Repeat("n", 420)}, "does not fit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := RenderAllowList(nil, tc.nodes, AllowListOptions{})
			require.ErrorContains(t, err, tc.want)
		})
	}
}
