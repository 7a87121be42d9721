package testcontroller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// UnitSpec describes a unit of an in-memory node.
type UnitSpec struct {
	Name        string
	Description string
	ActiveState string // default "inactive"
	SubState    string // default "dead" (or "running" when ActiveState is "active")
	FileState   string // unit-file state for ListUnitFiles/GetUnitFileState, default "disabled"
	// FailStart makes start/restart jobs end "failed" with the unit failed.
	FailStart bool
	// ExitAfterStart makes the unit's start job end "done" and the unit fail right after
	// (the "done does not mean healthy" case).
	ExitAfterStart bool
}

// DefaultUnits is the unit set of a MemoryNode created without units.
func DefaultUnits() []UnitSpec {
	return []UnitSpec{
		{Name: "bluechi-agent.service", Description: "BlueChi systemd service controller agent daemon", ActiveState: "active", FileState: "enabled"},
		{Name: "dbus.service", Description: "D-Bus System Message Bus", ActiveState: "active", FileState: "static"},
		{Name: "multi-user.target", Description: "Multi-User System", ActiveState: "active", SubState: "active", FileState: "static"},
		{Name: "test.service", Description: "qmorch test service", FileState: "disabled"},
		{Name: "web.service", Description: "qmorch web service", FileState: "enabled"},
		{Name: "fail.service", Description: "fails to start", FailStart: true, FileState: "disabled"},
		{Name: "crash.service", Description: "exits right after start", ExitAfterStart: true, FileState: "disabled"},
	}
}

// FillerUnits returns n inactive units named prefix-<i>.service (benchmarks).
func FillerUnits(prefix string, n int) []UnitSpec {
	out := make([]UnitSpec, n)
	for i := range out {
		out[i] = UnitSpec{Name: fmt.Sprintf("%s-%d.service", prefix, i), Description: "filler", FileState: "disabled"}
	}
	return out
}

// MemoryNode is an in-memory systemd behind a simulated agent. Its control methods (SetOnline,
// SetJobDelay, Hold, ...) are safe for concurrent use by tests.
type MemoryNode struct {
	mu sync.Mutex

	name       string
	peerIP     string
	wantOnline bool
	link       Link    // set while Run runs
	sess       Session // nil while offline
	gen        uint64  // bumps on every disconnect: jobs of old connections are abandoned
	abandon    chan struct{}

	units     map[string]*memUnit
	jobs      map[uint32]*memJob // by BlueChi job id
	nextSysID uint32
	jobDelay  time.Duration
	// Optional latencies that model a real node (0 = instant): every agent call, extra for
	// daemon-reload, and the run time of a transient unit (default 1 ms).
	callDelay      time.Duration
	reloadDelay    time.Duration
	transientDelay time.Duration
	held           map[string]bool // unit -> held; "" holds every unit
	release        chan struct{}   // closed (and replaced) whenever held jobs may move on

	defaultTarget string
	logLevel      string
	calls         map[string]int
}

type memUnit struct {
	spec      UnitSpec
	load      string
	active    string
	sub       string
	fileState string
	freezer   string
	result    string // override for the next jobs' result ("" = normal)
	transient bool
	props     map[string]dbus.Variant
	job       *memJob
	mainCode  int32
}

type memJob struct {
	sysID    uint32
	typ      string
	unit     *memUnit
	bcIDs    []uint32
	cancel   chan struct{}
	finished bool
	before   [2]string // active/sub before the job, restored on cancel
}

// NewMemoryNode creates an online in-memory node with units (DefaultUnits when none).
func NewMemoryNode(name string, units ...UnitSpec) *MemoryNode {
	if len(units) == 0 {
		units = DefaultUnits()
	}
	m := &MemoryNode{
		name:          name,
		wantOnline:    true,
		abandon:       make(chan struct{}),
		units:         map[string]*memUnit{},
		jobs:          map[uint32]*memJob{},
		held:          map[string]bool{},
		release:       make(chan struct{}),
		defaultTarget: "multi-user.target",
		logLevel:      "INFO",
		calls:         map[string]int{},
	}
	for _, u := range units {
		m.addUnitLocked(u, false)
	}
	return m
}

