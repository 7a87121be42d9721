package main

import (
	"fmt"
	"io"

	"github.com/qmorch/qmorch/deploy"
)

// DeployOutput is the JSON document `qmorch deploy -o json` prints on stdout. The schema is
// stable within apiVersion "qmorch/v1": fields may be added, never renamed, removed or
// retyped. Errors that stop the whole request (exit codes 2 and 3) print nothing on stdout;
// the message goes to stderr.
//
//	{
//	  "apiVersion": "qmorch/v1",
//	  "kind": "DeployResult",
//	  "dryRun": false,               // true with --dry-run: nothing was changed; see results[].plan
//	  "ok": true,                    // every node succeeded (exit code 0)
//	  "results": [                   // one per node, in the order given (sorted by name for --all)
//	    {
//	      "node": "node1",           // host node; "" with --root
//	      "qmNode": "qm.node1",      // the node's QM twin; "" with --root
//	      "unit": "nested.service",  // the unit Quadlet generates
//	      "path": "/etc/qm/containers/systemd/nested.container", // on the host node; with --root the local path
//	      "action": "deployed",      // deployed | unchanged | installed | failed | planned
//	      "activeState": "active",   // the unit's ActiveState in QM at the end; "" when not known
//	      "durationMs": 1234,        // wall time of this node's operation
//	      "error": "node node1: ...",// present only when action is "failed"
//	      "warnings": ["..."],       // present only when not empty (e.g. cleanup problems)
//	      "plan": [                  // present only with --dry-run
//	        {"node": "node1", "op": "Node.StartTransientUnit", "target": "qmorch-deliver-<random>.service", "detail": "..."}
//	      ]
//	    }
//	  ]
//	}
//
// action: "deployed" = file written (or the unit was not running) and the unit started and
// stayed active; "unchanged" = identical content already there and the unit active (with
// --no-start: identical content, nothing done); "installed" = file written, not started
// (--no-start, --root); "failed" = see error; "planned" = --dry-run.
type DeployOutput struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	DryRun     bool           `json:"dryRun"`
	OK         bool           `json:"ok"`
	Results    []DeployResult `json:"results"`
}

// DeployResult is one node's entry of DeployOutput.
type DeployResult struct {
	Node        string     `json:"node"`
	QMNode      string     `json:"qmNode"`
	Unit        string     `json:"unit"`
	Path        string     `json:"path"`
	Action      string     `json:"action"`
	ActiveState string     `json:"activeState"`
	DurationMs  int64      `json:"durationMs"`
	Error       string     `json:"error,omitempty"`
	Warnings    []string   `json:"warnings,omitempty"`
	Plan        []PlanStep `json:"plan,omitempty"`
}

// PlanStep is one planned call of a dry run.
type PlanStep struct {
	Node   string `json:"node"`   // BlueChi node the call goes to; "" for a local write
	Op     string `json:"op"`     // e.g. Node.StartTransientUnit, Node.Reload, write
	Target string `json:"target"` // unit or path
	Detail string `json:"detail"`
}

func deployOutput(rep *deploy.Report) DeployOutput {
	out := DeployOutput{APIVersion: apiVersion, Kind: "DeployResult", DryRun: rep.DryRun,
		OK: rep.Failed() == 0, Results: make([]DeployResult, 0, len(rep.Results))}
	for _, r := range rep.Results {
		dr := DeployResult{
			Node: r.Node, QMNode: r.Twin, Unit: r.Unit, Path: r.Path,
			Action: string(r.Action), ActiveState: r.ActiveState,
			DurationMs: r.Duration.Milliseconds(), Warnings: r.Warnings,
		}
		if r.Err != nil {
			dr.Error = r.Err.Error()
		}
		dr.Plan = planSteps(r.Plan)
		out.Results = append(out.Results, dr)
	}
	return out
}

func printDeploy(w io.Writer, format string, rep *deploy.Report) error {
	if format == "json" {
		return writeJSON(w, deployOutput(rep))
	}
	if rep.DryRun {
		tw := newTable(w, planHeader)
		for _, r := range rep.Results {
			if r.Action == deploy.ActionFailed {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", dash(r.Node), "-", "failed", "-", r.Err)
				continue
			}
			planRows(tw, r.Node, r.Plan, false)
		}
		return tw.Flush()
	}
	tw := newTable(w, "NODE\tUNIT\tACTION\tSTATE\tTIME")
	for _, r := range rep.Results {
		node := r.Node
		if node == "" {
			node = r.Path
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", node, r.Unit, r.Action, dash(r.ActiveState), secs(r.Duration))
	}
	return tw.Flush()
}
