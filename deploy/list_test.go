package deploy

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func managedNested(nodes ...string) map[string][]ManagedFile {
	m := map[string][]ManagedFile{}
	for _, n := range nodes {
		m[n] = []ManagedFile{{File: "nested.container", Path: nestedPath, Unit: "nested.service",
			SHA256: SHA256([]byte(quadlet)), DeployedAt: time.Unix(1700000000, 0), Content: []byte(quadlet)}}
	}
	return m
}

func unitsOf(l NodeListing) map[string][]Drift {
	m := map[string][]Drift{}
	for _, u := range l.Units {
		m[u.Unit] = u.Drift
	}
	return m
}

func TestListDrift(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(f *fleetFake)
		want   map[string][]Drift
		state  string
	}{
		{"in sync", func(*fleetFake) {}, map[string][]Drift{"nested.service": nil}, "active"},
		{"modified", func(f *fleetFake) { f.putFile("node1", nestedPath, quadlet+"# edited\n") },
			map[string][]Drift{"nested.service": {DriftModified}}, "active"},
		{"missing file", func(f *fleetFake) { f.deleteFile("node1", nestedPath) },
			map[string][]Drift{"nested.service": {DriftMissingFile}}, "active"},
		{"not loaded", func(f *fleetFake) {
			f.mu.Lock()
			delete(f.units["qm.node1"], "nested.service")
			f.mu.Unlock()
		}, map[string][]Drift{"nested.service": {DriftNotLoaded}}, "inactive"},
		{"failed", func(f *fleetFake) { f.setUnit("qm.node1", "nested.service", "failed", "failed") },
			map[string][]Drift{"nested.service": {DriftFailed}}, "failed"},
		{"unmanaged next to managed", func(f *fleetFake) {
			f.putFile("node1", "/etc/qm/containers/systemd/other.container", quadlet)
			f.putFile("node1", "/etc/qm/containers/systemd/broken.container", quadlet)
			n, _ := f.GetNode(context.Background(), "qm.node1")
			_ = n.Reload(context.Background())
			f.setUnit("qm.node1", "broken.service", "failed", "failed")
			f.setUnit("qm.node1", "plain.service", "active", "running") // not from Quadlet
		}, map[string][]Drift{"nested.service": nil, "other.service": {DriftUnmanaged}, "broken.service": {DriftUnmanaged, DriftFailed}}, "active"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := deployed(t, "node1")
			tc.change(f)
			rep, err := newFleetDeployer(f).List(context.Background(), ListRequest{Managed: managedNested("node1")})
			require.NoError(t, err)
			require.Len(t, rep.Nodes, 1)
			l := rep.Nodes[0]
			require.Equal(t, "node1", l.Node)
			require.Equal(t, "qm.node1", l.Twin)
			require.Equal(t, tc.want, unitsOf(l))
			for _, u := range l.Units {
				if u.Unit == "nested.service" {
					require.True(t, u.Managed)
					require.Equal(t, tc.state, u.ActiveState)
					require.Equal(t, nestedPath, u.Path)
					require.Equal(t, SHA256([]byte(quadlet)), u.SHA256)
				}
				if u.Unit == "other.service" {
					require.False(t, u.Managed)
					require.Equal(t, "/etc/qm/containers/systemd/other.container", u.Path)
					require.Equal(t, "other.container", u.File)
				}
			}
		})
	}
}

func TestListNodesAndErrors(t *testing.T) {
	t.Parallel()
	f := newFleetFake("node1", "qm.node1", "node2", "qm.node2:offline", "node3")
	d := newFleetDeployer(f)
	rep, err := d.List(context.Background(), ListRequest{})
	require.Error(t, err, "node2's twin is offline")
	require.Len(t, rep.Nodes, 2, "no nodes given: every node with a twin")
	require.NoError(t, rep.Nodes[0].Err)
	require.Empty(t, rep.Nodes[0].Units)
	require.ErrorContains(t, rep.Nodes[1].Err, "QM twin qm.node2 is offline")
	require.Equal(t, 1, rep.Failed())

	_, err = d.List(context.Background(), ListRequest{Nodes: []string{"nodeX"}})
	require.ErrorIs(t, err, ErrInvalid)

	// Lost content: the file cannot be checked, which is a warning, not a failure.
	m := managedNested("node1")
	m["node1"][0].Content = nil
	rep, err = d.List(context.Background(), ListRequest{Nodes: []string{"node1"}, Managed: m})
	require.NoError(t, err)
	require.Contains(t, rep.Nodes[0].Warnings[0], "not in the state directory")
	require.Equal(t, []Drift{DriftNotLoaded}, rep.Nodes[0].Units[0].Drift)
}
