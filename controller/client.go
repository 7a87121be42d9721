// Package controller is a typed client for the BlueChi controller's public D-Bus API
// (org.eclipse.bluechi: Controller, Node, Job, Monitor; plus the agent's org.eclipse.bluechi.Agent).
//
// One Client owns one bus connection and one signal dispatcher goroutine. The dispatcher never
// blocks: job results go into per-job channels of capacity 1, monitor events and watch events
// into buffered channels with an overflow policy documented on Monitor and WatchNodeStatus.
package controller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/godbus/dbus/v5"
)

// Option configures New.
type Option func(*options)

type options struct {
	address string
	conn    *dbus.Conn
	logger  *slog.Logger
}

// WithAddress connects to the D-Bus address where org.eclipse.bluechi lives (auth and Hello
// are done by New), instead of the system bus.
func WithAddress(addr string) Option { return func(o *options) { o.address = addr } }

// WithConn uses an existing, already authenticated connection. Close does not close it.
// godbus's default signal handler may reorder signals under load; connections made by New use
// the sequential handler instead.
func WithConn(conn *dbus.Conn) Option { return func(o *options) { o.conn = conn } }

// WithLogger sets the logger for diagnostics (debug level); the client is silent by default.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

const (
	signalBuffer  = 1024 // godbus -> dispatcher (the sequential handler queues beyond this)
	earlyKeep     = 4096 // JobRemoved signals kept while job-creating calls are in flight
	watchBuffer   = 256  // per WatchNodeStatus / WatchJobs subscriber
	monitorBuffer = 4096 // per Monitor
)

// Client is a BlueChi controller client. It is safe for concurrent use.
type Client struct {
	conn    *dbus.Conn
	ownConn bool
	address string
	log     *slog.Logger
	sigCh   chan *dbus.Signal
	matches [][]dbus.MatchOption
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when the dispatcher has exited
	closing sync.Once

	mu          sync.Mutex
	dead        error                       // set once the dispatcher has stopped
	waiters     map[dbus.ObjectPath]*waiter // by job path
	inflight    int                         // job-creating calls in flight
	early       []jobRemoved                // JobRemoved seen while inflight > 0 and unclaimed
	statusGen   map[dbus.ObjectPath]uint64  // node path -> number of Status changes seen
	lastStatus  map[dbus.ObjectPath]NodeStatus
	monitors    map[dbus.ObjectPath]*Monitor
	statusSubs  map[uint64]*subscriber[NodeStatusEvent]
	jobSubs     map[uint64]*subscriber[JobEvent]
	jobNewMatch bool
	nextSub     uint64
}

// New connects to the bus (the system bus unless WithAddress or WithConn is given; godbus's
// rules apply, so DBUS_SYSTEM_BUS_ADDRESS is honoured), adds the JobRemoved and node
// PropertiesChanged match rules once, and starts the signal dispatcher.
// ctx bounds the connection setup only.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{
		log:        o.logger,
		sigCh:      make(chan *dbus.Signal, signalBuffer),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		waiters:    map[dbus.ObjectPath]*waiter{},
		statusGen:  map[dbus.ObjectPath]uint64{},
		lastStatus: map[dbus.ObjectPath]NodeStatus{},
		monitors:   map[dbus.ObjectPath]*Monitor{},
		statusSubs: map[uint64]*subscriber[NodeStatusEvent]{},
		jobSubs:    map[uint64]*subscriber[JobEvent]{},
	}
	if c.log == nil {
		c.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.conn != nil {
		c.conn = o.conn
	} else {
		addr := o.address
		if addr == "" {
			addr = systemBusAddress()
		}
		conn, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		c.conn, c.ownConn, c.address = conn, true, addr
	}
	c.conn.Signal(c.sigCh)
	c.matches = [][]dbus.MatchOption{
		{ // job results
			dbus.WithMatchSender(BusName),
			dbus.WithMatchObjectPath(ControllerPath),
			dbus.WithMatchInterface(ControllerInterface),
			dbus.WithMatchMember(SignalJobRemoved),
		},
		{ // node Status changes
			dbus.WithMatchSender(BusName),
			dbus.WithMatchPathNamespace(NodePathPrefix),
			dbus.WithMatchInterface(PropertiesInterface),
			dbus.WithMatchMember(SignalPropertiesChanged),
			dbus.WithMatchArg(0, NodeInterface),
		},
		{ // controller going away or restarting: pending jobs are lost
			dbus.WithMatchSender(DBusName),
			dbus.WithMatchObjectPath(DBusPath),
			dbus.WithMatchInterface(DBusInterface),
			dbus.WithMatchMember(SignalNameOwnerChanged),
			dbus.WithMatchArg(0, BusName),
		},
	}
	for _, m := range c.matches {
		if err := c.conn.AddMatchSignalContext(ctx, m...); err != nil {
			c.conn.RemoveSignal(c.sigCh)
			if c.ownConn {
				_ = c.conn.Close()
			}
			if ctx.Err() != nil && c.ownConn { // the bus stopped answering during setup
				return nil, &unreachableError{addr: c.address, cause: ctxCause(ctx.Err())}
			}
			return nil, wrap(err, "controller: add match rule")
		}
	}
	go c.dispatch()
	return c, nil
}

