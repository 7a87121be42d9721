package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qmorch/qmorch/controller"
)

// WatchEventKind says what a WatchEvent reports.
type WatchEventKind string

const (
	// WatchUnit: a unit's ActiveState/SubState changed (or was first seen), or it was unloaded.
	WatchUnit WatchEventKind = "unit"
	// WatchNode: a node's Status (online/offline) changed, or its first known status.
	WatchNode WatchEventKind = "node"
	// WatchMonitor: the watch itself: the monitor ended (controller restarted, connection lost),
	// it was re-subscribed, or events were dropped.
	WatchMonitor WatchEventKind = "monitor"
)

// WatchEvent is one line of `status -w`.
type WatchEvent struct {
	Time        time.Time
	Kind        WatchEventKind
	Node        string // host node ("" for monitor events)
	On          string // BlueChi node the event is about (the QM twin, or the host)
	Unit        string // unit events
	LoadState   string // unit events: "loaded", or "not-loaded" when systemd unloaded the unit
	ActiveState string // unit events
	SubState    string // unit events
	Status      controller.NodeStatus
	Reason      string // unit events: BlueChi's "real" | "virtual" (virtual: synthesised, e.g. agent-offline)
	Message     string // monitor events
}

// WatchRequest is a StatusRequest to follow live.
type WatchRequest struct {
	StatusRequest
	// Reconnect opens a new controller connection when the bus connection is lost (optional;
	// without it a lost connection ends the watch with an error). close releases it.
	Reconnect func(ctx context.Context) (c Controller, close func() error, err error)
}

// Backoff bounds of re-subscribing after the monitor or the connection ended.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

type watchKey struct{ on, unit string }

type watchSeen struct{ active, sub string }

// statusWatch is one WatchStatus run.
type statusWatch struct {
	d    *Deployer
	req  WatchRequest
	emit func(WatchEvent)

	hostOf  map[string]string // watched BlueChi node -> its host node
	targets []string          // BlueChi nodes whose units are watched
	units   []string          // nil = every unit ("*")
	nodes   map[string]controller.NodeStatus
	seen    map[watchKey]watchSeen
}

