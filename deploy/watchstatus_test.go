package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/tests/testcontroller"
)

func TestNormalizeUnitNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []string
		want []string
		err  string
	}{
		{"no suffix means service, duplicates dropped", []string{"web", "web.service", "sshd.socket"}, []string{"web.service", "sshd.socket"}, ""},
		{"instance", []string{"bluechi-proxy@node2_mqtt.service"}, []string{"bluechi-proxy@node2_mqtt.service"}, ""},
		{"slash", []string{"a/b"}, nil, "not allowed"},
		{"wildcard is not a unit", []string{"*"}, nil, "not allowed"},
		{"empty", []string{""}, nil, "empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeUnitNames(tc.in)
			if tc.err != "" {
				require.ErrorIs(t, err, ErrInvalid)
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func statusHarness(t *testing.T) (*testcontroller.Harness, *controller.Client) {
	t.Helper()
	if !testcontroller.IsRoot() {
		t.Skip("the test controller's bus admits only root")
	}
	h := testcontroller.Start(t, testcontroller.WithMemoryNodes("control", "node1", "node2", "qm.node1", "qm.node2"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := controller.New(ctx, controller.WithAddress(h.Address))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return h, c
}

func TestStatusSelection(t *testing.T) {
	h, c := statusHarness(t)
	d := New(FromClient(c))
	ctx := context.Background()
	tests := []struct {
		name  string
		req   StatusRequest
		hosts []string
	}{
		{"every host node", StatusRequest{}, []string{"control", "node1", "node2"}},
		{"--all: hosts with a twin", StatusRequest{All: true}, []string{"node1", "node2"}},
		{"a twin name selects its host", StatusRequest{Nodes: []string{"qm.node2,node1"}}, []string{"node1", "node2"}},
		{"glob", StatusRequest{Nodes: []string{"node*"}}, []string{"node1", "node2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := d.StatusNodes(ctx, tc.req)
			require.NoError(t, err)
			var hosts []string
			for _, r := range rows {
				hosts = append(hosts, r.Node)
				require.Equal(t, r.Node != "control", r.QM != nil)
			}
			require.Equal(t, tc.hosts, hosts)
		})
	}
	// An offline twin: the units of the other nodes are still read; the error names the node.
	h.SetOnline("qm.node1", false)
	rows, err := d.StatusUnits(ctx, StatusRequest{All: true, Units: []string{"web"}})
	require.ErrorIs(t, err, controller.ErrNodeOffline)
	require.ErrorContains(t, err, "node qm.node1")
	require.Len(t, rows, 2)
	require.Error(t, rows[0].Err)
	require.Equal(t, "inactive", rows[1].ActiveState)
}

func TestWaitOnlineTimeoutNamesNodes(t *testing.T) {
	h, c := statusHarness(t)
	h.SetOnline("qm.node2", false)
	d := New(FromClient(c), WithTimeout(200*time.Millisecond))
	err := d.WaitOnline(context.Background(), []string{"node1", "qm.node2"})
	require.ErrorIs(t, err, controller.ErrTimeout)
	require.ErrorContains(t, err, "still offline after 200ms: qm.node2")
}

// TestWatchStatusReconnects: when the bus connection is lost the watch dials again through
// Reconnect, re-subscribes, and goes on reporting.
func TestWatchStatusReconnects(t *testing.T) {
	h, c := statusHarness(t)
	require.NoError(t, h.Node("qm.node1").SetUnitState("web.service", "active", "running"))
	events := make(chan WatchEvent, 256)
	reconnected := make(chan struct{}, 1)
	req := WatchRequest{
		StatusRequest: StatusRequest{Nodes: []string{"node1"}, Units: []string{"web"}},
		Reconnect: func(ctx context.Context) (Controller, func() error, error) {
			nc, err := controller.New(ctx, controller.WithAddress(h.Address))
			if err != nil {
				return nil, nil, err
			}
			reconnected <- struct{}{}
			return FromClient(nc), nc.Close, nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- New(FromClient(c)).WatchStatus(ctx, req, func(ev WatchEvent) { events <- ev })
	}()
	waitFor := func(what string, match func(WatchEvent) bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case ev := <-events:
				if match(ev) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s event", what)
			}
		}
	}
	waitFor("initial unit state", func(ev WatchEvent) bool {
		return ev.Kind == WatchUnit && ev.On == "qm.node1" && ev.ActiveState == "active"
	})
	require.NoError(t, c.Close()) // the connection is gone
	waitFor("connection lost", func(ev WatchEvent) bool {
		return ev.Kind == WatchMonitor && strings.Contains(ev.Message, "reconnecting")
	})
	<-reconnected
	waitFor("re-subscribed", func(ev WatchEvent) bool {
		return ev.Kind == WatchMonitor && ev.Message == "re-subscribed"
	})
	require.NoError(t, h.Node("qm.node1").SetUnitState("web.service", "failed", "failed"))
	waitFor("transition after reconnect", func(ev WatchEvent) bool {
		return ev.Kind == WatchUnit && ev.On == "qm.node1" && ev.ActiveState == "failed" && ev.Reason == "real"
	})
	cancel()
	require.NoError(t, <-done)
}
