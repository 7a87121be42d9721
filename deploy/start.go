package deploy

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/qmorch/qmorch/controller"
)

// unitState is the part of a unit's properties the engine looks at.
type unitState struct {
	Load, Active, Sub string
}

func (s unitState) String() string {
	if s.Active == "" {
		return "unknown"
	}
	return s.Active + "/" + s.Sub
}

func (s unitState) running() bool {
	return s.Active == "active" || s.Active == "activating" || s.Active == "reloading"
}

// readState reads LoadState/ActiveState/SubState; a unit systemd does not know reads as
// not-found.
func readState(ctx context.Context, n Node, unit string) (unitState, error) {
	props, err := n.GetUnitProperties(ctx, unit, unitIface)
	if errors.Is(err, controller.ErrNoSuchUnit) {
		return unitState{Load: "not-found", Active: "inactive", Sub: "dead"}, nil
	}
	if err != nil {
		return unitState{}, err
	}
	str := func(k string) string { s, _ := props[k].Value().(string); return s }
	return unitState{Load: str("LoadState"), Active: str("ActiveState"), Sub: str("SubState")}, nil
}

// activate makes the unit run the delivered file on the twin: daemon-reload, then start (or
// restart when the content changed under a running unit), wait for the job and the settle
// window. It returns the action and the unit's final ActiveState.
func (r *run) activate(ctx context.Context, t *target, changed bool, jobStarted func()) (Action, string, error) {
	unit := r.unit
	if !changed {
		st, err := readState(ctx, t.twinNode, unit)
		if err != nil {
			return "", "", fmt.Errorf("read state of %s on %s: %w", unit, t.twin, err)
		}
		if r.req.NoStart || st.Active == "active" {
			return ActionUnchanged, st.Active, nil
		}
		// Same file, but the unit is not running (an earlier --no-start or a failure): start it.
	}
	if err := t.twinNode.Reload(ctx); err != nil {
		return "", "", fmt.Errorf("daemon-reload on %s: %w", t.twin, err)
	}
	st, err := readState(ctx, t.twinNode, unit)
	if err != nil {
		return "", "", fmt.Errorf("read state of %s on %s: %w", unit, t.twin, err)
	}
	if st.Load == "not-found" {
		return "", st.Active, fmt.Errorf("%s on %s: no such unit after daemon-reload: QM's Quadlet generator did not produce it from %s",
			unit, t.twin, r.req.File)
	}
	if r.req.NoStart {
		return ActionInstalled, st.Active, nil
	}
	restart := changed && st.running()
	w, err := r.hub.watchUnit(ctx, t.twin, unit)
	if err != nil {
		return "", st.Active, fmt.Errorf("monitor %s on %s: %w", unit, t.twin, err)
	}
	defer releaseWatch(ctx, w)
	off := r.hub.watchNode(t.twin)
	defer off.close()

	verb, call := "start", t.twinNode.StartUnit
	if restart {
		verb, call = "restart", t.twinNode.RestartUnit
	}
	job, err := call(ctx, unit, controller.JobReplace)
	if err != nil {
		return "", st.Active, fmt.Errorf("%s %s on %s: %w", verb, unit, t.twin, err)
	}
	jobStarted()
	result, err := job.Wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			_ = job.Cancel(cctx) // the job may be gone already
			cancel()
			err = ctxErr(ctx)
		}
		return "", st.Active, fmt.Errorf("%s %s on %s: wait for job: %w", verb, unit, t.twin, err)
	}
	if result != controller.JobDone {
		return "", "", fmt.Errorf("%s %s on %s: job %s (%s)", verb, unit, t.twin, result, r.diagnose(ctx, t.twinNode, unit))
	}
	final, err := r.settle(ctx, t, unit, w, off)
	if err != nil {
		return "", final, fmt.Errorf("%s %s on %s: %w", verb, unit, t.twin, err)
	}
	return ActionDeployed, final, nil
}

