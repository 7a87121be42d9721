package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/qmorch/qmorch/deploy"
)

// QMChangeOutput is the JSON document of `qm set|unset -o json` (apiVersion qmorch/v1; fields may be
// added, never renamed or retyped). Errors that stop the whole request print nothing on stdout.
//
//	{"apiVersion": "qmorch/v1", "kind": "QMChangeResult", "dryRun": false, "ok": true,
//	 "results": [{
//	   "node": "node1", "qmNode": "qm.node1",        // "" with --root
//	   "files": [{"key": "MemoryHigh", "path": "/etc/containers/systemd/qm.container.d/50-qmorch-memory-high.conf",
//	              "op": "write", "changed": true}],  // op write|remove; changed false = already so
//	   "changed": true, "reloaded": true,            // daemon-reload ran on the host node
//	   "restart": "restarted",                       // restarted | pending | none | failed (failed: only with --restart)
//	   "restartMs": 5200, "qmAwayMs": 4900,          // only when restarted: request -> qm.NODE online; offline -> online
//	   "durationMs": 6100, "error": "...", "warnings": ["..."], "plan": [...]}]}
type QMChangeOutput struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	DryRun     bool             `json:"dryRun"`
	OK         bool             `json:"ok"`
	Results    []QMChangeResult `json:"results"`
}

// QMChangeResult is one node of QMChangeOutput.
type QMChangeResult struct {
	Node       string       `json:"node"`
	QMNode     string       `json:"qmNode"`
	Files      []QMFileJSON `json:"files"`
	Changed    bool         `json:"changed"`
	Reloaded   bool         `json:"reloaded"`
	Restart    string       `json:"restart"`
	RestartMs  int64        `json:"restartMs,omitempty"`
	QMAwayMs   int64        `json:"qmAwayMs,omitempty"`
	DurationMs int64        `json:"durationMs"`
	Error      string       `json:"error,omitempty"`
	Warnings   []string     `json:"warnings,omitempty"`
	Plan       []PlanStep   `json:"plan,omitempty"`
}

// QMFileJSON is one drop-in operation.
type QMFileJSON struct {
	Key     string `json:"key"`
	Path    string `json:"path"`
	Op      string `json:"op"`
	Changed bool   `json:"changed"`
}

// restartShown is a result's restart outcome as reported: "failed" only when a restart was asked
// for (--restart); a failure without one leaves the restart pending (files changed) or none.
func restartShown(r deploy.QMChangeResult, restartAsked bool) string {
	if r.Restart != deploy.QMRestartFailed || restartAsked {
		return r.Restart
	}
	if r.Changed {
		return deploy.QMRestartPending
	}
	return deploy.QMRestartNone
}

