package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qmorch/qmorch/deploy"
)

// RemoveOptions holds `qmorch remove`'s flags and arguments.
type RemoveOptions struct {
	fleetFlags
	StateDir string

	// Filled by Complete.
	Nodes []string
	File  string

	d deps
}

// NewCmdRemove is `qmorch remove NODES NAME.container`.
func NewCmdRemove(d deps) *cobra.Command {
	o := &RemoveOptions{fleetFlags: newFleetFlags(), d: d}
	cmd := &cobra.Command{
		Use:   "remove (NODES | --all) NAME.container",
		Short: "Stop a nested Quadlet unit and delete its file from the QM partition of nodes",
		Long: `remove undoes deploy on every node, in parallel: stops NAME.service on the node's QM twin (a unit
that is not loaded is fine), deletes ${RWETCFS}/containers/systemd/NAME.container on the host node
through a transient unit, runs daemon-reload on the twin and checks that the unit is no longer
loaded. A node where neither the file nor the unit was there reports "unchanged".

The unit name comes from qmorch's record of the deploy (--state-dir) when there is one (Quadlet's
ServiceName=), else NAME.service; the node's entry is dropped from the record.

Output: NODE UNIT ACTION STATE TIME, ACTION removed, unchanged or failed, STATE the unit's load
state at the end. -o json: see docs/json.md (kind RemoveResult).`,
		Example: `  # take nested.container out of QM on two nodes
  qmorch remove node1,node2 nested.container

  # everywhere, JSON output
  qmorch remove --all nested.container -o json`,
		Args: func(_ *cobra.Command, args []string) error {
			want := 2
			if o.All {
				want = 1
			}
			if len(args) != want {
				if o.All {
					return fmt.Errorf("with --all give only NAME.container, got %d arguments", len(args))
				}
				return fmt.Errorf("need NODES and NAME.container, got %d arguments", len(args))
			}
			return nil
		},
		RunE: runE(o),
	}
	o.add(cmd.Flags(), "bound for each node's whole operation")
	o.addRWETCFS(cmd.Flags())
	cmd.Flags().StringVar(&o.StateDir, "state-dir", "", stateDirHelp)
	return cmd
}

// Complete fills nodes and the file name.
func (o *RemoveOptions) Complete(args []string) error {
	if !o.All {
		o.Nodes = args[:1]
	}
	o.File = args[len(args)-1]
	return nil
}

// Validate checks the flags (the engine checks the file name).
func (o *RemoveOptions) Validate() error { return o.validate() }

// Run removes the file, prints the results and updates the record.
func (o *RemoveOptions) Run(ctx context.Context) error {
	store := deploy.OpenState(o.StateDir)
	units := map[string]string{}
	if m, err := store.Read(); err != nil {
		fmt.Fprintf(o.d.streams.ErrOut, "warning: %v; removing %s\n", err, unitOfFile(o.File))
	} else {
		for _, e := range m.Entries {
			if e.File == o.File {
				units[e.Node] = e.Unit
			}
		}
	}
	dep, closeFn, err := o.deployer(ctx, o.d, false)
	if err != nil {
		return err
	}
	defer closeFn()
	rep, err := dep.Remove(ctx, deploy.RemoveRequest{Nodes: o.Nodes, All: o.All, File: o.File, Units: units})
	if rep == nil {
		return err
	}
	var gone []string
	for _, r := range rep.Results {
		if r.Action != deploy.ActionFailed {
			gone = append(gone, r.Node)
		}
	}
	if _, ferr := store.Forget(o.File, gone...); ferr != nil {
		fmt.Fprintf(o.d.streams.ErrOut, "warning: record of deployed units: %v\n", ferr)
	}
	return printReport(o.d.streams, err, printRemove(o.d.streams.Out, o.Output, rep), rep.Results,
		func(r deploy.RemoveResult) (string, []string) { return r.Node, r.Warnings })
}

func unitOfFile(file string) string {
	if base, ok := strings.CutSuffix(file, ".container"); ok {
		return base + ".service"
	}
	return file
}

// RemoveOutput is the JSON document of `qmorch remove -o json` (kind RemoveResult; see
// docs/json.md).
type RemoveOutput struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	OK         bool         `json:"ok"`
	Results    []RemoveJSON `json:"results"`
}

// RemoveJSON is one node of RemoveOutput.
type RemoveJSON struct {
	Node        string   `json:"node"`
	QMNode      string   `json:"qmNode"`
	Unit        string   `json:"unit"`
	Path        string   `json:"path"`        // on the host node
	Action      string   `json:"action"`      // removed | unchanged | failed
	Stopped     bool     `json:"stopped"`     // the unit was loaded and was stopped
	FileRemoved bool     `json:"fileRemoved"` // the file was there and was deleted
	LoadState   string   `json:"loadState"`   // at the end: "not-found" on success; "" when not known
	DurationMs  int64    `json:"durationMs"`
	Error       string   `json:"error,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
}

func removeOutput(rep *deploy.RemoveReport) RemoveOutput {
	out := RemoveOutput{APIVersion: apiVersion, Kind: "RemoveResult", OK: rep.Failed() == 0,
		Results: make([]RemoveJSON, 0, len(rep.Results))}
	for _, r := range rep.Results {
		j := RemoveJSON{Node: r.Node, QMNode: r.Twin, Unit: r.Unit, Path: r.Path, Action: string(r.Action),
			Stopped: r.Stopped, FileRemoved: r.FileRemoved, LoadState: r.LoadState,
			DurationMs: r.Duration.Milliseconds(), Warnings: r.Warnings}
		if r.Err != nil {
			j.Error = r.Err.Error()
		}
		out.Results = append(out.Results, j)
	}
	return out
}

func printRemove(w io.Writer, format string, rep *deploy.RemoveReport) error {
	if format == "json" {
		return writeJSON(w, removeOutput(rep))
	}
	tw := newTable(w, "NODE\tUNIT\tACTION\tSTATE\tTIME")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Node, r.Unit, r.Action, dash(r.LoadState), secs(r.Duration))
	}
	return tw.Flush()
}
