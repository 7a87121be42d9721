package deploy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/qmorch/qmorch/controller"
)

// fakeCtl is an in-memory BlueChi controller with systemd-like nodes. Host nodes have a file
// system (path -> content) that delivery units write; a twin "qm.X" generates NAME.service
// from X's ${RWETCFS}/containers/systemd/NAME.container on Reload.
type fakeCtl struct {
	mu       sync.Mutex
	nodes    []controller.NodeInfo
	listErr  error
	calls    []string
	files    map[string]map[string]fakeFile // host node -> path -> file
	units    map[string]map[string]*fakeUnit
	monitors []*fakeMonitor
	statusCh []chan controller.NodeStatusEvent
	props    map[string][]controller.Property // transient unit name -> props it was started with

	// behaviour per node
	jobResult      map[string]controller.JobResult // twin -> result of start/restart jobs
	jobHang        map[string]bool                 // twin -> Wait blocks until ctx ends
	jobOffline     map[string]bool                 // twin -> Wait ends with ErrNodeOffline
	crash          map[string]string               // twin -> "fail" | "flap": unit dies after the job
	writeFail      map[string]bool                 // host -> delivery script exits 1
	offlineAt      map[string]string               // node -> op at which the node goes offline ("StartTransientUnit", "settle")
	transientDelay time.Duration
	rwetcfs        string
	twinPrefix     string // names twins "<prefix><host>" (the deployer's WithTwinPrefix)
}

type fakeFile struct {
	data []byte
	mode uint32
}

type fakeUnit struct {
	load, active, sub, result string
	status                    int32
}

func newFake(nodes ...string) *fakeCtl {
	f := &fakeCtl{
		files:      map[string]map[string]fakeFile{},
		units:      map[string]map[string]*fakeUnit{},
		props:      map[string][]controller.Property{},
		jobResult:  map[string]controller.JobResult{},
		jobHang:    map[string]bool{},
		jobOffline: map[string]bool{},
		crash:      map[string]string{},
		writeFail:  map[string]bool{},
		offlineAt:  map[string]string{},
		rwetcfs:    DefaultRWETCFS,
		twinPrefix: DefaultTwinPrefix,
	}
	for _, n := range nodes {
		status := controller.NodeOnline
		if name, ok := strings.CutSuffix(n, ":offline"); ok {
			n, status = name, controller.NodeOffline
		}
		f.nodes = append(f.nodes, controller.NodeInfo{Name: n, Path: controller.EscapePath(n), Status: status})
		f.files[n] = map[string]fakeFile{}
		f.units[n] = map[string]*fakeUnit{}
	}
	return f
}

func (f *fakeCtl) record(format string, args ...any) {
	f.mu.Lock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	f.mu.Unlock()
}