func systemBusAddress() string {
	if a := os.Getenv("DBUS_SYSTEM_BUS_ADDRESS"); a != "" {
		return a
	}
	for _, p := range systemBusPaths {
		if _, err := os.Stat(p); err == nil {
			return "unix:path=" + p
		}
	}
	return "unix:path=" + systemBusPaths[len(systemBusPaths)-1]
}

// dial connects, authenticates and says Hello, bounded by ctx. godbus's Auth and Hello take
// no context, and a peer that accepts but never answers would block them forever: while they
// run, ctx ending closes the connection, which makes them return.
func dial(ctx context.Context, addr string) (*dbus.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, &unreachableError{addr: addr, cause: ctxCause(err)}
	}
	type result struct {
		conn *dbus.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() { // the socket connect itself (a TCP address may take long)
		conn, err := dbus.Dial(addr, dbus.WithSignalHandler(dbus.NewSequentialSignalHandler()))
		ch <- result{conn, err}
	}()
	var conn *dbus.Conn
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, &unreachableError{addr: addr, cause: MapError(r.err)}
		}
		conn = r.conn
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				_ = r.conn.Close()
			}
		}()
		return nil, &unreachableError{addr: addr, cause: ctxCause(ctx.Err())}
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	err := conn.Auth(nil)
	if err == nil {
		err = conn.Hello()
	}
	if !stop() { // ctx ended during the handshake and closed the connection
		_ = conn.Close()
		return nil, &unreachableError{addr: addr, cause: ctxCause(ctx.Err())}
	}
	if err != nil {
		_ = conn.Close()
		return nil, &unreachableError{addr: addr, cause: MapError(err)}
	}
	return conn, nil
}

// ctxCause is ctx's error, a deadline as ErrTimeout.
func ctxCause(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return newTimeout(err)
	}
	return err
}

// Conn returns the underlying connection.
func (c *Client) Conn() *dbus.Conn { return c.conn }

// Close stops the dispatcher, ends pending waits with ErrDisconnected, closes monitor and watch
// channels, and closes the connection if New opened it (a WithConn connection is left open, its
// match rules removed). Monitors are not closed on the controller; the controller drops them
// when the connection goes away.
func (c *Client) Close() error {
	var err error
	c.closing.Do(func() {
		close(c.stop)
		<-c.done
		if c.ownConn {
			err = c.conn.Close()
			return
		}
		c.conn.RemoveSignal(c.sigCh)
		ctx := context.Background()
		for _, m := range c.matches {
			if e := c.conn.RemoveMatchSignalContext(ctx, m...); e != nil && err == nil {
				err = MapError(e)
			}
		}
		c.mu.Lock()
		jobNew := c.jobNewMatch
		c.mu.Unlock()
		if jobNew {
			_ = c.conn.RemoveMatchSignalContext(ctx, jobNewMatch()...)
		}
	})
	return err
}

// ---- calls ----

func (c *Client) object(path dbus.ObjectPath) dbus.BusObject { return c.conn.Object(BusName, path) }

func (c *Client) call(ctx context.Context, path dbus.ObjectPath, method string, args ...any) *dbus.Call {
	return c.object(path).CallWithContext(ctx, method, 0, args...)
}

