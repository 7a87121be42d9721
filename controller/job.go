package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/godbus/dbus/v5"
)

type jobOutcome struct {
	result JobResult
	err    error
}

// waiter receives the outcome of one job. ch has capacity 1 and only the first outcome is kept,
// so the dispatcher never blocks on it.
type waiter struct {
	path dbus.ObjectPath
	node dbus.ObjectPath
	ch   chan jobOutcome
}

func (w *waiter) deliver(o jobOutcome) {
	select {
	case w.ch <- o:
	default: // an outcome is already there; the first one wins
	}
}

// Job is a BlueChi job created by Node.StartUnit/StopUnit/RestartUnit/ReloadUnit.
type Job struct {
	ID   uint32
	Path dbus.ObjectPath
	Node string
	Unit string

	c        *Client
	w        *waiter
	once     sync.Once
	resolved chan struct{}
	outcome  jobOutcome
}

// startJob calls a job-creating Node method and registers the job's waiter so that no outcome
// can be missed.
//
// This is go-systemd's pattern with its gaps closed: instead of one lock held across the call
// (which would serialize every job-creating call of the client and make the dispatcher wait for
// the slowest one), a "window" is opened under c.mu before the call: while any such call is in
// flight the dispatcher keeps unclaimed JobRemoved signals; when the reply arrives the waiter is
// registered under c.mu and a JobRemoved that was already seen is claimed. godbus hands signals to
// the dispatcher in wire order before it completes the reply, so a JobRemoved is either kept in
// the window or finds the registered waiter. The same holds for the node's Status: a change seen
// during the window is checked at registration, and the node's Status is read once more after
// registration (the node may have gone offline before the match fired).
func (c *Client) startJob(ctx context.Context, n *Node, method, verb, unit string, mode JobMode) (*Job, error) {
	c.mu.Lock()
	if c.dead != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("node %s: %s %s: %w", n.Name, verb, unit, c.dead)
	}
	c.inflight++
	gen := c.statusGen[n.Path]
	c.mu.Unlock()

	var path dbus.ObjectPath
	err := c.call(ctx, n.Path, method, unit, string(mode)).Store(&path)

	c.mu.Lock()
	c.inflight--
	if err != nil {
		if c.inflight == 0 {
			c.early = nil
		}
		c.mu.Unlock()
		return nil, wrap(err, "node %s: %s %s", n.Name, verb, unit)
	}
	j := &Job{ID: jobIDFromPath(path), Path: path, Node: n.Name, Unit: unit, c: c, resolved: make(chan struct{})}
	j.w = &waiter{path: path, node: n.Path, ch: make(chan jobOutcome, 1)}
	claimed := false
	for i, ev := range c.early {
		if ev.path == path {
			j.w.deliver(jobOutcome{result: ev.result})
			if j.ID == 0 {
				j.ID = ev.id
			}
			c.early = append(c.early[:i:i], c.early[i+1:]...)
			claimed = true
			break
		}
	}
	if c.inflight == 0 {
		c.early = nil
	}
	switch {
	case claimed:
	case c.dead != nil:
		j.w.deliver(jobOutcome{err: c.dead})
	case c.statusGen[n.Path] != gen && c.lastStatus[n.Path] == NodeOffline:
		j.w.deliver(jobOutcome{err: ErrNodeOffline})
	default:
		c.waiters[path] = j.w
	}
	c.mu.Unlock()

	if !claimed {
		// Close the remaining gap: the node may have gone offline before our match saw it.
		if st, serr := n.Status(ctx); serr == nil && st == NodeOffline {
			c.failWaiter(j.w, ErrNodeOffline)
		} else if serr != nil {
			c.log.Debug("controller: node status check after job creation failed", "node", n.Name, "job", path, "err", serr)
		}
	}
	c.log.Debug("controller: job created", "node", n.Name, "unit", unit, "op", verb, "job", path)
	return j, nil
}

// failWaiter ends a registered wait with err unless it already has an outcome.
func (c *Client) failWaiter(w *waiter, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiters[w.path] == w {
		delete(c.waiters, w.path)
	}
	w.deliver(jobOutcome{err: err})
}

func jobIDFromPath(p dbus.ObjectPath) uint32 {
	s := string(p)
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return 0
	}
	id, err := strconv.ParseUint(s[i+1:], 10, 32)
	if err != nil {
		return 0
	}
	return uint32(id)
}

// Wait blocks until the job ends and returns its result (check JobResult.Success: "failed",
// "canceled", ... are results, not errors). It returns ErrNodeOffline when the job's node went
// offline (BlueChi drops such jobs without JobRemoved), ErrTimeout (wrapping
// context.DeadlineExceeded) when ctx's deadline passes, ctx.Err() when ctx is cancelled,
// ErrControllerUnavailable when the controller left the bus and ErrDisconnected when the bus
// connection or the client closed. A job keeps being tracked after a Wait that ended because of
// ctx, so Wait can be called again; once an outcome is known every Wait returns it.
func (j *Job) Wait(ctx context.Context) (JobResult, error) {
	if j.w == nil || j.resolved == nil {
		return "", errors.New("controller: Wait on a Job not created by a Node method")
	}
	select {
	case <-j.resolved:
		return j.result()
	default:
	}
	select {
	case o := <-j.w.ch:
		j.resolve(o)
	case <-j.resolved:
	case <-j.c.done:
		// The dispatcher has ended and failed every waiter; prefer a result that is already there.
		select {
		case o := <-j.w.ch:
			j.resolve(o)
		case <-j.resolved:
		}
	case <-ctx.Done():
		err := ctx.Err()
		if errors.Is(err, context.DeadlineExceeded) {
			return "", fmt.Errorf("node %s: wait for job %s (%s): %w", j.Node, j.Path, j.Unit, newTimeout(err))
		}
		return "", err
	}
	return j.result()
}

func (j *Job) resolve(o jobOutcome) {
	j.once.Do(func() {
		j.outcome = o
		close(j.resolved)
	})
}

func (j *Job) result() (JobResult, error) {
	o := j.outcome
	if o.err != nil {
		return "", fmt.Errorf("node %s: wait for job %s (%s): %w", j.Node, j.Path, j.Unit, o.err)
	}
	return o.result, nil
}

// Cancel asks the controller to cancel the job. It replies at once; the outcome arrives as
// JobRemoved (Wait returns "canceled").
func (j *Job) Cancel(ctx context.Context) error {
	return wrap(j.c.call(ctx, j.Path, methodJobCancel).Err, "node %s: cancel job %s", j.Node, j.Path)
}

// State is the job's State property: waiting | running.
func (j *Job) State(ctx context.Context) (string, error) {
	s, err := storeProperty[string](ctx, j.c, BusName, j.Path, JobInterface, PropJobState)
	return s, wrap(err, "job %s state", j.Path)
}

// JobType is the job's JobType property: start | stop | restart | reload.
func (j *Job) JobType(ctx context.Context) (string, error) {
	s, err := storeProperty[string](ctx, j.c, BusName, j.Path, JobInterface, PropJobType)
	return s, wrap(err, "job %s type", j.Path)
}
