package controller

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/godbus/dbus/v5"
)

// Monitor is a BlueChi monitor (org.eclipse.bluechi.Monitor). BlueChi sends monitor signals only
// to the connection that created the monitor (and to added peers), so the monitor is created on
// the client's own connection and its signals are routed by the client's dispatcher.
//
// Slow consumers: Events is buffered (4096 events). The dispatcher never blocks; when the buffer
// is full, events are discarded and counted (Dropped), and as soon as there is room again an
// EventOverflow event carrying the number of discarded events is delivered before the next
// event, so a consumer knows to re-read unit state.
type Monitor struct {
	Path dbus.ObjectPath

	c       *Client
	match   []dbus.MatchOption
	mu      sync.Mutex
	events  chan Event
	closed  bool
	pending uint64 // dropped since the last EventOverflow was delivered
	dropped atomic.Uint64
}

// CreateMonitor creates a monitor on the client's connection.
func (c *Client) CreateMonitor(ctx context.Context) (*Monitor, error) {
	var path dbus.ObjectPath
	if err := c.call(ctx, ControllerPath, methodCreateMonitor).Store(&path); err != nil {
		return nil, wrap(err, "create monitor")
	}
	m := &Monitor{Path: path, c: c, events: make(chan Event, monitorBuffer)}
	// BlueChi unicasts monitor signals, which need no match rule; the rule makes a controller
	// that broadcasts them (an older or alternative implementation) work the same way.
	m.match = []dbus.MatchOption{
		dbus.WithMatchSender(BusName),
		dbus.WithMatchObjectPath(path),
		dbus.WithMatchInterface(MonitorInterface),
	}
	if err := c.conn.AddMatchSignalContext(ctx, m.match...); err != nil {
		m.match = nil
		c.log.Debug("controller: monitor match rule not added", "monitor", path, "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead != nil {
		m.detach()
		return m, nil
	}
	c.monitors[path] = m
	return m, nil
}

// Events returns the monitor's events. The channel is closed after Close, when the controller
// leaves the bus, or when the connection ends.
func (m *Monitor) Events() <-chan Event { return m.events }

// Dropped is the number of events discarded so far because the consumer was too slow.
func (m *Monitor) Dropped() uint64 { return m.dropped.Load() }

// Subscribe subscribes to a unit on a node; either may be "*". It returns the subscription id.
func (m *Monitor) Subscribe(ctx context.Context, node, unit string) (uint32, error) {
	var id uint32
	if err := m.c.call(ctx, m.Path, methodMonitorSubscribe, node, unit).Store(&id); err != nil {
		return 0, wrap(err, "monitor %s: subscribe %s/%s", m.Path, node, unit)
	}
	return id, nil
}

// SubscribeList subscribes to several units on a node.
func (m *Monitor) SubscribeList(ctx context.Context, node string, units []string) (uint32, error) {
	if units == nil {
		units = []string{}
	}
	var id uint32
	if err := m.c.call(ctx, m.Path, methodMonitorSubList, node, units).Store(&id); err != nil {
		return 0, wrap(err, "monitor %s: subscribe %s/%v", m.Path, node, units)
	}
	return id, nil
}

// Unsubscribe cancels a subscription.
func (m *Monitor) Unsubscribe(ctx context.Context, id uint32) error {
	return wrap(m.c.call(ctx, m.Path, methodMonitorUnsubscribe, id).Err, "monitor %s: unsubscribe %d", m.Path, id)
}

// AddPeer adds another connection (unique bus name) as a listener of this monitor.
func (m *Monitor) AddPeer(ctx context.Context, busName string) (uint32, error) {
	var id uint32
	if err := m.c.call(ctx, m.Path, methodMonitorAddPeer, busName).Store(&id); err != nil {
		return 0, wrap(err, "monitor %s: add peer %s", m.Path, busName)
	}
	return id, nil
}

// RemovePeer removes a peer added with AddPeer; the peer gets PeerRemoved(reason).
func (m *Monitor) RemovePeer(ctx context.Context, id uint32, reason string) error {
	return wrap(m.c.call(ctx, m.Path, methodMonitorRemovePeer, id, reason).Err, "monitor %s: remove peer %d", m.Path, id)
}

// Close closes the monitor on the controller and closes Events. The local side is torn down even
// if the call fails (the error is returned).
func (m *Monitor) Close(ctx context.Context) error {
	err := m.c.call(ctx, m.Path, methodMonitorClose).Err
	m.c.mu.Lock()
	if m.c.monitors[m.Path] == m {
		delete(m.c.monitors, m.Path)
	}
	m.c.mu.Unlock()
	m.detach()
	if m.match != nil {
		_ = m.c.conn.RemoveMatchSignalContext(ctx, m.match...)
	}
	return wrap(err, "monitor %s: close", m.Path)
}

// detach closes Events (once).
func (m *Monitor) detach() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.events)
	}
}

// push delivers one event without blocking (see the type's comment).
func (m *Monitor) push(ev Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	if m.pending > 0 {
		select {
		case m.events <- Event{Kind: EventOverflow, Dropped: m.pending}:
			m.pending = 0
		default:
			m.pending++
			m.dropped.Add(1)
			return
		}
	}
	select {
	case m.events <- ev:
	default:
		m.pending++
		m.dropped.Add(1)
	}
}

// parseMonitorSignal decodes a Monitor signal. UnitRemoved is accepted with 2 or 3 arguments
// (BlueChi sends 3, older introspection data says 2).
func parseMonitorSignal(sig *dbus.Signal) (Event, bool) {
	b := sig.Body
	str := func(i int) (string, bool) {
		if i >= len(b) {
			return "", false
		}
		s, ok := b[i].(string)
		return s, ok
	}
	strs := func(n int) ([]string, bool) {
		out := make([]string, n)
		for i := range n {
			s, ok := str(i)
			if !ok {
				return nil, false
			}
			out[i] = s
		}
		return out, true
	}
	switch sig.Name {
	case MonitorInterface + "." + SignalUnitNew:
		if s, ok := strs(3); ok {
			return Event{Kind: EventUnitNew, Node: s[0], Unit: s[1], Reason: s[2]}, true
		}
		if s, ok := strs(2); ok { // tolerate the short form too
			return Event{Kind: EventUnitNew, Node: s[0], Unit: s[1]}, true
		}
	case MonitorInterface + "." + SignalUnitRemoved:
		if s, ok := strs(3); ok {
			return Event{Kind: EventUnitRemoved, Node: s[0], Unit: s[1], Reason: s[2]}, true
		}
		if s, ok := strs(2); ok {
			return Event{Kind: EventUnitRemoved, Node: s[0], Unit: s[1]}, true
		}
	case MonitorInterface + "." + SignalUnitStateChanged:
		if s, ok := strs(5); ok {
			return Event{Kind: EventUnitStateChanged, Node: s[0], Unit: s[1], ActiveState: s[2], SubState: s[3], Reason: s[4]}, true
		}
	case MonitorInterface + "." + SignalUnitPropertiesChanged:
		s, ok := strs(3)
		if !ok || len(b) < 4 {
			return Event{}, false
		}
		props, ok := b[3].(map[string]dbus.Variant)
		if !ok {
			return Event{}, false
		}
		return Event{Kind: EventUnitPropertiesChanged, Node: s[0], Unit: s[1], Iface: s[2], Props: props}, true
	case MonitorInterface + "." + SignalPeerRemoved:
		if s, ok := strs(1); ok {
			return Event{Kind: EventPeerRemoved, Reason: s[0]}, true
		}
	}
	return Event{}, false
}