// WatchStatus follows the selected nodes (host and QM twin status) and units live through ONE
// BlueChi Monitor: one subscription per (node, unit), or per node with unit "*" for AllUnits,
// plus the node Status signals. It calls emit for every change, from a single goroutine: the
// first state seen of each unit and node, then each transition. A node going offline shows as
// a node event plus BlueChi's virtual agent-offline unit states; when it comes back its units'
// states are reported again. When the monitor ends (the controller restarted or went away) it
// re-subscribes with backoff; when the bus connection is lost it reconnects through
// req.Reconnect. It returns nil when ctx ends, and an error only for a bad request or when it
// cannot go on.
func (d *Deployer) WatchStatus(ctx context.Context, req WatchRequest, emit func(WatchEvent)) error {
	units, err := NormalizeUnitNames(req.Units)
	if err != nil {
		return err
	}
	req.Units = units
	c := d.c
	var closeConn func() error
	defer func() {
		if closeConn != nil {
			_ = closeConn()
		}
	}()
	rctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	sel, err := d.selectStatus(rctx, c, req.StatusRequest)
	cancel()
	if err != nil {
		return err
	}
	w := &statusWatch{d: d, req: req, emit: emit, hostOf: map[string]string{},
		nodes: map[string]controller.NodeStatus{}, seen: map[watchKey]watchSeen{}}
	if len(units) > 0 {
		w.units = units
	}
	watchUnits := len(units) > 0 || req.AllUnits
	for _, h := range sel.hosts {
		w.hostOf[h] = h
		twin := sel.twinOf(d.opts.twinPrefix, h)
		if twin != "" {
			w.hostOf[twin] = h
		}
		if on := sel.target(d.opts.twinPrefix, h, req.Host); watchUnits && on != "" {
			w.targets = append(w.targets, on)
		}
	}
	if watchUnits && len(w.targets) == 0 {
		return invalidf("no QM twin (%s<node>) for the selected nodes; use --host for the host nodes' units", d.opts.twinPrefix)
	}
	w.syncNodes(sel.infos, "")

	backoff := watchBackoffMin
	sleep := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-d.opts.clock.After(backoff):
		}
		backoff = min(2*backoff, watchBackoffMax)
		return true
	}
	first := true
	for ctx.Err() == nil {
		// The node status watch lives as long as the connection.
		nsCtx, nsCancel := context.WithCancel(ctx)
		ns, stopNS := c.WatchNodeStatus(nsCtx)
		lost := false
		for ctx.Err() == nil && !lost {
			mon, err := w.subscribe(ctx, c)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				if errors.Is(err, ErrInvalid) {
					stopNS()
					nsCancel()
					return err
				}
				d.opts.logger.Debug("status -w: subscribe failed, retrying", "err", err, "backoff", backoff)
				if errors.Is(err, controller.ErrDisconnected) || w.drainNodes(ns) {
					lost = true
					break
				}
				if !sleep() {
					break
				}
				continue
			}
			backoff = watchBackoffMin
			if !first {
				w.emitMonitor("re-subscribed")
				// Statuses may have changed while nobody was listening (a restarted controller
				// sends no offline signals for the old one's nodes).
				lctx, lcancel := context.WithTimeout(ctx, d.opts.timeout)
				if infos, err := c.ListNodes(lctx); err == nil {
					w.syncNodes(infos, "")
				}
				lcancel()
			}
			first = false
			switch w.follow(ctx, mon, ns) {
			case followDone:
				cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
				_ = mon.Close(cctx)
				ccancel()
			case followMonitorEnded:
				w.emitMonitor("monitor ended (controller restarted or gone); re-subscribing")
				if !sleep() {
					break
				}
			case followConnLost:
				lost = true
			}
		}
		stopNS()
		nsCancel()
		if ctx.Err() != nil {
			return nil
		}
		// The connection is gone: a new one, if we may.
		if req.Reconnect == nil {
			return fmt.Errorf("status -w: bus connection lost: %w", controller.ErrDisconnected)
		}
		w.emitMonitor("bus connection lost; reconnecting")
		for ctx.Err() == nil {
			if !sleep() {
				return nil
			}
			nc, ncClose, err := req.Reconnect(ctx)
			if err != nil {
				d.opts.logger.Debug("status -w: reconnect failed", "err", err)
				continue
			}
			if closeConn != nil {
				_ = closeConn()
			}
			c, closeConn = nc, ncClose
			first = false
			break
		}
	}
	return nil
}

type followEnd int

const (
	followDone followEnd = iota
	followMonitorEnded
	followConnLost
)

// subscribe creates the monitor and subscribes: per (node, unit), or per node with "*".
func (w *statusWatch) subscribe(ctx context.Context, c Controller) (Monitor, error) {
	ctx, cancel := context.WithTimeout(ctx, w.d.opts.timeout)
	defer cancel()
	mon, err := c.CreateMonitor(ctx)
	if err != nil {
		return nil, err
	}
	units := w.units
	if units == nil {
		units = []string{"*"}
	}
	if len(w.targets) == 0 {
		return mon, nil // nodes only: the monitor just tells us when the controller goes away
	}
	var subErr error
	type sub struct{ node, unit string }
	var subs []sub
	for _, on := range w.targets {
		for _, u := range units {
			subs = append(subs, sub{on, u})
		}
	}
	errs := make([]error, len(subs))
	fanOut(ctx, len(subs), w.d.opts.parallel, func(i int) {
		if _, err := mon.Subscribe(ctx, subs[i].node, subs[i].unit); err != nil {
			errs[i] = fmt.Errorf("subscribe %s/%s: %w", subs[i].node, subs[i].unit, err)
		}
	}, func(i int, err error) { errs[i] = err })
	subErr = errors.Join(errs...)
	if subErr != nil {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		_ = mon.Close(cctx)
		ccancel()
		return nil, subErr
	}
	return mon, nil
}

