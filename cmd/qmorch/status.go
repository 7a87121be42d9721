package main

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qmorch/qmorch/deploy"
)

// StatusOptions holds `qmorch status`'s flags and arguments.
type StatusOptions struct {
	connFlags
	All        bool
	Units      bool // --units: every loaded unit
	Host       bool
	Watch      bool
	WaitOnline string

	// Filled by Complete.
	Nodes     []string // selectors
	UnitNames []string // normalized
	WaitNodes []string

	d deps
}

// DefaultStatusTimeout bounds status reads and --wait-online.
const DefaultStatusTimeout = 30 * time.Second

// NewStatusOptions returns the defaults.
func NewStatusOptions(d deps) *StatusOptions {
	return &StatusOptions{connFlags: newConnFlags(DefaultStatusTimeout, deploy.DefaultParallel), d: d}
}

// NewCmdStatus is `qmorch status [NODES [UNIT...]] [-w]`.
func NewCmdStatus(d deps) *cobra.Command {
	o := NewStatusOptions(d)
	cmd := &cobra.Command{
		Use:   "status [NODES [UNIT...]] [--all] [--units] [--host] [-w] | --wait-online NODES",
		Short: "Show (or follow) nodes with their QM twins, and units",
		Long: `Without units, status prints one row per host node paired with its QM twin:
NODE HOST QM IP LAST SEEN (HOST and QM are the agents' online/offline status; LAST SEEN is "now"
for online nodes, else the last heartbeat).

With UNIT names (a name without a type suffix means NAME.service) or --units (every loaded unit),
it prints NODE UNIT LOADED ACTIVE SUB SINCE SOURCE for the QM twins (qm.NODE), or for the host
nodes with --host. SOURCE is the file the unit comes from (for a Quadlet unit, the .container
file); SINCE and SOURCE are read for named units only.

NODES is a name, a comma list, a glob ("node*") or --all (every node with a QM twin); without
NODES every host node is shown. A QM twin's name selects its host.

-w follows changes live through one BlueChi monitor: one line per unit transition and per node
status change (the first lines show the current state), until Ctrl-C (exit 0). It survives nodes
going offline and coming back, and re-subscribes when the controller restarts. With -o json it
prints one JSON object per line.

--wait-online NODES waits (through the node status signals, no polling) until the named nodes
(host or QM twin names) are online, and fails after --timeout naming the nodes still offline.`,
		Example: `  # every host node with its QM twin
  qmorch status

  # a unit in the QM partition of two nodes
  qmorch status node1,node2 nested

  # every unit on the host agents of node1..nodeN, as JSON
  qmorch status 'node*' --units --host -o json

  # follow a unit on every node with a QM twin
  qmorch status --all nested.service -w

  # wait up to a minute for node1 and its QM twin
  qmorch status --wait-online node1,qm.node1 --timeout 60s`,
		RunE: runE(o),
	}
	f := cmd.Flags()
	f.BoolVar(&o.All, "all", false, "every node that has a QM twin (then every argument is a UNIT)")
	f.BoolVar(&o.Units, "units", false, "list every loaded unit")
	f.BoolVar(&o.Host, "host", false, "units of the host nodes instead of their QM twins")
	f.BoolVarP(&o.Watch, "watch", "w", false, "follow changes live until Ctrl-C")
	f.StringVar(&o.WaitOnline, "wait-online", "", "wait until these nodes (comma list, host or QM twin names) are online")
	o.addFlags(f, "bound for the reads (and for --wait-online)", "D-Bus reads in flight at once")
	return cmd
}

// Complete splits the arguments into node selectors and unit names.
func (o *StatusOptions) Complete(args []string) error {
	if o.WaitOnline != "" {
		if len(args) > 0 {
			return usageErrorf("--wait-online takes its nodes as its value, no arguments (got %q)", strings.Join(args, " "))
		}
		for n := range strings.SplitSeq(o.WaitOnline, ",") {
			if n = strings.TrimSpace(n); n != "" {
				o.WaitNodes = append(o.WaitNodes, n)
			}
		}
		return nil
	}
	units := args
	if !o.All && len(args) > 0 {
		o.Nodes, units = []string{args[0]}, args[1:]
	}
	names, err := deploy.NormalizeUnitNames(units)
	if err != nil {
		return err
	}
	o.UnitNames = names
	return nil
}

// Validate checks flag combinations (no I/O).
func (o *StatusOptions) Validate() error {
	if err := o.connFlags.validate(); err != nil {
		return err
	}
	switch {
	case o.WaitOnline != "" && len(o.WaitNodes) == 0:
		return usageErrorf("--wait-online: no node names in %q", o.WaitOnline)
	case o.WaitOnline != "" && (o.Watch || o.Units || o.All || o.Host):
		return usageErrorf("--wait-online goes alone (with --timeout)")
	case o.Units && len(o.UnitNames) > 0:
		return usageErrorf("give UNIT names or --units, not both")
	case o.Host && !o.Units && len(o.UnitNames) == 0:
		return usageErrorf("--host selects whose units are shown: give UNIT names or --units")
	}
	return nil
}

func (o *StatusOptions) request() deploy.StatusRequest {
	return deploy.StatusRequest{Nodes: o.Nodes, All: o.All, Units: o.UnitNames, AllUnits: o.Units, Host: o.Host}
}

// Run reads (or follows) and prints; the returned error decides the exit code.
func (o *StatusOptions) Run(ctx context.Context) error {
	dep, closeFn, err := o.deployer(ctx, o.d, false)
	if err != nil {
		return err
	}
	defer closeFn()
	out := o.d.streams.Out
	switch {
	case o.WaitOnline != "":
		start := time.Now()
		if err := dep.WaitOnline(ctx, o.WaitNodes); err != nil {
			return err
		}
		return printWaitOnline(out, o.Output, o.WaitNodes, time.Since(start))
	case o.Watch:
		p := newWatchPrinter(out, o.Output)
		err := dep.WatchStatus(ctx, deploy.WatchRequest{
			StatusRequest: o.request(),
			Reconnect: func(ctx context.Context) (deploy.Controller, func() error, error) {
				return o.connect(ctx, o.d, o.d.logger()) // bounded by --timeout: a silent bus must not stall the watch
			},
		}, p.print)
		if err == nil && p.err != nil {
			return p.err
		}
		return err
	case o.Units || len(o.UnitNames) > 0:
		rows, err := dep.StatusUnits(ctx, o.request())
		if rows != nil {
			if perr := printUnitStatus(out, o.Output, rows, time.Now()); perr != nil {
				return errors.Join(err, perr)
			}
		}
		return err
	default:
		rows, err := dep.StatusNodes(ctx, o.request())
		if err != nil {
			return err
		}
		return printNodeStatus(out, o.Output, rows)
	}
}
