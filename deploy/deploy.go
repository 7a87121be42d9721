// Package deploy plans and runs multi-node operations on BlueChi nodes and their QM twins.
//
// Deploy puts a Quadlet file into the QM partition of each node and starts the unit it
// generates:
//
//  1. validate the file (name NAME.container, Quadlet syntax) before any D-Bus call;
//  2. resolve the host nodes and their QM twins (prefix "qm." by default) with one ListNodes;
//  3. write ${RWETCFS}/containers/systemd/NAME.container on the host node through a transient
//     oneshot unit (Node.StartTransientUnit) that gets the content as a systemd credential and
//     runs a constant script (compare, temp file in the same directory, fsync, rename);
//  4. unless the content was unchanged (and the unit active) or NoStart is set: Node.Reload on
//     the twin, StartUnit (RestartUnit when the content changed and the unit was running),
//     wait for the job, and require the unit to stay active for a settle window.
//
// Nodes run in parallel (bounded); one node's failure never hides or blocks another's.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/qmconf"
)

// Defaults of the options.
const (
	DefaultTwinPrefix = qmconf.DefaultTwinPrefix // "qm."
	DefaultRWETCFS    = qmconf.DefaultRWETCFS    // "/etc/qm"
	DefaultTimeout    = 60 * time.Second
	DefaultSettle     = time.Second
	DefaultParallel   = 128
)

// Action is what happened on one node.
type Action string

const (
	ActionDeployed  Action = "deployed"  // file written (or unit was not running) and unit started, active
	ActionUnchanged Action = "unchanged" // same content already there, unit active (or NoStart): nothing done
	ActionInstalled Action = "installed" // file written, unit not started (NoStart, or Root)
	ActionFailed    Action = "failed"    // see Result.Err
	ActionPlanned   Action = "planned"   // DryRun: see Result.Plan
)

// Clock is the time source (tests may replace it).
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type options struct {
	twinPrefix string
	rwetcfs    string
	timeout    time.Duration
	settle     time.Duration
	parallel   int
	logger     *slog.Logger
	clock      Clock
}

// Option configures a Deployer.
type Option func(*options)

// WithTwinPrefix sets the prefix that names a node's QM twin ("qm." -> "qm.node1").
func WithTwinPrefix(p string) Option { return func(o *options) { o.twinPrefix = p } }

// WithRWETCFS sets QM's writable /etc on the host (Environment=RWETCFS of qm.container).
func WithRWETCFS(p string) Option { return func(o *options) { o.rwetcfs = p } }

// WithTimeout bounds node resolution and each node's whole operation.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithSettle sets how long a started unit must stay active to count as started.
func WithSettle(d time.Duration) Option { return func(o *options) { o.settle = d } }

// WithParallel bounds how many nodes are worked on at once.
func WithParallel(n int) Option { return func(o *options) { o.parallel = n } }

// WithLogger sets a logger for debug traces (silent by default).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithClock replaces the time source.
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// Deployer runs deploy operations through a BlueChi controller.
type Deployer struct {
	c    Controller
	opts options
}

// New returns a Deployer. c may be nil for Root requests and for dry runs with explicit nodes.
func New(c Controller, opts ...Option) *Deployer {
	o := options{
		twinPrefix: DefaultTwinPrefix,
		rwetcfs:    DefaultRWETCFS,
		timeout:    DefaultTimeout,
		settle:     DefaultSettle,
		parallel:   DefaultParallel,
		logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		clock:      realClock{},
	}
	for _, f := range opts {
		f(&o)
	}
	return &Deployer{c: c, opts: o}
}

// Request is one deploy.
type Request struct {
	Nodes   []string // host node names (not QM twins)
	All     bool     // every host node that has a QM twin
	File    string   // NAME.container (base name only)
	Source  string   // where the content came from, for messages (e.g. examples/nested.container)
	Content []byte
	NoStart bool   // write (and daemon-reload) only
	DryRun  bool   // plan only: no write, no D-Bus call except ListNodes
	Root    string // write into this local tree instead of nodes
}

// Result is the outcome on one node (or on the local tree with Root).
type Result struct {
	Node        string // host node; "" with Root
	Twin        string // QM twin node; "" with Root
	Unit        string // NAME.service
	Path        string // file path on the node (with Root: the local path)
	Action      Action
	ActiveState string // twin's ActiveState of Unit at the end, "" when not known
	Duration    time.Duration
	Err         error    // set when Action == ActionFailed
	Warnings    []string // problems that did not fail the operation (e.g. cleanup)
	Plan        []Step   // DryRun only
}

