package controller

import "github.com/godbus/dbus/v5"

// Every D-Bus name the client uses lives here, so the wire contract can be read in one place.

// Bus names and object paths.
const (
	// BusName is the well-known name the BlueChi controller owns.
	BusName = "org.eclipse.bluechi"
	// AgentBusName is the well-known name a BlueChi agent owns on its node's local bus.
	AgentBusName = "org.eclipse.bluechi.Agent"

	// ControllerPath is the controller object.
	ControllerPath dbus.ObjectPath = "/org/eclipse/bluechi"
	// AgentPath is the agent object on the agent's local bus.
	AgentPath dbus.ObjectPath = "/org/eclipse/bluechi"
	// NodePathPrefix is the parent of node objects: NodePathPrefix + "/" + sd_bus_path_encode(name).
	NodePathPrefix dbus.ObjectPath = "/org/eclipse/bluechi/node"
	// JobPathPrefix is the parent of job objects (/org/eclipse/bluechi/job/<u32>).
	JobPathPrefix dbus.ObjectPath = "/org/eclipse/bluechi/job"
	// MonitorPathPrefix is the parent of monitor objects (/org/eclipse/bluechi/monitor/<u32>).
	MonitorPathPrefix dbus.ObjectPath = "/org/eclipse/bluechi/monitor"
)

// Interfaces.
const (
	ControllerInterface = "org.eclipse.bluechi.Controller"
	NodeInterface       = "org.eclipse.bluechi.Node"
	JobInterface        = "org.eclipse.bluechi.Job"
	MonitorInterface    = "org.eclipse.bluechi.Monitor"
	AgentInterface      = "org.eclipse.bluechi.Agent"

	PropertiesInterface                 = "org.freedesktop.DBus.Properties"
	DBusInterface                       = "org.freedesktop.DBus"
	DBusName                            = "org.freedesktop.DBus"
	DBusPath            dbus.ObjectPath = "/org/freedesktop/DBus"

	// SystemdUnitInterface etc. are the usual iface arguments of GetUnitProperties.
	SystemdUnitInterface    = "org.freedesktop.systemd1.Unit"
	SystemdServiceInterface = "org.freedesktop.systemd1.Service"
)

