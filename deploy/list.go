package deploy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// Drift is a way a node differs from what qmorch deployed.
type Drift string

const (
	DriftMissingFile Drift = "missing-file" // the deployed Quadlet file is gone from the node
	DriftModified    Drift = "modified"     // the file differs from the deployed content
	DriftNotLoaded   Drift = "not-loaded"   // the file is there but QM's systemd has not loaded the unit
	DriftFailed      Drift = "failed"       // the unit is in the failed state
	DriftUnmanaged   Drift = "unmanaged"    // a nested Quadlet unit qmorch did not deploy
)

// quadletSourceDir is QM's Quadlet directory as QM's systemd sees it (SourcePath of generated
// units); on the host it is ${RWETCFS}/containers/systemd.
const quadletSourceDir = "/etc/containers/systemd/"

// ManagedFile is what qmorch deployed to a node (from the manifest).
type ManagedFile struct {
	File, Path, Unit, SHA256 string
	DeployedAt               time.Time
	Content                  []byte // the deployed bytes; nil when the state dir lost them
}

// ListRequest lists nested Quadlet units on nodes.
type ListRequest struct {
	Nodes   []string // selectors (see SelectHosts); none with All
	All     bool
	Managed map[string][]ManagedFile // host node -> what qmorch deployed there
}

// ListedUnit is one nested Quadlet unit on a node.
type ListedUnit struct {
	Unit        string
	File        string // NAME.container
	Path        string // on the host node
	Managed     bool   // qmorch deployed it (it is in the manifest)
	LoadState   string // on the QM twin
	ActiveState string
	SubState    string
	FileState   FileState // managed units: same, differs or missing; "" when not checked
	Drift       []Drift   // empty when the node matches what was deployed
	SHA256      string    // managed: the deployed content's hash
	DeployedAt  time.Time // managed: when it was deployed
}

// NodeListing is one node's units.
type NodeListing struct {
	Node, Twin string
	Units      []ListedUnit // sorted by unit
	Duration   time.Duration
	Err        error // the node could not be (fully) listed
	Warnings   []string
}

// ListReport has one listing per node, sorted by node.
type ListReport struct{ Nodes []NodeListing }

// Failed counts the nodes that could not be listed.
func (r *ListReport) Failed() int {
	n := 0
	for _, l := range r.Nodes {
		if l.Err != nil {
			n++
		}
	}
	return n
}

// Drifted counts the units with drift.
func (r *ListReport) Drifted() int {
	n := 0
	for _, l := range r.Nodes {
		for _, u := range l.Units {
			if len(u.Drift) > 0 {
				n++
			}
		}
	}
	return n
}

// List reports, per node, the Quadlet units qmorch deployed (with drift: file missing or
// modified, unit not loaded or failed) and the nested Quadlet units found on the QM twin that
// qmorch did not deploy ("unmanaged"). Nodes run in parallel.
func (d *Deployer) List(ctx context.Context, req ListRequest) (*ListReport, error) {
	if err := validateRWETCFS(d.opts.rwetcfs); err != nil {
		return nil, err
	}
	if d.opts.timeout <= 0 {
		return nil, invalidf("timeout must be positive")
	}
	all := req.All || len(req.Nodes) == 0
	targets, err := d.selectTargets(ctx, req.Nodes, all, false)
	if err != nil {
		return nil, err
	}
	r, done := d.newFleetRun(ctx)
	defer done()
	rep := &ListReport{Nodes: make([]NodeListing, len(targets))}
	fanOut(ctx, len(targets), d.opts.parallel, func(i int) {
		t := targets[i]
		l := &rep.Nodes[i]
		l.Node, l.Twin = t.host, t.twin
		start := d.opts.clock.Now()
		nctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
		defer cancel()
		l.Err = r.listNode(nctx, t, req.Managed[t.host], l)
		slices.SortFunc(l.Units, func(a, b ListedUnit) int { return strings.Compare(a.Unit, b.Unit) })
		l.Duration = d.opts.clock.Now().Sub(start)
	}, func(i int, err error) {
		t := targets[i]
		rep.Nodes[i] = NodeListing{Node: t.host, Twin: t.twin, Err: fmt.Errorf("node %s: not started: %w", t.host, err)}
	})
	return rep, nodeErrors(rep.Nodes, func(l NodeListing) error { return l.Err })
}

func (r *run) listNode(ctx context.Context, t *target, managed []ManagedFile, l *NodeListing) error {
	if err := r.getNodes(ctx, t); err != nil {
		return err
	}
	known := map[string]bool{}
	for _, m := range managed {
		known[m.Unit] = true
		u := ListedUnit{Unit: m.Unit, File: m.File, Path: m.Path, Managed: true, SHA256: m.SHA256, DeployedAt: m.DeployedAt}
		st, err := readState(ctx, t.twinNode, m.Unit)
		if err != nil {
			return fmt.Errorf("node %s: state of %s on %s: %w", t.host, m.Unit, t.twin, err)
		}
		u.LoadState, u.ActiveState, u.SubState = st.Load, st.Active, st.Sub
		if m.Content == nil {
			l.Warnings = append(l.Warnings, fmt.Sprintf("%s: the deployed content is not in the state directory; file not checked", m.File))
		} else {
			fs, cleanup, err := r.compareFile(ctx, t, m.Path, m.Content)
			l.Warnings = append(l.Warnings, wait(cleanup)...)
			if err != nil {
				return fmt.Errorf("node %s: %w", t.host, err)
			}
			u.FileState = fs
		}
		switch u.FileState {
		case FileMissing:
			u.Drift = append(u.Drift, DriftMissingFile)
		case FileDiffers:
			u.Drift = append(u.Drift, DriftModified)
		}
		if u.FileState != FileMissing && st.Load != "loaded" {
			u.Drift = append(u.Drift, DriftNotLoaded)
		}
		if st.Active == "failed" {
			u.Drift = append(u.Drift, DriftFailed)
		}
		l.Units = append(l.Units, u)
	}
	un, ok := t.twinNode.(unitNode)
	if !ok {
		l.Warnings = append(l.Warnings, "this controller client cannot list units; unmanaged units not shown")
		return nil
	}
	units, err := un.ListUnits(ctx)
	if err != nil {
		return fmt.Errorf("node %s: list units on %s: %w", t.host, t.twin, err)
	}
	for _, info := range units {
		if known[info.Name] || !strings.HasSuffix(info.Name, ".service") || info.LoadState != "loaded" {
			continue
		}
		props, err := t.twinNode.GetUnitProperties(ctx, info.Name, unitIface)
		if err != nil {
			return fmt.Errorf("node %s: properties of %s on %s: %w", t.host, info.Name, t.twin, err)
		}
		src, _ := props["SourcePath"].Value().(string)
		rel, ok := strings.CutPrefix(src, quadletSourceDir)
		if !ok {
			continue
		}
		u := ListedUnit{Unit: info.Name, File: path.Base(src), Path: path.Join(quadletDir(r.d.opts.rwetcfs), rel),
			LoadState: info.LoadState, ActiveState: info.ActiveState, SubState: info.SubState,
			Drift: []Drift{DriftUnmanaged}}
		if info.ActiveState == "failed" {
			u.Drift = append(u.Drift, DriftFailed)
		}
		l.Units = append(l.Units, u)
	}
	return nil
}