// Step is one planned action of a dry run.
type Step struct {
	Node   string // BlueChi node the call goes to ("" for a local write)
	Op     string // e.g. "Node.StartTransientUnit", "write"
	Target string // unit or path
	Detail string
}

// Report holds the per-node results, in the order the nodes were requested (sorted for All).
type Report struct {
	DryRun  bool
	Results []Result
}

// Failed counts the failed results.
func (r *Report) Failed() int {
	n := 0
	for _, res := range r.Results {
		if res.Action == ActionFailed {
			n++
		}
	}
	return n
}

// target is one host node and its twin, as resolved.
type target struct {
	host, twin         string
	hostNode, twinNode Node
	hostInfo, twinInfo controller.NodeInfo // from ListNodes (Path "" when not resolved there)
	err                error               // preflight failure (offline, twin missing)
	// cleanupGate, when set, holds the background collection of transient units on the host
	// until it is closed (the node's operation ended) or the run's allStarted is (so that
	// collection does not compete with any node's way to its job).
	cleanupGate chan struct{}
	started     func() // once: this node is past its critical path (job started, or ended)
}

// nodeMaker is a Controller that can make a Node from a ListNodes entry: the entry carries
// the node's object path, so GetNode's round trip is not needed.
type nodeMaker interface {
	nodeFor(info controller.NodeInfo) Node
}

func (a clientAdapter) nodeFor(info controller.NodeInfo) Node { return nodeAdapter{a.c.NodeFor(info)} }

// node returns the Node called name: from its ListNodes entry when the controller can, else
// through GetNode.
func (d *Deployer) node(ctx context.Context, name string, info controller.NodeInfo) (Node, error) {
	if m, ok := d.c.(nodeMaker); ok && info.Name == name && info.Path != "" {
		return m.nodeFor(info), nil
	}
	return d.c.GetNode(ctx, name)
}

type run struct {
	d    *Deployer
	req  Request
	unit string // the unit Quadlet generates from req.File
	hub  *hub

	// pending counts the nodes not yet past their critical path (see target.started);
	// allStarted is closed when it reaches zero. nil outside Deploy.
	pending    atomic.Int64
	allStarted chan struct{}
}

// nodeStarted counts one node as past its critical path.
func (r *run) nodeStarted() {
	if r.pending.Add(-1) == 0 {
		close(r.allStarted)
	}
}

// Deploy validates req, then runs it on every node. A request error (ErrInvalid,
// ErrUnreachable) returns a nil report. Otherwise the report has one result per node and
// the error aggregates (go-multierror) the failed nodes' errors, each starting "node NAME: ".
func (d *Deployer) Deploy(ctx context.Context, req Request) (*Report, error) {
	unit, err := d.validate(&req)
	if err != nil {
		return nil, err
	}
	if req.Root != "" {
		rel := filepath.Join(strings.TrimPrefix(d.opts.rwetcfs, "/"), "containers", "systemd", req.File)
		if err := CheckLocalRoot(req.Root, rel); err != nil {
			return nil, err
		}
		return d.deployLocal(req, unit)
	}
	if d.c == nil {
		if req.DryRun && !req.All {
			targets := make([]*target, len(req.Nodes))
			for i, n := range req.Nodes {
				targets[i] = &target{host: n, twin: d.opts.twinPrefix + n}
			}
			return d.planned(req, unit, targets)
		}
		return nil, withClass(ErrUnreachable, errors.New("no controller connection"))
	}
	targets, err := d.resolve(ctx, req)
	if err != nil {
		return nil, err
	}
	if req.DryRun {
		return d.planned(req, unit, targets)
	}
	r, done := d.newFleetRun(ctx)
	defer done()
	r.req, r.unit = req, unit
	// The hub lives for this call only: its monitor's Close at the end drops every
	// subscription on the controller, so watches need no Unsubscribe round trip each.
	r.hub.keepSubs = true
	r.allStarted = make(chan struct{})
	r.pending.Store(int64(len(targets)))
	for _, t := range targets {
		t.started = sync.OnceFunc(r.nodeStarted)
	}
	rep := &Report{Results: make([]Result, len(targets))}
	fanOut(ctx, len(targets), d.opts.parallel, func(i int) {
		defer targets[i].started()
		rep.Results[i] = r.node(ctx, targets[i])
	}, func(i int, err error) {
		t := targets[i]
		defer t.started()
		rep.Results[i] = r.result(t)
		rep.Results[i].Action = ActionFailed
		rep.Results[i].Err = fmt.Errorf("node %s: not started: %w", t.host, err)
	})
	return rep, nodeErrors(rep.Results, func(res Result) error { return res.Err })
}

