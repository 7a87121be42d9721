package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/hashicorp/go-multierror"

	"github.com/qmorch/qmorch/controller"
)

// StatusRequest selects the nodes (and units) `status` reads.
type StatusRequest struct {
	// Nodes are selectors as SelectHosts takes them (names, comma lists, globs). A QM twin's
	// name selects its host. Empty (and All unset): every host node the controller lists.
	Nodes []string
	// All selects every host node that has a QM twin.
	All bool
	// Units are unit names (see NormalizeUnitNames). With Units or AllUnits the read is a
	// units table; otherwise a nodes table.
	Units []string
	// AllUnits lists every unit systemd has loaded on the selected nodes.
	AllUnits bool
	// Host reads the host nodes' units instead of their QM twins'.
	Host bool
}

// NodeState is one BlueChi node as the controller reports it.
type NodeState struct {
	Name   string
	Status controller.NodeStatus
	PeerIP string // "" while offline
	// LastSeen is the last heartbeat; read only for offline nodes (an online node was heard
	// from within its heartbeat interval). Zero when online, never seen, or not readable.
	LastSeen time.Time
}

// NodeStatusRow pairs a host node with its QM twin.
type NodeStatusRow struct {
	Node string     // host node name
	Host NodeState  // the host node's agent
	QM   *NodeState // its QM twin's agent; nil when the host has no twin
}

// UnitStatusRow is one unit on one node.
type UnitStatusRow struct {
	Node        string // host node
	QMNode      string // the host's QM twin ("" with Host)
	On          string // BlueChi node the unit lives on (the QM twin, or the host with Host)
	Unit        string
	LoadState   string
	ActiveState string
	SubState    string
	Since       time.Time // StateChangeTimestamp; zero when not read (full listings) or never changed
	Source      string    // SourcePath (e.g. the Quadlet file) or FragmentPath; "" when not read
	Err         error     // the node could not be read (offline, error); the state fields are empty
}

// StatusReader is what status needs beyond Controller. A *controller.Client (through
// FromClient) provides it; other Controllers (fakes) may implement it directly.
type StatusReader interface {
	ListUnits(ctx context.Context) (map[string][]controller.UnitInfo, error)
	NodeListUnits(ctx context.Context, info controller.NodeInfo) ([]controller.UnitInfo, error)
	NodeLastSeen(ctx context.Context, info controller.NodeInfo) (time.Time, error)
	// NodeOf returns a Node without another D-Bus call.
	NodeOf(info controller.NodeInfo) Node
}

// statusClient implements StatusReader on the typed client.
type statusClient struct{ c *controller.Client }

func (s statusClient) ListUnits(ctx context.Context) (map[string][]controller.UnitInfo, error) {
	return s.c.ListUnits(ctx)
}

func (s statusClient) NodeListUnits(ctx context.Context, info controller.NodeInfo) ([]controller.UnitInfo, error) {
	return s.c.NodeFor(info).ListUnits(ctx)
}

func (s statusClient) NodeLastSeen(ctx context.Context, info controller.NodeInfo) (time.Time, error) {
	return s.c.NodeFor(info).LastSeen(ctx)
}

func (s statusClient) NodeOf(info controller.NodeInfo) Node { return nodeAdapter{s.c.NodeFor(info)} }

// statusReaderOf finds the extra read methods of c, or nil.
func statusReaderOf(c Controller) StatusReader {
	switch v := c.(type) {
	case StatusReader:
		return v
	case clientAdapter:
		return statusClient{v.c}
	case *clientAdapter:
		return statusClient{v.c}
	}
	return nil
}

