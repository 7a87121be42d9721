package deploy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/qmorch/qmorch/controller"
)

// Remove actions.
const (
	ActionRemoved Action = "removed" // the unit was stopped and/or the file deleted; the unit is gone
	// ActionUnchanged ("unchanged"): no file and no loaded unit were there.
)

// RemoveRequest removes a nested Quadlet file from nodes.
type RemoveRequest struct {
	Nodes []string // selectors (see SelectHosts)
	All   bool
	File  string // NAME.container
	// Units names the unit the file generated per host node (from the manifest, which knows
	// ServiceName=); nodes not in it use NAME.service.
	Units map[string]string
}

// RemoveResult is the outcome on one node.
type RemoveResult struct {
	Node, Twin  string
	Unit        string
	Path        string // on the host node
	Action      Action // removed, unchanged, failed
	Stopped     bool   // the unit was loaded and a stop job ran
	FileRemoved bool   // the file was there and was deleted
	LoadState   string // the unit's LoadState on the twin at the end ("not-found" on success)
	Duration    time.Duration
	Err         error
	Warnings    []string
}

// RemoveReport has one result per node, sorted by node.
type RemoveReport struct{ Results []RemoveResult }

// Failed counts the failed results.
func (r *RemoveReport) Failed() int {
	n := 0
	for _, res := range r.Results {
		if res.Action == ActionFailed {
			n++
		}
	}
	return n
}

// Remove takes a nested Quadlet unit out of QM on every selected node, in parallel: stop the
// unit on the twin (a unit that is not loaded is fine), delete ${RWETCFS}/containers/systemd/FILE
// on the host node through a transient unit, daemon-reload the twin, and confirm the unit is
// no longer loaded. A node where neither file nor unit was there reports "unchanged".
func (d *Deployer) Remove(ctx context.Context, req RemoveRequest) (*RemoveReport, error) {
	if err := validateName(req.File); err != nil {
		return nil, err
	}
	if err := validateRWETCFS(d.opts.rwetcfs); err != nil {
		return nil, err
	}
	if d.opts.timeout <= 0 {
		return nil, invalidf("timeout must be positive")
	}
	defUnit := strings.TrimSuffix(req.File, ".container") + ".service"
	for n, u := range req.Units {
		if _, err := NormalizeUnitName(u); err != nil {
			return nil, fmt.Errorf("unit of %s on %s: %w", req.File, n, err)
		}
	}
	targets, err := d.selectTargets(ctx, req.Nodes, req.All, false)
	if err != nil {
		return nil, err
	}
	r, done := d.newFleetRun(ctx)
	defer done()
	dest := path.Join(quadletDir(d.opts.rwetcfs), req.File)
	rep := &RemoveReport{Results: make([]RemoveResult, len(targets))}
	for i, t := range targets {
		unit := defUnit
		if u := req.Units[t.host]; u != "" {
			unit = u
		}
		rep.Results[i] = RemoveResult{Node: t.host, Twin: t.twin, Unit: unit, Path: dest}
	}
	fanOut(ctx, len(targets), d.opts.parallel, func(i int) {
		res := &rep.Results[i]
		start := d.opts.clock.Now()
		nctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
		defer cancel()
		if err := r.removeNode(nctx, targets[i], res); err != nil {
			res.Action, res.Err = ActionFailed, err
		}
		res.Duration = d.opts.clock.Now().Sub(start)
	}, func(i int, err error) {
		res := &rep.Results[i]
		res.Action, res.Err = ActionFailed, fmt.Errorf("node %s: not started: %w", targets[i].host, err)
	})
	return rep, nodeErrors(rep.Results, func(r RemoveResult) error { return r.Err })
}

func (r *run) removeNode(ctx context.Context, t *target, res *RemoveResult) error {
	if err := r.getNodes(ctx, t); err != nil {
		return err
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("node %s: remove %s: "+format, append([]any{t.host, res.Unit}, args...)...)
	}
	before, err := readState(ctx, t.twinNode, res.Unit)
	if err != nil {
		return fail("read state on %s: %w", t.twin, err)
	}
	// A unit whose file is gone may still be loaded (no daemon-reload yet) or remembered as failed.
	if before.Load != "not-found" || (before.Active != "inactive" && before.Active != "") {
		if err := stopUnit(ctx, t.twinNode, res.Unit); err != nil {
			return fail("stop on %s: %w", t.twin, err)
		}
		res.Stopped = true
		// A failed unit stays loaded until its failure is reset; inactive ones are collected.
		if err := t.twinNode.ResetFailedUnit(ctx, res.Unit); err != nil && !errors.Is(err, controller.ErrNoSuchUnit) {
			res.Warnings = append(res.Warnings, fmt.Sprintf("reset-failed %s on %s: %v", res.Unit, t.twin, err))
		}
	}
	removed, cleanup, err := r.removeFile(ctx, t, res.Path)
	res.Warnings = append(res.Warnings, wait(cleanup)...)
	if err != nil {
		return fmt.Errorf("node %s: %w", t.host, err)
	}
	res.FileRemoved = removed
	if err := t.twinNode.Reload(ctx); err != nil {
		return fail("daemon-reload on %s: %w", t.twin, err)
	}
	after, err := readState(ctx, t.twinNode, res.Unit)
	if err != nil {
		return fail("read state after daemon-reload on %s: %w", t.twin, err)
	}
	res.LoadState = after.Load
	if after.Load != "not-found" {
		return fail("unit still loaded on %s after daemon-reload (%s, load state %s): another Quadlet or unit file provides it",
			t.twin, after, after.Load)
	}
	res.Action = ActionRemoved
	if !removed && !res.Stopped {
		res.Action = ActionUnchanged
	}
	return nil
}

// stopUnit stops unit and waits for the job; a unit systemd does not know is already stopped.
func stopUnit(ctx context.Context, n Node, unit string) error {
	job, err := callJob(ctx, cleanupTimeout, n.StopUnit, unit)
	if errors.Is(err, controller.ErrNoSuchUnit) {
		return nil
	}
	if err != nil {
		return err
	}
	result, err := job.Wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
			_ = job.Cancel(cctx) // the job may be gone already
			cancel()
			return fmt.Errorf("wait for job: %w", ctxErr(ctx))
		}
		return fmt.Errorf("wait for job: %w", err)
	}
	if result != controller.JobDone {
		return fmt.Errorf("job %s", result)
	}
	return nil
}
