// Package testcontroller is a BlueChi-compatible test double: it serves org.eclipse.bluechi on a
// D-Bus bus (usually a private dbus-daemon from tests/dbustest) with per-node backends, either an
// in-memory systemd (MemoryNode) or a real systemd reached over a D-Bus address (SystemdNode).
//
// It is an independent implementation of the behaviour described in shared/docs/bluechi.md and of
// BlueChi's controller/agent code; it deliberately does not import the product client package, so
// misreadings of the API in the client get caught by wire-level tests.
//
// All controller state lives in one event-loop goroutine (like BlueChi's sd-event loop): incoming
// method calls are taken from the connection in arrival order, backend calls run in their own
// goroutines and post their completion back into the loop, and every signal and reply is sent from
// the loop, so the order on the wire matches BlueChi's (JobNew before the StartUnit reply,
// JobRemoved after it).
package testcontroller

// D-Bus names served by the double (own copies; the product package has its own).
const (
	BusName = "org.eclipse.bluechi"

	ControllerPath    = "/org/eclipse/bluechi"
	NodePathPrefix    = "/org/eclipse/bluechi/node"
	JobPathPrefix     = "/org/eclipse/bluechi/job"
	MonitorPathPrefix = "/org/eclipse/bluechi/monitor"

	ControllerIface = "org.eclipse.bluechi.Controller"
	NodeIface       = "org.eclipse.bluechi.Node"
	JobIface        = "org.eclipse.bluechi.Job"
	MonitorIface    = "org.eclipse.bluechi.Monitor"

	propertiesIface   = "org.freedesktop.DBus.Properties"
	introspectIface   = "org.freedesktop.DBus.Introspectable"
	peerIface         = "org.freedesktop.DBus.Peer"
	systemdUnitIface  = "org.freedesktop.systemd1.Unit"
	systemdJobIface   = "org.freedesktop.systemd1.Job"
	systemdManagerIfc = "org.freedesktop.systemd1.Manager"

	// Error names used by BlueChi (sd-bus standard names plus BlueChi's own).
	ErrOffline             = "org.eclipse.bluechi.Offline"
	ErrFailed              = "org.freedesktop.DBus.Error.Failed"
	ErrInvalidArgs         = "org.freedesktop.DBus.Error.InvalidArgs"
	ErrServiceUnknown      = "org.freedesktop.DBus.Error.ServiceUnknown"
	ErrInconsistentMessage = "org.freedesktop.DBus.Error.InconsistentMessage"
	ErrUnknownObject       = "org.freedesktop.DBus.Error.UnknownObject"
	ErrUnknownMethod       = "org.freedesktop.DBus.Error.UnknownMethod"
	ErrUnknownInterface    = "org.freedesktop.DBus.Error.UnknownInterface"
	ErrUnknownProperty     = "org.freedesktop.DBus.Error.UnknownProperty"
	ErrPropertyReadOnly    = "org.freedesktop.DBus.Error.PropertyReadOnly"
	ErrNoSuchUnit          = "org.freedesktop.systemd1.NoSuchUnit"
	ErrUnitExists          = "org.freedesktop.systemd1.UnitExists"
	ErrNoSuchJob           = "org.freedesktop.systemd1.NoSuchJob"

	// Job results (systemd's strings) and BlueChi's shutdown result.
	ResultDone     = "done"
	ResultCanceled = "canceled"
	ResultFailed   = "failed"
	ResultTimeout  = "timeout"
	ResultShutdown = "cancelled due to shutdown"

	wildcard = "*"
)
