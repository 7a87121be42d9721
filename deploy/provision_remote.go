package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/qmconf"
)

// Remote QM agent provisioning runs `qmorch provision qm-agent --root /` on each host node in
// a transient oneshot unit and tells changed from unchanged by its exit status.
const (
	// ProvisionChangedExit is the exit status the node-side run uses for "a file changed"
	// (--changed-exit-code); 0 means unchanged. It is in the unit's SuccessExitStatus.
	ProvisionChangedExit = 10
	// QMAgentUnit is the agent service restarted on the QM twin when the config changed.
	QMAgentUnit = "bluechi-agent.service"
)

// DefaultProvisionCommand runs the node's qmorch through PATH (systemd's default PATH for
// services includes /usr/local/bin and /usr/bin).
var DefaultProvisionCommand = []string{"/usr/bin/env", "qmorch"}

// Agent restart outcomes of remote provisioning.
const (
	AgentRestarted        = "restarted"  // bluechi-agent restarted on the twin and the twin is online again
	AgentRestartNotNeeded = "not-needed" // the file did not change
	AgentRestartSkipped   = "skipped"    // changed, but the twin cannot be reached through BlueChi (see warnings)
	AgentRestartFailed    = "failed"
	AgentRestartPlanned   = "planned"
	provisionPrefix       = "qmorch-provision-"
)

// QMAgentRemoteRequest provisions the QM agent of host nodes through BlueChi.
type QMAgentRemoteRequest struct {
	// Nodes are node selectors as for SelectHosts: names, comma lists or globs of host nodes.
	Nodes []string
	// All selects every host node that has a QM twin.
	All     bool
	Mode    qmconf.Reachability
	TCPHost string
	// DryRun resolves the nodes and returns the plan; nothing runs on the nodes.
	DryRun bool
	// Command is argv[0..] that starts qmorch on the node; nil = DefaultProvisionCommand.
	Command []string
}

// NodeProvision is the outcome of remote provisioning on one node.
type NodeProvision struct {
	Node          string
	Twin          string
	Action        Action // ActionConfigChanged, ActionUnchanged, ActionFailed, ActionPlanned: | "unchanged" | "failed" | "planned"
	AgentRestart  string // AgentRestarted, AgentRestartNotNeeded, AgentRestartSkipped, AgentRestartFailed, AgentRestartPlanned
	TransientUnit string
	Argv          []string // the node-side command line (unescaped)
	Duration      int64    // milliseconds
	Err           error
	Warnings      []string
	Plan          []Step
}

// ActionConfigChanged: remote provisioning wrote a new QM agent config on the node (the other
// outcomes are ActionUnchanged, ActionFailed and ActionPlanned).
const ActionConfigChanged Action = "changed"

// QMAgentRemoteReport holds one result per node, in the order requested.
type QMAgentRemoteReport struct {
	DryRun  bool
	Results []NodeProvision
}

// Failed counts the failed nodes.
func (r *QMAgentRemoteReport) Failed() int {
	n := 0
	for _, res := range r.Results {
		if res.Action == ActionFailed {
			n++
		}
	}
	return n
}

// ProvisionArgv is the node-side command line: only validated values, never a shell line.
// Every value is glued to its flag ("--prefix=qm.") so that no value can be read as a flag.
// `qmorch provision qm-agent` accepts exactly these flags (tested in cmd/qmorch).
func ProvisionArgv(command []string, prefix string, mode qmconf.Reachability, tcpHost string) []string {
	if command == nil {
		command = DefaultProvisionCommand
	}
	argv := append(slices.Clone(command), "provision", "qm-agent", "--root=/", "--prefix="+prefix,
		fmt.Sprintf("--changed-exit-code=%d", ProvisionChangedExit), "--output=json")
	if mode != qmconf.ReachAuto {
		argv = append(argv, "--mode="+string(mode))
	}
	if tcpHost != "" {
		argv = append(argv, "--controller-host="+tcpHost)
	}
	return argv
}

func (req *QMAgentRemoteRequest) validate(prefix string) error {
	if err := ValidateTwinPrefix(prefix); err != nil {
		return withClass(ErrInvalid, err)
	}
	if err := validateMode(req.Mode); err != nil {
		return withClass(ErrInvalid, err)
	}
	if req.TCPHost != "" {
		if err := ValidateTCPHost(req.TCPHost); err != nil {
			return withClass(ErrInvalid, err)
		}
	}
	if len(req.Nodes) == 0 && !req.All {
		return invalidf("no nodes given")
	}
	for _, a := range req.Command {
		if a == "" || strings.ContainsAny(a, "%\x00\n") {
			return invalidf("provision command %q: empty or with '%%', NUL or newline", a)
		}
	}
	return nil
}

// provisionOK are the node-side exit statuses the transient unit treats as success besides 0:
// "changed", and the failures qmorch explains (so their status can be read back instead of a
// bare "failed"). Any other status fails the unit.
var provisionOK = []int32{ProvisionChangedExit, 1, 2, 126, 127}

