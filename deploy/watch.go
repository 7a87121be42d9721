package deploy

import (
	"context"
	"errors"
	"sync"

	"github.com/qmorch/qmorch/controller"
)

// hub shares one BlueChi monitor and one node-status watch among all operations of a run,
// and fans their signals out to per-(node, unit) and per-node listeners. Listeners are
// registered before the D-Bus call they observe, and delivery never blocks the reader.
type hub struct {
	c Controller

	mu       sync.Mutex
	ctx      context.Context // lifetime of the watches (the run)
	cancel   context.CancelFunc
	mon      Monitor
	monErr   error
	units    map[unitKey]map[*unitWatch]struct{}
	nodes    map[string]map[*nodeWatch]struct{}
	stopNode func()
	closed   bool
	wg       sync.WaitGroup

	// keepSubs: release leaves subscriptions to the monitor's Close (set when the hub lives
	// for one short operation, so the controller drops them soon anyway).
	keepSubs bool
}

type unitKey struct{ node, unit string }

func newHub(ctx context.Context, c Controller) *hub {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &hub{
		c:      c,
		ctx:    ctx,
		cancel: cancel,
		units:  map[unitKey]map[*unitWatch]struct{}{},
		nodes:  map[string]map[*nodeWatch]struct{}{},
	}
}

// errMonitorEnded: the monitor's signal stream ended (connection lost or monitor closed).
var errMonitorEnded = errors.New("BlueChi monitor ended")

// unitWatch collects the monitor events for one unit on one node.
type unitWatch struct {
	h      *hub
	key    unitKey
	id     uint32
	mu     sync.Mutex
	events []controller.Event
	notify chan struct{} // cap 1: "something happened"
	ended  chan struct{} // closed when the monitor ends
}

func (w *unitWatch) push(ev controller.Event) {
	w.mu.Lock()
	w.events = append(w.events, ev)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// take returns the events received since the last take.
func (w *unitWatch) take() []controller.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	evs := w.events
	w.events = nil
	return evs
}

// watchUnit subscribes to node/unit. The listener exists before Subscribe returns, so every
// event sent after the subscription is seen.
func (h *hub) watchUnit(ctx context.Context, node, unit string) (*unitWatch, error) {
	mon, err := h.monitor(ctx)
	if err != nil {
		return nil, err
	}
	w := &unitWatch{h: h, key: unitKey{node, unit}, notify: make(chan struct{}, 1), ended: make(chan struct{})}
	h.mu.Lock()
	if h.mon == nil { // ended in between
		h.mu.Unlock()
		return nil, errMonitorEnded
	}
	if h.units[w.key] == nil {
		h.units[w.key] = map[*unitWatch]struct{}{}
	}
	h.units[w.key][w] = struct{}{}
	h.mu.Unlock()
	id, err := mon.Subscribe(ctx, node, unit)
	if err != nil {
		h.drop(w)
		return nil, err
	}
	w.id = id
	return w, nil
}

// close unsubscribes (best effort, bounded by ctx) and drops the listener.
func (w *unitWatch) close(ctx context.Context) {
	w.h.drop(w)
	w.h.mu.Lock()
	mon := w.h.mon
	w.h.mu.Unlock()
	if mon != nil && w.id != 0 {
		_ = mon.Unsubscribe(ctx, w.id)
	}
}

// release drops the listener; the subscription ends with it unless the hub keeps
// subscriptions until its monitor closes (keepSubs).
func (w *unitWatch) release(ctx context.Context) {
	if w.h.keepSubs {
		w.h.drop(w)
		return
	}
	w.close(ctx)
}

func (h *hub) drop(w *unitWatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.units[w.key]; m != nil {
		delete(m, w)
		if len(m) == 0 {
			delete(h.units, w.key)
		}
	}
}

func (h *hub) monitor(ctx context.Context) (Monitor, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mon != nil || h.monErr != nil {
		return h.mon, h.monErr
	}
	if h.closed {
		return nil, errMonitorEnded
	}
	mon, err := h.c.CreateMonitor(ctx)
	if err != nil {
		return nil, err // not cached: a later operation may retry
	}
	h.mon = mon
	h.wg.Add(1)
	go h.dispatchUnits(mon)
	return mon, nil
}

func (h *hub) dispatchUnits(mon Monitor) {
	defer h.wg.Done()
	for ev := range mon.Events() {
		h.mu.Lock()
		if ev.Kind == controller.EventOverflow { // events were lost: every watcher must re-read
			for _, m := range h.units {
				for w := range m {
					w.push(ev)
				}
			}
		} else {
			for w := range h.units[unitKey{ev.Node, ev.Unit}] {
				w.push(ev)
			}
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mon = nil
	h.monErr = errMonitorEnded
	for _, m := range h.units {
		for w := range m {
			close(w.ended)
		}
	}
	h.units = map[unitKey]map[*unitWatch]struct{}{}
}

// nodeWatch reports the first "offline" of one node after it was registered.
type nodeWatch struct {
	h       *hub
	node    string
	once    sync.Once
	offline chan struct{}
}

func (h *hub) watchNode(node string) *nodeWatch {
	w := &nodeWatch{h: h, node: node, offline: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopNode == nil && !h.closed {
		ch, stop := h.c.WatchNodeStatus(h.ctx)
		h.stopNode = stop
		h.wg.Add(1)
		go h.dispatchNodes(ch)
	}
	if h.nodes[node] == nil {
		h.nodes[node] = map[*nodeWatch]struct{}{}
	}
	h.nodes[node][w] = struct{}{}
	return w
}

func (w *nodeWatch) markOffline() { w.once.Do(func() { close(w.offline) }) }

func (w *nodeWatch) close() {
	w.h.mu.Lock()
	defer w.h.mu.Unlock()
	if m := w.h.nodes[w.node]; m != nil {
		delete(m, w)
		if len(m) == 0 {
			delete(w.h.nodes, w.node)
		}
	}
}

func (h *hub) dispatchNodes(ch <-chan controller.NodeStatusEvent) {
	defer h.wg.Done()
	for {
		var ev controller.NodeStatusEvent
		select {
		case <-h.ctx.Done():
			return
		case e, ok := <-ch:
			if !ok {
				return
			}
			ev = e
		}
		if ev.Status != controller.NodeOffline {
			continue
		}
		h.mu.Lock()
		for w := range h.nodes[ev.Node] {
			w.markOffline()
		}
		h.mu.Unlock()
	}
}

// close ends the node-status watch and the monitor (bounded by ctx) and waits for the
// dispatchers.
func (h *hub) close(ctx context.Context) {
	h.mu.Lock()
	h.closed = true
	mon, stop := h.mon, h.stopNode
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
	h.cancel()
	if mon != nil {
		_ = mon.Close(ctx)
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
