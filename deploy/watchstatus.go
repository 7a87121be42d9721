package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

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
	// Detail says why qmorch reports a state it synthesised itself, e.g. "not registered on the
	// controller" for a node the restarted controller no longer knows (node and unit events).
	Detail string
	// Nodes are the BlueChi nodes a monitor event is about (e.g. subscriptions still pending).
	Nodes []string
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

// nodeSeen is the last node state printed; gone: not in the controller's ListNodes.
type nodeSeen struct {
	status controller.NodeStatus
	gone   bool
}

// Details of states qmorch synthesises (WatchEvent.Detail).
const (
	detailNotRegistered = "not registered on the controller"
	detailRegistered    = "registered on the controller again"
	detailNodeOffline   = "node offline when re-subscribed"
)

// statusWatch is one WatchStatus run.
type statusWatch struct {
	d    *Deployer
	req  WatchRequest
	emit func(WatchEvent)

	hostOf  map[string]string // watched BlueChi node -> its host node
	targets []string          // BlueChi nodes whose units are watched
	units   []string          // nil = every unit ("*")
	nodes   map[string]nodeSeen
	seen    map[watchKey]watchSeen
	// pending are targets not subscribed because the controller does not know them (a
	// restarted controller without that node); they are subscribed when they register.
	pending map[string]bool
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
		nodes: map[string]nodeSeen{}, seen: map[watchKey]watchSeen{}, pending: map[string]bool{}}
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
	w.syncNodes(sel.infos)

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
	// first: nothing subscribed yet (no "re-subscribed"); fresh: sel.infos is still the current
	// node list (the very first attempt): any later attempt may face another controller.
	first, fresh := true, true
	announced := false // "monitor ended" was printed for the current outage
	for ctx.Err() == nil {
		// The node status watch lives as long as the connection.
		nsCtx, nsCancel := context.WithCancel(ctx)
		ns, stopNS := c.WatchNodeStatus(nsCtx)
		lost := false
		for ctx.Err() == nil && !lost {
			// Which nodes does this controller know? A restarted controller may lack some.
			infos, err := sel.infos, error(nil)
			resync := !fresh
			fresh = false
			if resync {
				lctx, lcancel := context.WithTimeout(ctx, d.opts.timeout)
				infos, err = c.ListNodes(lctx)
				lcancel()
			}
			var mon Monitor
			if err == nil {
				mon, err = w.subscribe(ctx, c, infos)
			}
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
				// The controller went away while subscribing: say so once, as when it goes
				// away while following (the user must never watch a silent, dead view).
				if errors.Is(err, controller.ErrControllerUnavailable) && !announced {
					w.emitMonitor("monitor ended (controller restarted or gone); re-subscribing")
					announced = true
				}
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
			announced = false
			if pending := w.pendingNodes(); len(pending) > 0 {
				w.emit(WatchEvent{Time: w.now(), Kind: WatchMonitor, Nodes: pending, Message: fmt.Sprintf(
					"not subscribed on %s: %s; subscribing when registered", strings.Join(pending, ", "), detailNotRegistered)})
			} else if !first {
				w.emitMonitor("re-subscribed")
			}
			// Statuses may have changed while nobody was listening: a restarted controller sends
			// no offline signals for the old one's nodes, and knows nothing of the nodes it lacks.
			w.syncNodes(infos)
			if resync {
				// A node the new controller has not seen online sent no agent-offline events.
				for _, n := range infos {
					if _, watched := w.hostOf[n.Name]; watched && n.Status != controller.NodeOnline {
						w.unitsUnreachable(n.Name, detailNodeOffline)
					}
				}
				w.reread(ctx, c, infos, w.targets)
			}
			first = false
			switch w.follow(ctx, c, mon, ns) {
			case followDone:
				cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
				_ = mon.Close(cctx)
				ccancel()
			case followMonitorEnded:
				w.emitMonitor("monitor ended (controller restarted or gone); re-subscribing")
				announced = true
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

// subscribe creates the monitor and subscribes: per (node, unit), or per node with "*". Targets
// that infos lacks (the controller does not know them) are left pending: BlueChi accepts a
// subscription for an unknown node without error and never attaches it to anything.
func (w *statusWatch) subscribe(ctx context.Context, c Controller, infos []controller.NodeInfo) (Monitor, error) {
	ctx, cancel := context.WithTimeout(ctx, w.d.opts.timeout)
	defer cancel()
	mon, err := c.CreateMonitor(ctx)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, n := range infos {
		known[n.Name] = true
	}
	clear(w.pending)
	var on []string
	for _, t := range w.targets {
		if known[t] {
			on = append(on, t)
		} else {
			w.pending[t] = true
		}
	}
	if err := w.subscribeOn(ctx, mon, on); err != nil {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		_ = mon.Close(cctx)
		ccancel()
		return nil, err
	}
	return mon, nil
}

// subscribeOn subscribes the watched units of the nodes on mon.
func (w *statusWatch) subscribeOn(ctx context.Context, mon Monitor, nodes []string) error {
	units := w.units
	if units == nil {
		units = []string{"*"}
	}
	type sub struct{ node, unit string }
	var subs []sub
	for _, on := range nodes {
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
	return errors.Join(errs...)
}

func (w *statusWatch) pendingNodes() []string {
	out := make([]string, 0, len(w.pending))
	for n := range w.pending {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// needsPoll: some watched node is unknown to the controller. BlueChi sends nothing when a node
// registers that the controller did not know, so ListNodes is asked again now and then.
func (w *statusWatch) needsPoll() bool {
	if len(w.pending) > 0 {
		return true
	}
	for _, s := range w.nodes {
		if s.gone {
			return true
		}
	}
	return false
}

// pickup re-reads the node list: nodes that registered again are reported, and pending
// subscriptions whose node is now known are made on mon.
func (w *statusWatch) pickup(ctx context.Context, c Controller, mon Monitor) {
	lctx, lcancel := context.WithTimeout(ctx, w.d.opts.timeout)
	defer lcancel()
	infos, err := c.ListNodes(lctx)
	if err != nil {
		w.d.opts.logger.Debug("status -w: list nodes failed", "err", err)
		return
	}
	w.syncNodes(infos)
	known := map[string]bool{}
	for _, n := range infos {
		known[n.Name] = true
	}
	var picked []string
	for _, on := range w.pendingNodes() {
		if !known[on] {
			continue
		}
		if err := w.subscribeOn(lctx, mon, []string{on}); err != nil {
			w.d.opts.logger.Debug("status -w: subscribe failed, retrying", "node", on, "err", err)
			continue
		}
		delete(w.pending, on)
		picked = append(picked, on)
	}
	if len(picked) > 0 {
		w.emit(WatchEvent{Time: w.now(), Kind: WatchMonitor, Nodes: picked, Message: fmt.Sprintf(
			"subscribed on %s (%s)", strings.Join(picked, ", "), detailRegistered)})
		w.reread(ctx, c, infos, picked)
	}
}

// reread reads the current state of the watched units on nodes (those online in infos) and
// reports every difference from what was printed last: after re-subscribing, the events of
// the subscription alone miss units that were unloaded meanwhile. Units of nodes that are
// offline or unknown were reported by syncNodes already.
func (w *statusWatch) reread(ctx context.Context, c Controller, infos []controller.NodeInfo, nodes []string) {
	byName := map[string]controller.NodeInfo{}
	for _, n := range infos {
		byName[n.Name] = n
	}
	sr := statusReaderOf(c)
	type read struct {
		info  controller.NodeInfo
		unit  string // "" with "*": list holds every loaded unit
		props map[string]dbus.Variant
		list  []controller.UnitInfo
		err   error
	}
	var reads []*read
	for _, on := range nodes {
		info, ok := byName[on]
		if !ok || info.Status != controller.NodeOnline {
			continue
		}
		if w.units == nil {
			if sr != nil {
				reads = append(reads, &read{info: info})
			}
			continue
		}
		for _, u := range w.units {
			reads = append(reads, &read{info: info, unit: u})
		}
	}
	if len(reads) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, w.d.opts.timeout)
	defer cancel()
	fanOut(rctx, len(reads), w.d.opts.parallel, func(i int) {
		r := reads[i]
		if r.unit == "" {
			r.list, r.err = sr.NodeListUnits(rctx, r.info)
			return
		}
		var n Node
		if sr != nil {
			n = sr.NodeOf(r.info)
		} else if n, r.err = c.GetNode(rctx, r.info.Name); r.err != nil {
			return
		}
		r.props, r.err = n.GetUnitProperties(rctx, r.unit, unitIface)
	}, func(i int, err error) { reads[i].err = err })
	for _, r := range reads {
		if r.err != nil {
			// The node went offline meanwhile (its signal follows) or the read failed: the
			// subscription's own events still report the unit.
			w.d.opts.logger.Debug("status -w: re-read failed", "node", r.info.Name, "unit", r.unit, "err", r.err)
			continue
		}
		if r.unit == "" {
			// Only units printed before: every other loaded unit shows on its next transition.
			listed := map[string]controller.UnitInfo{}
			for _, u := range r.list {
				listed[u.Name] = u
			}
			for _, key := range w.seenOn(r.info.Name) {
				if u, ok := listed[key.unit]; ok && u.LoadState != "not-found" {
					w.setUnit(key, u.ActiveState, u.SubState, "virtual", "")
				} else {
					w.unloaded(key, "virtual")
				}
			}
			continue
		}
		var row UnitStatusRow
		statusUnitRow(r.props, &row)
		key := watchKey{r.info.Name, r.unit}
		if row.LoadState == "" || row.LoadState == "not-found" {
			w.unloaded(key, "virtual")
			continue
		}
		w.setUnit(key, row.ActiveState, row.SubState, "virtual", "")
	}
}

// seenOn lists the units printed for a node, sorted.
func (w *statusWatch) seenOn(node string) []watchKey {
	var keys []watchKey
	for k := range w.seen {
		if k.on == node {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b watchKey) int { return strings.Compare(a.unit, b.unit) })
	return keys
}

// unitsUnreachable reports the printed units of a node the controller cannot reach the way
// BlueChi reports an agent that disconnected (virtual inactive/agent-offline), saying why,
// and forgets them so their states are printed again when the node is back.
func (w *statusWatch) unitsUnreachable(node, detail string) {
	for _, key := range w.seenOn(node) {
		w.setUnit(key, "inactive", "agent-offline", "virtual", detail)
		delete(w.seen, key)
	}
}

// follow handles events until ctx ends, the monitor ends, or the connection is lost. While a
// watched node is unknown to the controller it asks ListNodes again with backoff, and at once
// when a status signal shows such a node.
func (w *statusWatch) follow(ctx context.Context, c Controller, mon Monitor, ns <-chan controller.NodeStatusEvent) followEnd {
	events := mon.Events()
	delay := watchBackoffMin
	var poll <-chan time.Time
	for {
		if poll == nil && w.needsPoll() {
			poll = w.d.opts.clock.After(delay)
			delay = min(2*delay, watchBackoffMax)
		}
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
			if w.onNodeEvent(ev) {
				w.pickup(ctx, c, mon)
			}
		case <-poll:
			poll = nil
			w.pickup(ctx, c, mon)
		}
	}
}

// onNodeEvent reports a status signal; true when it is about a watched node the controller did
// not know (it registered since: pick it up).
func (w *statusWatch) onNodeEvent(ev controller.NodeStatusEvent) bool {
	if _, watched := w.hostOf[ev.Node]; !watched {
		return false
	}
	again := w.nodes[ev.Node].gone || w.pending[ev.Node]
	if !w.nodes[ev.Node].gone {
		w.setNode(ev.Node, ev.Status, false)
	}
	return again
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

// syncNodes reports the watched nodes' statuses from a ListNodes answer; a watched node missing
// from it is not registered on the controller (gone).
func (w *statusWatch) syncNodes(infos []controller.NodeInfo) {
	listed := map[string]controller.NodeStatus{}
	for _, n := range infos {
		listed[n.Name] = n.Status
	}
	for _, name := range w.watchedNodes() {
		status, ok := listed[name]
		w.setNode(name, status, !ok)
	}
}

func (w *statusWatch) watchedNodes() []string {
	out := make([]string, 0, len(w.hostOf))
	for n := range w.hostOf {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func (w *statusWatch) setNode(name string, status controller.NodeStatus, gone bool) {
	if status == "" {
		status = controller.NodeOffline
	}
	now := nodeSeen{status, gone}
	prev, known := w.nodes[name]
	if known && prev == now {
		return
	}
	w.nodes[name] = now
	detail := ""
	switch {
	case gone:
		detail = detailNotRegistered
	case known && prev.gone:
		detail = detailRegistered
	}
	w.emit(WatchEvent{Time: w.now(), Kind: WatchNode, Node: w.hostOf[name], On: name, Status: status, Detail: detail})
	if gone {
		// BlueChi sends nothing about the units of a node it does not know.
		w.unitsUnreachable(name, detailNotRegistered)
	}
}

// setUnit prints a unit's state unless it is the one printed last.
func (w *statusWatch) setUnit(key watchKey, active, sub, reason, detail string) {
	st := watchSeen{active, sub}
	if prev, ok := w.seen[key]; ok && prev == st {
		return
	}
	w.seen[key] = st
	w.emit(WatchEvent{Time: w.now(), Kind: WatchUnit, Node: w.hostOf[key.on], On: key.on, Unit: key.unit,
		LoadState: "loaded", ActiveState: active, SubState: sub, Reason: reason, Detail: detail})
}

// unloaded prints that systemd unloaded a unit printed before.
func (w *statusWatch) unloaded(key watchKey, reason string) {
	if _, known := w.seen[key]; !known {
		return
	}
	delete(w.seen, key)
	w.emit(WatchEvent{Time: w.now(), Kind: WatchUnit, Node: w.hostOf[key.on], On: key.on, Unit: key.unit,
		LoadState: "not-loaded", Reason: reason})
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
	_, watched := w.hostOf[ev.Node]
	if !watched || ev.Unit == "*" { // "*": BlueChi's virtual wildcard unit; node status covers it
		return
	}
	key := watchKey{ev.Node, ev.Unit}
	if ev.Kind == controller.EventUnitRemoved {
		// Virtual removals follow a node going offline (already reported); real ones mean
		// systemd unloaded the unit (e.g. its Quadlet file was removed and systemd reloaded).
		if ev.Reason == "virtual" {
			delete(w.seen, key)
			return
		}
		w.unloaded(key, ev.Reason)
		return
	}
	w.setUnit(key, ev.ActiveState, ev.SubState, ev.Reason, "")
}