func printQMChange(w io.Writer, format string, rep *deploy.QMChangeReport, restartAsked bool) error {
	out := QMChangeOutput{APIVersion: apiVersion, Kind: "QMChangeResult", DryRun: rep.DryRun, OK: true}
	for i := range rep.Results {
		rep.Results[i].Restart = restartShown(rep.Results[i], restartAsked)
	}
	for _, r := range rep.Results {
		x := QMChangeResult{Node: r.Node, QMNode: r.Twin, Files: []QMFileJSON{}, Changed: r.Changed, Reloaded: r.Reloaded,
			Restart: r.Restart, DurationMs: r.Duration.Milliseconds(), Warnings: r.Warnings}
		if r.Restart == deploy.QMRestartDone {
			x.RestartMs, x.QMAwayMs = r.RestartTook.Milliseconds(), r.QMAway.Milliseconds()
		}
		for _, f := range r.Files {
			x.Files = append(x.Files, QMFileJSON{Key: f.Key, Path: f.Path, Op: f.Op, Changed: f.Changed})
		}
		x.Plan = planSteps(r.Plan)
		if r.Err != nil {
			x.Error, out.OK = r.Err.Error(), false
		}
		out.Results = append(out.Results, x)
	}
	if format == "json" {
		return writeJSON(w, out)
	}
	if rep.DryRun {
		tw := newTable(w, planHeader)
		for _, r := range rep.Results {
			planRows(tw, r.Node, r.Plan, true)
		}
		return tw.Flush()
	}
	tw := newTable(w, "NODE\tKEY\tFILE\tRESULT")
	for _, r := range rep.Results {
		for _, f := range r.Files {
			res := map[string]map[bool]string{"write": {true: "written", false: "unchanged"}, "remove": {true: "removed", false: "absent"}}[f.Op][f.Changed]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", dash(r.Node), f.Key, f.Path, res)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rep.Results {
		who := r.Node
		if who == "" {
			who = "local"
		}
		switch {
		case r.Err != nil && r.Restart == deploy.QMRestartFailed:
			fmt.Fprintf(w, "%s: failed; qm.service was not restarted or did not come back (see the error)\n", who)
		case r.Err != nil && r.Restart == deploy.QMRestartPending:
			fmt.Fprintf(w, "%s: failed after some files changed; restart pending (see the error)\n", who)
		case r.Err != nil:
			fmt.Fprintf(w, "%s: failed (see the error)\n", who)
		case r.Restart == deploy.QMRestartDone:
			fmt.Fprintf(w, "%s: qm.service restarted; %s online again %.1fs after the restart request (QM agent away %.1fs)\n",
				who, r.Twin, r.RestartTook.Seconds(), r.QMAway.Seconds())
		case r.Restart == deploy.QMRestartPending && r.Node == "":
			fmt.Fprintf(w, "%s: restart pending: run `systemctl daemon-reload && systemctl restart qm` on that system (restarts every unit in QM)\n", who)
		case r.Restart == deploy.QMRestartPending:
			fmt.Fprintf(w, "%s: daemon-reload done; restart pending: qm.service still runs with the old settings (apply with --restart, which restarts every unit in QM)\n", who)
		default:
			fmt.Fprintf(w, "%s: nothing changed\n", who)
		}
	}
	return nil
}

// printQMWarnings prints each distinct warning once, with the nodes it concerns.
func printQMWarnings(w io.Writer, rep *deploy.QMChangeReport) {
	var order []string
	nodes := map[string][]string{}
	for _, r := range rep.Results {
		for _, x := range r.Warnings {
			if _, ok := nodes[x]; !ok {
				order = append(order, x)
			}
			if r.Node != "" {
				nodes[x] = append(nodes[x], r.Node)
			} else if nodes[x] == nil {
				nodes[x] = []string{}
			}
		}
	}
	for _, x := range order {
		if len(nodes[x]) > 0 && len(nodes[x]) < len(rep.Results) {
			fmt.Fprintf(w, "warning: %s: %s\n", strings.Join(nodes[x], ","), x)
			continue
		}
		fmt.Fprintf(w, "warning: %s\n", x)
	}
}

// QMShowOutput is the JSON document of `qm show -o json`.
//
//	{"apiVersion": "qmorch/v1", "kind": "QMShow", "ok": true,
//	 "results": [{
//	   "node": "node1",             // "" with --root
//	   "root": "/",                 // "" for a node
//	   "source": "files",           // files (--root: merged qm.container) | live (nodes: qm.service via BlueChi)
//	   "files": [{"path": "/usr/share/containers/systemd/qm.container", "qmorch": false}, ...],   // files only
//	   "values": [{"section": "Service", "key": "MemoryHigh", "set": true, "value": "2G",
//	               "from": "/etc/containers/systemd/qm.container.d/50-qmorch-memory-high.conf:4"},
//	              {"section": "Container", "key": "DropCapability", "set": true, "value": "sys_boot",
//	               "values": ["sys_boot"], "froms": ["...:5"], "resetAt": "...:4"}, ...],   // files only
//	   "live": {"loadState": "loaded", "activeState": "active", "subState": "running",
//	            "sourcePath": "...", "memoryHigh": "2147483648", "memoryMax": "infinity", "cpuWeight": "idle",
//	            "oomScoreAdjust": "500", "capDrop": ["sys_boot"], "capAdd": ["all"], "seccomp": "...",
//	            "seccompSet": true, "volumes": ["${RWETCFS}:/etc"]},                      // live only
//	   "error": "..."}]}
type QMShowOutput struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	OK         bool           `json:"ok"`
	Results    []QMShowResult `json:"results"`
}

