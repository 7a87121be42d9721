package controller

import (
	"context"
	"time"
)

// Agent is the org.eclipse.bluechi.Agent object a BlueChi agent serves on its node's local bus
// (bus name org.eclipse.bluechi.Agent). Reach it with a Client connected to that bus
// (e.g. New(ctx, WithAddress(nodeBus))).
type Agent struct {
	c *Client
}

// Agent returns the agent object on the client's bus.
func (c *Client) Agent() *Agent { return &Agent{c: c} }

func (a *Agent) call(ctx context.Context, method string, args ...any) error {
	return a.c.conn.Object(AgentBusName, AgentPath).CallWithContext(ctx, method, 0, args...).Err
}

// CreateProxy asks the agent to create a proxy for unit on node, requested by localService.
func (a *Agent) CreateProxy(ctx context.Context, localService, node, unit string) error {
	return wrap(a.call(ctx, methodCreateProxy, localService, node, unit), "agent: create proxy %s -> %s/%s", localService, node, unit)
}

// RemoveProxy removes a proxy created with CreateProxy.
func (a *Agent) RemoveProxy(ctx context.Context, localService, node, unit string) error {
	return wrap(a.call(ctx, methodRemoveProxy, localService, node, unit), "agent: remove proxy %s -> %s/%s", localService, node, unit)
}

// SwitchController makes the agent connect to another controller (sd-bus address).
func (a *Agent) SwitchController(ctx context.Context, address string) error {
	return wrap(a.call(ctx, methodSwitchController, address), "agent: switch controller to %s", address)
}

func agentProp[T any](ctx context.Context, a *Agent, name string) (T, error) {
	v, err := storeProperty[T](ctx, a.c, AgentBusName, AgentPath, AgentInterface, name)
	return v, wrap(err, "agent: %s", name)
}

// Status is the agent's connection status to its controller (online | offline).
func (a *Agent) Status(ctx context.Context) (NodeStatus, error) {
	s, err := agentProp[string](ctx, a, PropStatus)
	return NodeStatus(s), err
}

// LogLevel is the agent's LogLevel property.
func (a *Agent) LogLevel(ctx context.Context) (string, error) {
	return agentProp[string](ctx, a, PropLogLevel)
}

// LogTarget is the agent's LogTarget property.
func (a *Agent) LogTarget(ctx context.Context) (string, error) {
	return agentProp[string](ctx, a, PropLogTarget)
}

// ControllerAddress is the address the agent connects to.
func (a *Agent) ControllerAddress(ctx context.Context) (string, error) {
	return agentProp[string](ctx, a, PropControllerAddress)
}

// DisconnectTimestamp is when the agent last lost its controller (zero if never).
func (a *Agent) DisconnectTimestamp(ctx context.Context) (time.Time, error) {
	return agentTime(ctx, a, PropDisconnectTimestamp)
}

// LastSeenTimestamp is the agent's last successful heartbeat to the controller.
func (a *Agent) LastSeenTimestamp(ctx context.Context) (time.Time, error) {
	return agentTime(ctx, a, PropLastSeenTimestamp)
}

func agentTime(ctx context.Context, a *Agent, name string) (time.Time, error) {
	us, err := agentProp[uint64](ctx, a, name)
	if err != nil || us == 0 {
		return time.Time{}, err
	}
	return time.UnixMicro(int64(us)), nil
}

// DisconnectTimestampMonotonic is DisconnectTimestamp on the agent's monotonic clock.
func (a *Agent) DisconnectTimestampMonotonic(ctx context.Context) (time.Duration, error) {
	us, err := agentProp[uint64](ctx, a, PropDisconnectTimestampMono)
	return time.Duration(us) * time.Microsecond, err
}

// LastSeenTimestampMonotonic is LastSeenTimestamp on the agent's monotonic clock.
func (a *Agent) LastSeenTimestampMonotonic(ctx context.Context) (time.Duration, error) {
	us, err := agentProp[uint64](ctx, a, PropLastSeenTimestampMonotonic)
	return time.Duration(us) * time.Microsecond, err
}
