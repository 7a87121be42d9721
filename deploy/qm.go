package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/qmconf"
)

// DefaultQMRestartTimeout bounds a QM restart: the restart job plus the wait until the QM twin is
// online again.
const DefaultQMRestartTimeout = 3 * time.Minute

// QMChangeRequest is one `qm set` or `qm unset`: qmorch-owned drop-ins for qm.container are
// written (Set) or removed (Unset) on every selected host node, or in a local tree (Root).
type QMChangeRequest struct {
	Selectors []string // node names, comma lists or globs (see SelectHosts)
	All       bool     // every host node that has a QM twin
	Set       []qmconf.QMAssignment
	Unset     []qmconf.QMUnsetTarget
	// Restart restarts qm.service on the host node after the change (every nested unit restarts
	// and the QM agent disconnects) and waits until the twin is online again.
	Restart        bool
	RestartTimeout time.Duration // 0 = DefaultQMRestartTimeout
	DryRun         bool
	Root           string // write into this local tree instead of nodes (no D-Bus, no reload)
}

// QMFileOp is what happened to one drop-in.
type QMFileOp struct {
	Key     string // the setting, e.g. "MemoryHigh"
	Path    string // on the host node (with Root: the local path)
	Op      string // "write" or "remove"
	Changed bool   // written with new content / removed (false: already so)
}

// QM restart outcomes.
const (
	QMRestartDone    = "restarted" // restarted and the twin is online again
	QMRestartPending = "pending"   // drop-ins changed but qm.service was not restarted
	QMRestartNone    = "none"      // nothing changed, no restart asked
	QMRestartFailed  = "failed"
)

// QMChangeResult is the outcome on one node.
type QMChangeResult struct {
	Node     string // host node; "" with Root
	Twin     string // QM twin; "" with Root
	Files    []QMFileOp
	Changed  bool // some file changed
	Reloaded bool // daemon-reload ran on the host node
	Restart  string
	// QMAway is how long the QM twin was offline during the restart (offline signal to online
	// signal); RestartTook is restart request to twin online.
	QMAway, RestartTook time.Duration
	Duration            time.Duration
	Err                 error
	Warnings            []string
	Plan                []Step // DryRun only
}

// QMChangeReport holds the per-node results in node order.
type QMChangeReport struct {
	DryRun  bool
	Results []QMChangeResult
}

type qmFile struct {
	key, path string
	content   []byte // nil: remove
}

func (req QMChangeRequest) files() []qmFile {
	var out []qmFile
	for _, a := range req.Set {
		out = append(out, qmFile{key: a.Key, path: a.Path(), content: a.Content()})
	}
	for _, u := range req.Unset {
		out = append(out, qmFile{key: u.Key, path: u.Path()})
	}
	return out
}

func (req QMChangeRequest) validate() error {
	if len(req.Set) == 0 && len(req.Unset) == 0 {
		return invalidf("nothing to set or unset")
	}
	seen := map[string]string{}
	for _, f := range req.files() {
		base := path.Base(f.path)
		if path.Dir(f.path) != qmconf.QMContainerDropInDir || !qmconf.IsQMOwnedDropIn(base) {
			return invalidf("%s: %s is not a qmorch-owned drop-in", f.key, f.path) // never touch others' files
		}
		if other, dup := seen[f.path]; dup {
			return invalidf("%s and %s both change %s; give each setting once", other, f.key, base)
		}
		seen[f.path] = f.key
	}
	if req.Root != "" && req.Restart {
		return invalidf("--restart needs nodes; with --root restart qm.service on that system yourself")
	}
	return nil
}

func (req QMChangeRequest) warnings() []string {
	var w []string
	for _, a := range req.Set {
		w = append(w, a.Warnings...)
	}
	for _, u := range req.Unset {
		w = append(w, u.Warnings...)
	}
	return w
}