func (c *Client) property(ctx context.Context, dest string, path dbus.ObjectPath, iface, name string) (dbus.Variant, error) {
	var v dbus.Variant
	err := c.conn.Object(dest, path).CallWithContext(ctx, methodPropertiesGet, 0, iface, name).Store(&v)
	return v, err
}

func storeProperty[T any](ctx context.Context, c *Client, dest string, path dbus.ObjectPath, iface, name string) (T, error) {
	var zero T
	v, err := c.property(ctx, dest, path, iface, name)
	if err != nil {
		return zero, err
	}
	var out T
	if err := dbus.Store([]any{v.Value()}, &out); err != nil {
		return zero, fmt.Errorf("property %s.%s: %w", iface, name, err)
	}
	return out, nil
}

// ---- org.eclipse.bluechi.Controller ----

// ListNodes returns all nodes known to the controller.
func (c *Client) ListNodes(ctx context.Context) ([]NodeInfo, error) {
	var nodes []NodeInfo
	if err := c.call(ctx, ControllerPath, methodListNodes).Store(&nodes); err != nil {
		return nil, wrap(err, "list nodes")
	}
	return nodes, nil
}

// GetNode resolves a node by name; ErrNodeNotFound if the controller does not know it.
func (c *Client) GetNode(ctx context.Context, name string) (*Node, error) {
	var path dbus.ObjectPath
	if err := c.call(ctx, ControllerPath, methodGetNode, name).Store(&path); err != nil {
		return nil, wrap(err, "node %s", name)
	}
	return &Node{Name: name, Path: path, c: c}, nil
}

// NodeFor returns the Node of a ListNodes entry without another call (additive helper).
func (c *Client) NodeFor(info NodeInfo) *Node {
	return &Node{Name: info.Name, Path: info.Path, c: c}
}

// ListUnits lists the units of all online nodes, by node name. One failing node fails the whole
// call (BlueChi behaviour); use Node.ListUnits per node for per-node errors.
func (c *Client) ListUnits(ctx context.Context) (map[string][]UnitInfo, error) {
	var units map[string][]UnitInfo
	if err := c.call(ctx, ControllerPath, methodListUnits).Store(&units); err != nil {
		return nil, wrap(err, "list units")
	}
	return units, nil
}

// ListUnitFiles lists the unit files of all online nodes, by node name.
func (c *Client) ListUnitFiles(ctx context.Context) (map[string][]UnitFileInfo, error) {
	var files map[string][]UnitFileInfo
	if err := c.call(ctx, ControllerPath, methodListUnitFiles).Store(&files); err != nil {
		return nil, wrap(err, "list unit files")
	}
	return files, nil
}

// EnableMetrics turns on BlueChi's metrics signals.
func (c *Client) EnableMetrics(ctx context.Context) error {
	return wrap(c.call(ctx, ControllerPath, methodEnableMetrics).Err, "enable metrics")
}

// DisableMetrics turns off BlueChi's metrics signals.
func (c *Client) DisableMetrics(ctx context.Context) error {
	return wrap(c.call(ctx, ControllerPath, methodDisableMetrics).Err, "disable metrics")
}

// SetLogLevel sets the controller's log level (DEBUG|INFO|WARN|ERROR).
func (c *Client) SetLogLevel(ctx context.Context, level string) error {
	return wrap(c.call(ctx, ControllerPath, methodCtrlSetLogLvl, level).Err, "controller: set log level %s", level)
}

// Status is the controller's Status property: "up" (all nodes online) | "degraded" | "down".
func (c *Client) Status(ctx context.Context) (string, error) {
	s, err := storeProperty[string](ctx, c, BusName, ControllerPath, ControllerInterface, PropStatus)
	return s, wrap(err, "controller status")
}

// LogLevel is the controller's LogLevel property.
func (c *Client) LogLevel(ctx context.Context) (string, error) {
	s, err := storeProperty[string](ctx, c, BusName, ControllerPath, ControllerInterface, PropLogLevel)
	return s, wrap(err, "controller log level")
}

// LogTarget is the controller's LogTarget property.
func (c *Client) LogTarget(ctx context.Context) (string, error) {
	s, err := storeProperty[string](ctx, c, BusName, ControllerPath, ControllerInterface, PropLogTarget)
	return s, wrap(err, "controller log target")
}