func (m *MemoryNode) addUnitLocked(u UnitSpec, transient bool) *memUnit {
	if u.ActiveState == "" {
		u.ActiveState = "inactive"
	}
	if u.SubState == "" {
		switch u.ActiveState {
		case "active":
			u.SubState = "running"
		case "failed":
			u.SubState = "failed"
		default:
			u.SubState = "dead"
		}
	}
	if u.FileState == "" {
		u.FileState = "disabled"
	}
	if u.Description == "" {
		u.Description = u.Name
	}
	mu := &memUnit{spec: u, load: "loaded", active: u.ActiveState, sub: u.SubState,
		fileState: u.FileState, freezer: "running", transient: transient, props: map[string]dbus.Variant{}}
	m.units[u.Name] = mu
	return mu
}

// Name is the node name given to NewMemoryNode.
func (m *MemoryNode) Name() string { return m.name }

// SetPeerIP sets the PeerIp reported from the next connect on.
func (m *MemoryNode) SetPeerIP(ip string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peerIP = ip
}

// SetOnline connects (agent registers) or disconnects (agent connection drops) the node.
// Disconnecting abandons running jobs: BlueChi drops them without JobRemoved.
func (m *MemoryNode) SetOnline(online bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.wantOnline = online
	m.syncOnlineLocked()
}

// Online reports whether the node is connected.
func (m *MemoryNode) Online() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sess != nil
}

func (m *MemoryNode) syncOnlineLocked() {
	switch {
	case m.wantOnline && m.sess == nil && m.link != nil:
		m.sess = m.link.Connect(m.peerIP, m.snapshotLocked())
	case (!m.wantOnline || m.link == nil) && m.sess != nil:
		m.sess.Close()
		m.sess = nil
		m.gen++
		close(m.abandon)
		m.abandon = make(chan struct{})
		for _, j := range m.jobs {
			j.finished = true
			if j.unit.job == j {
				j.unit.job = nil
			}
		}
		m.jobs = map[uint32]*memJob{}
	}
}

func (m *MemoryNode) snapshotLocked() []UnitState {
	out := make([]UnitState, 0, len(m.units))
	for _, name := range sortedKeys(m.units) {
		u := m.units[name]
		out = append(out, UnitState{Name: name, ActiveState: u.active, SubState: u.sub})
	}
	return out
}

// SetJobDelay sets how long a job stays running before it finishes (default 0).
func (m *MemoryNode) SetJobDelay(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.jobDelay = d
}

// SetCallDelay makes every call to the node (agent round trip, e.g. GetUnitProperties,
// StartUnit's acceptance) take d before it runs (default 0).
func (m *MemoryNode) SetCallDelay(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.callDelay = d
}

// SetReloadDelay makes Reload (daemon-reload) take d more than other calls (default 0).
func (m *MemoryNode) SetReloadDelay(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reloadDelay = d
}

// SetTransientDelay sets how long a transient unit runs after StartTransientUnit returned
// before it reaches its end state (default 1 ms).
func (m *MemoryNode) SetTransientDelay(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.transientDelay = d
}

// quickCall reports whether method returns at once (no configured delay): the controller
// then runs it on its loop instead of a goroutine of its own.
func (m *MemoryNode) quickCall(method string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.callDelay == 0 && (method != "Reload" || m.reloadDelay == 0)
}

// delay sleeps the configured latency of method (outside the lock), or until ctx ends.
func (m *MemoryNode) delay(ctx context.Context, method string) {
	m.mu.Lock()
	d := m.callDelay
	if method == "Reload" {
		d += m.reloadDelay
	}
	m.mu.Unlock()
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// Hold keeps jobs of unit ("" = every unit) running until Release.
func (m *MemoryNode) Hold(unit string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held[unit] = true
}

// Release lets held jobs of unit ("" = the global hold) finish.
func (m *MemoryNode) Release(unit string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.held, unit)
	close(m.release)
	m.release = make(chan struct{})
}