// planned is a dry run's report; its error aggregates the nodes that would fail (offline, no
// twin), so a dry run exits non-zero exactly when its document says "ok": false.
func (d *Deployer) planned(req Request, unit string, targets []*target) (*Report, error) {
	rep := d.plan(req, unit, targets)
	return rep, nodeErrors(rep.Results, func(r Result) error { return r.Err })
}

// CheckLocalRoot checks a local tree (--root) before anything is written or printed: root must
// be a directory, and each of rels (paths relative to root) must resolve inside it, through
// every existing component (a symlinked etc/ or Quadlet directory, or a target file that is a
// symlink, leading out of root is refused). Failures are ErrInvalid naming the path.
func CheckLocalRoot(root string, rels ...string) error {
	fi, err := os.Stat(root)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return invalidf("root %s: %v", root, err)
	}
	if !fi.IsDir() {
		return invalidf("root %s is not a directory", root)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return invalidf("root %s: %v", root, err)
	}
	defer r.Close()
	for _, rel := range rels {
		if !filepath.IsLocal(rel) {
			return invalidf("root %s: %s is outside the root", root, filepath.Join(root, rel))
		}
		parts := strings.Split(filepath.Clean(rel), string(filepath.Separator))
		for i := range parts {
			p := filepath.Join(parts[:i+1]...)
			_, err := r.Stat(p)
			if err == nil {
				continue
			}
			if pathEscapes(err) {
				return invalidf("root %s: %s leads outside the root (a symlink to an absolute path or through \"..\"); refusing to write there",
					root, filepath.Join(root, p))
			}
			break // missing (created by the write) or unreadable (the write reports it)
		}
	}
	return nil
}

// pathEscapes reports os.Root's refusal of a path that resolves outside the root. Go does not
// export that error, so its text is compared.
func pathEscapes(err error) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == "path escapes from parent"
}

// validate checks the request and the options (no I/O) and returns the unit name. It
// deduplicates req.Nodes.
func (d *Deployer) validate(req *Request) (string, error) {
	unit, err := ValidateFile(req.Source, req.File, req.Content)
	if err != nil {
		return "", err
	}
	if err := validateRWETCFS(d.opts.rwetcfs); err != nil {
		return "", err
	}
	if d.opts.timeout <= 0 {
		return "", invalidf("timeout must be positive")
	}
	if d.opts.settle < 0 {
		return "", invalidf("settle must not be negative")
	}
	if err := validateNodeName(d.opts.twinPrefix); err != nil {
		return "", invalidf("twin prefix: %v", err)
	}
	switch {
	case req.Root != "":
		if req.All || len(req.Nodes) > 0 {
			return "", invalidf("a local root (--root) takes no nodes")
		}
		return unit, nil
	case req.All && len(req.Nodes) > 0:
		return "", invalidf("give nodes or all, not both")
	case !req.All && len(req.Nodes) == 0:
		return "", invalidf("no nodes given")
	}
	var nodes []string
	for _, n := range req.Nodes {
		if err := validateNodeName(n); err != nil {
			return "", withClass(ErrInvalid, err)
		}
		if !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	req.Nodes = nodes
	return unit, nil
}

// validateNodeName is qmconf's rule plus '*', which BlueChi's monitor reads as a wildcard.
func validateNodeName(n string) error {
	if err := qmconf.ValidateNodeName(n); err != nil {
		return err
	}
	if strings.ContainsRune(n, '*') {
		return fmt.Errorf("node name %q contains '*'", n)
	}
	return nil
}

// resolve lists the nodes once and pairs each requested host node with its twin. Unknown
// names fail the whole request (nothing is touched); offline nodes and missing twins fail
// only their node.
func (d *Deployer) resolve(ctx context.Context, req Request) ([]*target, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	infos, err := d.c.ListNodes(ctx)
	if err != nil {
		return nil, listNodesError(err)
	}
	byName := make(map[string]controller.NodeInfo, len(infos))
	for _, n := range infos {
		byName[n.Name] = n
	}
	prefix := d.opts.twinPrefix
	names := req.Nodes
	if req.All {
		names = nil
		for _, n := range infos {
			if _, ok := byName[prefix+n.Name]; ok {
				names = append(names, n.Name)
			}
		}
		slices.Sort(names)
		if len(names) == 0 {
			return nil, invalidf("no node has a QM twin named %s<node> (nodes: %s)", prefix, knownNodes(infos))
		}
	}
	var unknown, twins, twinHosts []string
	known := func(n string) bool { _, ok := byName[n]; return ok }
	targets := make([]*target, 0, len(names))
	for _, name := range names {
		host, ok := byName[name]
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", name))
			continue
		}
		// A twin named as a host is known from ListNodes alone: a request error, like an
		// unknown node, so no other node is touched first.
		if h, isTwin := twinHost(known, name, prefix); isTwin {
			twins, twinHosts = append(twins, name), append(twinHosts, h)
			continue
		}
		twin, hasTwin := byName[prefix+name]
		t := &target{host: name, twin: prefix + name, hostInfo: host, twinInfo: twin}
		switch {
		case host.Status != controller.NodeOnline:
			t.err = fmt.Errorf("node %s: host node %s is %s: %w", name, name, statusWord(host.Status), controller.ErrNodeOffline)
		case !hasTwin:
			t.err = fmt.Errorf("node %s: QM twin %s is not registered on the controller (is QM's bluechi-agent configured?)", name, t.twin)
		case twin.Status != controller.NodeOnline:
			t.err = fmt.Errorf("node %s: QM twin %s is %s: %w", name, t.twin, statusWord(twin.Status), controller.ErrNodeOffline)
		}
		targets = append(targets, t)
	}
	if len(unknown) > 0 {
		word := "node"
		if len(unknown) > 1 {
			word = "nodes"
		}
		return nil, invalidf("unknown %s %s (known nodes: %s)", word, strings.Join(unknown, ", "), knownNodes(infos))
	}
	if len(twins) > 0 {
		return nil, twinNamed(twins, twinHosts)
	}
	return targets, nil
}

