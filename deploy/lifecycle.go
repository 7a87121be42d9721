package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/qmorch/qmorch/controller"
)

// LifecycleAction is one of the unit operations of `qmorch start|stop|restart|reload`.
type LifecycleAction string

const (
	LifecycleStart   LifecycleAction = "start"
	LifecycleStop    LifecycleAction = "stop"
	LifecycleRestart LifecycleAction = "restart"
	LifecycleReload  LifecycleAction = "reload"
)

// Outcome is qmorch's verdict on one node and unit.
type Outcome string

const (
	OutcomeOK        Outcome = "ok"        // job done and the unit is in the expected state
	OutcomeFailed    Outcome = "failed"    // job failed, call refused, or the unit ended in the wrong state
	OutcomeTimeout   Outcome = "timeout"   // the wait hit --timeout; the job was cancelled
	OutcomeOffline   Outcome = "offline"   // the node is (or went) offline
	OutcomeCancelled Outcome = "cancelled" // the run was interrupted (Ctrl-C); the job was cancelled
)

// cancelTimeout bounds the Job.Cancel sent for a job whose wait was interrupted.
const cancelTimeout = 5 * time.Second

// LifecycleRequest is one start/stop/restart/reload over nodes and units.
type LifecycleRequest struct {
	Action LifecycleAction
	Nodes  []string // selectors: names, comma lists, globs (see SelectHosts)
	All    bool     // every host node that has a QM twin
	Units  []string // unit names; a name without a type suffix means NAME.service
	Host   bool     // the host node's own units instead of the QM twin's
}

// UnitResult is the outcome of one action on one node and unit.
type UnitResult struct {
	Node        string // host node as selected
	Target      string // BlueChi node the job ran on: the QM twin, or the host with Host
	Unit        string
	Action      LifecycleAction
	Outcome     Outcome
	JobResult   string // BlueChi/systemd job result ("done", "failed", ...); "" when no job ended
	ActiveState string // the unit's state at the end; "" when not known
	SubState    string
	Duration    time.Duration
	Err         error    // set unless Outcome is ok
	Warnings    []string // e.g. Job.Cancel failed
}

// LifecycleReport has one result per node and unit: nodes sorted, units in the given order.
type LifecycleReport struct {
	Action  LifecycleAction
	Results []UnitResult
}

// Failed counts the results that are not ok.
func (r *LifecycleReport) Failed() int {
	n := 0
	for _, res := range r.Results {
		if res.Outcome != OutcomeOK {
			n++
		}
	}
	return n
}

// unitNode is what lifecycle, remove and list need beyond Node. The client adapter has it (see
// nodeAdapter.ReloadUnit; ListUnits is promoted from *controller.Node).
type unitNode interface {
	ReloadUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error)
	ListUnits(ctx context.Context) ([]controller.UnitInfo, error)
}

// ReloadUnit returns the Job interface (and never a typed nil).
func (n nodeAdapter) ReloadUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error) {
	return jobOrNil(n.Node.ReloadUnit(ctx, unit, mode))
}

// unitTypes are systemd's unit type suffixes.
var unitTypes = []string{"service", "socket", "device", "mount", "automount", "swap", "target",
	"path", "timer", "slice", "scope"}

// quadletTypes are Quadlet source suffixes: a user giving one means the generated unit.
var quadletTypes = []string{"container", "volume", "network", "kube", "image", "build", "pod"}