// follow handles events until ctx ends, the monitor ends, or the connection is lost.
func (w *statusWatch) follow(ctx context.Context, mon Monitor, ns <-chan controller.NodeStatusEvent) followEnd {
	events := mon.Events()
	for {
		select {
		case <-ctx.Done():
			return followDone
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return followDone
				}
				return followMonitorEnded
			}
			w.onUnitEvent(ev)
		case ev, ok := <-ns:
			if !ok {
				if ctx.Err() != nil {
					return followDone
				}
				return followConnLost
			}
			w.onNodeEvent(ev)
		}
	}
}

func (w *statusWatch) onNodeEvent(ev controller.NodeStatusEvent) {
	if _, watched := w.hostOf[ev.Node]; watched {
		w.setNode(ev.Node, ev.Status, "")
	}
}

// drainNodes handles the node events already queued and reports whether the channel is
// closed (the client's connection is gone).
func (w *statusWatch) drainNodes(ns <-chan controller.NodeStatusEvent) bool {
	for {
		select {
		case ev, ok := <-ns:
			if !ok {
				return true
			}
			w.onNodeEvent(ev)
		default:
			return false
		}
	}
}

func (w *statusWatch) now() time.Time { return w.d.opts.clock.Now() }

func (w *statusWatch) emitMonitor(msg string) {
	w.emit(WatchEvent{Time: w.now(), Kind: WatchMonitor, Message: msg})
}

func (w *statusWatch) syncNodes(infos []controller.NodeInfo, reason string) {
	for _, n := range infos {
		if _, watched := w.hostOf[n.Name]; watched {
			w.setNode(n.Name, n.Status, reason)
		}
	}
}

func (w *statusWatch) setNode(name string, status controller.NodeStatus, reason string) {
	if status == "" {
		status = controller.NodeOffline
	}
	if prev, ok := w.nodes[name]; ok && prev == status {
		return
	}
	w.nodes[name] = status
	w.emit(WatchEvent{Time: w.now(), Kind: WatchNode, Node: w.hostOf[name], On: name, Status: status, Reason: reason})
}

func (w *statusWatch) onUnitEvent(ev controller.Event) {
	switch ev.Kind {
	case controller.EventOverflow:
		// Events were lost: forget what we knew so the next state of every unit is printed.
		w.seen = map[watchKey]watchSeen{}
		w.emitMonitor(fmt.Sprintf("%d events dropped (too slow); states are reported afresh", ev.Dropped))
		return
	case controller.EventUnitStateChanged, controller.EventUnitRemoved:
	default:
		return
	}
	host, watched := w.hostOf[ev.Node]
	if !watched || ev.Unit == "*" { // "*": BlueChi's virtual wildcard unit; node status covers it
		return
	}
	key := watchKey{ev.Node, ev.Unit}
	if ev.Kind == controller.EventUnitRemoved {
		_, known := w.seen[key]
		delete(w.seen, key)
		// Virtual removals follow a node going offline (already reported); real ones mean
		// systemd unloaded the unit (e.g. its Quadlet file was removed and systemd reloaded).
		if known && ev.Reason != "virtual" {
			w.emit(WatchEvent{Time: w.now(), Kind: WatchUnit, Node: host, On: ev.Node, Unit: ev.Unit,
				LoadState: "not-loaded", Reason: ev.Reason})
		}
		return
	}
	st := watchSeen{ev.ActiveState, ev.SubState}
	if prev, ok := w.seen[key]; ok && prev == st {
		return
	}
	w.seen[key] = st
	w.emit(WatchEvent{Time: w.now(), Kind: WatchUnit, Node: host, On: ev.Node, Unit: ev.Unit,
		LoadState: "loaded", ActiveState: ev.ActiveState, SubState: ev.SubState, Reason: ev.Reason})
}
