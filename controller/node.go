package controller

import (
	"context"
	"time"

	"github.com/godbus/dbus/v5"
)

// Node is a BlueChi node (org.eclipse.bluechi.Node). Get one with Client.GetNode or Client.NodeFor.
// Every method fails with ErrNodeOffline while the node is offline (property reads still work).
type Node struct {
	Name string
	Path dbus.ObjectPath
	c    *Client
}

// StartUnit starts unit on the node and returns the BlueChi job. Use JobReplace unless you need
// another systemd job mode.
func (n *Node) StartUnit(ctx context.Context, unit string, mode JobMode) (*Job, error) {
	return n.c.startJob(ctx, n, methodStartUnit, "start", unit, mode)
}

// StopUnit stops unit on the node and returns the BlueChi job.
func (n *Node) StopUnit(ctx context.Context, unit string, mode JobMode) (*Job, error) {
	return n.c.startJob(ctx, n, methodStopUnit, "stop", unit, mode)
}

// RestartUnit restarts unit on the node and returns the BlueChi job.
func (n *Node) RestartUnit(ctx context.Context, unit string, mode JobMode) (*Job, error) {
	return n.c.startJob(ctx, n, methodRestartUnit, "restart", unit, mode)
}

// ReloadUnit reloads unit on the node and returns the BlueChi job.
func (n *Node) ReloadUnit(ctx context.Context, unit string, mode JobMode) (*Job, error) {
	return n.c.startJob(ctx, n, methodReloadUnit, "reload", unit, mode)
}

// Reload is systemd's daemon-reload on the node.
func (n *Node) Reload(ctx context.Context) error {
	return wrap(n.c.call(ctx, n.Path, methodReload).Err, "node %s: daemon-reload", n.Name)
}

// StartTransientUnit passes the call to systemd's Manager.StartTransientUnit on the node. The
// returned path is systemd's job on that node, not a BlueChi job: no JobRemoved follows, so
// track the unit with a Monitor or its properties. aux may be nil.
func (n *Node) StartTransientUnit(ctx context.Context, name string, mode JobMode, props []Property, aux []AuxUnit) (dbus.ObjectPath, error) {
	if props == nil {
		props = []Property{}
	}
	if aux == nil {
		aux = []AuxUnit{}
	}
	var job dbus.ObjectPath
	err := n.c.call(ctx, n.Path, methodStartTransientUnit, name, string(mode), props, aux).Store(&job)
	if err != nil {
		return "", wrap(err, "node %s: start transient unit %s", n.Name, name)
	}
	return job, nil
}

// GetUnitProperties returns all properties of unit on the given systemd interface
// (e.g. SystemdUnitInterface, SystemdServiceInterface).
func (n *Node) GetUnitProperties(ctx context.Context, unit, iface string) (map[string]dbus.Variant, error) {
	var props map[string]dbus.Variant
	if err := n.c.call(ctx, n.Path, methodGetUnitProperties, unit, iface).Store(&props); err != nil {
		return nil, wrap(err, "node %s: properties of %s (%s)", n.Name, unit, iface)
	}
	return props, nil
}

// GetUnitProperty returns one property of unit.
func (n *Node) GetUnitProperty(ctx context.Context, unit, iface, name string) (dbus.Variant, error) {
	var v dbus.Variant
	if err := n.c.call(ctx, n.Path, methodGetUnitProperty, unit, iface, name).Store(&v); err != nil {
		return dbus.Variant{}, wrap(err, "node %s: property %s of %s (%s)", n.Name, name, unit, iface)
	}
	return v, nil
}

// SetUnitProperties sets properties of unit (runtime: only until reboot).
func (n *Node) SetUnitProperties(ctx context.Context, unit string, runtime bool, props []Property) error {
	if props == nil {
		props = []Property{}
	}
	return wrap(n.c.call(ctx, n.Path, methodSetUnitProperties, unit, runtime, props).Err,
		"node %s: set properties of %s", n.Name, unit)
}

// ListUnits lists the units systemd knows on the node.
func (n *Node) ListUnits(ctx context.Context) ([]UnitInfo, error) {
	var units []UnitInfo
	if err := n.c.call(ctx, n.Path, methodNodeListUnits).Store(&units); err != nil {
		return nil, wrap(err, "node %s: list units", n.Name)
	}
	return units, nil
}

// ListUnitFiles lists the unit files on the node.
func (n *Node) ListUnitFiles(ctx context.Context) ([]UnitFileInfo, error) {
	var files []UnitFileInfo
	if err := n.c.call(ctx, n.Path, methodNodeListUnitFiles).Store(&files); err != nil {
		return nil, wrap(err, "node %s: list unit files", n.Name)
	}
	return files, nil
}

// GetUnitFileState returns the enablement state of a unit file (enabled, disabled, static, ...).
func (n *Node) GetUnitFileState(ctx context.Context, unit string) (string, error) {
	var state string
	if err := n.c.call(ctx, n.Path, methodGetUnitFileState, unit).Store(&state); err != nil {
		return "", wrap(err, "node %s: unit file state of %s", n.Name, unit)
	}
	return state, nil
}