// NormalizeUnitNames applies NormalizeUnitName (systemd's rules; no suffix means .service)
// to each name and drops duplicates, keeping the order. Errors are ErrInvalid.
func NormalizeUnitNames(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		u, err := NormalizeUnitName(n)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// statusSelection is the outcome of resolving a StatusRequest against one ListNodes answer.
type statusSelection struct {
	infos  []controller.NodeInfo
	byName map[string]controller.NodeInfo
	hosts  []string // selected host nodes, sorted
}

// twinOf is the QM twin of host ("" when the controller does not list one).
func (s *statusSelection) twinOf(prefix, host string) string {
	if _, ok := s.byName[prefix+host]; ok {
		return prefix + host
	}
	return ""
}

// target is the BlueChi node whose units are read for host ("" when it has none).
func (s *statusSelection) target(prefix, host string, useHost bool) string {
	if useHost {
		return host
	}
	return s.twinOf(prefix, host)
}

// selectStatus lists the nodes once and resolves the request.
func (d *Deployer) selectStatus(ctx context.Context, c Controller, req StatusRequest) (*statusSelection, error) {
	if c == nil {
		return nil, withClass(ErrUnreachable, fmt.Errorf("no controller connection"))
	}
	infos, err := c.ListNodes(ctx)
	if err != nil {
		return nil, withClass(ErrUnreachable, fmt.Errorf("list nodes: %w", err))
	}
	s := &statusSelection{infos: infos, byName: make(map[string]controller.NodeInfo, len(infos))}
	for _, n := range infos {
		s.byName[n.Name] = n
	}
	prefix := d.opts.twinPrefix
	hostOf := func(name string) string {
		if h, ok := strings.CutPrefix(name, prefix); ok {
			if _, known := s.byName[h]; known {
				return h
			}
		}
		return name
	}
	if !req.All && len(req.Nodes) == 0 {
		for _, n := range infos {
			if hostOf(n.Name) == n.Name {
				s.hosts = append(s.hosts, n.Name)
			}
		}
		if len(s.hosts) == 0 {
			return nil, invalidf("the controller lists no nodes")
		}
		slices.Sort(s.hosts)
		return s, nil
	}
	hosts, err := SelectHostsOrTwins(infos, req.Nodes, req.All, prefix)
	if err != nil {
		return nil, err
	}
	for i, h := range hosts {
		hosts[i] = hostOf(h)
	}
	slices.Sort(hosts)
	s.hosts = slices.Compact(hosts)
	return s, nil
}

// StatusNodes returns one row per selected host node with its QM twin: one ListNodes, plus a
// LastSeenTimestamp read (in parallel) for each offline node only.
func (d *Deployer) StatusNodes(ctx context.Context, req StatusRequest) ([]NodeStatusRow, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	sel, err := d.selectStatus(ctx, d.c, req)
	if err != nil {
		return nil, err
	}
	mk := func(name string) NodeState {
		info := sel.byName[name]
		return NodeState{Name: name, Status: info.Status, PeerIP: info.PeerIP}
	}
	rows := make([]NodeStatusRow, len(sel.hosts))
	for i, h := range sel.hosts {
		rows[i] = NodeStatusRow{Node: h, Host: mk(h)}
		if t := sel.twinOf(d.opts.twinPrefix, h); t != "" {
			q := mk(t)
			rows[i].QM = &q
		}
	}
	var offline []*NodeState
	for i := range rows {
		if rows[i].Host.Status != controller.NodeOnline {
			offline = append(offline, &rows[i].Host)
		}
		if q := rows[i].QM; q != nil && q.Status != controller.NodeOnline {
			offline = append(offline, q)
		}
	}
	if sr := statusReaderOf(d.c); sr != nil && len(offline) > 0 {
		fanOut(ctx, len(offline), d.opts.parallel, func(i int) {
			// A failed read leaves LastSeen zero ("unknown"): it is decoration, not state.
			if t, err := sr.NodeLastSeen(ctx, sel.byName[offline[i].Name]); err == nil {
				offline[i].LastSeen = t
			}
		}, func(int, error) {})
	}
	return rows, nil
}

// statusUnitRow fills row from the unit properties status shows.
func statusUnitRow(props map[string]dbus.Variant, row *UnitStatusRow) {
	str := func(k string) string {
		if v, ok := props[k]; ok {
			s, _ := v.Value().(string)
			return s
		}
		return ""
	}
	row.LoadState, row.ActiveState, row.SubState = str("LoadState"), str("ActiveState"), str("SubState")
	row.Source = str("SourcePath")
	if row.Source == "" {
		row.Source = str("FragmentPath")
	}
	if v, ok := props["StateChangeTimestamp"]; ok {
		if us, ok := v.Value().(uint64); ok && us > 0 {
			row.Since = time.UnixMicro(int64(us))
		}
	}
}

// StatusUnits returns the units table. Named units: one GetUnitProperties per node and unit,
// in parallel (SINCE and SOURCE included). AllUnits: one Controller.ListUnits when most online
// nodes are selected (falling back to per-node calls if it fails), else Node.ListUnits per
// selected node; SINCE and SOURCE are not read. Offline nodes get rows with Err set; the
// returned error aggregates them (go-multierror) next to the full table.
func (d *Deployer) StatusUnits(ctx context.Context, req StatusRequest) ([]UnitStatusRow, error) {
	units, err := NormalizeUnitNames(req.Units)
	if err != nil {
		return nil, err
	}
	if len(units) == 0 && !req.AllUnits {
		return nil, invalidf("no units given")
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	sel, err := d.selectStatus(ctx, d.c, req)
	if err != nil {
		return nil, err
	}
	sr := statusReaderOf(d.c)
	type nodeJob struct {
		host, on string
		twin     string
		info     controller.NodeInfo
		rows     []UnitStatusRow
	}
	var jobs []*nodeJob
	var missing []string
	for _, h := range sel.hosts {
		on := sel.target(d.opts.twinPrefix, h, req.Host)
		if on == "" {
			missing = append(missing, h)
			continue
		}
		j := &nodeJob{host: h, on: on, info: sel.byName[on]}
		if !req.Host {
			j.twin = on
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return nil, invalidf("no QM twin (%s<node>) for %s; use --host for the host nodes' units", d.opts.twinPrefix, strings.Join(missing, ", "))
	}
	errRow := func(j *nodeJob, unit string, err error) UnitStatusRow {
		return UnitStatusRow{Node: j.host, QMNode: j.twin, On: j.on, Unit: unit, Err: err}
	}
	offlineErr := func(j *nodeJob) error {
		return fmt.Errorf("node %s: %w", j.on, controller.ErrNodeOffline)
	}

	if len(units) > 0 {
		type item struct {
			j *nodeJob
			k int // index into units and j.rows
		}
		var items []item
		for _, j := range jobs {
			j.rows = make([]UnitStatusRow, len(units))
			for k, u := range units {
				if j.info.Status != controller.NodeOnline {
					j.rows[k] = errRow(j, u, offlineErr(j))
					continue
				}
				j.rows[k] = UnitStatusRow{Node: j.host, QMNode: j.twin, On: j.on, Unit: u}
				items = append(items, item{j, k})
			}
		}
		nodes := map[string]Node{}
		var nmu sync.Mutex
		nodeFor := func(j *nodeJob) (Node, error) {
			if sr != nil {
				return sr.NodeOf(j.info), nil
			}
			nmu.Lock()
			defer nmu.Unlock()
			if n, ok := nodes[j.on]; ok {
				return n, nil
			}
			n, err := d.c.GetNode(ctx, j.on)
			if err == nil {
				nodes[j.on] = n
			}
			return n, err
		}
		fanOut(ctx, len(items), d.opts.parallel, func(i int) {
			it := items[i]
			u := units[it.k]
			n, err := nodeFor(it.j)
			if err == nil {
				var props map[string]dbus.Variant
				if props, err = n.GetUnitProperties(ctx, u, unitIface); err == nil {
					statusUnitRow(props, &it.j.rows[it.k])
					return
				}
			}
			it.j.rows[it.k] = errRow(it.j, u, fmt.Errorf("node %s: %s: %w", it.j.on, u, err))
		}, func(i int, err error) {
			it := items[i]
			u := units[it.k]
			it.j.rows[it.k] = errRow(it.j, u, fmt.Errorf("node %s: %s: %w", it.j.on, u, err))
		})
	} else {
		if sr == nil {
			return nil, fmt.Errorf("listing all units needs the BlueChi client")
		}
		online := 0
		for _, n := range sel.infos {
			if n.Status == controller.NodeOnline {
				online++
			}
		}
		var want []*nodeJob
		for _, j := range jobs {
			if j.info.Status != controller.NodeOnline {
				j.rows = []UnitStatusRow{errRow(j, "", offlineErr(j))}
				continue
			}
			want = append(want, j)
		}
		fill := func(j *nodeJob, list []controller.UnitInfo) {
			slices.SortFunc(list, func(a, b controller.UnitInfo) int { return strings.Compare(a.Name, b.Name) })
			j.rows = make([]UnitStatusRow, len(list))
			for k, u := range list {
				j.rows[k] = UnitStatusRow{Node: j.host, QMNode: j.twin, On: j.on, Unit: u.Name,
					LoadState: u.LoadState, ActiveState: u.ActiveState, SubState: u.SubState}
			}
		}
		done := false
		// One fleet call answers for every online node; it pays off once most of them are wanted.
		if len(want) > 0 && 2*len(want) >= online {
			if all, err := sr.ListUnits(ctx); err == nil {
				done = true
				for _, j := range want {
					list, ok := all[j.on]
					if !ok { // went offline in between
						j.rows = []UnitStatusRow{errRow(j, "", offlineErr(j))}
						continue
					}
					fill(j, list)
				}
			} else {
				d.opts.logger.Debug("status: Controller.ListUnits failed, asking nodes one by one", "err", err)
			}
		}
		if !done {
			fanOut(ctx, len(want), d.opts.parallel, func(i int) {
				j := want[i]
				list, err := sr.NodeListUnits(ctx, j.info)
				if err != nil {
					j.rows = []UnitStatusRow{errRow(j, "", fmt.Errorf("node %s: list units: %w", j.on, err))}
					return
				}
				fill(j, list)
			}, func(i int, err error) {
				j := want[i]
				j.rows = []UnitStatusRow{errRow(j, "", fmt.Errorf("node %s: list units: %w", j.on, err))}
			})
		}
	}
	var rows []UnitStatusRow
	var merr *multierror.Error
	for _, j := range jobs {
		for _, r := range j.rows {
			rows = append(rows, r)
			if r.Err != nil {
				merr = multierror.Append(merr, r.Err)
			}
		}
	}
	for _, h := range missing {
		err := fmt.Errorf("node %s: no QM twin %s registered on the controller", h, d.opts.twinPrefix+h)
		rows = append(rows, UnitStatusRow{Node: h, Err: err})
		merr = multierror.Append(merr, err)
	}
	return rows, merr.ErrorOrNil()
}

// WaitOnline waits until every named BlueChi node (host or QM twin) is online, through the
// node Status signals (no polling). It ends with an error naming the nodes still offline when
// the Deployer's timeout (or ctx) ends. Unknown names are ErrInvalid.
func (d *Deployer) WaitOnline(ctx context.Context, names []string) error {
	if d.c == nil {
		return withClass(ErrUnreachable, fmt.Errorf("no controller connection"))
	}
	if len(names) == 0 {
		return invalidf("no nodes to wait for")
	}
	for _, n := range names {
		if err := validateNodeName(n); err != nil {
			return withClass(ErrInvalid, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	// Subscribe before reading the current state so no change falls in between.
	ch, stop := d.c.WatchNodeStatus(ctx)
	defer stop()
	infos, err := d.c.ListNodes(ctx)
	if err != nil {
		return withClass(ErrUnreachable, fmt.Errorf("list nodes: %w", err))
	}
	status := nodeStatuses(infos)
	var unknown []string
	for _, n := range names {
		if _, ok := status[n]; !ok {
			unknown = append(unknown, fmt.Sprintf("%q", n))
		}
	}
	if len(unknown) > 0 {
		return invalidf("unknown node %s (known nodes: %s)", strings.Join(unknown, ", "), knownNodes(infos))
	}
	pending := func() []string {
		var out []string
		for _, n := range names {
			if status[n] != controller.NodeOnline && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
		return out
	}
	for {
		p := pending()
		if len(p) == 0 {
			return nil
		}
		select {
		case ev, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					continue // reported by the ctx case
				}
				return fmt.Errorf("waiting for %s: node status watch ended (connection lost)", strings.Join(p, ", "))
			}
			status[ev.Node] = ev.Status
		case <-ctx.Done():
			err := ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("nodes still offline after %s: %s: %w", d.opts.timeout, strings.Join(p, ", "), controller.ErrTimeout)
			}
			return fmt.Errorf("nodes still offline: %s: %w", strings.Join(p, ", "), err)
		}
	}
}