func (f *fakeCtl) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// callsMatching returns the recorded calls that contain s.
func (f *fakeCtl) callsMatching(s string) []string {
	var out []string
	for _, c := range f.Calls() {
		if strings.Contains(c, s) {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakeCtl) ListNodes(context.Context) ([]controller.NodeInfo, error) {
	f.record("ListNodes")
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nodes), f.listErr
}

func (f *fakeCtl) GetNode(_ context.Context, name string) (Node, error) {
	f.record("GetNode %s", name)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.nodes {
		if n.Name == name {
			return &fakeNode{f: f, name: name}, nil
		}
	}
	return nil, controller.ErrNodeNotFound
}

func (f *fakeCtl) CreateMonitor(context.Context) (Monitor, error) {
	f.record("CreateMonitor")
	m := &fakeMonitor{f: f, ch: make(chan controller.Event, 1024), subs: map[uint32][2]string{}}
	f.mu.Lock()
	f.monitors = append(f.monitors, m)
	f.mu.Unlock()
	return m, nil
}

func (f *fakeCtl) WatchNodeStatus(ctx context.Context) (<-chan controller.NodeStatusEvent, func()) {
	ch := make(chan controller.NodeStatusEvent, 64)
	f.mu.Lock()
	f.statusCh = append(f.statusCh, ch)
	f.mu.Unlock()
	return ch, func() {}
}

// setOffline marks a node offline and tells status watchers and monitors (virtual events).
func (f *fakeCtl) setOffline(node string) {
	f.mu.Lock()
	for i := range f.nodes {
		if f.nodes[i].Name == node {
			f.nodes[i].Status = controller.NodeOffline
		}
	}
	chs := slices.Clone(f.statusCh)
	f.mu.Unlock()
	for _, ch := range chs {
		select {
		case ch <- controller.NodeStatusEvent{Node: node, Status: controller.NodeOffline}:
		default:
		}
	}
}

func (f *fakeCtl) online(node string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.nodes {
		if n.Name == node {
			return n.Status == controller.NodeOnline
		}
	}
	return false
}

// emit sends a UnitStateChanged to every monitor subscribed to node/unit.
func (f *fakeCtl) emit(node, unit, active, sub string) {
	f.mu.Lock()
	mons := slices.Clone(f.monitors)
	f.mu.Unlock()
	for _, m := range mons {
		m.send(controller.Event{Kind: controller.EventUnitStateChanged, Node: node, Unit: unit,
			ActiveState: active, SubState: sub, Reason: "real"})
	}
}

func (f *fakeCtl) setUnit(node, unit, active, sub string) {
	f.mu.Lock()
	u := f.units[node][unit]
	if u == nil {
		u = &fakeUnit{load: "loaded"}
		f.units[node][unit] = u
	}
	u.active, u.sub = active, sub
	f.mu.Unlock()
	f.emit(node, unit, active, sub)
}

func (f *fakeCtl) file(node, p string) (fakeFile, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ff, ok := f.files[node][p]
	return ff, ok
}

type fakeMonitor struct {
	f      *fakeCtl
	mu     sync.Mutex
	ch     chan controller.Event
	subs   map[uint32][2]string
	next   uint32
	closed bool
}

func (m *fakeMonitor) send(ev controller.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for _, s := range m.subs {
		if (s[0] == ev.Node || s[0] == "*") && (s[1] == ev.Unit || s[1] == "*") {
			select {
			case m.ch <- ev:
			default:
			}
			return
		}
	}
}

func (m *fakeMonitor) Subscribe(_ context.Context, node, unit string) (uint32, error) {
	m.f.record("Subscribe %s %s", node, unit)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next++
	m.subs[m.next] = [2]string{node, unit}
	return m.next, nil
}

func (m *fakeMonitor) Unsubscribe(_ context.Context, id uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subs, id)
	return nil
}

func (m *fakeMonitor) Close(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.ch)
	}
	return nil
}

func (m *fakeMonitor) Events() <-chan controller.Event { return m.ch }

type fakeNode struct {
	f    *fakeCtl
	name string
}

func (n *fakeNode) checkOnline() error {
	if !n.f.online(n.name) {
		return fmt.Errorf("org.eclipse.bluechi.Offline: %w", controller.ErrNodeOffline)
	}
	return nil
}

