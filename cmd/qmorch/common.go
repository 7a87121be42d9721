package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/deploy"
)

// options is the Complete -> Validate -> Run shape every command's options follow.
type options interface {
	Complete(args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// runE is a command's RunE for its options.
func runE(o options) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(args); err != nil {
			return err
		}
		if err := o.Validate(); err != nil {
			return err
		}
		return o.Run(cmd.Context())
	}
}

const (
	busAddressHelp = "D-Bus address of the controller's bus (default: $DBUS_SYSTEM_BUS_ADDRESS, else the system bus)"
	rwetcfsHelp    = "QM's writable /etc on the host (qm.container's RWETCFS)"
	stateDirHelp   = "qmorch's record of deployed units (default: $QMORCH_STATE_DIR, else /var/lib/qmorch)"
	outputHelp     = "output format: table or json"
)

// connFlags are the controller connection and engine settings of the commands that talk to
// BlueChi, with -o.
type connFlags struct {
	BusAddress string
	TwinPrefix string
	RWETCFS    string
	Timeout    time.Duration
	Parallel   int
	Output     string
}

func newConnFlags(timeout time.Duration, parallel int) connFlags {
	return connFlags{TwinPrefix: deploy.DefaultTwinPrefix, RWETCFS: deploy.DefaultRWETCFS,
		Timeout: timeout, Parallel: parallel, Output: "table"}
}

// addFlags registers --timeout, --parallel, --twin-prefix, --bus-address and -o; the help of
// the first two differs by command.
func (f *connFlags) addFlags(fs *pflag.FlagSet, timeoutHelp, parallelHelp string) {
	fs.DurationVar(&f.Timeout, "timeout", f.Timeout, timeoutHelp)
	fs.IntVar(&f.Parallel, "parallel", f.Parallel, parallelHelp)
	fs.StringVar(&f.TwinPrefix, "twin-prefix", f.TwinPrefix, "prefix naming a node's QM twin")
	fs.StringVar(&f.BusAddress, "bus-address", "", busAddressHelp)
	fs.StringVarP(&f.Output, "output", "o", f.Output, outputHelp)
}

// addRWETCFS registers --rwetcfs for the commands that touch QM's files.
func (f *connFlags) addRWETCFS(fs *pflag.FlagSet) {
	fs.StringVar(&f.RWETCFS, "rwetcfs", f.RWETCFS, rwetcfsHelp)
}

// validate checks -o, --timeout and --parallel, in that order.
func (f *connFlags) validate() error {
	if err := validateOutput(f.Output); err != nil {
		return err
	}
	return f.validateBounds()
}

func (f *connFlags) validateBounds() error {
	switch {
	case f.Timeout <= 0:
		return usageErrorf("--timeout must be positive")
	case f.Parallel < 1:
		return usageErrorf("--parallel must be at least 1")
	}
	return nil
}

func validateOutput(format string) error {
	if format != "table" && format != "json" {
		return usageErrorf("--output must be table or json, not %q", format)
	}
	return nil
}

// deployer connects to the controller (not when local: --root needs none) and returns the
// engine with these settings plus extra, and a function that closes the connection.
func (f *connFlags) deployer(ctx context.Context, d deps, local bool, extra ...deploy.Option) (*deploy.Deployer, func(), error) {
	log := d.logger()
	var ctl deploy.Controller
	closeFn := func() {}
	if !local {
		c, cl, err := f.connect(ctx, d, log)
		if err != nil {
			return nil, nil, err
		}
		ctl, closeFn = c, func() { _ = cl() }
	}
	opts := append([]deploy.Option{deploy.WithTwinPrefix(f.TwinPrefix), deploy.WithRWETCFS(f.RWETCFS),
		deploy.WithTimeout(f.Timeout), deploy.WithParallel(f.Parallel), deploy.WithLogger(log)}, extra...)
	return deploy.New(ctl, opts...), closeFn, nil
}

// connect opens the controller connection, bounded by --timeout: a bus that accepts but never
// answers the handshake must not hang the command (exit 3, see exitCode).
func (f *connFlags) connect(ctx context.Context, d deps, log *slog.Logger) (deploy.Controller, func() error, error) {
	cctx, cancel := context.WithTimeout(ctx, f.Timeout)
	defer cancel()
	c, cl, err := d.connect(cctx, f.BusAddress, log)
	switch {
	case err == nil:
		return c, cl, nil
	case errors.Is(err, controller.ErrTimeout) && ctx.Err() == nil:
		return nil, nil, fmt.Errorf("connect to the BlueChi controller (--timeout %s): %w", f.Timeout, err)
	}
	return nil, nil, fmt.Errorf("connect to the BlueChi controller: %w", err)
}

// printReport ends a per-node command: printErr is the result of printing the report on
// stdout; then every node's warnings go to stderr. A print error is joined to err (and the
// warnings are skipped); otherwise err is returned as is.
func printReport[R any](s IOStreams, err, printErr error, results []R, warnings func(R) (node string, ws []string)) error {
	if printErr != nil {
		return errors.Join(err, printErr)
	}
	for _, r := range results {
		node, ws := warnings(r)
		for _, w := range ws {
			fmt.Fprintf(s.ErrOut, "warning: node %s: %s\n", node, w)
		}
	}
	return err
}

// planSteps converts an engine plan for JSON (nil stays nil: "plan" is omitted).
func planSteps(steps []deploy.Step) []PlanStep {
	var out []PlanStep
	for _, s := range steps {
		out = append(out, PlanStep{Node: s.Node, Op: s.Op, Target: s.Target, Detail: s.Detail})
	}
	return out
}

// newTable starts a table (columns two spaces apart) with its header line, if any.
func newTable(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if header != "" {
		fmt.Fprintln(tw, header)
	}
	return tw
}

// planHeader heads the table of a dry run's planned calls.
const planHeader = "NODE\tON\tOPERATION\tTARGET\tDETAIL"

// planRows writes one node's planned calls under planHeader; oneLine keeps a multi-line
// detail (file content) on its line.
func planRows(tw io.Writer, node string, steps []deploy.Step, oneLine bool) {
	for _, s := range steps {
		detail := s.Detail
		if oneLine {
			detail = strings.ReplaceAll(strings.TrimSpace(detail), "\n", "\\n")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(node), dash(s.Node), s.Op, dash(s.Target), detail)
	}
}

const apiVersion = "qmorch/v1"

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// secs is a table's TIME column.
func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// unitState is ACTIVE/SUB for a table ("" when the active state is not known).
func unitState(active, sub string) string {
	if active != "" && sub != "" {
		return active + "/" + sub
	}
	return active
}

// nonNil makes a JSON list "[]" instead of null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
