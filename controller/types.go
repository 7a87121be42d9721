package controller

import "github.com/godbus/dbus/v5"

// One Go struct per D-Bus struct signature; field order is the wire order (see signature_test.go).

// NodeStatus is a node's connection state as BlueChi reports it.
type NodeStatus string

const (
	NodeOnline  NodeStatus = "online"
	NodeOffline NodeStatus = "offline"
)

// NodeInfo is one entry of Controller.ListNodes: (soss).
type NodeInfo struct {
	Name   string
	Path   dbus.ObjectPath
	Status NodeStatus
	PeerIP string // "" when offline; an IPv4-mapped IPv6 string on real installs
}

// UnitInfo is one unit as systemd's ListUnits returns it: (ssssssouso).
type UnitInfo struct {
	Name        string
	Description string
	LoadState   string
	ActiveState string
	SubState    string
	Following   string
	Path        dbus.ObjectPath
	JobID       uint32
	JobType     string
	JobPath     dbus.ObjectPath
}

// UnitFileInfo is one unit file: (ss).
type UnitFileInfo struct {
	Path             string
	EnablementStatus string
}

// Property is a systemd property assignment for StartTransientUnit/SetUnitProperties: (sv).
// Values use systemd's types (ExecStart is a(sasb), RemainAfterExit is b, ...).
type Property struct {
	Name  string
	Value dbus.Variant
}

// AuxUnit is an auxiliary unit of StartTransientUnit: (sa(sv)).
type AuxUnit struct {
	Name  string
	Props []Property
}

// UnitFileChange is one change made by Enable/DisableUnitFiles or SetDefaultTarget: (sss).
type UnitFileChange struct {
	Type   string // symlink | unlink
	Path   string // file name of the symlink
	Source string // destination of the symlink
}

// JobMode is systemd's job mode; BlueChi passes it unchecked.
type JobMode string

const (
	JobReplace             JobMode = "replace"
	JobFail                JobMode = "fail"
	JobIsolate             JobMode = "isolate"
	JobIgnoreDependencies  JobMode = "ignore-dependencies"
	JobIgnoreRequirements  JobMode = "ignore-requirements"
	JobReplaceIrreversibly JobMode = "replace-irreversibly"
	JobFlush               JobMode = "flush"
)

// JobResult is the result string of JobRemoved (systemd's job results).
type JobResult string

const (
	JobDone        JobResult = "done"
	JobCanceled    JobResult = "canceled"
	JobTimeout     JobResult = "timeout"
	JobFailed      JobResult = "failed"
	JobDependency  JobResult = "dependency"
	JobSkipped     JobResult = "skipped"
	JobInvalid     JobResult = "invalid"
	JobAssert      JobResult = "assert"
	JobUnsupported JobResult = "unsupported"
	JobCollected   JobResult = "collected"
	JobOnce        JobResult = "once"
	JobFrozen      JobResult = "frozen"
	// JobCancelledShutdown is what BlueChi reports for pending jobs when the controller shuts down.
	JobCancelledShutdown JobResult = "cancelled due to shutdown"
)

// Success reports whether the job ran to completion. "done" does not mean the unit is healthy
// (a service that exits at once still reports done): confirm with ActiveState/SubState.
func (r JobResult) Success() bool { return r == JobDone }

// EventKind names a Monitor signal.
type EventKind string

const (
	EventUnitNew               EventKind = "UnitNew"
	EventUnitRemoved           EventKind = "UnitRemoved"
	EventUnitStateChanged      EventKind = "UnitStateChanged"
	EventUnitPropertiesChanged EventKind = "UnitPropertiesChanged"
	EventPeerRemoved           EventKind = "PeerRemoved"
	// EventOverflow is synthesised by the client (not a BlueChi signal): the consumer was too slow
	// and Event.Dropped events were discarded before this one. Re-read state if it matters.
	EventOverflow EventKind = "Overflow"
)

// Event is one Monitor signal. Fields a signal does not carry are empty.
type Event struct {
	Kind        EventKind
	Node        string
	Unit        string
	ActiveState string
	SubState    string
	Reason      string // "real" | "virtual" (UnitNew/UnitRemoved/UnitStateChanged); the reason of PeerRemoved
	Iface       string // UnitPropertiesChanged
	Props       map[string]dbus.Variant
	Dropped     uint64 // EventOverflow only: how many events were discarded
}

// NodeStatusEvent is a change of a node's Status property.
type NodeStatusEvent struct {
	Node   string
	Path   dbus.ObjectPath
	Status NodeStatus
}

// JobEventKind tells JobNew from JobRemoved.
type JobEventKind string

const (
	JobEventNew     JobEventKind = "JobNew"
	JobEventRemoved JobEventKind = "JobRemoved"
)

// JobEvent is a Controller.JobNew or Controller.JobRemoved signal (see Client.WatchJobs).
type JobEvent struct {
	Kind   JobEventKind
	ID     uint32
	Path   dbus.ObjectPath
	Node   string    // JobRemoved only
	Unit   string    // JobRemoved only
	Result JobResult // JobRemoved only
}
