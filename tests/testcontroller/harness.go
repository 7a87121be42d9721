package testcontroller

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/qmorch/qmorch/tests/dbustest"
)

// Harness is a running double for a test: a private dbus-daemon, the controller on it, and the
// in-memory nodes to steer.
type Harness struct {
	Address    string // D-Bus address of the private bus (for controller.WithAddress)
	Bus        *dbustest.Daemon
	Controller *Controller
	Nodes      map[string]*MemoryNode
	order      []string
}

// HarnessOption configures Start.
type HarnessOption func(*harnessConfig)

type harnessConfig struct {
	rootOnly bool
	nodes    []*MemoryNode
	extra    []NodeSpec
	logger   *slog.Logger
}

// WithMemoryNodes replaces the default nodes with in-memory nodes of these names (DefaultUnits).
func WithMemoryNodes(names ...string) HarnessOption {
	return func(c *harnessConfig) {
		c.nodes = nil
		for _, n := range names {
			c.nodes = append(c.nodes, NewMemoryNode(n))
		}
	}
}

// WithNodes adds prepared in-memory nodes (after the defaults unless WithMemoryNodes() was given
// with no names first).
func WithNodes(nodes ...*MemoryNode) HarnessOption {
	return func(c *harnessConfig) { c.nodes = append(c.nodes, nodes...) }
}

// WithBackend adds a node with any backend (e.g. a SystemdNode).
func WithBackend(name string, b Backend) HarnessOption {
	return func(c *harnessConfig) { c.extra = append(c.extra, NodeSpec{Name: name, Backend: b}) }
}

// WithRootOnly sets the bus policy: true (default) lets only root talk to org.eclipse.bluechi.
func WithRootOnly(rootOnly bool) HarnessOption {
	return func(c *harnessConfig) { c.rootOnly = rootOnly }
}

// WithLogger logs the double's diagnostics.
func WithLogger(l *slog.Logger) HarnessOption {
	return func(c *harnessConfig) { c.logger = l }
}

// DefaultNodeNames are the in-memory nodes of a default harness (they mirror the testbed).
var DefaultNodeNames = []string{"node1", "node2", "qm.node1"}

// Start runs the double on a private bus for the duration of t. Default: root-only policy and the
// in-memory nodes DefaultNodeNames with peer IPs ::ffff:10.231.7.<11+i>, all online.
func Start(t testing.TB, opts ...HarnessOption) *Harness {
	t.Helper()
	cfg := &harnessConfig{rootOnly: true}
	for i, n := range DefaultNodeNames {
		m := NewMemoryNode(n)
		m.SetPeerIP("::ffff:10.231.7." + itoa(11+i))
		cfg.nodes = append(cfg.nodes, m)
	}
	for _, o := range opts {
		o(cfg)
	}
	bus := dbustest.New(t, cfg.rootOnly)
	h := &Harness{Address: bus.Address, Bus: bus, Nodes: map[string]*MemoryNode{}}
	var specs []NodeSpec
	for _, m := range cfg.nodes {
		specs = append(specs, NodeSpec{Name: m.Name(), Backend: m})
		h.Nodes[m.Name()] = m
		h.order = append(h.order, m.Name())
	}
	specs = append(specs, cfg.extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, Options{Address: bus.Address, Nodes: specs, Logger: cfg.logger})
	if err != nil {
		t.Fatalf("testcontroller: %v", err)
	}
	h.Controller = c
	t.Cleanup(func() { _ = c.Close() })
	h.Sync()
	// Backends connect on their own goroutines: return only when every node whose backend is
	// online is online in the controller too, so tests never race the registration.
	deadline := time.Now().Add(10 * time.Second)
	for {
		pending := h.pendingNodes()
		if len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("testcontroller: nodes %v did not come online within 10s", pending)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return h
}

// pendingNodes lists the nodes whose backend is online but which the controller does not yet
// see online (backends that cannot tell are not waited for).
func (h *Harness) pendingNodes() []string {
	var pending []string
	h.Controller.Do(func() {
		for _, n := range h.Controller.nodes {
			if b, ok := n.backend.(interface{ Online() bool }); ok && b.Online() && n.session == nil {
				pending = append(pending, n.name)
			}
		}
	})
	return pending
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// Node returns the in-memory node called name (nil if there is none).
func (h *Harness) Node(name string) *MemoryNode { return h.Nodes[name] }

// Sync waits until the controller processed everything the nodes reported so far.
func (h *Harness) Sync() { h.Controller.Do(func() {}) }

// SetOnline connects or disconnects an in-memory node and waits until the controller processed
// it (its signals are on the wire when SetOnline returns).
func (h *Harness) SetOnline(name string, online bool) {
	h.Nodes[name].SetOnline(online)
	h.Sync()
}

// IsRoot reports whether the test runs as root (needed to talk to a root-only bus).
func IsRoot() bool { return os.Geteuid() == 0 }
