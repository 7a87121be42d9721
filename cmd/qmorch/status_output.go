package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/deploy"
)

// JSON documents of `qmorch status` (schema in docs/json.md; stable within apiVersion
// "qmorch/v1": fields may be added, never renamed, removed or retyped).

// NodeStatusOutput is `qmorch status -o json` without units (kind "NodeStatusList").
type NodeStatusOutput struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	OK         bool             `json:"ok"` // always true: a read that fails as a whole prints nothing
	Results    []NodeStatusJSON `json:"results"`
}

// NodeStatusJSON is one host node with its QM twin.
type NodeStatusJSON struct {
	Node string         `json:"node"`
	Host NodeStateJSON  `json:"host"`
	QM   *NodeStateJSON `json:"qm"` // null when the node has no QM twin
}

// NodeStateJSON is one BlueChi node's agent state.
type NodeStateJSON struct {
	Name     string  `json:"name"`
	Status   string  `json:"status"`   // online | offline
	PeerIP   string  `json:"peerIp"`   // as BlueChi reports it ("" while offline)
	LastSeen *string `json:"lastSeen"` // RFC 3339, offline nodes only; null when online or unknown
}

// UnitStatusOutput is `qmorch status NODES UNIT... -o json` / `--units` (kind "UnitStatusList").
type UnitStatusOutput struct {
	APIVersion string           `json:"apiVersion"`
	Kind       string           `json:"kind"`
	OK         bool             `json:"ok"` // every node could be read (exit code 0)
	Results    []UnitStatusJSON `json:"results"`
}

// UnitStatusJSON is one unit on one node.
type UnitStatusJSON struct {
	Node        string  `json:"node"`        // host node
	QMNode      string  `json:"qmNode"`      // its QM twin ("" with --host)
	BlueChiNode string  `json:"bluechiNode"` // where the unit lives: qm.NODE, or NODE with --host
	Unit        string  `json:"unit"`        // "" on a row that reports a node error with --units
	LoadState   string  `json:"loadState"`
	ActiveState string  `json:"activeState"`
	SubState    string  `json:"subState"`
	Since       *string `json:"since"`  // RFC 3339 StateChangeTimestamp; null when not read or never
	Source      string  `json:"source"` // SourcePath or FragmentPath; "" when not read
	Error       string  `json:"error,omitempty"`
}

// StatusEventOutput is one line of `qmorch status -w -o json` (kind "StatusEvent", NDJSON).
type StatusEventOutput struct {
	APIVersion  string `json:"apiVersion"`
	Kind        string `json:"kind"`
	Time        string `json:"time"`  // RFC 3339 with nanoseconds
	Event       string `json:"event"` // unit | node | monitor
	Node        string `json:"node,omitempty"`
	BlueChiNode string `json:"bluechiNode,omitempty"`
	Unit        string `json:"unit,omitempty"`
	LoadState   string `json:"loadState,omitempty"`   // unit: loaded | not-loaded
	ActiveState string `json:"activeState,omitempty"` // unit
	SubState    string `json:"subState,omitempty"`    // unit
	Status      string `json:"status,omitempty"`      // node: online | offline
	Reason      string `json:"reason,omitempty"`      // unit: real | virtual
	Message     string `json:"message,omitempty"`     // monitor
	// Added in qmorch/v1 (fields only): why qmorch synthesised a node or unit state (e.g. "not
	// registered on the controller"), and the BlueChi nodes a monitor event is about.
	Detail string   `json:"detail,omitempty"`
	Nodes  []string `json:"nodes,omitempty"`
}

// WaitOnlineOutput is `qmorch status --wait-online -o json` (kind "NodesOnline").
type WaitOnlineOutput struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Nodes      []string `json:"nodes"`
	WaitedMs   int64    `json:"waitedMs"`
}

