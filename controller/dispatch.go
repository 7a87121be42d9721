package controller

import (
	"context"
	"sync"

	"github.com/godbus/dbus/v5"
)

// The dispatcher is the only reader of the connection's signals. It never blocks on a consumer:
// job results go into cap-1 channels, subscriber channels are written without blocking.

func (c *Client) dispatch() {
	defer close(c.done)
	reason := ErrDisconnected
	connDone := c.conn.Context().Done()
loop:
	for {
		select {
		case sig, ok := <-c.sigCh:
			if !ok {
				break loop
			}
			c.handleSignal(sig)
		case <-connDone:
			// Drain what is already queued so results that arrived before the close are kept.
			for {
				select {
				case sig, ok := <-c.sigCh:
					if !ok {
						break loop
					}
					c.handleSignal(sig)
				default:
					break loop
				}
			}
		case <-c.stop:
			break loop
		}
	}
	c.shutdown(reason)
}

// shutdown ends every wait, monitor and subscription; later operations see c.dead.
func (c *Client) shutdown(reason error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = reason
	for p, w := range c.waiters {
		w.deliver(jobOutcome{err: reason})
		delete(c.waiters, p)
	}
	c.early = nil
	for p, m := range c.monitors {
		m.detach()
		delete(c.monitors, p)
	}
	for id, s := range c.statusSubs {
		s.close()
		delete(c.statusSubs, id)
	}
	for id, s := range c.jobSubs {
		s.close()
		delete(c.jobSubs, id)
	}
}

func (c *Client) handleSignal(sig *dbus.Signal) {
	if sig == nil {
		return
	}
	switch sig.Name {
	case signalJobRemovedFull:
		if sig.Path == ControllerPath {
			c.onJobRemoved(sig)
		}
	case signalJobNewFull:
		if sig.Path == ControllerPath {
			c.onJobNew(sig)
		}
	case signalPropertiesChangedFu:
		c.onPropertiesChanged(sig)
	case signalNameOwnerChangedFull:
		c.onNameOwnerChanged(sig)
	case MonitorInterface + "." + SignalUnitNew,
		MonitorInterface + "." + SignalUnitRemoved,
		MonitorInterface + "." + SignalUnitStateChanged,
		MonitorInterface + "." + SignalUnitPropertiesChanged,
		MonitorInterface + "." + SignalPeerRemoved:
		c.onMonitorSignal(sig)
	}
}

type jobRemoved struct {
	id     uint32
	path   dbus.ObjectPath
	node   string
	unit   string
	result JobResult
}

func (c *Client) onJobRemoved(sig *dbus.Signal) {
	var ev jobRemoved
	var result string
	if err := dbus.Store(sig.Body, &ev.id, &ev.path, &ev.node, &ev.unit, &result); err != nil {
		c.log.Debug("controller: malformed JobRemoved", "body", sig.Body, "err", err)
		return
	}
	ev.result = JobResult(result)
	c.mu.Lock()
	defer c.mu.Unlock()
	if w, ok := c.waiters[ev.path]; ok {
		w.deliver(jobOutcome{result: ev.result})
		delete(c.waiters, ev.path)
	} else if c.inflight > 0 {
		// A job-creating call is in flight: this may be its job finishing before the reply is
		// processed. Keep it until the call claims it or the last in-flight call returns.
		c.early = append(c.early, ev)
		if len(c.early) > earlyKeep {
			c.early = c.early[len(c.early)-earlyKeep:]
		}
	}
	je := JobEvent{Kind: JobEventRemoved, ID: ev.id, Path: ev.path, Node: ev.node, Unit: ev.unit, Result: ev.result}
	for _, s := range c.jobSubs {
		s.send(je)
	}
}

func (c *Client) onJobNew(sig *dbus.Signal) {
	var je JobEvent
	if err := dbus.Store(sig.Body, &je.ID, &je.Path); err != nil {
		return
	}
	je.Kind = JobEventNew
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.jobSubs {
		s.send(je)
	}
}

func (c *Client) onPropertiesChanged(sig *dbus.Signal) {
	name, ok := nodeNameFromPath(sig.Path)
	if !ok || len(sig.Body) < 2 {
		return
	}
	iface, _ := sig.Body[0].(string)
	changed, _ := sig.Body[1].(map[string]dbus.Variant)
	if iface != NodeInterface {
		return
	}
	v, ok := changed[PropStatus]
	if !ok {
		return
	}
	s, ok := v.Value().(string)
	if !ok {
		return
	}
	status := NodeStatus(s)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.statusGen[sig.Path]++
	c.lastStatus[sig.Path] = status
	if status == NodeOffline {
		// BlueChi drops a disconnected node's jobs without JobRemoved: end their waits.
		for p, w := range c.waiters {
			if w.node == sig.Path {
				w.deliver(jobOutcome{err: ErrNodeOffline})
				delete(c.waiters, p)
			}
		}
	}
	ev := NodeStatusEvent{Node: name, Path: sig.Path, Status: status}
	for _, sub := range c.statusSubs {
		sub.send(ev)
	}
}

