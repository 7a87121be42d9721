package testcontroller

import (
	"fmt"

	"github.com/godbus/dbus/v5"
)

// monitor is org.eclipse.bluechi.Monitor (monitor.c). Its signals are unicast: sent with a
// Destination header to the creating connection and to each added peer, never broadcast.
type monitor struct {
	id     uint32
	path   dbus.ObjectPath
	owner  string
	subs   []*subscription
	peers  []*monitorPeer
	closed bool
}

type monitorPeer struct {
	id   uint32
	name string
}

type subscription struct {
	id    uint32
	mon   *monitor
	node  string // node name or "*"
	units []string
}

func (c *Controller) newMonitor(owner string) *monitor {
	c.nextMonitorID++
	m := &monitor{
		id:    c.nextMonitorID,
		path:  dbus.ObjectPath(fmt.Sprintf("%s/%d", MonitorPathPrefix, c.nextMonitorID)),
		owner: owner,
	}
	c.monitors[m.path] = m
	c.monitorOrder = append(c.monitorOrder, m)
	return m
}

func (c *Controller) monitorMethod(r *request, m *monitor) {
	if r.iface != "" && r.iface != MonitorIface {
		c.unknownMethod(r)
		return
	}
	switch r.member {
	case "Close":
		if !c.checkArgs(r, "") {
			return
		}
		if m.closed {
			c.sendError(r, ErrFailed, "Monitor already closed")
			return
		}
		c.closeMonitor(m, true)
		c.reply(r)
	case "Subscribe":
		var nodeName, unit string
		if !c.checkArgs(r, "ss", &nodeName, &unit) {
			return
		}
		s := c.newSubscription(m, nodeName, []string{unit})
		// Cached virtual events go out before the reply, the agent's after it (as in BlueChi).
		c.addSubscription(s)
		c.reply(r, s.id)
	case "SubscribeList":
		var nodeName string
		var units []string
		if !c.checkArgs(r, "sas", &nodeName, &units) {
			return
		}
		s := c.newSubscription(m, nodeName, units)
		c.addSubscription(s)
		c.reply(r, s.id)
	case "Unsubscribe":
		var id uint32
		if !c.checkArgs(r, "u", &id) {
			return
		}
		for i, s := range m.subs {
			if s.id == id {
				c.removeSubscription(s)
				m.subs = append(m.subs[:i], m.subs[i+1:]...)
				c.reply(r)
				return
			}
		}
		c.sendError(r, ErrFailed, "Subscription '%d' not found", id)
	case "AddPeer":
		var name string
		if !c.checkArgs(r, "s", &name) {
			return
		}
		if !busIDValid(name) {
			c.sendError(r, ErrInvalidArgs, "Peer name '%s' is not a valid bus name", name)
			return
		}
		if m.owner == name {
			c.sendError(r, ErrInvalidArgs, "Peer name '%s' has already been added", name)
			return
		}
		for _, p := range m.peers {
			if p.name == name {
				c.sendError(r, ErrInvalidArgs, "Peer name '%s' has already been added", name)
				return
			}
		}
		c.nextPeerID++
		p := &monitorPeer{id: c.nextPeerID, name: name}
		m.peers = append(m.peers, p)
		c.reply(r, p.id)
	case "RemovePeer":
		var id uint32
		var reason string
		if !c.checkArgs(r, "us", &id, &reason) {
			return
		}
		for i, p := range m.peers {
			if p.id == id {
				c.emitTo(p.name, m.path, MonitorIface, "PeerRemoved", reason)
				m.peers = append(m.peers[:i], m.peers[i+1:]...)
				c.reply(r)
				return
			}
		}
		c.sendError(r, ErrFailed, "Peer with ID '%d' not found.", id)
	default:
		c.unknownMethod(r)
	}
}

// busIDValid is BlueChi's bus_id_is_valid: only unique names (":1.42") may be peers.
func busIDValid(name string) bool {
	if len(name) < 2 || name[0] != ':' || len(name) > 255 {
		return false
	}
	dot := true
	for i := 1; i < len(name); i++ {
		ch := name[i]
		if ch == '.' {
			if dot {
				return false
			}
			dot = true
			continue
		}
		dot = false
		if !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
			return false
		}
	}
	return true
}

func (c *Controller) newSubscription(m *monitor, nodeName string, units []string) *subscription {
	c.nextSubID++
	s := &subscription{id: c.nextSubID, mon: m, node: nodeName, units: append([]string(nil), units...)}
	m.subs = append(m.subs, s)
	return s
}

