package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/qmorch/qmorch/deploy"
)

// DefaultFleetParallel is how many nodes start/stop/restart/reload, remove and list work on
// at once.
const DefaultFleetParallel = 32

// fleetFlags are the flags start/stop/restart/reload, remove and list share.
type fleetFlags struct {
	connFlags
	All bool
}

func (f *fleetFlags) add(fs *pflag.FlagSet, timeoutHelp string) {
	fs.BoolVar(&f.All, "all", false, "every node that has a QM twin")
	f.addFlags(fs, timeoutHelp, "nodes worked on at once")
	fs.StringVar(&f.TwinPrefix, "prefix", f.TwinPrefix, "same as --twin-prefix")
}

func (f *fleetFlags) validate() error {
	if err := f.connFlags.validate(); err != nil {
		return err
	}
	if f.TwinPrefix == "" {
		return usageErrorf("--twin-prefix must not be empty")
	}
	return nil
}

func newFleetFlags() fleetFlags {
	return fleetFlags{connFlags: newConnFlags(deploy.DefaultTimeout, DefaultFleetParallel)}
}

// LifecycleOptions holds `qmorch start|stop|restart|reload`'s flags and arguments.
type LifecycleOptions struct {
	fleetFlags
	Action deploy.LifecycleAction
	Host   bool
	Settle time.Duration

	// Filled by Complete.
	Nodes []string // selectors
	Units []string

	d deps
}

const settled = "active, and still active after the --settle window (one window per node)"

var lifecycleHelp = map[deploy.LifecycleAction]struct{ short, state string }{
	deploy.LifecycleStart:   {"Start units in the QM partition of nodes", settled},
	deploy.LifecycleStop:    {"Stop units in the QM partition of nodes", "inactive (a unit left failed is reported failed)"},
	deploy.LifecycleRestart: {"Restart units in the QM partition of nodes", settled},
	deploy.LifecycleReload:  {"Reload units in the QM partition of nodes", settled},
}

// NewCmdStart, NewCmdStop, NewCmdRestart and NewCmdReload are the unit lifecycle commands.
func NewCmdStart(d deps) *cobra.Command   { return newCmdLifecycle(d, deploy.LifecycleStart) }
func NewCmdStop(d deps) *cobra.Command    { return newCmdLifecycle(d, deploy.LifecycleStop) }
func NewCmdRestart(d deps) *cobra.Command { return newCmdLifecycle(d, deploy.LifecycleRestart) }
func NewCmdReload(d deps) *cobra.Command  { return newCmdLifecycle(d, deploy.LifecycleReload) }

func newCmdLifecycle(d deps, action deploy.LifecycleAction) *cobra.Command {
	o := &LifecycleOptions{fleetFlags: newFleetFlags(), Action: action, Settle: deploy.DefaultSettle, d: d}
	help := lifecycleHelp[action]
	cmd := &cobra.Command{
		Use:   string(action) + " (NODES | --all) UNIT...",
		Short: help.short,
		Long: fmt.Sprintf(`%[1]s runs "%[1]s UNIT" on the QM twin of every node (qm.NODE; --host: on the host
node itself), nodes in parallel and the units of a node one after the other. Each BlueChi job is
waited for (at most --timeout; a node that goes offline ends the wait at once) and the unit must
then be %[2]s.

NODES is a node name, a comma list (node1,node2) or a glob ('node*'); --all takes every node that
has a QM twin. A UNIT without a type suffix means UNIT.service.

Output: one line per node and unit: NODE UNIT ACTION RESULT STATE TIME, where NODE is the BlueChi
node the unit runs on and RESULT is ok, failed, timeout, offline or cancelled. Ctrl-C cancels the
jobs in flight (Job.Cancel) and reports the rest as cancelled. Exit code 0 only if every node and
unit is ok. -o json: see docs/json.md (kind LifecycleResult).`, action, help.state),
		Example: fmt.Sprintf(`  # %[1]s a nested unit in QM on two nodes
  qmorch %[1]s node1,node2 nested

  # every node with a QM twin, JSON output
  qmorch %[1]s --all nested.service -o json

  # a unit of the host node itself
  qmorch %[1]s --host node1 bluechi-agent`, action),
		Args: func(_ *cobra.Command, args []string) error {
			want := 2
			if o.All {
				want = 1
			}
			if len(args) < want {
				if o.All {
					return errors.New("with --all give at least one UNIT")
				}
				return fmt.Errorf("need NODES and at least one UNIT, got %d arguments", len(args))
			}
			return nil
		},
		RunE: runE(o),
	}
	o.add(cmd.Flags(), "bound for each job's wait (per node and unit)")
	cmd.Flags().BoolVar(&o.Host, "host", false, "the host node's own units instead of its QM partition's")
	if action != deploy.LifecycleStop {
		cmd.Flags().DurationVar(&o.Settle, "settle", o.Settle, "how long started units must stay active (one window per node; 0: no check)")
	}
	return cmd
}

