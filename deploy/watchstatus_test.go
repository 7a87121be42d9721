package deploy

import (
	"context"
	"slices"
	"strings"
	"sync"
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

// hidingController is a controller that does not (yet) know some nodes: they are missing from
// ListNodes, as with a controller restarted without them, until shown.
type hidingController struct {
	Controller
	mu     sync.Mutex
	hidden map[string]bool
}

func (h *hidingController) ListNodes(ctx context.Context) ([]controller.NodeInfo, error) {
	infos, err := h.Controller.ListNodes(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.DeleteFunc(infos, func(n controller.NodeInfo) bool { return h.hidden[n.Name] }), err
}

func (h *hidingController) show(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.hidden, name)
}

// TestWatchStatusPicksUpRegisteredNode: a watched node the controller does not know is
// reported offline ("not registered"), its subscription pending (not "re-subscribed"); when it
// registers without any controller restart, the watch subscribes and reports its units.
func TestWatchStatusPicksUpRegisteredNode(t *testing.T) {
	h, c := statusHarness(t)
	require.NoError(t, h.Node("qm.node2").SetUnitState("web.service", "active", "running"))
	// The selection (the first ListNodes) sees qm.node2; every later answer lacks it.
	hc := &hidingController{Controller: FromClient(c), hidden: map[string]bool{}}
	events := make(chan WatchEvent, 256)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	req := WatchRequest{StatusRequest: StatusRequest{Nodes: []string{"node2"}, Units: []string{"web"}}}
	d := New(hc)
	go func() { done <- d.WatchStatus(ctx, req, func(ev WatchEvent) { events <- ev }) }()
	waitFor := func(what string, match func(WatchEvent) bool) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case ev := <-events:
				require.NotEqual(t, "re-subscribed", ev.Message, "qm.node2 is not subscribed")
				if match(ev) {
					return
				}
			case <-deadline:
				t.Fatalf("no %s event", what)
			}
		}
	}
	waitFor("first unit state", func(ev WatchEvent) bool { return ev.Kind == WatchUnit && ev.ActiveState == "active" })
	hc.mu.Lock()
	hc.hidden["qm.node2"] = true
	hc.mu.Unlock()

	// A controller restart: the new one lacks qm.node2.
	require.NoError(t, h.Controller.Close())
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	var specs []testcontroller.NodeSpec
	for _, n := range []string{"control", "node1", "node2", "qm.node1", "qm.node2"} {
		specs = append(specs, testcontroller.NodeSpec{Name: n, Backend: h.Node(n)})
	}
	waitFor("monitor ended", func(ev WatchEvent) bool {
		return ev.Kind == WatchMonitor && strings.Contains(ev.Message, "monitor ended")
	})
	c2, err := testcontroller.New(ctx2, testcontroller.Options{Address: h.Address, Nodes: specs})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c2.Close() })
	h.Controller = c2
	waitFor("pending subscription", func(ev WatchEvent) bool {
		return ev.Kind == WatchMonitor && slices.Equal(ev.Nodes, []string{"qm.node2"}) && strings.Contains(ev.Message, "not subscribed")
	})
	waitFor("gone node", func(ev WatchEvent) bool {
		return ev.Kind == WatchNode && ev.On == "qm.node2" && ev.Status == controller.NodeOffline && ev.Detail == "not registered on the controller"
	})

	hc.show("qm.node2") // it registers
	waitFor("node registered again", func(ev WatchEvent) bool {
		return ev.Kind == WatchNode && ev.On == "qm.node2" && ev.Status == controller.NodeOnline && ev.Detail == "registered on the controller again"
	})
	waitFor("subscribed", func(ev WatchEvent) bool {
		return ev.Kind == WatchMonitor && slices.Equal(ev.Nodes, []string{"qm.node2"}) && strings.HasPrefix(ev.Message, "subscribed on qm.node2")
	})
	waitFor("its unit state", func(ev WatchEvent) bool {
		return ev.Kind == WatchUnit && ev.On == "qm.node2" && ev.ActiveState == "active" && ev.SubState == "running"
	})
	require.NoError(t, h.Node("qm.node2").SetUnitState("web.service", "failed", "failed"))
	waitFor("a transition", func(ev WatchEvent) bool {
		return ev.Kind == WatchUnit && ev.On == "qm.node2" && ev.ActiveState == "failed" && ev.Reason == "real"
	})
	cancel()
	require.NoError(t, <-done)
}