func (n *fakeNode) StartTransientUnit(ctx context.Context, name string, mode controller.JobMode,
	props []controller.Property, _ []controller.AuxUnit) (dbus.ObjectPath, error) {
	n.f.record("%s StartTransientUnit %s", n.name, name)
	if err := n.checkOnline(); err != nil {
		return "", err
	}
	n.f.mu.Lock()
	n.f.props[name] = props
	delay := n.f.transientDelay
	fail := n.f.writeFail[n.name]
	goOffline := n.f.offlineAt[n.name] == "StartTransientUnit"
	n.f.units[n.name][name] = &fakeUnit{load: "loaded", active: "activating", sub: "start"}
	n.f.mu.Unlock()

	var payload []byte
	var argv []string
	for _, p := range props {
		switch p.Name {
		case "SetCredential":
			payload = p.Value.Value().([]Credential)[0].Data
		case "ExecStart":
			argv = p.Value.Value().([]ExecCommand)[0].Argv
		}
	}
	// What systemd + the script would do: argv = sh -c SCRIPT $0 PAYLOAD TMP DEST DIR.
	dest := unescapeSystemd(argv[6])
	go func() {
		if goOffline {
			n.f.setOffline(n.name)
			return
		}
		time.Sleep(delay)
		n.f.mu.Lock()
		old, exists := n.f.files[n.name][dest]
		status := int32(exitWritten)
		switch {
		case fail:
			status = 1
		case exists && string(old.data) == string(payload):
			status = exitSame
		default:
			n.f.files[n.name][dest] = fakeFile{data: slices.Clone(payload), mode: 0o644}
		}
		u := n.f.units[n.name][name]
		if u == nil { // stopped meanwhile
			n.f.mu.Unlock()
			return
		}
		u.status, u.result = status, "success"
		if status == 1 {
			u.result = "exit-code"
		}
		n.f.mu.Unlock()
		if status == 1 {
			n.f.setUnit(n.name, name, "failed", "failed")
		} else {
			n.f.setUnit(n.name, name, "active", "exited")
		}
	}()
	return "/org/freedesktop/systemd1/job/1", nil
}

// unescapeSystemd undoes systemdLiteral ("$$" -> "$"); the tests' stand-in for systemd.
func unescapeSystemd(s string) string { return strings.ReplaceAll(s, "$$", "$") }

func (n *fakeNode) GetUnitProperties(_ context.Context, unit, iface string) (map[string]dbus.Variant, error) {
	n.f.record("%s GetUnitProperties %s %s", n.name, unit, iface)
	n.f.mu.Lock()
	defer n.f.mu.Unlock()
	u := n.f.units[n.name][unit]
	if u == nil {
		return nil, fmt.Errorf("org.freedesktop.systemd1.NoSuchUnit: %w", controller.ErrNoSuchUnit)
	}
	switch iface {
	case unitIface:
		return map[string]dbus.Variant{"LoadState": dbus.MakeVariant(u.load),
			"ActiveState": dbus.MakeVariant(u.active), "SubState": dbus.MakeVariant(u.sub)}, nil
	case serviceIface:
		return map[string]dbus.Variant{"Result": dbus.MakeVariant(u.result), "ExecMainStatus": dbus.MakeVariant(u.status)}, nil
	}
	return nil, fmt.Errorf("unknown interface %s", iface)
}

func (n *fakeNode) StopUnit(_ context.Context, unit string, _ controller.JobMode) (Job, error) {
	n.f.record("%s StopUnit %s", n.name, unit)
	if err := n.checkOnline(); err != nil {
		return nil, err
	}
	n.f.mu.Lock()
	if u := n.f.units[n.name][unit]; u != nil && u.active != "failed" {
		delete(n.f.units[n.name], unit)
	}
	n.f.mu.Unlock()
	return &fakeJob{result: controller.JobDone}, nil
}

func (n *fakeNode) ResetFailedUnit(_ context.Context, unit string) error {
	n.f.record("%s ResetFailedUnit %s", n.name, unit)
	if err := n.checkOnline(); err != nil {
		return err
	}
	n.f.mu.Lock()
	defer n.f.mu.Unlock()
	if _, ok := n.f.units[n.name][unit]; !ok {
		return fmt.Errorf("org.freedesktop.systemd1.NoSuchUnit: %w", controller.ErrNoSuchUnit)
	}
	delete(n.f.units[n.name], unit)
	return nil
}