// ProvisionQMAgent runs QM agent provisioning on every selected node in parallel: the node
// computes its own effective host agent config (`qmorch provision qm-agent --root=/` in a
// transient unit on the host node) and writes QM's drop-in; when it changed,
// bluechi-agent.service is restarted on the node's QM twin and the twin must come back online
// within the timeout. Restarting the agent that BlueChi talks through drops the restart job:
// ErrNodeOffline there is expected. Request errors (ErrInvalid, ErrUnreachable) return a nil
// report; per-node failures are aggregated with go-multierror.
func (d *Deployer) ProvisionQMAgent(ctx context.Context, req QMAgentRemoteRequest) (*QMAgentRemoteReport, error) {
	prefix := d.opts.twinPrefix
	if err := req.validate(prefix); err != nil {
		return nil, err
	}
	if d.opts.timeout <= 0 {
		return nil, invalidf("timeout must be positive")
	}
	if d.c == nil {
		return nil, withClass(ErrUnreachable, errors.New("no controller connection"))
	}
	argv := ProvisionArgv(req.Command, prefix, req.Mode, req.TCPHost)
	rctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	infos, err := d.c.ListNodes(rctx)
	cancel()
	if err != nil {
		return nil, listNodesError(err)
	}
	nodes, err := SelectHosts(infos, req.Nodes, req.All, prefix)
	if err != nil {
		return nil, err
	}
	byName := map[string]controller.NodeInfo{}
	for _, n := range infos {
		byName[n.Name] = n
	}
	if req.DryRun {
		rep := &QMAgentRemoteReport{DryRun: true}
		for _, n := range nodes {
			rep.Results = append(rep.Results, planProvision(n, prefix+n, argv))
		}
		return rep, nil
	}

	r, done := d.newFleetRun(ctx)
	defer done()
	rep := &QMAgentRemoteReport{Results: make([]NodeProvision, len(nodes))}
	fanOut(ctx, len(nodes), d.opts.parallel, func(i int) {
		res := NodeProvision{Node: nodes[i], Twin: prefix + nodes[i], Argv: argv}
		start := d.opts.clock.Now()
		r.provisionNode(ctx, &res, byName, argv)
		res.Duration = d.opts.clock.Now().Sub(start).Milliseconds()
		rep.Results[i] = res
	}, func(i int, err error) {
		rep.Results[i] = NodeProvision{Node: nodes[i], Twin: prefix + nodes[i], Argv: argv,
			Action: ActionFailed, Err: fmt.Errorf("node %s: not started: %w", nodes[i], err)}
	})
	return rep, nodeErrors(rep.Results, func(r NodeProvision) error { return r.Err })
}

func planProvision(node, twin string, argv []string) NodeProvision {
	res := NodeProvision{Node: node, Twin: twin, Action: ActionPlanned, AgentRestart: AgentRestartPlanned,
		TransientUnit: provisionPrefix + "<random>.service", Argv: argv}
	res.Plan = []Step{
		{Node: node, Op: "Node.StartTransientUnit", Target: res.TransientUnit,
			Detail: fmt.Sprintf("oneshot, RemainAfterExit, SuccessExitStatus=%d: %s", ProvisionChangedExit, strings.Join(argv, " "))},
		{Node: node, Op: "Node.GetUnitProperties", Target: res.TransientUnit, Detail: fmt.Sprintf("ExecMainStatus %d = changed, 0 = unchanged", ProvisionChangedExit)},
		{Node: node, Op: "Node.StopUnit+ResetFailedUnit", Target: res.TransientUnit, Detail: "collect the unit"},
		{Node: twin, Op: "Node.RestartUnit", Target: QMAgentUnit, Detail: "only when changed; the job is dropped when the agent disconnects; then wait until " + twin + " is online"},
	}
	return res
}

func (r *run) provisionNode(ctx context.Context, res *NodeProvision, byName map[string]controller.NodeInfo, argv []string) {
	ctx, cancel := context.WithTimeout(ctx, r.d.opts.timeout)
	defer cancel()
	fail := func(restart string, err error) {
		res.Action, res.AgentRestart, res.Err = ActionFailed, restart, fmt.Errorf("node %s: %w", res.Node, err)
	}
	if st := byName[res.Node].Status; st != controller.NodeOnline {
		fail("", fmt.Errorf("host node is %s: %w", statusWord(st), controller.ErrNodeOffline))
		return
	}
	hostNode, err := r.d.c.GetNode(ctx, res.Node)
	if err != nil {
		fail("", err)
		return
	}
	t := &target{host: res.Node, twin: res.Twin, hostNode: hostNode}
	unit, changed, cleanup, err := r.runProvisionUnit(ctx, t, argv)
	res.TransientUnit = unit
	collect := func() {
		if cleanup != nil {
			if w := <-cleanup; w != "" {
				res.Warnings = append(res.Warnings, w)
			}
		}
	}
	if err != nil {
		collect()
		fail("", err)
		return
	}
	collect()
	if !changed {
		res.Action, res.AgentRestart = ActionUnchanged, AgentRestartNotNeeded
		return
	}
	res.Action = ActionConfigChanged
	info, registered := byName[res.Twin]
	switch {
	case !registered:
		res.AgentRestart = AgentRestartSkipped
		res.Warnings = append(res.Warnings, fmt.Sprintf("QM twin %s is not registered on the controller: restart bluechi-agent inside QM on %s yourself (e.g. `podman exec qm systemctl restart bluechi-agent`), and allow %s on the controller (`qmorch provision controller`)", res.Twin, res.Node, res.Twin))
		return
	case info.Status != controller.NodeOnline:
		// An agent with a broken old config never comes online; BlueChi cannot reach it.
		res.AgentRestart = AgentRestartSkipped
		res.Warnings = append(res.Warnings, fmt.Sprintf("QM twin %s is offline, so its agent cannot be restarted through BlueChi: restart bluechi-agent inside QM on %s (e.g. `podman exec qm systemctl restart bluechi-agent`)", res.Twin, res.Node))
		return
	}
	if err := r.restartTwinAgent(ctx, res.Twin); err != nil {
		fail(AgentRestartFailed, fmt.Errorf("config changed, but: %w", err))
		return
	}
	res.AgentRestart = AgentRestarted
}