// QMChange writes or removes the requested qmorch-owned drop-ins on every selected node (in
// parallel), daemon-reloads each host node where something changed, and with Restart restarts
// qm.service there and waits until the QM twin is back. Request errors (ErrInvalid,
// ErrUnreachable) return a nil report; per-node failures are aggregated, each "node NAME: ...".
func (d *Deployer) QMChange(ctx context.Context, req QMChangeRequest) (*QMChangeReport, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	if req.RestartTimeout <= 0 {
		req.RestartTimeout = DefaultQMRestartTimeout
	}
	if req.Root != "" {
		if len(req.Selectors) > 0 || req.All {
			return nil, invalidf("give nodes or --root, not both")
		}
		return d.qmChangeLocal(req)
	}
	hosts, infos, err := d.selectQMHosts(ctx, req.Selectors, req.All)
	if err != nil {
		return nil, err
	}
	rep := &QMChangeReport{DryRun: req.DryRun, Results: make([]QMChangeResult, len(hosts))}
	if req.DryRun {
		for i, h := range hosts {
			rep.Results[i] = d.qmPlan(req, h)
		}
		return rep, nil
	}
	sess, err := d.Session(ctx)
	if err != nil {
		return nil, err
	}
	defer sess.Close(ctx)
	status := nodeStatuses(infos)
	fanOut(ctx, len(hosts), d.opts.parallel, func(i int) {
		rep.Results[i] = d.qmChangeNode(ctx, sess, req, hosts[i], status)
	}, func(i int, err error) {
		rep.Results[i] = QMChangeResult{Node: hosts[i], Twin: d.opts.twinPrefix + hosts[i], Restart: QMRestartFailed,
			Err: fmt.Errorf("node %s: not started: %w", hosts[i], err)}
	})
	return rep, nodeErrors(rep.Results, func(r QMChangeResult) error { return r.Err })
}

func (d *Deployer) selectQMHosts(ctx context.Context, selectors []string, all bool) ([]string, []controller.NodeInfo, error) {
	if d.c == nil {
		return nil, nil, withClass(ErrUnreachable, errors.New("no controller connection"))
	}
	lctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	infos, err := d.c.ListNodes(lctx)
	if err != nil {
		return nil, nil, listNodesError(err)
	}
	hosts, err := SelectHosts(infos, selectors, all, d.opts.twinPrefix)
	if err != nil {
		return nil, nil, err
	}
	return hosts, infos, nil
}

func (d *Deployer) qmPlan(req QMChangeRequest, host string) QMChangeResult {
	res := QMChangeResult{Node: host, Twin: d.opts.twinPrefix + host, Warnings: req.warnings()}
	for _, f := range req.files() {
		if f.content != nil {
			res.Plan = append(res.Plan, Step{Node: host, Op: "Node.StartTransientUnit", Target: f.path,
				Detail: fmt.Sprintf("write %s (%s), mode 0644, atomic; skipped when unchanged:\n%s", f.key, describeBytes(len(f.content)), f.content)})
		} else {
			res.Plan = append(res.Plan, Step{Node: host, Op: "Node.StartTransientUnit", Target: f.path,
				Detail: "remove (" + f.key + ")"})
		}
	}
	res.Plan = append(res.Plan, Step{Node: host, Op: "Node.Reload", Detail: "daemon-reload, only when a file changed"})
	if req.Restart {
		res.Plan = append(res.Plan, Step{Node: host, Op: "Node.RestartUnit", Target: qmconf.QMService,
			Detail: "restarts every nested unit; then wait until " + res.Twin + " is online again"})
	}
	return res
}

func (d *Deployer) qmChangeNode(ctx context.Context, sess *Session, req QMChangeRequest, host string, status map[string]controller.NodeStatus) QMChangeResult {
	start := d.opts.clock.Now()
	res := QMChangeResult{Node: host, Twin: d.opts.twinPrefix + host, Restart: QMRestartNone, Warnings: req.warnings()}
	fail := func(err error) QMChangeResult {
		res.Err = fmt.Errorf("node %s: %w", host, err)
		if res.Changed || req.Restart {
			res.Restart = QMRestartFailed
		}
		res.Duration = d.opts.clock.Now().Sub(start)
		return res
	}
	if status[host] != controller.NodeOnline {
		return fail(fmt.Errorf("host node is %s: %w", statusWord(status[host]), controller.ErrNodeOffline))
	}
	wctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	for _, f := range req.files() {
		op := QMFileOp{Key: f.key, Path: f.path, Op: "write"}
		var warns []string
		var err error
		if f.content != nil {
			op.Changed, warns, err = sess.PutFile(wctx, host, f.path, f.content)
		} else {
			op.Op = "remove"
			op.Changed, warns, err = sess.RemoveFile(wctx, host, f.path)
		}
		res.Warnings = append(res.Warnings, warns...)
		if err != nil {
			return fail(err)
		}
		res.Files = append(res.Files, op)
		res.Changed = res.Changed || op.Changed
	}
	hostNode, err := d.c.GetNode(wctx, host)
	if err != nil {
		return fail(err)
	}
	if res.Changed {
		if err := hostNode.Reload(wctx); err != nil {
			return fail(fmt.Errorf("daemon-reload: %w", err))
		}
		res.Reloaded = true
		res.Restart = QMRestartPending
		res.Warnings = append(res.Warnings, d.qmVerify(wctx, hostNode, req.Set)...)
	}
	if req.Restart {
		rctx, rcancel := context.WithTimeout(ctx, req.RestartTimeout)
		defer rcancel()
		twinStatus, hasTwin := status[res.Twin]
		if !hasTwin {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is not registered on the controller: not waiting for the QM agent after the restart", res.Twin))
		}
		took, away, err := d.restartQM(rctx, hostNode, host, res.Twin, twinStatus, hasTwin)
		res.RestartTook, res.QMAway = took, away
		if err != nil {
			return fail(err)
		}
		res.Restart = QMRestartDone
	}
	res.Duration = d.opts.clock.Now().Sub(start)
	return res
}