// Complete splits the arguments into node selectors and units.
func (o *LifecycleOptions) Complete(args []string) error {
	if !o.All {
		o.Nodes, args = args[:1], args[1:]
	}
	o.Units = args
	return nil
}

// Validate checks flags and unit names (no I/O).
func (o *LifecycleOptions) Validate() error {
	if err := o.validate(); err != nil {
		return err
	}
	if o.Settle < 0 || o.Settle >= o.Timeout {
		return usageErrorf("--settle must be at least 0 and shorter than --timeout")
	}
	for _, u := range o.Units {
		if _, err := deploy.NormalizeUnitName(u); err != nil {
			return err
		}
	}
	return nil
}

// Run connects, runs the action and prints one line per node and unit.
func (o *LifecycleOptions) Run(ctx context.Context) error {
	dep, closeFn, err := o.deployer(ctx, o.d, false, deploy.WithSettle(o.Settle))
	if err != nil {
		return err
	}
	defer closeFn()
	rep, err := dep.Lifecycle(ctx, deploy.LifecycleRequest{Action: o.Action, Nodes: o.Nodes, All: o.All, Units: o.Units, Host: o.Host})
	if rep == nil {
		return err
	}
	return printReport(o.d.streams, err, printLifecycle(o.d.streams.Out, o.Output, rep), rep.Results,
		func(r deploy.UnitResult) (string, []string) { return r.Node, r.Warnings })
}

// LifecycleOutput is the JSON document of `qmorch start|stop|restart|reload -o json` (kind
// LifecycleResult, apiVersion qmorch/v1; see docs/json.md).
type LifecycleOutput struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Action     string            `json:"action"` // start | stop | restart | reload
	OK         bool              `json:"ok"`
	Results    []LifecycleResult `json:"results"`
}

// LifecycleResult is one node and unit of LifecycleOutput.
type LifecycleResult struct {
	Node        string   `json:"node"`        // host node as selected
	Target      string   `json:"target"`      // BlueChi node the job ran on: qm.NODE, or NODE with --host
	Unit        string   `json:"unit"`        // normalized (NAME.service)
	Action      string   `json:"action"`      // same as the document's action
	Result      string   `json:"result"`      // ok | failed | timeout | offline | cancelled
	JobResult   string   `json:"jobResult"`   // BlueChi job result (done, failed, ...); "" when no job ended
	ActiveState string   `json:"activeState"` // at the end; "" when not known
	SubState    string   `json:"subState"`
	DurationMs  int64    `json:"durationMs"`
	Error       string   `json:"error,omitempty"`
	Warnings    []string `json:"warnings,omitempty"`
}

func lifecycleOutput(rep *deploy.LifecycleReport) LifecycleOutput {
	out := LifecycleOutput{APIVersion: apiVersion, Kind: "LifecycleResult", Action: string(rep.Action),
		OK: rep.Failed() == 0, Results: make([]LifecycleResult, 0, len(rep.Results))}
	for _, r := range rep.Results {
		lr := LifecycleResult{Node: r.Node, Target: r.Target, Unit: r.Unit, Action: string(r.Action),
			Result: string(r.Outcome), JobResult: r.JobResult, ActiveState: r.ActiveState, SubState: r.SubState,
			DurationMs: r.Duration.Milliseconds(), Warnings: r.Warnings}
		if r.Err != nil {
			lr.Error = r.Err.Error()
		}
		out.Results = append(out.Results, lr)
	}
	return out
}

func printLifecycle(w io.Writer, format string, rep *deploy.LifecycleReport) error {
	if format == "json" {
		return writeJSON(w, lifecycleOutput(rep))
	}
	tw := newTable(w, "NODE\tUNIT\tACTION\tRESULT\tSTATE\tTIME")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Target, r.Unit, r.Action, r.Outcome, dash(unitState(r.ActiveState, r.SubState)), secs(r.Duration))
	}
	return tw.Flush()
}