// runProvisionUnit runs the node-side qmorch in a transient unit on the host node and tells
// changed from unchanged by its exit status. The unit is collected in the background; its
// outcome arrives on cleanup.
func (r *run) runProvisionUnit(ctx context.Context, t *target, argv []string) (unit string, changed bool, cleanup <-chan string, err error) {
	status, unit, cleanup, err := r.runOneshotNamed(ctx, t, oneshot{
		Prefix:      provisionPrefix,
		Description: "qmorch: provision the QM bluechi-agent",
		Argv:        argv,
		OK:          provisionOK,
	})
	if err != nil {
		return unit, false, cleanup, fmt.Errorf("provisioning on the node failed: %w", err)
	}
	switch status {
	case 0:
		return unit, false, cleanup, nil
	case ProvisionChangedExit:
		return unit, true, cleanup, nil
	}
	return unit, false, cleanup, fmt.Errorf("node-side `%s` exited %d: %s (its messages: `journalctl -u %s` on %s)",
		strings.Join(argv, " "), status, exitMeaning(status), unit, t.host)
}

func exitMeaning(status int32) string {
	switch status {
	case 2:
		return "invalid host configuration or flags"
	case 127:
		return "qmorch not found in the node's PATH (install it as /usr/local/bin/qmorch or /usr/bin/qmorch)"
	case 126:
		return "qmorch is not executable on the node"
	}
	return "write failed"
}

// restartTwinAgent restarts bluechi-agent.service on twin and waits until the twin is online
// again. The node-status watch starts before the restart, so an offline/online pair that
// happens while the job is pending is seen.
func (r *run) restartTwinAgent(ctx context.Context, twin string) error {
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	events, unwatch := r.d.c.WatchNodeStatus(wctx)
	defer unwatch()

	node, err := r.d.c.GetNode(ctx, twin)
	if err != nil {
		return fmt.Errorf("QM twin %s: %w", twin, err)
	}
	sawOffline := false
	job, err := node.RestartUnit(ctx, QMAgentUnit, controller.JobReplace)
	switch {
	case errors.Is(err, controller.ErrNodeOffline):
		sawOffline = true // the agent went away already
	case err != nil:
		return fmt.Errorf("restart %s on %s: %w", QMAgentUnit, twin, err)
	default:
		result, err := job.Wait(ctx)
		switch {
		case errors.Is(err, controller.ErrNodeOffline):
			sawOffline = true // expected: the restarted agent carried the job
		case err != nil:
			return fmt.Errorf("restart %s on %s: wait for job: %w", QMAgentUnit, twin, err)
		case result != controller.JobDone:
			return fmt.Errorf("restart %s on %s: job %s", QMAgentUnit, twin, result)
		}
	}
	r.d.opts.logger.Debug("agent restart issued", "twin", twin, "jobDropped", sawOffline)

	// Events seen so far decide the current state; if none, ask once.
	online := !sawOffline
	seen := false
drain:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				break drain
			}
			if ev.Node == twin {
				seen = true
				online = ev.Status == controller.NodeOnline
			}
		default:
			break drain
		}
	}
	if !seen {
		st, err := r.twinStatus(ctx, twin)
		if err != nil {
			return err
		}
		online = st == controller.NodeOnline
	}
	for !online {
		select {
		case ev, ok := <-events:
			if !ok {
				return fmt.Errorf("wait for %s to come back online: node status watch ended: %w", twin, errMonitorEnded)
			}
			if ev.Node == twin {
				online = ev.Status == controller.NodeOnline
			}
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to come back online after restarting %s: %w", twin, QMAgentUnit, ctxErr(ctx))
		}
	}
	return nil
}

func (r *run) twinStatus(ctx context.Context, twin string) (controller.NodeStatus, error) {
	infos, err := r.d.c.ListNodes(ctx)
	if err != nil {
		return "", fmt.Errorf("read status of %s: %w", twin, err)
	}
	for _, n := range infos {
		if n.Name == twin {
			return n.Status, nil
		}
	}
	return "", fmt.Errorf("QM twin %s disappeared from the controller: %w", twin, controller.ErrNodeNotFound)
}
