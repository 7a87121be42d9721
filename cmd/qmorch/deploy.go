package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/qmorch/qmorch/deploy"
)

// DeployOptions holds `qmorch deploy`'s flags and arguments.
type DeployOptions struct {
	connFlags
	All      bool
	NoStart  bool
	DryRun   bool
	Root     string
	Settle   time.Duration
	StateDir string // record for `qmorch list` (list_manifest.go)

	// Filled by Complete.
	Nodes   []string
	File    string // path as given
	Content []byte

	d deps
}

// NewDeployOptions returns the defaults.
func NewDeployOptions(d deps) *DeployOptions {
	return &DeployOptions{
		connFlags: newConnFlags(deploy.DefaultTimeout, deploy.DefaultParallel),
		Settle:    deploy.DefaultSettle,
		d:         d,
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
		RunE: runE(o),
	}
	f := cmd.Flags()
	f.BoolVar(&o.All, "all", false, "every node that has a QM twin")
	f.BoolVar(&o.NoStart, "no-start", false, "write the file and daemon-reload only; do not start the unit")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the files and D-Bus calls it would make; change nothing")
	f.StringVar(&o.Root, "root", "", "write into this local directory tree instead of nodes")
	f.DurationVar(&o.Settle, "settle", o.Settle, "how long a started unit must stay active")
	f.StringVar(&o.StateDir, "state-dir", "", stateDirHelp) // record for `qmorch list` (list_manifest.go)
	o.addFlags(f, "bound for each node's whole operation", "nodes worked on at once")
	o.addRWETCFS(f)
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
	// Never os.ReadFile: a FIFO would block and /dev/zero fill memory (deploy.ReadSourceFile
	// checks the name, then reads only a regular file of at most deploy.MaxFileSize bytes).
	content, err := deploy.ReadSourceFile(file)
	if err != nil {
		var pe *fs.PathError
		if errors.Is(err, deploy.ErrInvalid) || !errors.As(err, &pe) {
			return err
		}
		return usageErrorf("read %s: %w", file, pe.Err)
	}
	o.File, o.Content = file, content
	return nil
}

// Validate checks flag combinations (no I/O); the deploy engine validates the file itself.
func (o *DeployOptions) Validate() error {
	if err := validateOutput(o.Output); err != nil {
		return err
	}
	switch {
	case o.All && o.Root != "":
		return usageErrorf("--all and --root exclude each other")
	case !o.All && o.Root == "" && len(o.Nodes) == 0:
		return usageErrorf("no node names in %q", "NODES")
	}
	// --settle is checked after --timeout and before --parallel, as it always was.
	if o.Timeout > 0 && (o.Settle < 0 || o.Settle >= o.Timeout) {
		return usageErrorf("--settle must be at least 0 and shorter than --timeout")
	}
	if err := o.validateBounds(); err != nil {
		return err
	}
	if o.Root != "" && o.NoStart {
		return usageErrorf("--root never starts anything; drop --no-start")
	}
	return nil
}

// Run deploys and prints the results; the returned error decides the exit code.
func (o *DeployOptions) Run(ctx context.Context) error {
	dep, closeFn, err := o.deployer(ctx, o.d, o.Root != "", deploy.WithSettle(o.Settle))
	if err != nil {
		return err
	}
	defer closeFn()
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
	if rep == nil {
		return err
	}
	// Record first: a record that cannot be written is a warning in the printed results.
	recordDeploy(o.StateDir, o.File, o.Content, rep) // for `qmorch list` (list_manifest.go)
	perr := printDeploy(o.d.streams.Out, o.Output, rep)
	return printReport(o.d.streams, err, perr, rep.Results, func(r deploy.Result) (string, []string) { return r.Node, r.Warnings })
}