// ReleaseAll drops every hold.
func (m *MemoryNode) ReleaseAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.held = map[string]bool{}
	close(m.release)
	m.release = make(chan struct{})
}

// SetUnitFailing makes start/restart jobs of unit end "failed".
func (m *MemoryNode) SetUnitFailing(unit string, failing bool) error {
	return m.withUnit(unit, func(u *memUnit) { u.spec.FailStart = failing })
}

// SetUnitExitsAfterStart makes unit fail right after its start job reported "done".
func (m *MemoryNode) SetUnitExitsAfterStart(unit string, exits bool) error {
	return m.withUnit(unit, func(u *memUnit) { u.spec.ExitAfterStart = exits })
}

// SetJobResult forces the result of the following jobs on unit ("" = normal results), e.g.
// "timeout" or "dependency".
func (m *MemoryNode) SetJobResult(unit, result string) error {
	return m.withUnit(unit, func(u *memUnit) { u.result = result })
}

func (m *MemoryNode) withUnit(unit string, f func(*memUnit)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.units[unit]
	if u == nil {
		return fmt.Errorf("memory node %s: no unit %s", m.name, unit)
	}
	f(u)
	return nil
}

// AddUnit loads a new unit (systemd UnitNew).
func (m *MemoryNode) AddUnit(spec UnitSpec) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.addUnitLocked(spec, false)
	if m.sess != nil {
		m.sess.UnitNew(spec.Name)
		if u.active != "inactive" || u.sub != "dead" {
			m.emitStateLocked(u)
		}
	}
}

// RemoveUnit unloads a unit (systemd UnitRemoved).
func (m *MemoryNode) RemoveUnit(unit string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.units[unit]; !ok {
		return
	}
	delete(m.units, unit)
	if m.sess != nil {
		m.sess.UnitRemoved(unit)
	}
}

// SetUnitState changes a unit's state as if it changed on its own (e.g. a crash).
func (m *MemoryNode) SetUnitState(unit, active, sub string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.units[unit]
	if u == nil {
		return fmt.Errorf("memory node %s: no unit %s", m.name, unit)
	}
	m.setStateLocked(u, active, sub)
	return nil
}

// UnitState returns a unit's active and sub state ("", "" when unknown).
func (m *MemoryNode) UnitState(unit string) (string, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if u := m.units[unit]; u != nil {
		return u.active, u.sub
	}
	return "", ""
}

// Calls reports how often a backend method was called (by BlueChi method name).
func (m *MemoryNode) Calls(method string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls[method]
}

func (m *MemoryNode) setStateLocked(u *memUnit, active, sub string) {
	if u.active == active && u.sub == sub {
		return
	}
	u.active, u.sub = active, sub
	m.emitStateLocked(u)
}

func (m *MemoryNode) emitStateLocked(u *memUnit) {
	if m.sess == nil {
		return
	}
	m.sess.UnitPropertiesChanged(u.spec.Name, systemdUnitIface, map[string]dbus.Variant{
		"ActiveState": dbus.MakeVariant(u.active),
		"SubState":    dbus.MakeVariant(u.sub),
	})
}

// Run implements Backend.
func (m *MemoryNode) Run(ctx context.Context, link Link) {
	m.mu.Lock()
	m.link = link
	m.syncOnlineLocked()
	m.mu.Unlock()
	tick := time.NewTicker(2 * time.Second) // BlueChi's default HeartbeatInterval
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			m.link = nil
			m.syncOnlineLocked()
			m.mu.Unlock()
			return
		case <-tick.C:
			m.mu.Lock()
			if m.sess != nil {
				m.sess.Heartbeat()
			}
			m.mu.Unlock()
		}
	}
}

func offlineErr() error { return dbusErr(ErrOffline, "Node is offline") }

