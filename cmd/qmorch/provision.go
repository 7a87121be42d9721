package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qmorch/qmorch/deploy"
	"github.com/qmorch/qmorch/qmconf"
)

// NewCmdProvision is `qmorch provision`.
func NewCmdProvision(d deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "provision",
		Short: "Write BlueChi configuration for QM: the QM agent's drop-in and the controller's allow-list",
		Example: `  qmorch provision qm-agent --nodes node1,node2
  qmorch provision controller --nodes node1,node2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdProvisionQMAgent(d), NewCmdProvisionController(d))
	return cmd
}

// changedExit is the --changed-exit-code status: not a failure, so nothing is printed.
type changedExit struct{ code int }

func (e *changedExit) Error() string { return "" }
func (e *changedExit) ExitCode() int { return e.code }

// ProvisionQMAgentOptions holds `qmorch provision qm-agent`'s flags.
type ProvisionQMAgentOptions struct {
	connFlags       // TwinPrefix is --prefix
	Root            string
	Nodes           []string
	All             bool
	Mode            string
	ControllerHost  string
	Hostname        string
	DryRun          bool
	ChangedExitCode int

	// Filled by Complete.
	remote bool
	mode   qmconf.Reachability

	d deps
}

// NewProvisionQMAgentOptions returns the defaults.
func NewProvisionQMAgentOptions(d deps) *ProvisionQMAgentOptions {
	return &ProvisionQMAgentOptions{
		connFlags: newConnFlags(deploy.DefaultTimeout, deploy.DefaultParallel), Mode: "auto", d: d,
	}
}

// NewCmdProvisionQMAgent is `qmorch provision qm-agent`.
func NewCmdProvisionQMAgent(d deps) *cobra.Command {
	o := NewProvisionQMAgentOptions(d)
	cmd := &cobra.Command{
		Use:   "qm-agent [--root DIR | --nodes NODES | --all]",
		Short: "Derive QM's bluechi-agent configuration from the host's effective agent configuration",
		Long: `qm-agent computes the host's effective bluechi-agent configuration exactly as bluechi-agent does
(defaults, /usr/share/bluechi-agent/config/agent.conf, /etc/bluechi/agent.conf, agent.conf.d/*.conf)
and writes QM's agent drop-in ${RWETCFS}/bluechi/agent.conf.d/99-qmorch.conf (RWETCFS from the
effective qm.container, default /etc/qm):
  NodeName = PREFIX + the host's NodeName (the hostname when unset), e.g. qm.node1;
  the controller made reachable from inside QM: mode socket mounts the host's controller socket
  into QM (host drop-in /etc/containers/systemd/qm.container.d/90-qmorch-bluechi-socket.conf) and
  sets ControllerAddress=unix:path=/run/bluechi.sock; mode tcp uses --controller-host or the host
  agent's own non-loopback controller host, with its ControllerPort. A loopback host or a host-side
  unix socket is never copied. auto picks socket when the host agent talks to a local controller.
  Heartbeat, log and TCP keep-alive settings set in host files are carried over.
Files are written atomically and only when their bytes differ; each is reported changed or unchanged.
Before writing, QM's own agent configuration is read with the new drop-in in place: a QM file that
sorts after it and overrides a key, or a broken one, is an error.

Without --nodes it works on this machine (--root /, the default) or on an image tree (--root DIR).
With --nodes (or --all) it works from the controller, through BlueChi: on each host node a transient
unit runs "qmorch provision qm-agent --root=/" (qmorch must be installed on the node), and when the
file changed, bluechi-agent.service is restarted on the node's QM twin and qmorch waits until the
twin is online again.

Host configuration problems BlueChi accepts silently are warnings on stderr (JSON: "warnings");
problems bluechi-agent would exit on are errors naming file:line, exit code 2.`,
		Example: `  # on a node: provision its own QM
  qmorch provision qm-agent

  # show the file and the diff without writing
  qmorch provision qm-agent --dry-run

  # an image tree, hostname for the default NodeName
  qmorch provision qm-agent --root /mnt/image --hostname node7

  # from the controller, for two nodes (restarts the QM agents whose config changed)
  qmorch provision qm-agent --nodes node1,node2

  # QM reaches the controller over TCP at 10.0.0.1, QM node names qm-NODE
  qmorch provision qm-agent --all --mode tcp --controller-host 10.0.0.1 --prefix qm-`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.Root, "root", "", "work on the system tree at this directory (default /, this machine)")
	f.StringArrayVar(&o.Nodes, "nodes", nil, "host nodes to provision through BlueChi: names, comma lists or globs (node*)")
	f.BoolVar(&o.All, "all", false, "every host node that has a QM twin")
	f.StringVar(&o.Mode, "mode", o.Mode, "how QM reaches the controller: auto, socket or tcp")
	f.StringVar(&o.ControllerHost, "controller-host", "", "tcp mode: the controller's address as seen from inside QM")
	f.StringVar(&o.TwinPrefix, "prefix", o.TwinPrefix, "prefix of QM node names (qm.node1)")
	f.StringVar(&o.Hostname, "hostname", "", "hostname for an unset NodeName (default: this host's for /, else the tree's /etc/hostname)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the files and a diff (remote: the plan); change nothing")
	f.IntVar(&o.ChangedExitCode, "changed-exit-code", 0, "local: exit with this status (4-125) when a file changed (with --dry-run: would change)")
	f.StringVarP(&o.Output, "output", "o", o.Output, outputHelp)
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "remote: bound for each node's whole operation")
	f.IntVar(&o.Parallel, "parallel", o.Parallel, "remote: nodes worked on at once")
	f.StringVar(&o.BusAddress, "bus-address", "", "remote: "+busAddressHelp)
	return cmd
}

// Complete decides local or remote and the mode.
func (o *ProvisionQMAgentOptions) Complete([]string) error {
	o.remote = len(o.Nodes) > 0 || o.All
	o.mode = qmconf.Reachability(o.Mode)
	if o.Mode == "auto" {
		o.mode = qmconf.ReachAuto
	}
	return nil
}

// Validate checks flag combinations (no I/O).
func (o *ProvisionQMAgentOptions) Validate() error {
	if err := validateOutput(o.Output); err != nil {
		return err
	}
	switch {
	case o.Mode != "auto" && o.Mode != string(qmconf.ReachSocket) && o.Mode != string(qmconf.ReachTCP):
		return usageErrorf("--mode must be auto, socket or tcp, not %q", o.Mode)
	case o.mode == qmconf.ReachSocket && o.ControllerHost != "":
		return usageErrorf("--controller-host is for tcp mode; socket mode mounts the host's controller socket")
	case o.All && len(o.Nodes) > 0:
		return usageErrorf("give --nodes or --all, not both")
	case o.remote && o.Root != "":
		return usageErrorf("--root works on a local tree; with --nodes every node reads its own /")
	case o.remote && o.Hostname != "":
		return usageErrorf("--hostname is for a local tree; with --nodes every node uses its own hostname")
	case o.remote && o.ChangedExitCode != 0:
		return usageErrorf("--changed-exit-code is for a local run (remote runs report changed/unchanged per node)")
	case o.ChangedExitCode != 0 && (o.ChangedExitCode < 4 || o.ChangedExitCode > 125):
		return usageErrorf("--changed-exit-code must be 4-125 (0-3 are qmorch's own codes), not %d", o.ChangedExitCode)
	}
	if err := o.validateBounds(); err != nil {
		return err
	}
	if err := deploy.ValidateTwinPrefix(o.TwinPrefix); err != nil {
		return usageErrorf("--prefix: %w", err)
	}
	if o.ControllerHost != "" {
		if err := deploy.ValidateTCPHost(o.ControllerHost); err != nil {
			return usageErrorf("--controller-host: %w", err)
		}
	}
	return nil
}

// Run provisions and prints the result.
func (o *ProvisionQMAgentOptions) Run(ctx context.Context) error {
	if o.remote {
		return o.runRemote(ctx)
	}
	p, err := deploy.ProvisionQMAgentLocal(deploy.QMAgentLocalRequest{
		Root: o.Root, Hostname: o.Hostname, Prefix: o.TwinPrefix, Mode: o.mode,
		TCPHost: o.ControllerHost, DryRun: o.DryRun,
	})
	if p != nil {
		out := qmAgentOutput(p, err)
		if perr := o.print(out); perr != nil {
			return errors.Join(err, perr)
		}
		printDiagnostics(o.d.streams.ErrOut, p.Notes, p.Warnings)
	}
	if err != nil {
		return err
	}
	if o.ChangedExitCode != 0 && p.Changed() {
		return &changedExit{o.ChangedExitCode}
	}
	return nil
}

func (o *ProvisionQMAgentOptions) print(out ProvisionOutput) error {
	w := o.d.streams.Out
	if o.Output == "json" {
		return writeJSON(w, out)
	}
	fmt.Fprintf(w, "QM node %s (host node %s), mode %s, RWETCFS %s\n", out.NodeName, out.HostNodeName, out.Mode, out.RWETCFS)
	return printFiles(w, out)
}

func printDiagnostics(w io.Writer, notes, warnings []string) {
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, x := range warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
}

// printFiles prints FILE ACTION lines; with --dry-run every file's content and diff.
func printFiles(w io.Writer, out ProvisionOutput) error {
	if out.DryRun {
		for _, f := range out.Files {
			fmt.Fprintf(w, "\n# %s (%s)\n%s", f.Path, f.Action, f.Content)
			if f.Diff != "" {
				fmt.Fprintf(w, "\n%s", f.Diff)
			}
		}
		return nil
	}
	tw := newTable(w, "FILE\tACTION")
	for _, f := range out.Files {
		fmt.Fprintf(tw, "%s\t%s\n", f.Path, f.Action)
	}
	return tw.Flush()
}

// ProvisionOutput is the JSON document `qmorch provision qm-agent -o json` (local) and
// `qmorch provision controller -o json` print (apiVersion qmorch/v1; fields are only added):
//
//	{
//	  "apiVersion": "qmorch/v1",
//	  "kind": "QMAgentProvision",        // or "ControllerProvision"
//	  "root": "/", "dryRun": false,
//	  "changed": true,                   // some file was written (dry run: would be)
//	  "hostname": "node1", "hostNodeName": "node1", "nodeName": "qm.node1", // qm-agent only
//	  "mode": "socket", "rwetcfs": "/etc/qm",                                // qm-agent only
//	  "names": ["node1", "qm.node1"],   // controller only: AllowedNodeNames as the controller reads it
//	  "files": [{"path": "/etc/qm/bluechi/agent.conf.d/99-qmorch.conf", "localPath": "...",
//	             "action": "changed",    // changed | unchanged | would-change
//	             "content": "...", "diff": "..."}],  // diff only with --dry-run
//	  "notes": ["..."], "warnings": ["..."],
//	  "error": "..."                     // present when a write failed after the plan was made
//	}
type ProvisionOutput struct {
	APIVersion   string                `json:"apiVersion"`
	Kind         string                `json:"kind"`
	Root         string                `json:"root"`
	DryRun       bool                  `json:"dryRun"`
	Changed      bool                  `json:"changed"`
	Hostname     string                `json:"hostname,omitempty"`
	HostNodeName string                `json:"hostNodeName,omitempty"`
	NodeName     string                `json:"nodeName,omitempty"`
	Mode         string                `json:"mode,omitempty"`
	RWETCFS      string                `json:"rwetcfs,omitempty"`
	Names        []string              `json:"names,omitempty"`
	Files        []ProvisionFileOutput `json:"files"`
	Notes        []string              `json:"notes"`
	Warnings     []string              `json:"warnings"`
	Error        string                `json:"error,omitempty"`
}

// ProvisionFileOutput is one file of ProvisionOutput.
type ProvisionFileOutput struct {
	Path      string `json:"path"`
	LocalPath string `json:"localPath"`
	Action    string `json:"action"`
	Content   string `json:"content"`
	Diff      string `json:"diff,omitempty"`
}

func filesOutput(files []deploy.ProvisionFile) []ProvisionFileOutput {
	out := []ProvisionFileOutput{}
	for _, f := range files {
		out = append(out, ProvisionFileOutput{Path: f.Path, LocalPath: f.LocalPath, Action: string(f.Action),
			Content: string(f.Content), Diff: f.Diff})
	}
	return out
}

func qmAgentOutput(p *deploy.QMAgentProvision, err error) ProvisionOutput {
	out := ProvisionOutput{APIVersion: apiVersion, Kind: "QMAgentProvision", Root: p.Root, DryRun: p.DryRun,
		Changed: p.Changed(), Hostname: p.Hostname, HostNodeName: p.HostNodeName, NodeName: p.NodeName,
		Mode: string(p.Mode), RWETCFS: p.RWETCFS, Files: filesOutput(p.Files),
		Notes: nonNil(p.Notes), Warnings: nonNil(p.Warnings)}
	if err != nil {
		out.Error = err.Error()
	}
	return out
}

// runRemote provisions nodes through BlueChi.
func (o *ProvisionQMAgentOptions) runRemote(ctx context.Context) error {
	dep, closeFn, err := o.deployer(ctx, o.d, false)
	if err != nil {
		return err
	}
	defer closeFn()
	rep, err := dep.ProvisionQMAgent(ctx, deploy.QMAgentRemoteRequest{
		Nodes: o.Nodes, All: o.All, Mode: o.mode, TCPHost: o.ControllerHost, DryRun: o.DryRun,
	})
	if rep == nil {
		return err
	}
	return printReport(o.d.streams, err, printRemoteProvision(o.d.streams.Out, o.Output, rep), rep.Results,
		func(r deploy.NodeProvision) (string, []string) { return r.Node, r.Warnings })
}

// RemoteProvisionOutput is the JSON document `qmorch provision qm-agent --nodes ... -o json`
// prints (apiVersion qmorch/v1; fields are only added):
//
//	{
//	  "apiVersion": "qmorch/v1", "kind": "QMAgentRemoteProvision", "dryRun": false,
//	  "ok": true,                         // every node succeeded (exit code 0)
//	  "results": [{
//	    "node": "node1", "qmNode": "qm.node1",
//	    "action": "changed",              // changed | unchanged | failed | planned
//	    "agentRestart": "restarted",      // restarted | not-needed | skipped | failed | planned | ""
//	    "transientUnit": "qmorch-provision-<hex>.service",
//	    "argv": ["/usr/bin/env", "qmorch", "provision", "qm-agent", "--root=/", ...],
//	    "durationMs": 850, "error": "...", "warnings": ["..."],
//	    "plan": [{"node": "node1", "op": "Node.StartTransientUnit", "target": "...", "detail": "..."}]
//	  }]
//	}
type RemoteProvisionOutput struct {
	APIVersion string                  `json:"apiVersion"`
	Kind       string                  `json:"kind"`
	DryRun     bool                    `json:"dryRun"`
	OK         bool                    `json:"ok"`
	Results    []RemoteProvisionResult `json:"results"`
}

// RemoteProvisionResult is one node of RemoteProvisionOutput.
type RemoteProvisionResult struct {
	Node          string     `json:"node"`
	QMNode        string     `json:"qmNode"`
	Action        string     `json:"action"`
	AgentRestart  string     `json:"agentRestart"`
	TransientUnit string     `json:"transientUnit,omitempty"`
	Argv          []string   `json:"argv"`
	DurationMs    int64      `json:"durationMs"`
	Error         string     `json:"error,omitempty"`
	Warnings      []string   `json:"warnings,omitempty"`
	Plan          []PlanStep `json:"plan,omitempty"`
}

func remoteProvisionOutput(rep *deploy.QMAgentRemoteReport) RemoteProvisionOutput {
	out := RemoteProvisionOutput{APIVersion: apiVersion, Kind: "QMAgentRemoteProvision", DryRun: rep.DryRun,
		OK: rep.Failed() == 0, Results: []RemoteProvisionResult{}}
	for _, r := range rep.Results {
		res := RemoteProvisionResult{Node: r.Node, QMNode: r.Twin, Action: string(r.Action), AgentRestart: r.AgentRestart,
			TransientUnit: r.TransientUnit, Argv: r.Argv, DurationMs: r.Duration, Warnings: r.Warnings}
		if r.Err != nil {
			res.Error = r.Err.Error()
		}
		res.Plan = planSteps(r.Plan)
		out.Results = append(out.Results, res)
	}
	return out
}

func printRemoteProvision(w io.Writer, format string, rep *deploy.QMAgentRemoteReport) error {
	if format == "json" {
		return writeJSON(w, remoteProvisionOutput(rep))
	}
	if rep.DryRun {
		tw := newTable(w, planHeader)
		for _, r := range rep.Results {
			planRows(tw, r.Node, r.Plan, false)
		}
		return tw.Flush()
	}
	tw := newTable(w, "NODE\tQM NODE\tCONFIG\tAGENT\tTIME")
	for _, r := range rep.Results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1fs\n", r.Node, r.Twin, r.Action, dash(r.AgentRestart), float64(r.Duration)/1000)
	}
	return tw.Flush()
}

// ProvisionControllerOptions holds `qmorch provision controller`'s flags.
type ProvisionControllerOptions struct {
	Root   string
	Nodes  []string
	Prefix string
	DropIn string
	DryRun bool
	Output string

	// Filled by Complete.
	names []string

	d deps
}

// NewCmdProvisionController is `qmorch provision controller`.
func NewCmdProvisionController(d deps) *cobra.Command {
	o := &ProvisionControllerOptions{Prefix: deploy.DefaultTwinPrefix, DropIn: qmconf.DefaultControllerDropIn, Output: "table", d: d}
	cmd := &cobra.Command{
		Use:   "controller --nodes NODES [--root DIR]",
		Short: "Allow every node and its QM twin on the controller (controller.conf.d drop-in)",
		Long: `controller writes /etc/bluechi/controller.conf.d/99-qmorch.conf on this machine (or under --root)
with AllowedNodeNames holding the names the controller allows today (from its other files) plus every
given node and its QM twin (node1, qm.node1, ...). The list is wrapped over continuation lines so that
no line reaches 500 bytes (BlueChi reads 519-byte chunks), and the result is read back through the
controller's whole merge: if a file sorting after it sets AllowedNodeNames again, that is an error.
The file is written atomically and only when its bytes differ; restart bluechi-controller to apply.`,
		Example: `  qmorch provision controller --nodes node1,node2
  qmorch provision controller --nodes node1,node2 --dry-run
  qmorch provision controller --root /mnt/controller-image --nodes ecu1,ecu2 --prefix qm-`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.Root, "root", "", "work on the system tree at this directory (default /, this machine)")
	f.StringArrayVar(&o.Nodes, "nodes", nil, "host node names, comma-separated (each is allowed with its QM twin)")
	f.StringVar(&o.Prefix, "prefix", o.Prefix, "prefix of QM node names (qm.node1)")
	f.StringVar(&o.DropIn, "drop-in", o.DropIn, "file name in controller.conf.d (NN-name.conf)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print the file and a diff; change nothing")
	f.StringVarP(&o.Output, "output", "o", o.Output, outputHelp)
	return cmd
}

// Complete splits the node lists.
func (o *ProvisionControllerOptions) Complete([]string) error {
	for _, n := range o.Nodes {
		for _, x := range strings.Split(n, ",") {
			if x = strings.TrimSpace(x); x != "" {
				o.names = append(o.names, x)
			}
		}
	}
	return nil
}

// Validate checks flags (no I/O); names are checked when the list is rendered.
func (o *ProvisionControllerOptions) Validate() error {
	if err := validateOutput(o.Output); err != nil {
		return err
	}
	if len(o.names) == 0 {
		return usageErrorf("--nodes is required (host node names, comma-separated)")
	}
	if err := deploy.ValidateTwinPrefix(o.Prefix); err != nil {
		return usageErrorf("--prefix: %w", err)
	}
	return nil
}

// Run writes the allow-list and prints the result.
func (o *ProvisionControllerOptions) Run(context.Context) error {
	p, err := deploy.ProvisionControllerLocal(deploy.ControllerLocalRequest{
		Root: o.Root, Nodes: o.names, Prefix: o.Prefix, DropInName: o.DropIn, DryRun: o.DryRun,
	})
	if p == nil {
		return err
	}
	out := ProvisionOutput{APIVersion: apiVersion, Kind: "ControllerProvision", Root: p.Root, DryRun: p.DryRun,
		Changed: p.Changed(), Names: p.Names, Files: filesOutput(p.Files), Notes: nonNil(p.Notes), Warnings: nonNil(p.Warnings)}
	if err != nil {
		out.Error = err.Error()
	}
	w := o.d.streams.Out
	var perr error
	if o.Output == "json" {
		perr = writeJSON(w, out)
	} else {
		fmt.Fprintf(w, "AllowedNodeNames: %d names (%s)\n", len(p.Names), strings.Join(p.Names, ","))
		perr = printFiles(w, out)
	}
	printDiagnostics(o.d.streams.ErrOut, p.Notes, p.Warnings)
	return errors.Join(err, perr)
}