// addSubscription is controller_add_subscription + node_subscribe.
func (c *Controller) addSubscription(s *subscription) {
	if s.node == wildcard {
		for _, n := range c.nodes {
			c.nodeSubscribe(n, s)
		}
		return
	}
	if n := c.nodeByName[s.node]; n != nil {
		c.nodeSubscribe(n, s)
	} else {
		c.log.Warn("subscription to non-existing node", "node", s.node)
	}
}

func (c *Controller) nodeSubscribe(n *node, s *subscription) {
	for _, unit := range s.units {
		us := n.usubs[unit]
		if us == nil {
			us = &unitSubs{unit: unit}
			n.usubs[unit] = us
			// First subscription to this unit: pass it to the agent.
			c.agentSubscribe(n, unit)
		}
		us.subs = append(us.subs, s)
		// Already known loaded: the agent will not report it again, send virtual events here.
		if us.loaded {
			c.monitorUnitNew(s.mon, n.name, unit, "virtual")
			if us.active != "" {
				sub := us.sub
				if sub == "" {
					sub = "invalid"
				}
				c.monitorUnitStateChanged(s.mon, n.name, unit, us.active, sub, "virtual")
			}
		}
	}
}

func (c *Controller) removeSubscription(s *subscription) {
	if s.node == wildcard {
		for _, n := range c.nodes {
			c.nodeUnsubscribe(n, s)
		}
		return
	}
	if n := c.nodeByName[s.node]; n != nil {
		c.nodeUnsubscribe(n, s)
	}
}

func (c *Controller) nodeUnsubscribe(n *node, s *subscription) {
	for _, unit := range s.units {
		us := n.usubs[unit]
		if us == nil {
			continue
		}
		for i, x := range us.subs {
			if x == s {
				us.subs = append(us.subs[:i], us.subs[i+1:]...)
				break
			}
		}
		if len(us.subs) == 0 {
			c.agentUnsubscribe(n, unit)
			delete(n.usubs, unit)
		}
	}
}

// closeMonitor is monitor_close + controller_remove_monitor.
func (c *Controller) closeMonitor(m *monitor, notifyPeers bool) {
	for _, s := range m.subs {
		c.removeSubscription(s)
	}
	m.subs = nil
	for _, p := range m.peers {
		if notifyPeers {
			c.emitTo(p.name, m.path, MonitorIface, "PeerRemoved", "monitor closed")
		}
	}
	m.peers = nil
	m.closed = true
	delete(c.monitors, m.path)
	for i, x := range c.monitorOrder {
		if x == m {
			c.monitorOrder = append(c.monitorOrder[:i], c.monitorOrder[i+1:]...)
			break
		}
	}
}

// clientDisconnected frees monitors owned by a connection that left the bus.
func (c *Controller) clientDisconnected(name string) {
	for _, m := range append([]*monitor(nil), c.monitorOrder...) {
		if m.owner == name {
			c.closeMonitor(m, true)
		}
	}
}

func (c *Controller) monitorSend(m *monitor, member string, body ...any) {
	targets := append([]string{m.owner}, make([]string, 0, len(m.peers))...)
	for _, p := range m.peers {
		targets = append(targets, p.name)
	}
	for _, t := range targets {
		if t == "" {
			continue
		}
		b := append([]any(nil), body...)
		c.emitTo(t, m.path, MonitorIface, member, b...)
	}
}

func (c *Controller) monitorUnitNew(m *monitor, nodeName, unit, reason string) {
	c.monitorSend(m, "UnitNew", nodeName, unit, reason)
}

func (c *Controller) monitorUnitRemoved(m *monitor, nodeName, unit, reason string) {
	// Sent with 3 args (sss) although BlueChi's vtable declares 2.
	c.monitorSend(m, "UnitRemoved", nodeName, unit, reason)
}

func (c *Controller) monitorUnitStateChanged(m *monitor, nodeName, unit, active, sub, reason string) {
	c.monitorSend(m, "UnitStateChanged", nodeName, unit, active, sub, reason)
}

func (c *Controller) monitorUnitPropertiesChanged(m *monitor, nodeName, unit, iface string, props map[string]dbus.Variant) {
	if props == nil {
		props = map[string]dbus.Variant{}
	}
	c.monitorSend(m, "UnitPropertiesChanged", nodeName, unit, iface, props)
}