func unitPath(name string) dbus.ObjectPath {
	return dbus.ObjectPath("/org/freedesktop/systemd1/unit/" + PathEncode(name))
}

func sysJobPath(id uint32) dbus.ObjectPath {
	return dbus.ObjectPath(fmt.Sprintf("/org/freedesktop/systemd1/job/%d", id))
}

// StartJob implements Backend.
func (m *MemoryNode) StartJob(ctx context.Context, method, unit, mode string, id uint32) error {
	m.delay(ctx, method)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[method]++
	if m.sess == nil {
		return offlineErr()
	}
	typ := jobTypes[method]
	u := m.units[unit]
	if u == nil || u.load != "loaded" {
		if typ == "start" || typ == "restart" {
			return dbusErr(ErrNoSuchUnit, fmt.Sprintf("Unit %s not found.", unit))
		}
		return dbusErr(ErrNoSuchUnit, fmt.Sprintf("Unit %s not loaded.", unit))
	}
	switch mode {
	case "replace", "fail", "isolate", "ignore-dependencies", "ignore-requirements", "flush", "replace-irreversibly", "triggering", "restart-dependencies":
	default:
		return dbusErr(ErrInvalidArgs, fmt.Sprintf("Job mode %s invalid", mode))
	}
	if j := u.job; j != nil && !j.finished {
		if j.typ == typ {
			j.bcIDs = append(j.bcIDs, id) // systemd merges the job; both BlueChi jobs follow it
			m.jobs[id] = j
			return nil
		}
		if mode == "fail" {
			return dbusErr("org.freedesktop.systemd1.TransactionIsDestructive",
				fmt.Sprintf("Transaction for %s/%s is destructive (%s has '%s' job queued, but '%s' is included in transaction).",
					unit, typ, unit, j.typ, typ))
		}
		m.finishLocked(j, ResultCanceled, true)
	}
	m.nextSysID++
	j := &memJob{sysID: m.nextSysID, typ: typ, unit: u, bcIDs: []uint32{id}, cancel: make(chan struct{}),
		before: [2]string{u.active, u.sub}}
	u.job = j
	m.jobs[id] = j
	go m.runJob(j, m.gen, m.abandon)
	return nil
}

func (m *MemoryNode) heldLocked(unit string) bool { return m.held[""] || m.held[unit] }

func (m *MemoryNode) runJob(j *memJob, gen uint64, abandon chan struct{}) {
	m.mu.Lock()
	if j.finished || m.gen != gen {
		m.mu.Unlock()
		return
	}
	for _, id := range j.bcIDs {
		m.sess.JobState(id, "running")
	}
	u := j.unit
	switch j.typ {
	case "start":
		if u.active != "active" {
			m.setStateLocked(u, "activating", "start")
		}
	case "stop":
		if u.active != "inactive" && u.active != "failed" {
			m.setStateLocked(u, "deactivating", "stop-sigterm")
		}
	case "restart":
		if u.active == "active" {
			m.setStateLocked(u, "deactivating", "stop-sigterm")
		}
		m.setStateLocked(u, "activating", "start")
	case "reload":
		if u.active == "active" {
			m.setStateLocked(u, "reloading", "reload")
		}
	}
	delay := m.jobDelay
	m.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-j.cancel:
			t.Stop()
			return
		case <-abandon:
			t.Stop()
			return
		}
	}
	for {
		m.mu.Lock()
		if j.finished || m.gen != gen {
			m.mu.Unlock()
			return
		}
		if !m.heldLocked(u.spec.Name) {
			break // keep the lock
		}
		rel := m.release
		m.mu.Unlock()
		select {
		case <-rel:
		case <-j.cancel:
			return
		case <-abandon:
			return
		}
	}
	defer m.mu.Unlock()
	result := ResultDone
	switch j.typ {
	case "start", "restart":
		switch {
		case u.result != "":
			result = u.result
			m.setStateLocked(u, "failed", "failed")
		case u.spec.FailStart:
			result = ResultFailed
			u.mainCode = 1
			m.setStateLocked(u, "failed", "failed")
		default:
			m.setStateLocked(u, "active", "running")
		}
	case "stop":
		if u.result != "" {
			result = u.result
		}
		m.setStateLocked(u, "inactive", "dead")
	case "reload":
		if u.result != "" {
			result = u.result
		}
		if u.active == "reloading" {
			m.setStateLocked(u, "active", "running")
		}
	}
	m.finishLocked(j, result, false)
	if result == ResultDone && (j.typ == "start" || j.typ == "restart") && u.spec.ExitAfterStart {
		u.mainCode = 1
		m.setStateLocked(u, "failed", "failed")
	}
	if u.transient && (u.active == "inactive" || u.active == "failed") && result == ResultDone {
		m.gcTransientLocked(u)
	}
}