func (c *Client) onNameOwnerChanged(sig *dbus.Signal) {
	var name, oldOwner, newOwner string
	if err := dbus.Store(sig.Body, &name, &oldOwner, &newOwner); err != nil || name != BusName || oldOwner == "" {
		return
	}
	// The controller we talked to is gone (stopped, crashed or replaced): its jobs and monitors
	// are gone with it.
	c.log.Debug("controller: org.eclipse.bluechi lost its owner", "old", oldOwner, "new", newOwner)
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, w := range c.waiters {
		w.deliver(jobOutcome{err: ErrControllerUnavailable})
		delete(c.waiters, p)
	}
	c.early = nil
	for p, m := range c.monitors {
		m.detach()
		delete(c.monitors, p)
	}
}

func (c *Client) onMonitorSignal(sig *dbus.Signal) {
	c.mu.Lock()
	m, ok := c.monitors[sig.Path]
	c.mu.Unlock()
	if !ok {
		return
	}
	ev, ok := parseMonitorSignal(sig)
	if !ok {
		c.log.Debug("controller: malformed monitor signal", "name", sig.Name, "body", sig.Body)
		return
	}
	m.push(ev)
}

// ---- subscriptions ----

// subscriber is a buffered channel written without blocking; when full, events are counted as
// dropped and the channel keeps its oldest entries.
type subscriber[T any] struct {
	mu      sync.Mutex
	ch      chan T
	closed  bool
	dropped uint64
}

func newSubscriber[T any](n int) *subscriber[T] { return &subscriber[T]{ch: make(chan T, n)} }

func (s *subscriber[T]) send(v T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.ch <- v:
	default:
		s.dropped++
	}
}

func (s *subscriber[T]) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

// WatchNodeStatus returns a channel of node Status changes (from the PropertiesChanged match
// added at New) and a function that ends the subscription. The channel is closed when the
// function is called, ctx is done, or the client/connection closes. Only changes are reported:
// read ListNodes after subscribing for the current state. The channel is buffered (256); if the
// consumer falls that far behind, further changes are dropped (the dispatcher never blocks), so
// re-read ListNodes if exactness matters.
func (c *Client) WatchNodeStatus(ctx context.Context) (<-chan NodeStatusEvent, func()) {
	sub := newSubscriber[NodeStatusEvent](watchBuffer)
	c.mu.Lock()
	if c.dead != nil {
		c.mu.Unlock()
		sub.close()
		return sub.ch, func() {}
	}
	c.nextSub++
	id := c.nextSub
	c.statusSubs[id] = sub
	c.mu.Unlock()
	return sub.ch, c.cancelSub(ctx, func() {
		c.mu.Lock()
		delete(c.statusSubs, id)
		c.mu.Unlock()
		sub.close()
	})
}

func jobNewMatch() []dbus.MatchOption {
	return []dbus.MatchOption{
		dbus.WithMatchSender(BusName),
		dbus.WithMatchObjectPath(ControllerPath),
		dbus.WithMatchInterface(ControllerInterface),
		dbus.WithMatchMember(SignalJobNew),
	}
}

// WatchJobs returns a channel of Controller.JobNew and JobRemoved signals for all jobs (not only
// this client's) and a function that ends the subscription. The first call adds a JobNew match
// rule. Buffering and closing as for WatchNodeStatus.
func (c *Client) WatchJobs(ctx context.Context) (<-chan JobEvent, func(), error) {
	c.mu.Lock()
	need := !c.jobNewMatch
	c.mu.Unlock()
	if need {
		if err := c.conn.AddMatchSignalContext(ctx, jobNewMatch()...); err != nil {
			return nil, nil, wrap(err, "watch jobs: add match rule")
		}
	}
	sub := newSubscriber[JobEvent](watchBuffer)
	c.mu.Lock()
	c.jobNewMatch = true
	if c.dead != nil {
		c.mu.Unlock()
		sub.close()
		return sub.ch, func() {}, nil
	}
	c.nextSub++
	id := c.nextSub
	c.jobSubs[id] = sub
	c.mu.Unlock()
	return sub.ch, c.cancelSub(ctx, func() {
		c.mu.Lock()
		delete(c.jobSubs, id)
		c.mu.Unlock()
		sub.close()
	}), nil
}

// cancelSub runs end once, when the returned function is called or ctx is done.
func (c *Client) cancelSub(ctx context.Context, end func()) func() {
	var once sync.Once
	stop := make(chan struct{})
	cancel := func() { once.Do(func() { close(stop); end() }) }
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-stop:
		case <-c.done:
		}
	}()
	return cancel
}
