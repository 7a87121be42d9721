package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qmorch/qmorch/deploy"
)

// DeployOptions holds `qmorch deploy`'s flags and arguments.
type DeployOptions struct {
	All        bool
	NoStart    bool
	DryRun     bool
	Root       string
	Timeout    time.Duration
	Settle     time.Duration
	Parallel   int
	TwinPrefix string
	RWETCFS    string
	StateDir   string // record for `qmorch list` (list_manifest.go)
	BusAddress string
	Output     string

	// Filled by Complete.
	Nodes   []string
	File    string // path as given
	Content []byte

	d deps
}

// NewDeployOptions returns the defaults.
func NewDeployOptions(d deps) *DeployOptions {
	return &DeployOptions{
		Timeout:    deploy.DefaultTimeout,
		Settle:     deploy.DefaultSettle,
		Parallel:   deploy.DefaultParallel,
		TwinPrefix: deploy.DefaultTwinPrefix,
		RWETCFS:    deploy.DefaultRWETCFS,
		Output:     "table",
		d:          d,
	}
}

// NewCmdDeploy is `qmorch deploy NODES FILE`.
func NewCmdDeploy(d deps) *cobra.Command {
	o := NewDeployOptions(d)
	cmd := &cobra.Command{
		Use:   "deploy (NODES | --all | --root DIR) FILE.container",
		Short: "Put a Quadlet file into the QM partition of nodes and start its unit",
		Long: `deploy validates FILE (NAME.container, unit-file syntax, [Container] with Image=), then on every
node, in parallel: writes it to ${RWETCFS}/containers/systemd/NAME.container through a transient unit
on the host node (the content travels as a systemd credential; the write is atomic, mode 0644), runs
daemon-reload on the node's QM twin (qm.NODE), starts NAME.service there (restarts it when the content
changed), waits for the job, and checks the unit stays active for the settle window.

Identical content on a node with the unit active is reported "unchanged" and nothing is restarted.

NODES is a host node name or a comma list (node1,node2). Output columns: NODE UNIT ACTION STATE TIME,
where ACTION is deployed, unchanged, installed (--no-start or --root) or failed.`,
		Example: `  # deploy to one node
  qmorch deploy node1 nested.container

  # several nodes in parallel, JSON output
  qmorch deploy node1,node2 nested.container -o json

  # every node that has a QM twin; only install, do not start
  qmorch deploy --all --no-start nested.container

  # show the files and D-Bus calls without changing anything
  qmorch deploy --dry-run node1 nested.container

  # write into a local tree (on the node itself, or into an image)
  qmorch deploy --root /mnt/image nested.container

  # a controller bus that is not the local system bus
  qmorch deploy --bus-address unix:path=/run/bluechi-test/bus.sock node1 nested.container`,
		Args: func(_ *cobra.Command, args []string) error {
			want := 2
			if o.All || o.Root != "" {
				want = 1
			}
			if len(args) != want {
				if want == 1 {
					return fmt.Errorf("with --all or --root give only FILE, got %d arguments", len(args))
				}
				return fmt.Errorf("need NODES and FILE, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.All, "all", false, "every node that has a QM twin")
	f.BoolVar(&o.NoStart, "no-start", false, "write the file and daemon-reload only; do not start the unit")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the files and D-Bus calls it would make; change nothing")
	f.StringVar(&o.Root, "root", "", "write into this local directory tree instead of nodes")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "bound for each node's whole operation")
	f.DurationVar(&o.Settle, "settle", o.Settle, "how long a started unit must stay active")
	f.IntVar(&o.Parallel, "parallel", o.Parallel, "nodes worked on at once")
	f.StringVar(&o.TwinPrefix, "twin-prefix", o.TwinPrefix, "prefix naming a node's QM twin")
	f.StringVar(&o.RWETCFS, "rwetcfs", o.RWETCFS, "QM's writable /etc on the host (qm.container's RWETCFS)")
	f.StringVar(&o.StateDir, "state-dir", "", stateDirHelp) // record for `qmorch list` (list_manifest.go)
	f.StringVar(&o.BusAddress, "bus-address", "", "D-Bus address of the controller's bus (default: $DBUS_SYSTEM_BUS_ADDRESS, else the system bus)")
	f.StringVarP(&o.Output, "output", "o", o.Output, "output format: table or json")
	return cmd
}

// Complete fills nodes and the file content from the arguments.
func (o *DeployOptions) Complete(args []string) error {
	file := args[len(args)-1]
	if len(args) == 2 {
		for n := range strings.SplitSeq(args[0], ",") {
			if n = strings.TrimSpace(n); n != "" {
				o.Nodes = append(o.Nodes, n)
			}
		}
	}
	content, err := os.ReadFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return usageErrorf("read %s: %w", file, err)
	}
	o.File, o.Content = file, content
	return nil
}

// Validate checks flag combinations (no I/O); the deploy engine validates the file itself.
func (o *DeployOptions) Validate() error {
	switch {
	case o.Output != "table" && o.Output != "json":
		return usageErrorf("--output must be table or json, not %q", o.Output)
	case o.All && o.Root != "":
		return usageErrorf("--all and --root exclude each other")
	case !o.All && o.Root == "" && len(o.Nodes) == 0:
		return usageErrorf("no node names in %q", "NODES")
	case o.Timeout <= 0:
		return usageErrorf("--timeout must be positive")
	case o.Settle < 0 || o.Settle >= o.Timeout:
		return usageErrorf("--settle must be at least 0 and shorter than --timeout")
	case o.Parallel < 1:
		return usageErrorf("--parallel must be at least 1")
	case o.Root != "" && o.NoStart:
		return usageErrorf("--root never starts anything; drop --no-start")
	}
	return nil
}

// Run deploys and prints the results; the returned error decides the exit code.
func (o *DeployOptions) Run(ctx context.Context) error {
	log := o.d.logger()
	var ctl deploy.Controller
	if o.Root == "" {
		c, closeFn, err := o.d.connect(ctx, o.BusAddress, log)
		if err != nil {
			return fmt.Errorf("connect to the BlueChi controller: %w", err)
		}
		defer func() { _ = closeFn() }()
		ctl = c
	}
	dep := deploy.New(ctl,
		deploy.WithTwinPrefix(o.TwinPrefix),
		deploy.WithRWETCFS(o.RWETCFS),
		deploy.WithTimeout(o.Timeout),
		deploy.WithSettle(o.Settle),
		deploy.WithParallel(o.Parallel),
		deploy.WithLogger(log),
	)
	rep, err := dep.Deploy(ctx, deploy.Request{
		Nodes:   o.Nodes,
		All:     o.All,
		File:    filepath.Base(o.File),
		Source:  o.File,
		Content: o.Content,
		NoStart: o.NoStart,
		DryRun:  o.DryRun,
		Root:    o.Root,
	})
	if rep != nil {
		if perr := printDeploy(o.d.streams.Out, o.Output, rep); perr != nil {
			return errors.Join(err, perr)
		}
		for _, res := range rep.Results {
			for _, w := range res.Warnings {
				fmt.Fprintf(o.d.streams.ErrOut, "warning: node %s: %s\n", res.Node, w)
			}
		}
		recordDeploy(o.d.streams.ErrOut, o.StateDir, o.File, o.Content, rep) // for `qmorch list` (list_manifest.go)
	}
	return err
}