// settle requires the unit to stay active for the settle window: a job result "done" only
// says the start finished, not that the service survived it. Events read before the first
// real "active" may be left over from the stop half of a restart and are only trusted when
// they say the node went offline.
func (r *run) settle(ctx context.Context, t *target, unit string, w *unitWatch, off *nodeWatch) (string, error) {
	seenActive, afterDone := false, false
	// known: the real events since the subscription are complete (no overflow, monitor not
	// ended) and the last one said active: the unit's state is that, without a read.
	known := true
	lastActive := false
	check := func() error {
		for _, ev := range w.take() {
			if ev.Kind == controller.EventOverflow {
				known = false
				continue
			}
			if ev.Kind != controller.EventUnitStateChanged {
				continue
			}
			if ev.Reason != "virtual" {
				lastActive = ev.ActiveState == "active"
			}
			if ev.SubState == subAgentOffline {
				return fmt.Errorf("QM twin %s went offline: %w", t.twin, controller.ErrNodeOffline)
			}
			if ev.Reason == "virtual" {
				continue
			}
			if ev.ActiveState == "active" {
				seenActive = true
				continue
			}
			if (seenActive || afterDone) && (ev.ActiveState == "failed" || ev.SubState == "auto-restart") {
				return fmt.Errorf("unit left the active state right after start: %s/%s (%s)",
					ev.ActiveState, ev.SubState, r.diagnose(ctx, t.twinNode, unit))
			}
		}
		return nil
	}
	if err := check(); err != nil {
		return "failed", err
	}
	afterDone = true
	if r.d.opts.settle > 0 {
		timer := r.d.opts.clock.After(r.d.opts.settle)
		ended := w.ended
	wait:
		for {
			select {
			case <-w.notify:
				if err := check(); err != nil {
					return "failed", err
				}
			case <-off.offline:
				return "", fmt.Errorf("QM twin %s went offline during the %s settle window: %w",
					t.twin, r.d.opts.settle, controller.ErrNodeOffline)
			case <-ended:
				ended = nil // no more events: the final read decides
				known = false
			case <-ctx.Done():
				return "", fmt.Errorf("settle window: %w", ctxErr(ctx))
			case <-timer:
				break wait
			}
		}
	}
	select {
	case <-w.ended:
		known = false
	default:
	}
	if err := check(); err != nil { // events that came with the end of the window
		return "failed", err
	}
	if known && lastActive {
		// The monitor reported the unit active after the start and nothing since: that is
		// what a read would return (the subscription predates the start call).
		return "active", nil
	}
	st, err := readState(ctx, t.twinNode, unit)
	if err != nil {
		return "", fmt.Errorf("read state after start: %w", err)
	}
	if st.Active != "active" {
		return st.Active, fmt.Errorf("unit is %s after start, not active (%s)", st, r.diagnose(ctx, t.twinNode, unit))
	}
	return st.Active, nil
}

// diagnose describes why a unit is not running, for error messages (best effort).
func (r *run) diagnose(ctx context.Context, n Node, unit string) string {
	if ctx.Err() != nil {
		return "state unknown"
	}
	st, err := readState(ctx, n, unit)
	if err != nil {
		return "state unknown: " + err.Error()
	}
	out := "unit " + st.String()
	props, err := n.GetUnitProperties(ctx, unit, serviceIface)
	if err != nil {
		return out
	}
	if res, ok := props["Result"].Value().(string); ok && res != "" {
		out += ", result " + res
	}
	if code, ok := props["ExecMainStatus"].Value().(int32); ok && code != 0 {
		out += fmt.Sprintf(", exit status %d", code)
	}
	return out
}

// plan lists what Deploy would do, per node; it makes no call.
func (d *Deployer) plan(req Request, unit string, targets []*target) *Report {
	rep := &Report{DryRun: true, Results: make([]Result, len(targets))}
	r := &run{d: d, req: req, unit: unit}
	u := newDeliverUnit(path.Join(quadletDir(d.opts.rwetcfs), req.File))
	transient := "qmorch-deliver-<random>.service"
	for i, t := range targets {
		res := r.result(t)
		if t.err != nil {
			res.Action, res.Err = ActionFailed, t.err
			rep.Results[i] = res
			continue
		}
		res.Action = ActionPlanned
		res.Plan = []Step{
			{Node: t.host, Op: "Node.StartTransientUnit", Target: transient,
				Detail: fmt.Sprintf("oneshot /bin/sh script: write %s (%s, mode 0644; credential \"payload\") via %s/.%s.qmorch-<random>, exit 10 if unchanged",
					u.Dest, describeBytes(len(req.Content)), u.Dir, req.File)},
			{Node: t.host, Op: "Node.StopUnit+ResetFailedUnit", Target: transient, Detail: "collect the delivery unit (stop when it ended active, reset-failed when it failed), in the background"},
			{Node: t.twin, Op: "Node.Reload", Detail: "daemon-reload (skipped when unchanged and " + unit + " is active)"},
		}
		if !req.NoStart {
			res.Plan = append(res.Plan, Step{Node: t.twin, Op: "Node.StartUnit|Node.RestartUnit", Target: unit,
				Detail: fmt.Sprintf("mode replace (restart when changed and running); wait for the job, then active for %s", d.opts.settle)})
		}
		rep.Results[i] = res
	}
	return rep
}
