package deploy

import (
	"context"

	"github.com/godbus/dbus/v5"

	"github.com/qmorch/qmorch/controller"
)

// Controller is the part of the BlueChi API the engine uses. FromClient adapts a
// *controller.Client; unit tests use an in-memory fake.
type Controller interface {
	ListNodes(ctx context.Context) ([]controller.NodeInfo, error)
	GetNode(ctx context.Context, name string) (Node, error)
	CreateMonitor(ctx context.Context) (Monitor, error)
	// WatchNodeStatus delivers node status changes until stop is called or ctx ends.
	WatchNodeStatus(ctx context.Context) (<-chan controller.NodeStatusEvent, func())
}

// Node is one BlueChi node (a host node or its QM twin).
type Node interface {
	StartUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error)
	StopUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error)
	RestartUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error)
	Reload(ctx context.Context) error
	StartTransientUnit(ctx context.Context, name string, mode controller.JobMode,
		props []controller.Property, aux []controller.AuxUnit) (dbus.ObjectPath, error)
	GetUnitProperties(ctx context.Context, unit, iface string) (map[string]dbus.Variant, error)
	ResetFailedUnit(ctx context.Context, unit string) error
}

// Job is a BlueChi job. Wait ends on JobRemoved, on the node going offline
// (controller.ErrNodeOffline) and on ctx (controller.ErrTimeout on a deadline).
type Job interface {
	Wait(ctx context.Context) (controller.JobResult, error)
	Cancel(ctx context.Context) error
}

// Monitor is a BlueChi monitor; its events arrive on the connection that created it.
type Monitor interface {
	Subscribe(ctx context.Context, node, unit string) (uint32, error)
	Unsubscribe(ctx context.Context, id uint32) error
	Close(ctx context.Context) error
	Events() <-chan controller.Event
}

// FromClient adapts the typed BlueChi client to Controller.
func FromClient(c *controller.Client) Controller { return clientAdapter{c} }

type clientAdapter struct{ c *controller.Client }

func (a clientAdapter) ListNodes(ctx context.Context) ([]controller.NodeInfo, error) {
	return a.c.ListNodes(ctx)
}

func (a clientAdapter) GetNode(ctx context.Context, name string) (Node, error) {
	n, err := a.c.GetNode(ctx, name)
	if err != nil {
		return nil, err
	}
	return nodeAdapter{n}, nil
}

func (a clientAdapter) CreateMonitor(ctx context.Context) (Monitor, error) {
	m, err := a.c.CreateMonitor(ctx)
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (a clientAdapter) WatchNodeStatus(ctx context.Context) (<-chan controller.NodeStatusEvent, func()) {
	return a.c.WatchNodeStatus(ctx)
}

// nodeAdapter returns the Job interface instead of *controller.Job (and never a typed nil).
type nodeAdapter struct{ *controller.Node }

func jobOrNil(j *controller.Job, err error) (Job, error) {
	if err != nil {
		return nil, err
	}
	return j, nil
}

func (n nodeAdapter) StartUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error) {
	return jobOrNil(n.Node.StartUnit(ctx, unit, mode))
}

func (n nodeAdapter) StopUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error) {
	return jobOrNil(n.Node.StopUnit(ctx, unit, mode))
}

func (n nodeAdapter) RestartUnit(ctx context.Context, unit string, mode controller.JobMode) (Job, error) {
	return jobOrNil(n.Node.RestartUnit(ctx, unit, mode))
}
