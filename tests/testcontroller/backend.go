package testcontroller

import (
	"context"

	"github.com/godbus/dbus/v5"
)

// Backend is one node's systemd as seen through a BlueChi agent. The controller calls its methods
// from goroutines of its own (never from the event loop), so they may block; they must honour ctx.
// (Exception: the in-memory backend's calls that it reports as instant run on the loop.)
type Backend interface {
	// Run keeps the node connected until ctx ends. Each time the node comes online it calls
	// link.Connect and reports through the returned Session until it calls Session.Close (the
	// node went offline). Run returns when ctx ends, after closing the current session.
	Run(ctx context.Context, link Link)
	// Call runs a Node method that BlueChi passes (nearly) straight to systemd. method is the
	// BlueChi method name (see nodeMethods), args the decoded D-Bus arguments; it returns the
	// reply body. Errors of type dbus.Error are passed to the client unchanged.
	Call(ctx context.Context, method string, args []any) ([]any, error)
	// StartJob runs StartUnit, StopUnit, RestartUnit or ReloadUnit for BlueChi job id. It
	// returns once systemd accepted (or refused) the job; the outcome comes as
	// Session.JobState and Session.JobDone with the same id.
	StartJob(ctx context.Context, method, unit, mode string, id uint32) error
	// CancelJob cancels the systemd job behind BlueChi job id; the outcome comes as JobDone.
	CancelJob(ctx context.Context, id uint32) error
}

// Link is how a backend reports that its node came online.
type Link interface {
	// Connect marks the node online with the units systemd has loaded right now and returns the
	// session through which the backend reports until the node goes offline.
	Connect(peerIP string, units []UnitState) Session
}

// Session is one connection of a node (one agent registration). Every method is non-blocking and
// safe to call from any goroutine; calls after Close are ignored.
type Session interface {
	Heartbeat()
	JobState(id uint32, state string) // waiting | running
	JobDone(id uint32, result string) // systemd's result string
	UnitNew(unit string)
	UnitRemoved(unit string)
	// UnitPropertiesChanged forwards systemd's PropertiesChanged for a unit object;
	// for org.freedesktop.systemd1.Unit, ActiveState/SubState drive UnitStateChanged.
	UnitPropertiesChanged(unit, iface string, changed map[string]dbus.Variant)
	// Close marks the node offline (the agent's connection ended).
	Close()
}

// UnitState is a loaded unit and its state, as systemd's ListUnits reports it.
type UnitState struct {
	Name, ActiveState, SubState string
}

// methodSpec describes one Node method: its D-Bus in and out signatures.
type methodSpec struct {
	in, out string
	job     bool // creates a BlueChi job
}

// nodeMethods is org.eclipse.bluechi.Node (see Node.xml and BlueChi's node.c vtable).
var nodeMethods = map[string]methodSpec{
	"ListUnits":          {"", "a(ssssssouso)", false},
	"ListUnitFiles":      {"", "a(ss)", false},
	"GetUnitFileState":   {"s", "s", false},
	"StartUnit":          {"ss", "o", true},
	"StartTransientUnit": {"ssa(sv)a(sa(sv))", "o", false},
	"StopUnit":           {"ss", "o", true},
	"FreezeUnit":         {"s", "", false},
	"ThawUnit":           {"s", "", false},
	"RestartUnit":        {"ss", "o", true},
	"ReloadUnit":         {"ss", "o", true},
	"ResetFailed":        {"", "", false},
	"ResetFailedUnit":    {"s", "", false},
	"GetUnitProperties":  {"ss", "a{sv}", false},
	"GetUnitProperty":    {"sss", "v", false},
	"SetUnitProperties":  {"sba(sv)", "", false},
	"EnableUnitFiles":    {"asbb", "ba(sss)", false},
	"DisableUnitFiles":   {"asb", "a(sss)", false},
	"Reload":             {"", "", false},
	"KillUnit":           {"ssi", "", false},
	"SetLogLevel":        {"s", "", false},
	"GetDefaultTarget":   {"", "s", false},
	"SetDefaultTarget":   {"sb", "a(sss)", false},
}

// jobTypes maps the job methods to BlueChi's lowercase job types.
var jobTypes = map[string]string{
	"StartUnit":   "start",
	"StopUnit":    "stop",
	"RestartUnit": "restart",
	"ReloadUnit":  "reload",
}

// Property is a systemd (sv) pair.
type Property struct {
	Name  string
	Value dbus.Variant
}

// AuxUnit is an (sa(sv)) auxiliary unit of StartTransientUnit.
type AuxUnit struct {
	Name  string
	Props []Property
}

// UnitFileChange is an (sss) change of EnableUnitFiles and friends.
type UnitFileChange struct {
	Type, Path, Source string
}

// UnitInfo is one (ssssssouso) entry of ListUnits.
type UnitInfo struct {
	Name, Description, LoadState, ActiveState, SubState, Following string
	Path                                                           dbus.ObjectPath
	JobID                                                          uint32
	JobType                                                        string
	JobPath                                                        dbus.ObjectPath
}

// UnitFileInfo is one (ss) entry of ListUnitFiles.
type UnitFileInfo struct {
	Path, State string
}

func dbusErr(name, msg string) dbus.Error {
	return dbus.Error{Name: name, Body: []any{msg}}
}