// Members (methods, signals, properties), fully qualified where godbus wants "iface.member".
const (
	// org.eclipse.bluechi.Controller
	methodListUnits      = ControllerInterface + ".ListUnits"
	methodListUnitFiles  = ControllerInterface + ".ListUnitFiles"
	methodListNodes      = ControllerInterface + ".ListNodes"
	methodGetNode        = ControllerInterface + ".GetNode"
	methodCreateMonitor  = ControllerInterface + ".CreateMonitor"
	methodEnableMetrics  = ControllerInterface + ".EnableMetrics"
	methodDisableMetrics = ControllerInterface + ".DisableMetrics"
	methodCtrlSetLogLvl  = ControllerInterface + ".SetLogLevel"
	SignalJobNew         = "JobNew"
	SignalJobRemoved     = "JobRemoved"
	signalJobNewFull     = ControllerInterface + "." + SignalJobNew
	signalJobRemovedFull = ControllerInterface + "." + SignalJobRemoved

	// org.eclipse.bluechi.Node
	methodStartUnit          = NodeInterface + ".StartUnit"
	methodStartTransientUnit = NodeInterface + ".StartTransientUnit"
	methodStopUnit           = NodeInterface + ".StopUnit"
	methodFreezeUnit         = NodeInterface + ".FreezeUnit"
	methodThawUnit           = NodeInterface + ".ThawUnit"
	methodReloadUnit         = NodeInterface + ".ReloadUnit"
	methodRestartUnit        = NodeInterface + ".RestartUnit"
	methodKillUnit           = NodeInterface + ".KillUnit"
	methodGetUnitProperties  = NodeInterface + ".GetUnitProperties"
	methodGetUnitProperty    = NodeInterface + ".GetUnitProperty"
	methodSetUnitProperties  = NodeInterface + ".SetUnitProperties"
	methodEnableUnitFiles    = NodeInterface + ".EnableUnitFiles"
	methodDisableUnitFiles   = NodeInterface + ".DisableUnitFiles"
	methodNodeListUnits      = NodeInterface + ".ListUnits"
	methodNodeListUnitFiles  = NodeInterface + ".ListUnitFiles"
	methodGetUnitFileState   = NodeInterface + ".GetUnitFileState"
	methodReload             = NodeInterface + ".Reload"
	methodNodeSetLogLevel    = NodeInterface + ".SetLogLevel"
	methodResetFailed        = NodeInterface + ".ResetFailed"
	methodResetFailedUnit    = NodeInterface + ".ResetFailedUnit"
	methodGetDefaultTarget   = NodeInterface + ".GetDefaultTarget"
	methodSetDefaultTarget   = NodeInterface + ".SetDefaultTarget"

	// org.eclipse.bluechi.Job
	methodJobCancel = JobInterface + ".Cancel"

	// org.eclipse.bluechi.Monitor
	methodMonitorClose          = MonitorInterface + ".Close"
	methodMonitorSubscribe      = MonitorInterface + ".Subscribe"
	methodMonitorUnsubscribe    = MonitorInterface + ".Unsubscribe"
	methodMonitorSubList        = MonitorInterface + ".SubscribeList"
	methodMonitorAddPeer        = MonitorInterface + ".AddPeer"
	methodMonitorRemovePeer     = MonitorInterface + ".RemovePeer"
	SignalUnitNew               = "UnitNew"
	SignalUnitRemoved           = "UnitRemoved"
	SignalUnitStateChanged      = "UnitStateChanged"
	SignalUnitPropertiesChanged = "UnitPropertiesChanged"
	SignalPeerRemoved           = "PeerRemoved"

	// org.eclipse.bluechi.Agent
	methodCreateProxy      = AgentInterface + ".CreateProxy"
	methodRemoveProxy      = AgentInterface + ".RemoveProxy"
	methodSwitchController = AgentInterface + ".SwitchController"

	// org.freedesktop.DBus.Properties
	methodPropertiesGet       = PropertiesInterface + ".Get"
	SignalPropertiesChanged   = "PropertiesChanged"
	signalPropertiesChangedFu = PropertiesInterface + "." + SignalPropertiesChanged

	// org.freedesktop.DBus
	SignalNameOwnerChanged     = "NameOwnerChanged"
	signalNameOwnerChangedFull = DBusInterface + "." + SignalNameOwnerChanged

	// Property names.
	PropStatus                     = "Status"
	PropName                       = "Name"
	PropPeerIP                     = "PeerIp"
	PropLastSeenTimestamp          = "LastSeenTimestamp"
	PropLastSeenTimestampMonotonic = "LastSeenTimestampMonotonic"
	PropLogLevel                   = "LogLevel"
	PropLogTarget                  = "LogTarget"
	PropJobID                      = "Id"
	PropJobNode                    = "Node"
	PropJobUnit                    = "Unit"
	PropJobType                    = "JobType"
	PropJobState                   = "State"
	PropDisconnectTimestamp        = "DisconnectTimestamp"
	PropDisconnectTimestampMono    = "DisconnectTimestampMonotonic"
	PropControllerAddress          = "ControllerAddress"
)

// D-Bus error names that MapError understands.
const (
	ErrorNameOffline        = "org.eclipse.bluechi.Offline"
	ErrorNameServiceUnknown = "org.freedesktop.DBus.Error.ServiceUnknown"
	ErrorNameNameHasNoOwner = "org.freedesktop.DBus.Error.NameHasNoOwner"
	ErrorNameAccessDenied   = "org.freedesktop.DBus.Error.AccessDenied"
	ErrorNameAuthFailed     = "org.freedesktop.DBus.Error.AuthFailed"
	ErrorNameNoReply        = "org.freedesktop.DBus.Error.NoReply"
	ErrorNameTimeout        = "org.freedesktop.DBus.Error.Timeout"
	ErrorNameTimedOut       = "org.freedesktop.DBus.Error.TimedOut"
	ErrorNameUnknownObject  = "org.freedesktop.DBus.Error.UnknownObject"
	ErrorNameUnknownMethod  = "org.freedesktop.DBus.Error.UnknownMethod"
	ErrorNameNoSuchUnit     = "org.freedesktop.systemd1.NoSuchUnit"
	ErrorNameUnitExists     = "org.freedesktop.systemd1.UnitExists"
	ErrorNameNoSuchJob      = "org.freedesktop.systemd1.NoSuchJob"
)

// systemBusPaths are tried in order when DBUS_SYSTEM_BUS_ADDRESS is unset (the list godbus uses).
var systemBusPaths = []string{"/var/run/dbus/system_bus_socket", "/run/dbus/system_bus_socket"}