// EnableUnitFiles enables unit files; it does not reload systemd (call Reload).
// It returns whether the files carried install info, and the changes made.
func (n *Node) EnableUnitFiles(ctx context.Context, files []string, runtime, force bool) (bool, []UnitFileChange, error) {
	if files == nil {
		files = []string{}
	}
	var carries bool
	var changes []UnitFileChange
	if err := n.c.call(ctx, n.Path, methodEnableUnitFiles, files, runtime, force).Store(&carries, &changes); err != nil {
		return false, nil, wrap(err, "node %s: enable %v", n.Name, files)
	}
	return carries, changes, nil
}

// DisableUnitFiles disables unit files; it does not reload systemd (call Reload).
func (n *Node) DisableUnitFiles(ctx context.Context, files []string, runtime bool) ([]UnitFileChange, error) {
	if files == nil {
		files = []string{}
	}
	var changes []UnitFileChange
	if err := n.c.call(ctx, n.Path, methodDisableUnitFiles, files, runtime).Store(&changes); err != nil {
		return nil, wrap(err, "node %s: disable %v", n.Name, files)
	}
	return changes, nil
}

// KillUnit sends signal to the unit's processes; who is main | control | all.
func (n *Node) KillUnit(ctx context.Context, unit, who string, signal int32) error {
	return wrap(n.c.call(ctx, n.Path, methodKillUnit, unit, who, signal).Err,
		"node %s: kill %s (%s, signal %d)", n.Name, unit, who, signal)
}

// FreezeUnit freezes the unit's processes (cgroup freezer).
func (n *Node) FreezeUnit(ctx context.Context, unit string) error {
	return wrap(n.c.call(ctx, n.Path, methodFreezeUnit, unit).Err, "node %s: freeze %s", n.Name, unit)
}

// ThawUnit thaws a frozen unit.
func (n *Node) ThawUnit(ctx context.Context, unit string) error {
	return wrap(n.c.call(ctx, n.Path, methodThawUnit, unit).Err, "node %s: thaw %s", n.Name, unit)
}

// ResetFailed resets the failed state of all units on the node.
func (n *Node) ResetFailed(ctx context.Context) error {
	return wrap(n.c.call(ctx, n.Path, methodResetFailed).Err, "node %s: reset-failed", n.Name)
}

// ResetFailedUnit resets the failed state of one unit.
func (n *Node) ResetFailedUnit(ctx context.Context, unit string) error {
	return wrap(n.c.call(ctx, n.Path, methodResetFailedUnit, unit).Err, "node %s: reset-failed %s", n.Name, unit)
}

// GetDefaultTarget returns the node's default target.
func (n *Node) GetDefaultTarget(ctx context.Context) (string, error) {
	var target string
	if err := n.c.call(ctx, n.Path, methodGetDefaultTarget).Store(&target); err != nil {
		return "", wrap(err, "node %s: get default target", n.Name)
	}
	return target, nil
}

// SetDefaultTarget sets the node's default target.
func (n *Node) SetDefaultTarget(ctx context.Context, target string, force bool) ([]UnitFileChange, error) {
	var changes []UnitFileChange
	if err := n.c.call(ctx, n.Path, methodSetDefaultTarget, target, force).Store(&changes); err != nil {
		return nil, wrap(err, "node %s: set default target %s", n.Name, target)
	}
	return changes, nil
}

// SetLogLevel sets the agent's log level on the node.
func (n *Node) SetLogLevel(ctx context.Context, level string) error {
	return wrap(n.c.call(ctx, n.Path, methodNodeSetLogLevel, level).Err, "node %s: set log level %s", n.Name, level)
}

// Status is the node's Status property (readable while offline).
func (n *Node) Status(ctx context.Context) (NodeStatus, error) {
	s, err := storeProperty[string](ctx, n.c, BusName, n.Path, NodeInterface, PropStatus)
	if err != nil {
		return "", wrap(err, "node %s: status", n.Name)
	}
	return NodeStatus(s), nil
}

// PeerIP is the node's PeerIp property ("" while offline).
func (n *Node) PeerIP(ctx context.Context) (string, error) {
	s, err := storeProperty[string](ctx, n.c, BusName, n.Path, NodeInterface, PropPeerIP)
	return s, wrap(err, "node %s: peer IP", n.Name)
}

// LastSeen is the node's LastSeenTimestamp (µs, realtime) as a time; the zero time if never seen.
func (n *Node) LastSeen(ctx context.Context) (time.Time, error) {
	us, err := storeProperty[uint64](ctx, n.c, BusName, n.Path, NodeInterface, PropLastSeenTimestamp)
	if err != nil {
		return time.Time{}, wrap(err, "node %s: last seen", n.Name)
	}
	if us == 0 {
		return time.Time{}, nil
	}
	return time.UnixMicro(int64(us)), nil
}

// LastSeenMonotonic is the node's LastSeenTimestampMonotonic (µs, CLOCK_MONOTONIC of the controller).
func (n *Node) LastSeenMonotonic(ctx context.Context) (time.Duration, error) {
	us, err := storeProperty[uint64](ctx, n.c, BusName, n.Path, NodeInterface, PropLastSeenTimestampMonotonic)
	if err != nil {
		return 0, wrap(err, "node %s: last seen (monotonic)", n.Name)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// NodeName reads the node's Name property (normally equal to n.Name).
func (n *Node) NodeName(ctx context.Context) (string, error) {
	s, err := storeProperty[string](ctx, n.c, BusName, n.Path, NodeInterface, PropName)
	return s, wrap(err, "node %s: name", n.Name)
}
