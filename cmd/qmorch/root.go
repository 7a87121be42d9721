package main

import (
	"context"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/deploy"
)

// IOStreams are the command's standard streams: data goes to Out, diagnostics to ErrOut.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// connectFunc opens a controller connection; close releases it.
type connectFunc func(ctx context.Context, busAddress string, log *slog.Logger) (c deploy.Controller, close func() error, err error)

// deps is what commands get from outside: streams and how to reach the controller (tests
// replace both).
type deps struct {
	streams IOStreams
	connect connectFunc
	debug   *bool // set by the root's --debug flag
}

func defaultDeps() deps {
	return deps{
		streams: IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr},
		connect: connectController,
	}
}

// logger is silent unless --debug is set; it writes to ErrOut.
func (d deps) logger() *slog.Logger {
	if d.debug != nil && *d.debug {
		return slog.New(slog.NewTextHandler(d.streams.ErrOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// connectController connects to the bus where org.eclipse.bluechi lives: busAddress if set,
// else DBUS_SYSTEM_BUS_ADDRESS, else the system bus.
func connectController(ctx context.Context, busAddress string, log *slog.Logger) (deploy.Controller, func() error, error) {
	opts := []controller.Option{controller.WithLogger(log)}
	if busAddress != "" {
		opts = append(opts, controller.WithAddress(busAddress))
	}
	c, err := controller.New(ctx, opts...)
	if err != nil {
		return nil, nil, err
	}
	return deploy.FromClient(c), c.Close, nil
}

// NewRootCmd builds the command tree. Each command lives in its own file as NewCmdX(d deps);
// add new ones to the list below.
func NewRootCmd(d deps) *cobra.Command {
	debug := false
	d.debug = &debug
	root := &cobra.Command{
		Use:   "qmorch",
		Short: "Deploy and manage workloads in the QM partitions of BlueChi nodes",
		Long: `qmorch talks to a BlueChi controller over D-Bus (the system bus, DBUS_SYSTEM_BUS_ADDRESS, or
--bus-address) and works on every node at once, waiting for each result with a timeout.

Exit codes: 0 all succeeded, 1 some node or unit failed, 2 usage or validation error,
3 controller unreachable or access denied.`,
		Example: `  # put a Quadlet file into node1's QM partition and start it
  qmorch deploy node1 nested.container`,
		Version:       version + " (" + commit + ")",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetIn(d.streams.In)
	root.SetOut(d.streams.Out)
	root.SetErr(d.streams.ErrOut)
	root.PersistentFlags().BoolVar(&debug, "debug", false, "log D-Bus steps to stderr")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	root.AddCommand(
		NewCmdDeploy(d), NewCmdQM(d),
		NewCmdConfig(d), NewCmdProvision(d),
		NewCmdStatus(d),
		NewCmdStart(d), NewCmdStop(d), NewCmdRestart(d), NewCmdReload(d), NewCmdRemove(d), NewCmdList(d),
		NewCmdVersion(d), NewCmdCompletion(d),
	)

	markUsageErrors(root)
	return root
}

// markUsageErrors makes argument-validation errors of every command usage errors (exit 2).
func markUsageErrors(c *cobra.Command) {
	if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return &usageError{err}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markUsageErrors(sub)
	}
}