func statusWord(s controller.NodeStatus) string {
	if s == "" {
		return "offline"
	}
	return string(s)
}

func knownNodes(infos []controller.NodeInfo) string {
	if len(infos) == 0 {
		return "none"
	}
	names := make([]string, len(infos))
	for i, n := range infos {
		names[i] = n.Name
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func (r *run) result(t *target) Result {
	return Result{
		Node: t.host,
		Twin: t.twin,
		Unit: r.unit,
		Path: nodeDest(r.d.opts.rwetcfs, r.req.File),
	}
}

// node runs the whole operation on one node, bounded by the timeout.
func (r *run) node(ctx context.Context, t *target) Result {
	start := r.d.opts.clock.Now()
	res := r.result(t)
	ctx, cancel := context.WithTimeout(ctx, r.d.opts.timeout)
	defer cancel()
	action, state, warns, err := r.nodeSteps(ctx, t)
	res.Action, res.ActiveState, res.Warnings = action, state, warns
	if err != nil {
		res.Action = ActionFailed
		res.Err = err
	}
	res.Duration = r.d.opts.clock.Now().Sub(start)
	return res
}

func (r *run) nodeSteps(ctx context.Context, t *target) (Action, string, []string, error) {
	if t.err != nil {
		return "", "", nil, t.err
	}
	var err error
	if t.hostNode, err = r.d.node(ctx, t.host, t.hostInfo); err != nil {
		return "", "", nil, fmt.Errorf("node %s: %w", t.host, err)
	}
	if t.twinNode, err = r.d.node(ctx, t.twin, t.twinInfo); err != nil {
		return "", "", nil, fmt.Errorf("node %s: QM twin %s: %w", t.host, t.twin, err)
	}
	// Collect the delivery unit once every node's job is under way (or this node is done):
	// collection then overlaps with the jobs instead of delaying other nodes' way to theirs.
	if t.started == nil {
		t.started = func() {}
	}
	t.cleanupGate = make(chan struct{})
	openGate := sync.OnceFunc(func() { t.started(); close(t.cleanupGate) })
	defer openGate()
	changed, cleanup, err := r.deliver(ctx, t)
	var warns []string
	collect := func() {
		if cleanup != nil {
			if w := <-cleanup; w != "" {
				warns = append(warns, w)
			}
		}
	}
	if err != nil {
		openGate()
		collect()
		return "", "", warns, fmt.Errorf("node %s: deliver %s: %w", t.host, r.req.File, err)
	}
	action, state, err := r.activate(ctx, t, changed, t.started)
	openGate()
	collect()
	if err != nil {
		return "", state, warns, fmt.Errorf("node %s: %w", t.host, err)
	}
	return action, state, warns, nil
}