// finishLocked ends a job: JobDone for each BlueChi job following it.
func (m *MemoryNode) finishLocked(j *memJob, result string, restore bool) {
	if j.finished {
		return
	}
	j.finished = true
	close(j.cancel)
	if j.unit.job == j {
		j.unit.job = nil
	}
	if restore {
		m.setStateLocked(j.unit, j.before[0], j.before[1])
	}
	for _, id := range j.bcIDs {
		delete(m.jobs, id)
		if m.sess != nil {
			m.sess.JobDone(id, result)
		}
	}
}

// CancelJob implements Backend.
func (m *MemoryNode) CancelJob(ctx context.Context, id uint32) error {
	m.delay(ctx, "JobCancel")
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls["JobCancel"]++
	if m.sess == nil {
		return offlineErr()
	}
	j := m.jobs[id]
	if j == nil || j.finished {
		return dbusErr(ErrFailed, fmt.Sprintf("No job with ID '%d' found", id))
	}
	m.finishLocked(j, ResultCanceled, true)
	return nil
}

func (m *MemoryNode) gcTransientLocked(u *memUnit) {
	delete(m.units, u.spec.Name)
	if m.sess != nil {
		m.sess.UnitRemoved(u.spec.Name)
	}
}

// Call implements Backend.
func (m *MemoryNode) Call(ctx context.Context, method string, args []any) ([]any, error) {
	m.delay(ctx, method)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[method]++
	if m.sess == nil {
		return nil, offlineErr()
	}
	noUnit := func(name string) error {
		return dbusErr(ErrNoSuchUnit, fmt.Sprintf("Unit %s not loaded.", name))
	}
	str := func(i int) string {
		if i < len(args) {
			s, _ := args[i].(string)
			return s
		}
		return ""
	}
	switch method {
	case "ListUnits":
		out := []UnitInfo{}
		for _, name := range sortedKeys(m.units) {
			u := m.units[name]
			info := UnitInfo{Name: name, Description: u.spec.Description, LoadState: u.load,
				ActiveState: u.active, SubState: u.sub, Path: unitPath(name), JobPath: "/"}
			if u.job != nil && !u.job.finished {
				info.JobID = u.job.sysID
				info.JobType = u.job.typ
				info.JobPath = sysJobPath(u.job.sysID)
			}
			out = append(out, info)
		}
		return []any{out}, nil
	case "ListUnitFiles":
		out := []UnitFileInfo{}
		for _, name := range sortedKeys(m.units) {
			if u := m.units[name]; !u.transient {
				out = append(out, UnitFileInfo{Path: "/usr/lib/systemd/system/" + name, State: u.fileState})
			}
		}
		return []any{out}, nil
	case "GetUnitFileState":
		u := m.units[str(0)]
		if u == nil || u.transient {
			return nil, dbusErr("org.freedesktop.DBus.Error.FileNotFound", "No such file or directory")
		}
		return []any{u.fileState}, nil
	case "StartTransientUnit":
		var name, mode string
		var props []Property
		var aux []AuxUnit
		if err := dbus.Store(args, &name, &mode, &props, &aux); err != nil {
			return nil, dbusErr(ErrInvalidArgs, err.Error())
		}
		if u := m.units[name]; u != nil {
			return nil, dbusErr(ErrUnitExists, fmt.Sprintf("Unit %s was already loaded or has a fragment file.", name))
		}
		if !strings.Contains(name, ".") {
			return nil, dbusErr(ErrInvalidArgs, fmt.Sprintf("Invalid unit name or type: %s", name))
		}
		u := m.addUnitLocked(UnitSpec{Name: name, Description: name}, true)
		oneshot, remain := false, false
		for _, p := range props {
			u.props[p.Name] = p.Value
			switch p.Name {
			case "Type":
				oneshot = p.Value.Value() == "oneshot"
			case "RemainAfterExit":
				remain, _ = p.Value.Value().(bool)
			case "Description":
				if s, ok := p.Value.Value().(string); ok {
					u.spec.Description = s
				}
			}
		}
		m.sess.UnitNew(name)
		m.nextSysID++
		path := sysJobPath(m.nextSysID)
		gen, abandon := m.gen, m.abandon
		runTime := m.transientDelay
		if runTime <= 0 {
			runTime = time.Millisecond
		}
		go func() {
			t := time.NewTimer(runTime)
			defer t.Stop()
			select {
			case <-abandon:
				return
			case <-t.C:
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.gen != gen || m.units[name] != u {
				return
			}
			m.setStateLocked(u, "activating", "start")
			switch {
			case oneshot && remain:
				m.setStateLocked(u, "active", "exited")
			case oneshot:
				m.setStateLocked(u, "inactive", "dead")
				m.gcTransientLocked(u)
			default:
				m.setStateLocked(u, "active", "running")
			}
		}()
		return []any{path}, nil
	case "FreezeUnit", "ThawUnit":
		u := m.units[str(0)]
		if u == nil {
			return nil, noUnit(str(0))
		}
		if u.active != "active" {
			return nil, dbusErr("org.freedesktop.systemd1.UnitInactive", fmt.Sprintf("Unit %s is not active.", str(0)))
		}
		if method == "FreezeUnit" {
			u.freezer = "frozen"
		} else {
			u.freezer = "running"
		}
		return nil, nil
	case "ResetFailed":
		for _, name := range sortedKeys(m.units) {
			if u := m.units[name]; u.active == "failed" {
				m.setStateLocked(u, "inactive", "dead")
			}
		}
		return nil, nil
	case "ResetFailedUnit":
		u := m.units[str(0)]
		if u == nil {
			return nil, noUnit(str(0))
		}
		if u.active == "failed" {
			m.setStateLocked(u, "inactive", "dead")
		}
		return nil, nil
	case "GetUnitProperties":
		return []any{m.unitPropsLocked(str(0), str(1))}, nil
	case "GetUnitProperty":
		props := m.unitPropsLocked(str(0), str(1))
		v, ok := props[str(2)]
		if !ok {
			return nil, dbusErr(ErrUnknownProperty, "Unknown property or interface.")
		}
		return []any{v}, nil
	case "SetUnitProperties":
		var name string
		var runtime bool
		var props []Property
		if err := dbus.Store(args, &name, &runtime, &props); err != nil {
			return nil, dbusErr(ErrInvalidArgs, err.Error())
		}
		u := m.units[name]
		if u == nil {
			return nil, noUnit(name)
		}
		for _, p := range props {
			u.props[p.Name] = p.Value
		}
		return nil, nil
	case "EnableUnitFiles", "DisableUnitFiles":
		var files []string
		if err := dbus.Store(args[:1], &files); err != nil {
			return nil, dbusErr(ErrInvalidArgs, err.Error())
		}
		changes := []UnitFileChange{}
		for _, f := range files {
			name := f[strings.LastIndex(f, "/")+1:]
			u := m.units[name]
			if u == nil || u.transient {
				return nil, dbusErr(ErrNoSuchUnit, fmt.Sprintf("Unit file %s does not exist.", name))
			}
			link := "/etc/systemd/system/multi-user.target.wants/" + name
			if method == "EnableUnitFiles" {
				if u.fileState != "enabled" && u.fileState != "static" {
					u.fileState = "enabled"
					changes = append(changes, UnitFileChange{"symlink", link, "/usr/lib/systemd/system/" + name})
				}
			} else if u.fileState == "enabled" {
				u.fileState = "disabled"
				changes = append(changes, UnitFileChange{"unlink", link, ""})
			}
		}
		if method == "EnableUnitFiles" {
			return []any{true, changes}, nil
		}
		return []any{changes}, nil
	case "Reload":
		return nil, nil
	case "KillUnit":
		u := m.units[str(0)]
		if u == nil {
			return nil, noUnit(str(0))
		}
		return nil, nil
	case "SetLogLevel":
		m.logLevel = str(0)
		return nil, nil
	case "GetDefaultTarget":
		return []any{m.defaultTarget}, nil
	case "SetDefaultTarget":
		target := str(0)
		if m.units[target] == nil {
			return nil, dbusErr(ErrNoSuchUnit, fmt.Sprintf("Unit file %s does not exist.", target))
		}
		m.defaultTarget = target
		return []any{[]UnitFileChange{{"symlink", "/etc/systemd/system/default.target", "/usr/lib/systemd/system/" + target}}}, nil
	}
	return nil, dbusErr(ErrUnknownMethod, fmt.Sprintf("Unknown method %s.", method))
}

// unitPropsLocked mimics Properties.GetAll on systemd's unit object (an unknown unit reads as
// LoadState "not-found", as systemd loads it on access).
func (m *MemoryNode) unitPropsLocked(name, iface string) map[string]dbus.Variant {
	u := m.units[name]
	props := map[string]dbus.Variant{}
	unitProps := func() {
		if u == nil {
			props["Id"] = dbus.MakeVariant(name)
			props["LoadState"] = dbus.MakeVariant("not-found")
			props["ActiveState"] = dbus.MakeVariant("inactive")
			props["SubState"] = dbus.MakeVariant("dead")
			props["Description"] = dbus.MakeVariant(name)
			return
		}
		props["Id"] = dbus.MakeVariant(name)
		props["Names"] = dbus.MakeVariant([]string{name})
		props["Description"] = dbus.MakeVariant(u.spec.Description)
		props["LoadState"] = dbus.MakeVariant(u.load)
		props["ActiveState"] = dbus.MakeVariant(u.active)
		props["SubState"] = dbus.MakeVariant(u.sub)
		props["FreezerState"] = dbus.MakeVariant(u.freezer)
		props["UnitFileState"] = dbus.MakeVariant(u.fileState)
		props["Transient"] = dbus.MakeVariant(u.transient)
		type jobRef struct {
			ID   uint32
			Path dbus.ObjectPath
		}
		if u.job != nil && !u.job.finished {
			props["Job"] = dbus.MakeVariant(jobRef{u.job.sysID, sysJobPath(u.job.sysID)})
		} else {
			props["Job"] = dbus.MakeVariant(jobRef{0, "/"})
		}
	}
	serviceProps := func() {
		result := "success"
		var code int32
		if u != nil && u.active == "failed" {
			result = "exit-code"
			code = u.mainCode
		}
		props["Result"] = dbus.MakeVariant(result)
		props["ExecMainStatus"] = dbus.MakeVariant(code)
		props["MainPID"] = dbus.MakeVariant(uint32(0))
		props["Type"] = dbus.MakeVariant("simple")
		if u != nil {
			for k, v := range u.props {
				props[k] = v
			}
		}
	}
	switch iface {
	case systemdUnitIface:
		unitProps()
	case "org.freedesktop.systemd1.Service":
		serviceProps()
	case "":
		unitProps()
		serviceProps()
	}
	return props
}

// unitNames lists the loaded units (tests).
func (m *MemoryNode) unitNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := sortedKeys(m.units)
	sort.Strings(names)
	return names
}