// qmVerify reads qm.service's live [Service] values after the daemon-reload and warns when one
// that was just set is not in effect (a drop-in that sorts later overrides it).
func (d *Deployer) qmVerify(ctx context.Context, n Node, set []qmconf.QMAssignment) []string {
	var want []qmconf.QMAssignment
	for _, a := range set {
		switch a.Key {
		case "MemoryHigh", "MemoryMax", "CPUWeight", "OOMScoreAdjust":
			want = append(want, a)
		}
	}
	if len(want) == 0 {
		return nil
	}
	props, err := n.GetUnitProperties(ctx, qmconf.QMService, serviceIface)
	if err != nil {
		return []string{fmt.Sprintf("could not read %s after daemon-reload to check the new values: %v", qmconf.QMService, err)}
	}
	live := QMLiveFromProps(props)
	var warns []string
	for _, a := range want {
		got, exp := live.Get(a.Key), expectedLive(a)
		if exp != "" && got != "" && got != exp {
			warns = append(warns, fmt.Sprintf("%s=%s was written but qm.service has %s=%s after daemon-reload: a drop-in that sorts after %s overrides it (see `qmorch qm show --root / --explain` on the node)",
				a.Key, a.Value, a.Key, got, a.DropIn))
		}
	}
	return warns
}

// expectedLive is the value systemd shows for a setting ("" when it cannot be predicted here,
// e.g. a percentage of RAM).
func expectedLive(a qmconf.QMAssignment) string {
	switch a.Key {
	case "MemoryHigh", "MemoryMax":
		m, err := qmconf.ParseMemorySize(a.Value)
		switch {
		case err != nil || m.Percent:
			return ""
		case m.Infinity:
			return "infinity"
		}
		return strconv.FormatUint(m.Bytes, 10)
	case "CPUWeight", "OOMScoreAdjust":
		return a.Value
	}
	return ""
}

// restartQM restarts qm.service on the host node, waits for the job, then for the QM twin to go
// offline (if it was online) and come back online. took runs from the restart request to the
// twin being online; away from the twin's offline signal to its online signal.
func (d *Deployer) restartQM(ctx context.Context, hostNode Node, host, twin string, twinWas controller.NodeStatus, waitTwin bool) (took, away time.Duration, err error) {
	// Subscribe before the call, so no status change is missed.
	ch, stop := d.c.WatchNodeStatus(ctx)
	defer stop()
	start := d.opts.clock.Now()
	job, err := hostNode.RestartUnit(ctx, qmconf.QMService, controller.JobReplace)
	if err != nil {
		return 0, 0, fmt.Errorf("restart %s: %w", qmconf.QMService, err)
	}
	jobDone := make(chan error, 1)
	go func() {
		r, err := job.Wait(ctx)
		if err == nil && r != controller.JobDone {
			err = fmt.Errorf("job result %q (see `journalctl -u %s` on %s)", r, qmconf.QMService, host)
		}
		jobDone <- err
	}()
	sawOffline := twinWas != controller.NodeOnline
	var offAt time.Time
	if sawOffline {
		offAt = start
	}
	jobPending := true
	for {
		select {
		case err := <-jobDone:
			jobPending = false
			if err != nil {
				return 0, 0, fmt.Errorf("restart %s: %w", qmconf.QMService, err)
			}
			if !waitTwin {
				return d.opts.clock.Now().Sub(start), 0, nil
			}
			continue
		case ev, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					break
				}
				return 0, 0, fmt.Errorf("waiting for %s after restarting %s: node status watch ended", twin, qmconf.QMService)
			}
			switch {
			case ev.Node == host && ev.Status == controller.NodeOffline:
				return 0, 0, fmt.Errorf("host node went offline while restarting %s: %w", qmconf.QMService, controller.ErrNodeOffline)
			case ev.Node == twin && ev.Status == controller.NodeOffline:
				if !sawOffline {
					sawOffline, offAt = true, d.opts.clock.Now()
				}
			case ev.Node == twin && ev.Status == controller.NodeOnline && sawOffline:
				now := d.opts.clock.Now()
				if jobPending { // the twin is back; the job's result must still be read
					if err := <-jobDone; err != nil {
						return 0, 0, fmt.Errorf("restart %s: %w", qmconf.QMService, err)
					}
				}
				return now.Sub(start), now.Sub(offAt), nil
			}
			continue
		case <-ctx.Done():
		}
		what := "QM twin " + twin + " to come back online"
		if !sawOffline {
			what = "QM twin " + twin + " to disconnect (the controller still reports it online)"
		}
		if jobPending {
			what = "the restart job of " + qmconf.QMService
		}
		return 0, 0, fmt.Errorf("timed out waiting for %s: %w", what, controller.ErrTimeout)
	}
}