// NormalizeUnitName checks a unit name with systemd's rules (unit_name_is_valid: characters
// [A-Za-z0-9:_.\-] plus '@' for instances, at most 255 bytes, a known type suffix) and returns
// it, adding ".service" when the name has no type suffix (as systemctl does). Templates
// ("foo@.service") cannot be started and are refused, as are Quadlet file names.
func NormalizeUnitName(name string) (string, error) {
	if name == "" {
		return "", invalidf("empty unit name")
	}
	base, typ, ok := cutLast(name, ".")
	switch {
	case ok && slices.Contains(quadletTypes, typ):
		return "", invalidf("unit %q is a Quadlet file name; name the unit it generates (e.g. %s.service)", name, base)
	case !ok || !slices.Contains(unitTypes, typ):
		base, typ = name, "service"
	}
	full := base + "." + typ
	if len(full) > 255 {
		return "", invalidf("unit %q: longer than 255 bytes", name)
	}
	prefix, instance, templated := strings.Cut(base, "@")
	if prefix == "" {
		return "", invalidf("unit %q: empty name before the type suffix", name)
	}
	if templated && instance == "" {
		return "", invalidf("unit %q is a template; name an instance (e.g. %s@NAME.%s)", name, prefix, typ)
	}
	// Decode runes for the message: a byte of a multi-byte character is not what the user typed.
	// The instance may hold further '@' (systemd's unit_name_is_valid allows '@' anywhere after
	// the first: "a@b@c.service" is instance "b@c" of a@.service).
	check := func(s string, allowAt bool) error {
		for i, c := range s {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			case c == ':' || c == '_' || c == '.' || c == '-' || c == '\\':
			case c == '@' && allowAt:
			default:
				if _, size := utf8.DecodeRuneInString(s[i:]); c == utf8.RuneError && size == 1 {
					return invalidf("unit %q: byte \\x%02x (not UTF-8) is not allowed in a unit name", name, s[i])
				}
				return invalidf("unit %q: character %q is not allowed in a unit name", name, c)
			}
		}
		return nil
	}
	if err := check(prefix, false); err != nil {
		return "", err
	}
	if err := check(instance, true); err != nil {
		return "", err
	}
	return full, nil
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// selectTargets lists the nodes once, applies the selectors and pairs each host with its QM
// twin. Unknown names fail the request (ErrInvalid); an offline host or twin, or a missing twin,
// only fails that node (target.err). With host set, only the host has to be there.
func (d *Deployer) selectTargets(ctx context.Context, selectors []string, all, host bool) ([]*target, error) {
	if d.c == nil {
		return nil, withClass(ErrUnreachable, errors.New("no controller connection"))
	}
	if err := validateNodeName(d.opts.twinPrefix); err != nil {
		return nil, invalidf("twin prefix: %v", err)
	}
	lctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	infos, err := d.c.ListNodes(lctx)
	if err != nil {
		return nil, listNodesError(err)
	}
	hosts, err := SelectHosts(infos, selectors, all, d.opts.twinPrefix)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]controller.NodeInfo, len(infos))
	for _, n := range infos {
		byName[n.Name] = n
	}
	targets := make([]*target, 0, len(hosts))
	for _, h := range hosts {
		t := &target{host: h, twin: d.opts.twinPrefix + h}
		twin, hasTwin := byName[t.twin]
		switch {
		case byName[h].Status != controller.NodeOnline:
			t.err = fmt.Errorf("node %s: host node %s is %s: %w", h, h, statusWord(byName[h].Status), controller.ErrNodeOffline)
		case host:
		case !hasTwin:
			t.err = fmt.Errorf("node %s: QM twin %s is not registered on the controller (is QM's bluechi-agent configured?)", h, t.twin)
		case twin.Status != controller.NodeOnline:
			t.err = fmt.Errorf("node %s: QM twin %s is %s: %w", h, t.twin, statusWord(twin.Status), controller.ErrNodeOffline)
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// Lifecycle runs req.Action on every selected node (in parallel, bounded by the parallel
// option) for each unit (one after the other on a node). Every job is waited for (bounded by
// the timeout option, ended early by the node going offline) and the unit's state is checked
// afterwards: active after start/restart/reload (and still active after the settle window),
// inactive after stop. When ctx is cancelled,
// jobs in flight are cancelled with Job.Cancel and the remaining work is reported "cancelled".
//
// A request error (ErrInvalid, ErrUnreachable) returns a nil report. Otherwise the report has
// one result per node and unit and the error aggregates the failed ones.
func (d *Deployer) Lifecycle(ctx context.Context, req LifecycleRequest) (*LifecycleReport, error) {
	switch req.Action {
	case LifecycleStart, LifecycleStop, LifecycleRestart, LifecycleReload:
	default:
		return nil, invalidf("unknown action %q (start, stop, restart, reload)", req.Action)
	}
	if len(req.Units) == 0 {
		return nil, invalidf("no units given")
	}
	if d.opts.timeout <= 0 {
		return nil, invalidf("timeout must be positive")
	}
	var units []string
	for _, u := range req.Units {
		n, err := NormalizeUnitName(u)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(units, n) {
			units = append(units, n)
		}
	}
	targets, err := d.selectTargets(ctx, req.Nodes, req.All, req.Host)
	if err != nil {
		return nil, err
	}
	rep := &LifecycleReport{Action: req.Action, Results: make([]UnitResult, len(targets)*len(units))}
	fanOut(ctx, len(targets), d.opts.parallel, func(i int) {
		d.lifecycleNode(ctx, req, targets[i], units, rep.Results[i*len(units):(i+1)*len(units)])
	}, func(i int, err error) {
		t := targets[i]
		for j, u := range units {
			rep.Results[i*len(units)+j] = d.unitResult(req, t, u, OutcomeCancelled,
				fmt.Errorf("node %s: %s %s: not started: %w", t.host, req.Action, u, err))
		}
	})
	return rep, nodeErrors(rep.Results, func(r UnitResult) error { return r.Err })
}

func (d *Deployer) unitResult(req LifecycleRequest, t *target, unit string, o Outcome, err error) UnitResult {
	name := t.twin
	if req.Host {
		name = t.host
	}
	return UnitResult{Node: t.host, Target: name, Unit: unit, Action: req.Action, Outcome: o, Err: err}
}

// lifecycleNode works through the units of one node; out has one slot per unit.
func (d *Deployer) lifecycleNode(ctx context.Context, req LifecycleRequest, t *target, units []string, out []UnitResult) {
	name := t.twin
	if req.Host {
		name = t.host
	}
	// Once the node is gone (or the run was cancelled) the remaining units get the same verdict
	// without a call: each would only fail the same way.
	var stop func(unit string) UnitResult
	if t.err != nil {
		o := OutcomeFailed
		if errors.Is(t.err, controller.ErrNodeOffline) {
			o = OutcomeOffline
		}
		stop = func(u string) UnitResult { return d.unitResult(req, t, u, o, t.err) }
	}
	var n Node
	for j, unit := range units {
		if stop == nil && ctx.Err() != nil {
			err := ctx.Err()
			stop = func(u string) UnitResult {
				return d.unitResult(req, t, u, OutcomeCancelled, fmt.Errorf("node %s: %s %s: not started: %w", t.host, req.Action, u, err))
			}
		}
		if stop != nil {
			out[j] = stop(unit)
			continue
		}
		start := d.opts.clock.Now()
		uctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
		if n == nil {
			var err error
			if n, err = d.c.GetNode(uctx, name); err != nil {
				cancel()
				err = fmt.Errorf("node %s: %s: %w", t.host, name, err)
				o := classify(ctx, err)
				stop = func(u string) UnitResult { return d.unitResult(req, t, u, o, err) }
				out[j] = stop(unit)
				continue
			}
		}
		res := d.unitAction(uctx, ctx, req, t, n, name, unit)
		cancel()
		res.Duration = d.opts.clock.Now().Sub(start)
		out[j] = res
		if res.Outcome == OutcomeOffline {
			stop = func(u string) UnitResult {
				return d.unitResult(req, t, u, OutcomeOffline, fmt.Errorf("node %s: %s %s: skipped, %s is offline: %w",
					t.host, req.Action, u, name, controller.ErrNodeOffline))
			}
		}
	}
	if n != nil && req.Action != LifecycleStop {
		d.settleUnits(ctx, req, t, n, name, out)
	}
}

// settleUnits re-reads the units that started fine once the settle window is over: a job
// result "done" says the start finished, not that the service survived it (a container whose
// process exits right away is "active" when the job ends). One window per node, not per unit.
func (d *Deployer) settleUnits(ctx context.Context, req LifecycleRequest, t *target, n Node, name string, out []UnitResult) {
	if d.opts.settle <= 0 || !slices.ContainsFunc(out, func(r UnitResult) bool { return r.Outcome == OutcomeOK }) {
		return
	}
	select {
	case <-d.opts.clock.After(d.opts.settle):
	case <-ctx.Done():
		return // interrupted: the jobs are done, keep what they reported
	}
	rctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	for i := range out {
		r := &out[i]
		if r.Outcome != OutcomeOK {
			continue
		}
		st, err := readState(rctx, n, r.Unit)
		if err != nil {
			r.Outcome = classify(ctx, err)
			r.Err = fmt.Errorf("node %s: %s %s on %s: read state after the %s settle window: %w", t.host, req.Action, r.Unit, name, d.opts.settle, err)
			continue
		}
		r.ActiveState, r.SubState = st.Active, st.Sub
		if st.Active != "active" {
			r.Outcome = OutcomeFailed
			r.Err = fmt.Errorf("node %s: %s %s on %s: unit left the active state within %s: %s (%s)",
				t.host, req.Action, r.Unit, name, d.opts.settle, st, describeState(rctx, n, r.Unit, st, nil))
		}
	}
}

// classify turns an error into an outcome; parent is the run's context (cancelled on Ctrl-C).
func classify(parent context.Context, err error) Outcome {
	switch {
	case parent.Err() != nil:
		return OutcomeCancelled
	case errors.Is(err, controller.ErrNodeOffline):
		return OutcomeOffline
	case errors.Is(err, controller.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return OutcomeTimeout
	}
	return OutcomeFailed
}

// unitAction runs one job and checks the state after it. ctx carries the per-unit timeout;
// parent is the run's context.
func (d *Deployer) unitAction(ctx, parent context.Context, req LifecycleRequest, t *target, n Node, name, unit string) UnitResult {
	res := d.unitResult(req, t, unit, OutcomeOK, nil)
	fail := func(o Outcome, format string, args ...any) UnitResult {
		res.Outcome = o
		res.Err = fmt.Errorf("node %s: %s %s on %s: "+format, append([]any{t.host, req.Action, unit, name}, args...)...)
		return res
	}
	var call func(context.Context, string, controller.JobMode) (Job, error)
	switch req.Action {
	case LifecycleStart:
		call = n.StartUnit
	case LifecycleStop:
		call = n.StopUnit
	case LifecycleRestart:
		call = n.RestartUnit
	case LifecycleReload:
		un, ok := n.(unitNode)
		if !ok {
			return fail(OutcomeFailed, "this controller client cannot reload units")
		}
		call = un.ReloadUnit
	}
	log := d.opts.logger.With("node", name, "unit", unit, "action", req.Action)
	log.Debug("job")
	job, err := callJob(ctx, d.opts.timeout, call, unit)
	if err != nil {
		return fail(classify(parent, err), "%w", stripNodePrefix(err, name, string(req.Action)+" "+unit))
	}
	result, err := job.Wait(ctx)
	if err != nil {
		if ctx.Err() != nil {
			// Interrupted or timed out: do not leave the job queued behind us.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cancelTimeout)
			cerr := job.Cancel(cctx)
			cancel()
			if cerr != nil && !errors.Is(cerr, controller.ErrNodeOffline) {
				res.Warnings = append(res.Warnings, fmt.Sprintf("Job.Cancel on %s: %v", name, cerr))
			}
			if parent.Err() != nil {
				return fail(OutcomeCancelled, "interrupted, job cancelled: %w", parent.Err())
			}
			return fail(OutcomeTimeout, "no result within %s, job cancelled: %w", d.opts.timeout, controller.ErrTimeout)
		}
		return fail(classify(parent, err), "wait for job: %w", err)
	}
	res.JobResult = string(result)
	st, serr := readState(ctx, n, unit)
	if serr == nil {
		res.ActiveState, res.SubState = st.Active, st.Sub
	}
	if result != controller.JobDone {
		return fail(OutcomeFailed, "job %s (%s)", result, describeState(ctx, n, unit, st, serr))
	}
	if serr != nil {
		return fail(classify(parent, serr), "read state after the job: %w", serr)
	}
	want := "active"
	if req.Action == LifecycleStop {
		want = "inactive"
	}
	if st.Active != want {
		return fail(OutcomeFailed, "unit is %s after %s, want %s (%s)", st, req.Action, want, describeState(ctx, n, unit, st, nil))
	}
	return res
}

// describeState explains a unit's state for error messages (best effort).
func describeState(ctx context.Context, n Node, unit string, st unitState, err error) string {
	if err != nil {
		return "state unknown: " + err.Error()
	}
	out := "unit " + st.String()
	if st.Load != "" && st.Load != "loaded" {
		out += ", load state " + st.Load
	}
	if !strings.HasSuffix(unit, ".service") || ctx.Err() != nil {
		return out
	}
	props, perr := n.GetUnitProperties(ctx, unit, serviceIface)
	if perr != nil {
		return out
	}
	if res, ok := props["Result"].Value().(string); ok && res != "" && res != "success" {
		out += ", result " + res
	}
	if code, ok := props["ExecMainStatus"].Value().(int32); ok && code != 0 {
		out += fmt.Sprintf(", exit status %d", code)
	}
	return out
}

// stripNodePrefix drops a leading "node NAME: " and then "CALL: " (e.g. "start web.service: ")
// that the controller client puts on its errors, so messages say the node and the call once.
func stripNodePrefix(err error, name, call string) error {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "node "+name+": ")
	if !ok {
		return err
	}
	if r, ok := strings.CutPrefix(rest, call+": "); ok {
		rest = r
	}
	return &prefixStripped{msg: rest, err: err}
}

type prefixStripped struct {
	msg string
	err error
}

func (e *prefixStripped) Error() string { return e.msg }
func (e *prefixStripped) Unwrap() error { return e.err }

// callJob makes a job-creating call that Ctrl-C does not abandon halfway: once sent, the job
// may exist on the node, and only its path lets us cancel it. The call is bounded by timeout
// and by ctx's deadline, not by ctx's cancellation; the caller's Wait(ctx) then sees the
// cancellation and cancels the job.
func callJob(ctx context.Context, timeout time.Duration, call func(context.Context, string, controller.JobMode) (Job, error), unit string) (Job, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if dl, ok := ctx.Deadline(); ok {
		var cancel2 context.CancelFunc
		cctx, cancel2 = context.WithDeadline(cctx, dl)
		defer cancel2()
	}
	return call(cctx, unit, controller.JobReplace)
}
