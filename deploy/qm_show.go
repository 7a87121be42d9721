package deploy

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/qmconf"
)

// QMShowRequest asks for QM's effective configuration: from files in a local tree (Root), or live
// from qm.service on host nodes (Selectors/All). BlueChi has no API to read a node's files, so the
// remote view is what systemd reports for the running unit, not the drop-ins that produced it.
type QMShowRequest struct {
	Selectors []string
	All       bool
	Root      string
}

// QMLive is qm.service as the host's systemd reports it (Node.GetUnitProperties). Values are
// shown like `systemctl show`: sizes in bytes or "infinity", "" when not set.
type QMLive struct {
	LoadState, ActiveState, SubState string
	SourcePath                       string // the qm.container Quadlet generated the unit from
	MemoryHigh, MemoryMax            string
	CPUWeight                        string // "idle", a number, or "" (not set)
	OOMScoreAdjust                   string
	// From ExecStart's podman flags:
	CapDrop, CapAdd []string
	Seccomp         string // value of --security-opt seccomp=
	SeccompSet      bool
	Volumes         []string
}

// Get returns the live value of a [Service] setting key.
func (l QMLive) Get(key string) string {
	switch key {
	case "MemoryHigh":
		return l.MemoryHigh
	case "MemoryMax":
		return l.MemoryMax
	case "CPUWeight":
		return l.CPUWeight
	case "OOMScoreAdjust":
		return l.OOMScoreAdjust
	}
	return ""
}

// QMShowResult is one node's (or the local tree's) view.
type QMShowResult struct {
	Node string         // "" for Root
	Root string         // the local tree, "" for a node
	View *qmconf.QMView // files (Root only)
	Live *QMLive        // live unit (nodes only)
	Err  error
}

// QMShowReport holds the results in node order.
type QMShowReport struct{ Results []QMShowResult }

// QMShow reads QM's configuration; see QMShowRequest.
func (d *Deployer) QMShow(ctx context.Context, req QMShowRequest) (*QMShowReport, error) {
	if req.Root != "" {
		if len(req.Selectors) > 0 || req.All {
			return nil, invalidf("give nodes or --root, not both")
		}
		v, err := qmconf.LoadQMView(req.Root)
		res := QMShowResult{Root: req.Root, View: &v, Err: err}
		if err != nil {
			res.View = nil
		}
		return &QMShowReport{Results: []QMShowResult{res}}, err
	}
	hosts, infos, err := d.selectQMHosts(ctx, req.Selectors, req.All)
	if err != nil {
		return nil, err
	}
	status := nodeStatuses(infos)
	rep := &QMShowReport{Results: make([]QMShowResult, len(hosts))}
	fanOut(ctx, len(hosts), d.opts.parallel, func(i int) {
		res := QMShowResult{Node: hosts[i]}
		live, err := d.qmLive(ctx, hosts[i], status[hosts[i]])
		if err != nil {
			res.Err = fmt.Errorf("node %s: %w", hosts[i], err)
		} else {
			res.Live = live
		}
		rep.Results[i] = res
	}, func(i int, err error) {
		rep.Results[i] = QMShowResult{Node: hosts[i], Err: fmt.Errorf("node %s: not started: %w", hosts[i], err)}
	})
	return rep, nodeErrors(rep.Results, func(r QMShowResult) error { return r.Err })
}

func (d *Deployer) qmLive(ctx context.Context, host string, st controller.NodeStatus) (*QMLive, error) {
	if st != controller.NodeOnline {
		return nil, fmt.Errorf("host node is %s: %w", statusWord(st), controller.ErrNodeOffline)
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.timeout)
	defer cancel()
	n, err := d.c.GetNode(ctx, host)
	if err != nil {
		return nil, err
	}
	unit, err := n.GetUnitProperties(ctx, qmconf.QMService, unitIface)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qmconf.QMService, err)
	}
	svc, err := n.GetUnitProperties(ctx, qmconf.QMService, serviceIface)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", qmconf.QMService, err)
	}
	for k, v := range unit {
		if _, ok := svc[k]; !ok {
			svc[k] = v
		}
	}
	l := QMLiveFromProps(svc)
	return &l, nil
}