// qmChangeLocal applies the request to the tree at req.Root: ROOT/etc/containers/systemd/
// qm.container.d/NAME, written atomically (temp file, fsync, rename, mode 0644) only on change, or
// removed. Paths and symlinks leading out of ROOT are refused (os.Root).
func (d *Deployer) qmChangeLocal(req QMChangeRequest) (*QMChangeReport, error) {
	start := d.opts.clock.Now()
	res := QMChangeResult{Restart: QMRestartNone, Warnings: req.warnings()}
	rel := strings.TrimPrefix(qmconf.QMContainerDropInDir, "/")
	for _, f := range req.files() {
		local := filepath.Join(req.Root, rel, path.Base(f.path))
		op := QMFileOp{Key: f.key, Path: local, Op: "write"}
		if f.content == nil {
			op.Op = "remove"
		}
		if req.DryRun {
			detail := "remove (" + f.key + ")"
			if f.content != nil {
				detail = fmt.Sprintf("write %s, mode 0644, temp file then rename; skipped when unchanged:\n%s", f.key, f.content)
			}
			res.Plan = append(res.Plan, Step{Op: op.Op, Target: local, Detail: detail})
			continue
		}
		var err error
		if f.content != nil {
			op.Changed, err = writeLocal(req.Root, rel, path.Base(f.path), f.content)
		} else {
			op.Changed, err = removeLocal(req.Root, rel, path.Base(f.path))
		}
		if err != nil {
			res.Err = fmt.Errorf("%s %s: %w", op.Op, local, err)
			res.Restart = QMRestartFailed
			break
		}
		res.Files = append(res.Files, op)
		res.Changed = res.Changed || op.Changed
	}
	if res.Changed {
		res.Restart = QMRestartPending
		res.Warnings = append(res.Warnings, localOverrides(req)...)
	}
	res.Duration = d.opts.clock.Now().Sub(start)
	rep := &QMChangeReport{DryRun: req.DryRun, Results: []QMChangeResult{res}}
	if res.Err != nil {
		return rep, res.Err
	}
	return rep, nil
}

// localOverrides warns about set keys that a later drop-in overrides in the local tree.
func localOverrides(req QMChangeRequest) []string {
	view, err := qmconf.LoadQMView(req.Root)
	if err != nil {
		return []string{fmt.Sprintf("could not read the effective qm.container under %s: %v", req.Root, err)}
	}
	var warns []string
	for _, a := range req.Set {
		if a.Raw {
			continue
		}
		s, _ := qmconf.LookupQMSetting(a.Key)
		for _, uk := range s.UnitKeys {
			v, ok := view.Lookup(s.Section, uk)
			if !ok || !v.Set {
				continue
			}
			from := v.From
			if len(v.Froms) > 0 {
				from = v.Froms[len(v.Froms)-1]
			}
			if file, _, _ := strings.Cut(from, ":"); path.Base(file) != a.DropIn {
				if uk == "AddCapability" || uk == "Volume" { // list keys: a later entry does not undo ours
					continue
				}
				warns = append(warns, fmt.Sprintf("%s: %s= is overridden by %s (it sorts after %s)", a.Key, uk, from, a.DropIn))
			}
		}
	}
	return warns
}

// removeLocal removes root/rel/name through an os.Root; removed is false when it was absent.
func removeLocal(root, rel, name string) (bool, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return false, withClass(ErrInvalid, fmt.Errorf("root %s: %w", root, err))
	}
	defer r.Close()
	p := filepath.Join(rel, name)
	if err := r.Remove(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	if dir, derr := r.Open(rel); derr == nil {
		_ = dir.Sync()
		_ = dir.Close()
	}
	return true, nil
}
