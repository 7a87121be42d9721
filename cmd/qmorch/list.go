package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qmorch/qmorch/deploy"
)

// ListOptions holds `qmorch list`'s flags and arguments.
type ListOptions struct {
	fleetFlags
	StateDir string

	Nodes []string // selectors; none = every node with a QM twin

	d deps
}

// NewCmdList is `qmorch list [NODES]`.
func NewCmdList(d deps) *cobra.Command {
	o := &ListOptions{fleetFlags: newFleetFlags(), d: d}
	cmd := &cobra.Command{
		Use:   "list [NODES | --all]",
		Short: "List the nested Quadlet units on nodes, with drift from what qmorch deployed",
		Long: `list shows, per node, the Quadlet units qmorch deployed into QM (from its record in --state-dir)
and how each node differs from that record (DRIFT):

  missing-file  the Quadlet file is gone from ${RWETCFS}/containers/systemd
  modified      the file's content differs from what was deployed
  not-loaded    the file is there but QM's systemd has not loaded the unit
  failed        the unit is in the failed state
  unmanaged     a Quadlet unit in QM's /etc/containers/systemd that qmorch did not deploy

File contents are compared on the host node through a transient unit (qmorch keeps the deployed
content). Without NODES (or with --all) every node that has a QM twin is listed.

Output: NODE UNIT FILE STATE DRIFT. Exit code 1 when a node could not be listed; drift alone
exits 0 (read "drifted" in -o json; see docs/json.md, kind UnitList).`,
		Example: `  # every node with a QM twin
  qmorch list

  # two nodes, JSON output
  qmorch list node1,node2 -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: runE(o),
	}
	o.add(cmd.Flags(), "bound for each node's reads and file checks")
	o.addRWETCFS(cmd.Flags())
	cmd.Flags().StringVar(&o.StateDir, "state-dir", "", stateDirHelp)
	return cmd
}

// Complete takes the node selectors.
func (o *ListOptions) Complete(args []string) error {
	o.Nodes = args
	return nil
}

// Validate checks the flags.
func (o *ListOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.All && len(o.Nodes) > 0 {
		return usageErrorf("give NODES or --all, not both")
	}
	return nil
}

// Run reads the record, lists the nodes and prints the units.
func (o *ListOptions) Run(ctx context.Context) error {
	log := o.d.logger()
	store := deploy.OpenState(o.StateDir)
	m, err := store.Read()
	if err != nil {
		return fmt.Errorf("record of deployed units: %w", err)
	}
	managed := map[string][]deploy.ManagedFile{}
	for _, e := range m.Entries {
		mf := deploy.ManagedFile{File: e.File, Path: e.Path, Unit: e.Unit, SHA256: e.SHA256, DeployedAt: e.DeployedAt}
		if data, cerr := store.Content(e.SHA256); cerr == nil {
			mf.Content = data
		} else {
			log.Debug("deployed content unavailable", "node", e.Node, "file", e.File, "err", cerr)
		}
		managed[e.Node] = append(managed[e.Node], mf)
	}
	dep, closeFn, err := o.deployer(ctx, o.d, false)
	if err != nil {
		return err
	}
	defer closeFn()
	rep, err := dep.List(ctx, deploy.ListRequest{Nodes: o.Nodes, All: o.All, Managed: managed})
	if rep == nil {
		return err
	}
	return printReport(o.d.streams, err, printList(o.d.streams.Out, o.Output, rep), rep.Nodes,
		func(l deploy.NodeListing) (string, []string) { return l.Node, l.Warnings })
}

// ListOutput is the JSON document of `qmorch list -o json` (kind UnitList; see docs/json.md).
type ListOutput struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	OK         bool           `json:"ok"`      // every node was listed
	Drifted    int            `json:"drifted"` // units with a non-empty drift (unmanaged included)
	Results    []ListNodeJSON `json:"results"`
}

// ListNodeJSON is one node of ListOutput.
type ListNodeJSON struct {
	Node       string         `json:"node"`
	QMNode     string         `json:"qmNode"`
	Units      []ListUnitJSON `json:"units"`
	DurationMs int64          `json:"durationMs"`
	Error      string         `json:"error,omitempty"`
	Warnings   []string       `json:"warnings,omitempty"`
}

// ListUnitJSON is one unit of a node.
type ListUnitJSON struct {
	Unit        string   `json:"unit"`
	File        string   `json:"file"`    // NAME.container
	Path        string   `json:"path"`    // on the host node
	Managed     bool     `json:"managed"` // deployed by qmorch
	LoadState   string   `json:"loadState"`
	ActiveState string   `json:"activeState"`
	SubState    string   `json:"subState"`
	FileState   string   `json:"fileState"`            // managed: same | differs | missing; "" when not checked
	Drift       []string `json:"drift"`                // [] when in sync
	SHA256      string   `json:"sha256,omitempty"`     // managed: deployed content
	DeployedAt  string   `json:"deployedAt,omitempty"` // managed: RFC 3339, UTC
}

func listOutput(rep *deploy.ListReport) ListOutput {
	out := ListOutput{APIVersion: apiVersion, Kind: "UnitList", OK: rep.Failed() == 0, Drifted: rep.Drifted(),
		Results: make([]ListNodeJSON, 0, len(rep.Nodes))}
	for _, l := range rep.Nodes {
		n := ListNodeJSON{Node: l.Node, QMNode: l.Twin, Units: make([]ListUnitJSON, 0, len(l.Units)),
			DurationMs: l.Duration.Milliseconds(), Warnings: l.Warnings}
		if l.Err != nil {
			n.Error = l.Err.Error()
		}
		for _, u := range l.Units {
			j := ListUnitJSON{Unit: u.Unit, File: u.File, Path: u.Path, Managed: u.Managed, LoadState: u.LoadState,
				ActiveState: u.ActiveState, SubState: u.SubState, FileState: string(u.FileState),
				Drift: make([]string, 0, len(u.Drift)), SHA256: u.SHA256}
			for _, d := range u.Drift {
				j.Drift = append(j.Drift, string(d))
			}
			if !u.DeployedAt.IsZero() {
				j.DeployedAt = u.DeployedAt.UTC().Format(time.RFC3339)
			}
			n.Units = append(n.Units, j)
		}
		out.Results = append(out.Results, n)
	}
	return out
}

func printList(w io.Writer, format string, rep *deploy.ListReport) error {
	if format == "json" {
		return writeJSON(w, listOutput(rep))
	}
	tw := newTable(w, "NODE\tUNIT\tFILE\tSTATE\tDRIFT")
	for _, l := range rep.Nodes {
		if l.Err != nil {
			fmt.Fprintf(tw, "%s\t-\t-\terror\t-\n", l.Node)
			continue
		}
		if len(l.Units) == 0 {
			fmt.Fprintf(tw, "%s\t(none)\t-\t-\t-\n", l.Node)
			continue
		}
		for _, u := range l.Units {
			drift := make([]string, len(u.Drift))
			for i, d := range u.Drift {
				drift[i] = string(d)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Node, u.Unit, u.File, dash(unitState(u.ActiveState, u.SubState)), dash(strings.Join(drift, ",")))
		}
	}
	return tw.Flush()
}