// QMShowResult is one entry of QMShowOutput.
type QMShowResult struct {
	Node   string        `json:"node"`
	Root   string        `json:"root"`
	Source string        `json:"source"`
	Files  []QMShowFile  `json:"files,omitempty"`
	Values []QMShowValue `json:"values,omitempty"`
	Live   *QMShowLive   `json:"live,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// QMShowFile is one file of the merged qm.container.
type QMShowFile struct {
	Path   string `json:"path"`
	QMOrch bool   `json:"qmorch"`
}

// QMShowValue is one key of the merged qm.container.
type QMShowValue struct {
	Section string   `json:"section"`
	Key     string   `json:"key"`
	Set     bool     `json:"set"`
	Value   string   `json:"value"`
	Values  []string `json:"values,omitempty"`
	From    string   `json:"from,omitempty"`
	Froms   []string `json:"froms,omitempty"`
	ResetAt string   `json:"resetAt,omitempty"`
}

// QMShowLive is qm.service's live state.
type QMShowLive struct {
	LoadState      string   `json:"loadState"`
	ActiveState    string   `json:"activeState"`
	SubState       string   `json:"subState"`
	SourcePath     string   `json:"sourcePath"`
	MemoryHigh     string   `json:"memoryHigh"`
	MemoryMax      string   `json:"memoryMax"`
	CPUWeight      string   `json:"cpuWeight"`
	OOMScoreAdjust string   `json:"oomScoreAdjust"`
	CapDrop        []string `json:"capDrop"`
	CapAdd         []string `json:"capAdd"`
	Seccomp        string   `json:"seccomp"`
	SeccompSet     bool     `json:"seccompSet"`
	Volumes        []string `json:"volumes"`
}

func printQMShow(w io.Writer, format string, explain bool, rep *deploy.QMShowReport) error {
	out := QMShowOutput{APIVersion: apiVersion, Kind: "QMShow", OK: true}
	for _, r := range rep.Results {
		x := QMShowResult{Node: r.Node, Root: r.Root, Source: "live"}
		if r.Root != "" {
			x.Source = "files"
		}
		if r.View != nil {
			for _, f := range r.View.Files {
				x.Files = append(x.Files, QMShowFile{Path: f.Path, QMOrch: f.QMOrch})
			}
			for _, v := range r.View.Values {
				x.Values = append(x.Values, QMShowValue{Section: v.Section, Key: v.Key, Set: v.Set, Value: v.Value,
					Values: v.Values, From: v.From, Froms: v.Froms, ResetAt: v.ResetAt})
			}
		}
		if l := r.Live; l != nil {
			x.Live = &QMShowLive{LoadState: l.LoadState, ActiveState: l.ActiveState, SubState: l.SubState,
				SourcePath: l.SourcePath, MemoryHigh: l.MemoryHigh, MemoryMax: l.MemoryMax, CPUWeight: l.CPUWeight,
				OOMScoreAdjust: l.OOMScoreAdjust, CapDrop: nonNil(l.CapDrop), CapAdd: nonNil(l.CapAdd),
				Seccomp: l.Seccomp, SeccompSet: l.SeccompSet, Volumes: nonNil(l.Volumes)}
		}
		if r.Err != nil {
			x.Error, out.OK = r.Err.Error(), false
		}
		out.Results = append(out.Results, x)
	}
	if format == "json" {
		return writeJSON(w, out)
	}
	for i, r := range out.Results {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "%s: error (see below)\n", dash(r.Node))
			continue
		}
		tw := newTable(w, "")
		if r.Source == "files" {
			fmt.Fprintf(w, "effective qm.container under %s (merged as Quadlet does)\n", r.Root)
			if explain {
				for n, f := range r.Files {
					mark := ""
					if f.QMOrch {
						mark = "  (qmorch)"
					}
					fmt.Fprintf(w, "  %d. %s%s\n", n+1, f.Path, mark)
				}
				fmt.Fprintln(tw, "SECTION\tKEY\tVALUE\tSET BY")
			} else {
				fmt.Fprintln(tw, "SECTION\tKEY\tVALUE")
			}
			for _, v := range r.Values {
				val := v.Value
				switch {
				case !v.Set && v.ResetAt == "":
					val = "(not set)"
				case !v.Set:
					val = "(reset)"
				case val == "":
					val = `""`
				}
				if !explain {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Section, v.Key, val)
					continue
				}
				from := v.From
				if len(v.Froms) > 0 {
					from = strings.Join(uniq(v.Froms), ", ")
				}
				if v.ResetAt != "" {
					from = strings.TrimPrefix(from+", reset at "+v.ResetAt, ", ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Section, v.Key, val, dash(from))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			continue
		}
		l := r.Live
		fmt.Fprintf(w, "%s: qm.service %s (%s), %s\n", r.Node, dash(l.ActiveState), dash(l.SubState), dash(l.SourcePath))
		seccomp := "(not set)"
		if l.SeccompSet {
			seccomp = l.Seccomp
			if seccomp == "" {
				seccomp = `"" (podman's default profile)`
			}
		}
		for _, kv := range [][2]string{
			{"MemoryHigh", l.MemoryHigh}, {"MemoryMax", l.MemoryMax}, {"CPUWeight", l.CPUWeight},
			{"OOMScoreAdjust", l.OOMScoreAdjust}, {"--security-opt seccomp=", seccomp},
			{"--cap-drop", strings.Join(l.CapDrop, " ")}, {"--cap-add", strings.Join(l.CapAdd, " ")},
			{"-v", strings.Join(l.Volumes, " ")},
		} {
			fmt.Fprintf(tw, "  %s\t%s\n", kv[0], dash(kv[1]))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func uniq(s []string) []string {
	var out []string
	for _, x := range s {
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}