func (n *fakeNode) Reload(context.Context) error {
	n.f.record("%s Reload", n.name)
	if err := n.checkOnline(); err != nil {
		return err
	}
	n.f.mu.Lock()
	defer n.f.mu.Unlock()
	// Only a twin runs QM's Quadlet generator; which node is a twin depends on the prefix.
	host, ok := strings.CutPrefix(n.name, n.f.twinPrefix)
	if !ok {
		return nil
	}
	dir := quadletDir(n.f.rwetcfs)
	for p := range n.f.files[host] {
		if path.Dir(p) == dir && strings.HasSuffix(p, ".container") {
			unit := strings.TrimSuffix(path.Base(p), ".container") + ".service"
			if n.f.units[n.name][unit] == nil {
				n.f.units[n.name][unit] = &fakeUnit{load: "loaded", active: "inactive", sub: "dead"}
			}
		}
	}
	return nil
}

func (n *fakeNode) StartUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error) {
	return n.job(ctx, "StartUnit", unit)
}

func (n *fakeNode) RestartUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error) {
	return n.job(ctx, "RestartUnit", unit)
}

func (n *fakeNode) job(_ context.Context, op, unit string) (Job, error) {
	n.f.record("%s %s %s", n.name, op, unit)
	if err := n.checkOnline(); err != nil {
		return nil, err
	}
	n.f.mu.Lock()
	u := n.f.units[n.name][unit]
	res := n.f.jobResult[n.name]
	hang, offline := n.f.jobHang[n.name], n.f.jobOffline[n.name]
	crash := n.f.crash[n.name]
	settleOffline := n.f.offlineAt[n.name] == "settle"
	n.f.mu.Unlock()
	if u == nil {
		return nil, fmt.Errorf("org.freedesktop.systemd1.NoSuchUnit: %w", controller.ErrNoSuchUnit)
	}
	if res == "" {
		res = controller.JobDone
	}
	j := &fakeJob{result: res, hang: hang, offline: offline, f: n.f, node: n.name}
	if hang || offline {
		return j, nil
	}
	if op == "RestartUnit" {
		n.f.setUnit(n.name, unit, "deactivating", "stop-sigterm")
		n.f.setUnit(n.name, unit, "inactive", "dead")
	}
	n.f.setUnit(n.name, unit, "activating", "start")
	if res != controller.JobDone {
		n.f.setUnit(n.name, unit, "failed", "failed")
		return j, nil
	}
	n.f.setUnit(n.name, unit, "active", "running")
	j.after = func() {
		switch {
		case crash == "fail":
			time.Sleep(5 * time.Millisecond)
			n.f.setUnit(n.name, unit, "deactivating", "stop-sigterm")
			n.f.mu.Lock()
			n.f.units[n.name][unit].result, n.f.units[n.name][unit].status = "exit-code", 1
			n.f.mu.Unlock()
			n.f.setUnit(n.name, unit, "failed", "failed")
		case crash == "flap": // dies and comes back before the settle window ends
			time.Sleep(5 * time.Millisecond)
			n.f.setUnit(n.name, unit, "activating", "auto-restart")
			n.f.setUnit(n.name, unit, "active", "running")
		case settleOffline:
			time.Sleep(5 * time.Millisecond)
			n.f.setOffline(n.name)
		}
	}
	return j, nil
}

type fakeJob struct {
	result        controller.JobResult
	hang, offline bool
	after         func()
	f             *fakeCtl
	node          string
	cancelled     bool
}

func (j *fakeJob) Wait(ctx context.Context) (controller.JobResult, error) {
	switch {
	case j.offline:
		j.f.setOffline(j.node)
		return "", fmt.Errorf("wait: %w", controller.ErrNodeOffline)
	case j.hang:
		<-ctx.Done()
		if ctx.Err() == context.DeadlineExceeded {
			return "", fmt.Errorf("wait: %w", controller.ErrTimeout)
		}
		return "", ctx.Err()
	}
	if j.after != nil {
		go j.after()
	}
	return j.result, nil
}

func (j *fakeJob) Cancel(context.Context) error {
	if j.f != nil {
		j.f.record("%s Job.Cancel", j.node)
	}
	return nil
}