// QMLiveFromProps decodes the systemd properties of qm.service (Unit and Service interfaces).
func QMLiveFromProps(p map[string]dbus.Variant) QMLive {
	str := func(k string) string { s, _ := p[k].Value().(string); return s }
	size := func(k string) string {
		v, ok := p[k].Value().(uint64)
		switch {
		case !ok:
			return ""
		case v == math.MaxUint64:
			return "infinity"
		}
		return strconv.FormatUint(v, 10)
	}
	l := QMLive{
		LoadState: str("LoadState"), ActiveState: str("ActiveState"), SubState: str("SubState"),
		SourcePath: str("SourcePath"), MemoryHigh: size("MemoryHigh"), MemoryMax: size("MemoryMax"),
	}
	if v, ok := p["CPUWeight"].Value().(uint64); ok {
		switch v {
		case math.MaxUint64: // CGROUP_WEIGHT_INVALID: not set
		case 0: // CGROUP_WEIGHT_IDLE
			l.CPUWeight = "idle"
		default:
			l.CPUWeight = strconv.FormatUint(v, 10)
		}
	}
	if v, ok := p["OOMScoreAdjust"].Value().(int32); ok {
		l.OOMScoreAdjust = strconv.Itoa(int(v))
	}
	l.parsePodmanArgs(firstExecArgv(p["ExecStart"].Value()))
	return l
}

// firstExecArgv returns the argv of the first ExecStart entry, a(sasbttttuii) as godbus decodes
// it (a slice of structs or of []interface{}).
func firstExecArgv(v any) []string {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Slice || rv.Len() == 0 {
		return nil
	}
	e := rv.Index(0)
	for e.Kind() == reflect.Interface {
		e = e.Elem()
	}
	var argv reflect.Value
	switch e.Kind() {
	case reflect.Slice:
		if e.Len() > 1 {
			argv = e.Index(1)
		}
	case reflect.Struct:
		if e.NumField() > 1 {
			argv = e.Field(1)
		}
	}
	for argv.IsValid() && argv.Kind() == reflect.Interface {
		argv = argv.Elem()
	}
	if !argv.IsValid() || argv.Kind() != reflect.Slice {
		return nil
	}
	out := make([]string, 0, argv.Len())
	for i := 0; i < argv.Len(); i++ {
		x := argv.Index(i)
		for x.Kind() == reflect.Interface {
			x = x.Elem()
		}
		if x.Kind() == reflect.String {
			out = append(out, x.String())
		}
	}
	return out
}

// parsePodmanArgs picks the flags Quadlet generates from the managed [Container] keys out of
// `podman run` argv: --cap-drop, --cap-add, --security-opt seccomp=..., -v/--volume (both the
// "--flag value" and "--flag=value" forms).
func (l *QMLive) parsePodmanArgs(argv []string) {
	for i := 0; i < len(argv); i++ {
		flag, val, hasEq := strings.Cut(argv[i], "=")
		switch flag {
		case "--cap-drop", "--cap-add", "--security-opt", "-v", "--volume":
		default:
			continue
		}
		if !hasEq {
			if i+1 >= len(argv) {
				break
			}
			i++
			val = argv[i]
		}
		switch flag {
		case "--cap-drop":
			l.CapDrop = append(l.CapDrop, val)
		case "--cap-add":
			l.CapAdd = append(l.CapAdd, val)
		case "--security-opt":
			if s, ok := strings.CutPrefix(val, "seccomp="); ok {
				l.Seccomp, l.SeccompSet = s, true
			}
		case "-v", "--volume":
			l.Volumes = append(l.Volumes, val)
		}
	}
}