func statusTimeJSON(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

func nodeStateJSON(s deploy.NodeState) NodeStateJSON {
	st := string(s.Status)
	if st == "" {
		st = string(controller.NodeOffline)
	}
	return NodeStateJSON{Name: s.Name, Status: st, PeerIP: s.PeerIP, LastSeen: statusTimeJSON(s.LastSeen)}
}

// displayIP shows an IPv4-mapped IPv6 address (BlueChi's usual PeerIp) as plain IPv4.
func statusIP(ip string) string {
	if v4, ok := strings.CutPrefix(ip, "::ffff:"); ok && strings.Count(v4, ".") == 3 {
		return v4
	}
	return dash(ip)
}

func statusLastSeen(s deploy.NodeState) string {
	switch {
	case s.Status == controller.NodeOnline:
		return "now"
	case s.LastSeen.IsZero():
		return "never"
	}
	return s.LastSeen.Local().Format("2006-01-02 15:04:05")
}

func printNodeStatus(w io.Writer, format string, rows []deploy.NodeStatusRow) error {
	if format == "json" {
		out := NodeStatusOutput{APIVersion: apiVersion, Kind: "NodeStatusList", OK: true, Results: make([]NodeStatusJSON, 0, len(rows))}
		for _, r := range rows {
			row := NodeStatusJSON{Node: r.Node, Host: nodeStateJSON(r.Host)}
			if r.QM != nil {
				q := nodeStateJSON(*r.QM)
				row.QM = &q
			}
			out.Results = append(out.Results, row)
		}
		return writeJSON(w, out)
	}
	tw := newTable(w, "NODE\tHOST\tQM\tIP\tLAST SEEN")
	for _, r := range rows {
		qm, seen := "-", statusLastSeen(r.Host)
		if r.QM != nil {
			qm = string(r.QM.Status)
			if r.Host.Status == controller.NodeOnline {
				seen = statusLastSeen(*r.QM)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Node, dash(string(r.Host.Status)), dash(qm), statusIP(r.Host.PeerIP), seen)
	}
	return tw.Flush()
}

// sinceText is a short age for the table ("3m ago"), the full time in JSON.
func statusSince(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return t.Local().Format("2006-01-02 15:04:05")
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func printUnitStatus(w io.Writer, format string, rows []deploy.UnitStatusRow, now time.Time) error {
	if format == "json" {
		out := UnitStatusOutput{APIVersion: apiVersion, Kind: "UnitStatusList", OK: true, Results: make([]UnitStatusJSON, 0, len(rows))}
		for _, r := range rows {
			row := UnitStatusJSON{Node: r.Node, QMNode: r.QMNode, BlueChiNode: r.On, Unit: r.Unit, LoadState: r.LoadState,
				ActiveState: r.ActiveState, SubState: r.SubState, Since: statusTimeJSON(r.Since), Source: r.Source}
			if r.Err != nil {
				row.Error = r.Err.Error()
				out.OK = false
			}
			out.Results = append(out.Results, row)
		}
		return writeJSON(w, out)
	}
	tw := newTable(w, "NODE\tUNIT\tLOADED\tACTIVE\tSUB\tSINCE\tSOURCE")
	for _, r := range rows {
		node := r.On
		if node == "" {
			node = r.Node
		}
		if r.Err != nil {
			// The error itself goes to stderr (one line per node, from main).
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", node, dash(r.Unit), "-", "unknown", "-", "-", "-")
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", node, r.Unit, dash(r.LoadState), dash(r.ActiveState),
			dash(r.SubState), statusSince(r.Since, now), dash(r.Source))
	}
	return tw.Flush()
}

func printWaitOnline(w io.Writer, format string, nodes []string, waited time.Duration) error {
	if format == "json" {
		return writeJSON(w, WaitOnlineOutput{APIVersion: apiVersion, Kind: "NodesOnline", Nodes: nodes, WaitedMs: waited.Milliseconds()})
	}
	_, err := fmt.Fprintf(w, "online: %s (waited %.1fs)\n", strings.Join(nodes, ", "), waited.Seconds())
	return err
}

// watchPrinter writes one line per event; it keeps the first write error (a closed pipe).
type watchPrinter struct {
	w      io.Writer
	format string
	err    error
}

func newWatchPrinter(w io.Writer, format string) *watchPrinter {
	return &watchPrinter{w: w, format: format}
}

func (p *watchPrinter) print(ev deploy.WatchEvent) {
	if p.err != nil {
		return
	}
	if p.format == "json" {
		b, err := json.Marshal(StatusEventOutput{
			APIVersion: apiVersion, Kind: "StatusEvent", Time: ev.Time.UTC().Format(time.RFC3339Nano),
			Event: string(ev.Kind), Node: ev.Node, BlueChiNode: ev.On, Unit: ev.Unit, LoadState: ev.LoadState,
			ActiveState: ev.ActiveState, SubState: ev.SubState, Status: string(ev.Status), Reason: ev.Reason,
			Message: ev.Message, Detail: ev.Detail, Nodes: ev.Nodes,
		})
		if err == nil {
			_, err = p.w.Write(append(b, '\n'))
		}
		p.err = err
		return
	}
	ts := ev.Time.Local().Format("15:04:05.000")
	var line string
	switch ev.Kind {
	case deploy.WatchUnit:
		state := ev.ActiveState + "/" + ev.SubState
		if ev.LoadState == "not-loaded" {
			state = "not-loaded"
		}
		line = fmt.Sprintf("%s  %-16s %-32s %s", ts, ev.On, ev.Unit, state)
		if ev.Reason == "virtual" {
			line += "  (virtual)"
		}
	case deploy.WatchNode:
		line = fmt.Sprintf("%s  %-16s %-32s %s", ts, ev.On, "node", ev.Status)
	default:
		line = fmt.Sprintf("%s  %-16s %s", ts, "-", ev.Message)
	}
	if ev.Detail != "" {
		line += "  (" + ev.Detail + ")"
	}
	_, p.err = fmt.Fprintln(p.w, line)
}
