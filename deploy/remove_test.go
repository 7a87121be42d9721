package deploy

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
)

const nestedPath = "/etc/qm/containers/systemd/nested.container"

// deployed returns a fleet fake where nested.container was deployed (and started) to nodes.
func deployed(t *testing.T, nodes ...string) *fleetFake {
	t.Helper()
	var all []string
	for _, n := range nodes {
		all = append(all, n, "qm."+n)
	}
	f := newFleetFake(all...)
	_, err := newFleetDeployer(f).Deploy(context.Background(), request(nodes...))
	require.NoError(t, err)
	return f
}

func TestRemoveStopsDeletesReloadsAndIsIdempotent(t *testing.T) {
	t.Parallel()
	f := deployed(t, "node1", "node2")
	d := newFleetDeployer(f)
	rep, err := d.Remove(context.Background(), RemoveRequest{Nodes: []string{"node*"}, File: "nested.container"})
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
	for _, r := range rep.Results {
		require.Equal(t, ActionRemoved, r.Action, r.Node)
		require.True(t, r.Stopped)
		require.True(t, r.FileRemoved)
		require.Equal(t, "not-found", r.LoadState)
		require.Equal(t, nestedPath, r.Path)
		require.Equal(t, "nested.service", r.Unit)
		_, ok := f.file(r.Node, nestedPath)
		require.False(t, ok, "file gone on %s", r.Node)
	}
	// Order on each node: stop on the twin, delete on the host, daemon-reload on the twin.
	calls := f.Calls()
	at := func(want func(string) bool) int {
		i := slices.IndexFunc(calls, want)
		require.GreaterOrEqual(t, i, 0)
		return i
	}
	stop := at(func(c string) bool { return c == "qm.node1 StopUnit nested.service" })
	rm := at(func(c string) bool { return strings.HasPrefix(c, "node1 StartTransientUnit qmorch-rm-") })
	reload := slices.Index(calls[rm:], "qm.node1 Reload")
	require.Less(t, stop, rm)
	require.Positive(t, reload)

	again, err := d.Remove(context.Background(), RemoveRequest{All: true, File: "nested.container"})
	require.NoError(t, err)
	for _, r := range again.Results {
		require.Equal(t, ActionUnchanged, r.Action, r.Node)
		require.False(t, r.Stopped)
		require.False(t, r.FileRemoved)
	}
}

func TestRemoveFailedUnitIsResetAndGone(t *testing.T) {
	t.Parallel()
	f := deployed(t, "node1")
	f.setUnit("qm.node1", "nested.service", "failed", "failed")
	rep, err := newFleetDeployer(f).Remove(context.Background(), RemoveRequest{Nodes: []string{"node1"}, File: "nested.container"})
	require.NoError(t, err)
	require.Equal(t, ActionRemoved, rep.Results[0].Action)
	require.NotEmpty(t, f.callsMatching("qm.node1 ResetFailedUnit nested.service"))
}

func TestRemoveUnitStillLoadedFails(t *testing.T) {
	t.Parallel()
	// A unit of the same name that does not come from the removed file stays loaded.
	f := newFleetFake("node1", "qm.node1", "node2", "qm.node2")
	f.setUnit("qm.node1", "nested.service", "active", "running")
	f.sticky["qm.node1/nested.service"] = true
	rep, err := newFleetDeployer(f).Remove(context.Background(), RemoveRequest{All: true, File: "nested.container"})
	require.Error(t, err)
	require.Equal(t, ActionUnchanged, rep.Results[1].Action, "node2 had nothing")
	r := rep.Results[0]
	require.Equal(t, ActionFailed, r.Action)
	require.ErrorContains(t, r.Err, "node node1: remove nested.service: unit still loaded on qm.node1 after daemon-reload")
}

func TestRemoveUsesManifestUnitName(t *testing.T) {
	t.Parallel()
	f := newFleetFake("node1", "qm.node1")
	rep, err := newFleetDeployer(f).Remove(context.Background(), RemoveRequest{Nodes: []string{"node1"}, File: "nested.container",
		Units: map[string]string{"node1": "custom.service"}})
	require.NoError(t, err)
	require.Equal(t, "custom.service", rep.Results[0].Unit)
	require.NotEmpty(t, f.callsMatching("qm.node1 GetUnitProperties custom.service"))
}

func TestRemoveBadRequestsAndOffline(t *testing.T) {
	t.Parallel()
	f := newFleetFake("node1", "qm.node1:offline")
	d := newFleetDeployer(f)
	for _, file := range []string{"../x.container", "x.service", "", "a b.container"} {
		_, err := d.Remove(context.Background(), RemoveRequest{Nodes: []string{"node1"}, File: file})
		require.ErrorIs(t, err, ErrInvalid, file)
	}
	_, err := d.Remove(context.Background(), RemoveRequest{Nodes: []string{"nodeX"}, File: "x.container"})
	require.ErrorIs(t, err, ErrInvalid)
	require.Empty(t, mutatingCalls(f.fakeCtl))

	rep, err := d.Remove(context.Background(), RemoveRequest{Nodes: []string{"node1"}, File: "x.container"})
	require.ErrorIs(t, err, controller.ErrNodeOffline)
	require.Equal(t, ActionFailed, rep.Results[0].Action)
	require.Empty(t, mutatingCalls(f.fakeCtl))
}
