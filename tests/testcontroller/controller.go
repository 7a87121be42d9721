package testcontroller

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// NodeSpec is one node the controller knows (BlueChi's AllowedNodeNames).
type NodeSpec struct {
	Name    string
	Backend Backend
}

// Options configure a Controller.
type Options struct {
	// Address of the bus to serve on (e.g. "unix:path=/tmp/x/bus.sock"). Required.
	Address string
	Nodes   []NodeSpec
	// Logger for diagnostics; silent when nil.
	Logger *slog.Logger
	// CallTimeout bounds each backend call (default 30 s).
	CallTimeout time.Duration
}

// Controller serves org.eclipse.bluechi on one bus connection.
type Controller struct {
	conn        *dbus.Conn
	log         *slog.Logger
	callTimeout time.Duration

	ctx    context.Context // cancelled by Close: stops backends and backend calls
	cancel context.CancelFunc
	wg     sync.WaitGroup // backend Run goroutines and backend calls

	// event loop
	qmu    sync.Mutex
	queue  []func()
	wake   chan struct{}
	done   chan struct{} // closed when the loop ends
	closed bool

	// writer: the loop hands finished messages to one goroutine that encodes and writes them
	// in order (encoding is most of the cost of a message in Go; real BlueChi's sd-bus does it
	// on its loop at C speed).
	omu     sync.Mutex
	out     []outItem
	owake   chan struct{}
	wdone   chan struct{} // closed when the writer ends
	wclosed bool

	// --- everything below is owned by the loop goroutine ---
	nodes      []*node
	nodeByName map[string]*node
	nodeByPath map[dbus.ObjectPath]*node

	nextJobID  uint32
	jobs       map[uint32]*job
	jobOrder   []uint32
	pendingJob map[uint32][]func() // events for jobs whose StartUnit reply is still in flight

	nextMonitorID uint32
	nextSubID     uint32
	nextPeerID    uint32
	monitors      map[dbus.ObjectPath]*monitor
	monitorOrder  []*monitor

	metrics  bool
	logLevel string

	// traffic counters (loop-owned; read with Traffic): method calls received by
	// "Interface.Member" and signals sent by member.
	callCount   map[string]int
	signalCount map[string]int

	stopped bool
}

type node struct {
	name    string
	path    dbus.ObjectPath
	backend Backend

	session      *session // nil while offline
	peerIP       string
	lastSeen     uint64 // µs CLOCK_REALTIME
	lastSeenMono uint64 // µs CLOCK_MONOTONIC

	// agent view (BlueChi's agent.c): what the agent knows about units on its systemd.
	agentUnits    map[string]*agentUnit
	agentWildcard bool

	// controller view (BlueChi's node.c): subscriptions per unit with the last reported state.
	usubs map[string]*unitSubs
}

type agentUnit struct {
	loaded     bool
	subscribed bool
	active     string // "" = invalid
	sub        string
}

type unitSubs struct {
	unit   string
	subs   []*subscription
	loaded bool
	active string // "" = invalid
	sub    string
}

type job struct {
	id    uint32
	path  dbus.ObjectPath
	node  *node
	unit  string
	typ   string
	state string
}

var monoStart = time.Now()

// New connects to opts.Address, takes the name org.eclipse.bluechi and starts serving and the
// node backends. Close stops everything.
func New(ctx context.Context, opts Options) (*Controller, error) {
	if opts.Address == "" {
		return nil, errors.New("testcontroller: no bus address")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Controller{
		log:         log,
		callTimeout: opts.CallTimeout,
		wake:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		owake:       make(chan struct{}, 1),
		wdone:       make(chan struct{}),
		nodeByName:  map[string]*node{},
		nodeByPath:  map[dbus.ObjectPath]*node{},
		jobs:        map[uint32]*job{},
		pendingJob:  map[uint32][]func(){},
		nextSubID:   1, // BlueChi: static next_id = 1; id = ++next_id, so the first is 2
		monitors:    map[dbus.ObjectPath]*monitor{},
		logLevel:    "INFO",
		callCount:   map[string]int{},
		signalCount: map[string]int{},
	}
	if c.callTimeout <= 0 {
		c.callTimeout = 30 * time.Second
	}
	for _, spec := range opts.Nodes {
		if spec.Name == "" || spec.Backend == nil {
			return nil, fmt.Errorf("testcontroller: node %q: name and backend required", spec.Name)
		}
		if _, dup := c.nodeByName[spec.Name]; dup {
			return nil, fmt.Errorf("testcontroller: node %q given twice", spec.Name)
		}
		n := &node{
			name:       spec.Name,
			path:       dbus.ObjectPath(NodePath(spec.Name)),
			backend:    spec.Backend,
			agentUnits: map[string]*agentUnit{},
			usubs:      map[string]*unitSubs{},
		}
		c.nodes = append(c.nodes, n)
		c.nodeByName[n.name] = n
		c.nodeByPath[n.path] = n
	}

	// No dbus.WithContext: godbus closes the connection when that context ends.
	conn, err := dialBuffered(opts.Address,
		dbus.WithHandler(sinkHandler{}),
		dbus.WithIncomingInterceptor(c.intercept))
	if err != nil {
		return nil, fmt.Errorf("testcontroller: dial %s: %w", opts.Address, err)
	}
	if err := conn.Auth(nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("testcontroller: auth: %w", err)
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("testcontroller: hello: %w", err)
	}
	c.conn = conn
	if err := conn.AddMatchSignalContext(ctx,
		dbus.WithMatchSender("org.freedesktop.DBus"),
		dbus.WithMatchInterface("org.freedesktop.DBus"),
		dbus.WithMatchMember("NameOwnerChanged")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("testcontroller: add match: %w", err)
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("testcontroller: request name %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner {
		conn.Close()
		return nil, fmt.Errorf("testcontroller: name %s is already owned", BusName)
	}

	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.loop()
	go c.writer()
	for _, n := range c.nodes {
		n := n
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			n.backend.Run(c.ctx, &link{c: c, n: n})
		}()
	}
	return c, nil
}

// dialBuffered is dbus.Dial, but for a plain "unix:path=" address it reads the socket through
// a buffer: godbus's unix transport makes about three recvmsg calls per message, which is a
// good part of the double's cost under load (no unix fds are passed in BlueChi's API).
func dialBuffered(addr string, opts ...dbus.ConnOption) (*dbus.Conn, error) {
	path, ok := strings.CutPrefix(addr, "unix:path=")
	if !ok || strings.ContainsAny(path, ",;") {
		return dbus.Dial(addr, opts...)
	}
	uc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	return dbus.NewConn(bufferedConn{Reader: bufio.NewReaderSize(uc, 64<<10), UnixConn: uc}, opts...)
}

// bufferedConn reads through its buffer and writes straight to the socket.
type bufferedConn struct {
	*bufio.Reader
	*net.UnixConn
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.Reader.Read(p) }

// Conn is the controller's own bus connection.
func (c *Controller) Conn() *dbus.Conn { return c.conn }

// Close ends pending jobs with "cancelled due to shutdown" (as BlueChi's controller_stop does),
// stops the backends, and closes the bus connection. It is safe to call more than once.
func (c *Controller) Close() error {
	stopped := make(chan struct{})
	if !c.post(func() { c.shutdown(); close(stopped) }) {
		return nil
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
	}
	c.cancel()
	waited := make(chan struct{})
	go func() { c.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		c.log.Warn("backends did not stop within 10s")
	}
	c.qmu.Lock()
	c.closed = true
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	<-c.done
	c.omu.Lock()
	c.wclosed = true
	c.omu.Unlock()
	select {
	case c.owake <- struct{}{}:
	default:
	}
	<-c.wdone
	return c.conn.Close()
}

// Do runs f in the controller's event loop and waits for it and for every message sent so far
// to be written (for tests that need a consistent view).
func (c *Controller) Do(f func()) {
	ran := make(chan struct{})
	if !c.post(func() { f(); c.enqueue(outItem{flushed: ran}) }) {
		return
	}
	<-ran
}

// outItem is a message for the writer, or (flushed set) a mark it closes when it gets there.
type outItem struct {
	msg     *dbus.Message
	flushed chan struct{}
}

// enqueue hands it to the writer; once the writer has ended, it is done here.
func (c *Controller) enqueue(it outItem) {
	c.omu.Lock()
	if c.wclosed {
		c.omu.Unlock()
		if it.msg != nil {
			c.write(it.msg)
		}
		if it.flushed != nil {
			close(it.flushed)
		}
		return
	}
	c.out = append(c.out, it)
	c.omu.Unlock()
	select {
	case c.owake <- struct{}{}:
	default:
	}
}

func (c *Controller) writer() {
	defer close(c.wdone)
	for {
		<-c.owake
		for {
			c.omu.Lock()
			q := c.out
			c.out = nil
			closed := c.wclosed
			c.omu.Unlock()
			if len(q) == 0 {
				if closed {
					return
				}
				break
			}
			for _, it := range q {
				if it.msg != nil {
					c.write(it.msg)
				}
				if it.flushed != nil {
					close(it.flushed)
				}
			}
		}
	}
}

// Traffic returns copies of the counters of method calls received ("Interface.Member") and of
// signals sent (by member) since the start or the last reset; reset zeroes them.
func (c *Controller) Traffic(reset bool) (calls, signals map[string]int) {
	calls, signals = map[string]int{}, map[string]int{}
	c.Do(func() {
		for k, v := range c.callCount {
			calls[k] = v
		}
		for k, v := range c.signalCount {
			signals[k] = v
		}
		if reset {
			c.callCount, c.signalCount = map[string]int{}, map[string]int{}
		}
	})
	return calls, signals
}

// post queues f for the loop; false when the controller is closed.
func (c *Controller) post(f func()) bool {
	c.qmu.Lock()
	if c.closed {
		c.qmu.Unlock()
		return false
	}
	c.queue = append(c.queue, f)
	c.qmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

func (c *Controller) loop() {
	defer close(c.done)
	for {
		<-c.wake
		for {
			c.qmu.Lock()
			q := c.queue
			c.queue = nil
			closed := c.closed
			c.qmu.Unlock()
			if len(q) == 0 {
				if closed {
					return
				}
				break
			}
			for _, f := range q {
				f()
			}
		}
	}
}

// shutdown is BlueChi's controller_stop: jobs end with "cancelled due to shutdown", monitors and
// subscriptions go away, the nodes are dropped.
func (c *Controller) shutdown() {
	if c.stopped {
		return
	}
	c.stopped = true
	for _, id := range append([]uint32(nil), c.jobOrder...) {
		if j := c.jobs[id]; j != nil {
			c.removeJob(j, ResultShutdown)
		}
	}
	for _, m := range append([]*monitor(nil), c.monitorOrder...) {
		c.closeMonitor(m, false)
	}
	prev := c.onlineCount()
	for _, n := range c.nodes {
		if n.session != nil {
			n.session.dead = true
			n.session = nil
		}
	}
	if prev > 0 {
		c.emitStatusChanged()
	}
}

// ---------------------------------------------------------------------------------------------
// Incoming messages

// sinkHandler makes godbus accept every method call without replying itself: the interceptor
// marks calls NoReplyExpected and the loop sends the real reply.
type sinkHandler struct{}

func (sinkHandler) LookupObject(dbus.ObjectPath) (dbus.ServerObject, bool) { return sinkObject{}, true }

type sinkObject struct{}

func (sinkObject) LookupInterface(string) (dbus.Interface, bool) { return sinkObject{}, true }
func (sinkObject) LookupMethod(string) (dbus.Method, bool)       { return sinkMethod{}, true }

type sinkMethod struct{}

func (sinkMethod) Call(...any) ([]any, error) { return nil, nil }
func (sinkMethod) NumArguments() int          { return 0 }
func (sinkMethod) NumReturns() int            { return 0 }
func (sinkMethod) ArgumentValue(int) any      { return nil }
func (sinkMethod) ReturnValue(int) any        { return nil }
func (sinkMethod) DecodeArguments(*dbus.Conn, string, *dbus.Message, []any) ([]any, error) {
	return nil, nil
}

type request struct {
	msg     *dbus.Message
	sender  string
	path    dbus.ObjectPath
	iface   string
	member  string
	noReply bool
}

// intercept runs on godbus' reader goroutine for every incoming message, in arrival order.
func (c *Controller) intercept(msg *dbus.Message) {
	switch msg.Type {
	case dbus.TypeMethodCall:
		iface, _ := msg.Headers[dbus.FieldInterface].Value().(string)
		if iface == peerIface {
			return // godbus answers Ping/GetMachineId itself
		}
		r := &request{msg: msg, iface: iface, noReply: msg.Flags&dbus.FlagNoReplyExpected != 0}
		r.sender, _ = msg.Headers[dbus.FieldSender].Value().(string)
		r.path, _ = msg.Headers[dbus.FieldPath].Value().(dbus.ObjectPath)
		r.member, _ = msg.Headers[dbus.FieldMember].Value().(string)
		msg.Flags |= dbus.FlagNoReplyExpected // the loop replies, not godbus
		if !c.post(func() { c.handle(r) }) {
			// Closed: godbus will not answer either; answer here so no caller hangs.
			c.sendError(r, ErrFailed, "Controller is shutting down")
		}
	case dbus.TypeSignal:
		iface, _ := msg.Headers[dbus.FieldInterface].Value().(string)
		member, _ := msg.Headers[dbus.FieldMember].Value().(string)
		if iface == "org.freedesktop.DBus" && member == "NameOwnerChanged" && len(msg.Body) == 3 {
			name, _ := msg.Body[0].(string)
			newOwner, _ := msg.Body[2].(string)
			if strings.HasPrefix(name, ":") && newOwner == "" {
				c.post(func() { c.clientDisconnected(name) })
			}
		}
	}
}

func (r *request) signature() string {
	s, _ := r.msg.Headers[dbus.FieldSignature].Value().(dbus.Signature)
	return s.String()
}

// send queues msg for the writer (messages go out in the order send is called).
func (c *Controller) send(msg *dbus.Message) { c.enqueue(outItem{msg: msg}) }

func (c *Controller) write(msg *dbus.Message) {
	if err := c.conn.Send(msg, nil).Err; err != nil {
		c.log.Debug("send failed", "err", err)
	}
}

func (c *Controller) reply(r *request, body ...any) {
	if r.noReply {
		return
	}
	for i := range body {
		body[i] = normalize(body[i])
	}
	m := &dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(r.msg.Serial()),
	}, Body: body}
	if r.sender != "" {
		m.Headers[dbus.FieldDestination] = dbus.MakeVariant(r.sender)
	}
	if len(body) > 0 {
		m.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(body...))
	}
	c.send(m)
}

func (c *Controller) sendError(r *request, name, format string, args ...any) {
	if r.noReply {
		return
	}
	text := format
	if len(args) > 0 {
		text = fmt.Sprintf(format, args...)
	}
	m := &dbus.Message{Type: dbus.TypeError, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldReplySerial: dbus.MakeVariant(r.msg.Serial()),
		dbus.FieldErrorName:   dbus.MakeVariant(name),
		dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf(text)),
	}, Body: []any{text}}
	if r.sender != "" {
		m.Headers[dbus.FieldDestination] = dbus.MakeVariant(r.sender)
	}
	c.send(m)
}

// replyErr sends err: a dbus.Error keeps its name and body (systemd errors pass through).
func (c *Controller) replyErr(r *request, err error) {
	var de dbus.Error
	if errors.As(err, &de) {
		msg := ""
		if len(de.Body) > 0 {
			msg, _ = de.Body[0].(string)
		}
		c.sendError(r, de.Name, "%s", msg)
		return
	}
	var dep *dbus.Error
	if errors.As(err, &dep) && dep != nil {
		c.replyErr(r, *dep)
		return
	}
	c.sendError(r, ErrFailed, "%s", err.Error())
}

func (c *Controller) emit(path dbus.ObjectPath, iface, member string, body ...any) {
	c.emitTo("", path, iface, member, body...)
}

// emitTo sends a signal; with dest set it is unicast (BlueChi's sd_bus_send_to), else broadcast.
func (c *Controller) emitTo(dest string, path dbus.ObjectPath, iface, member string, body ...any) {
	c.signalCount[member]++
	for i := range body {
		body[i] = normalize(body[i])
	}
	m := &dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
		dbus.FieldPath:      dbus.MakeVariant(path),
		dbus.FieldInterface: dbus.MakeVariant(iface),
		dbus.FieldMember:    dbus.MakeVariant(member),
	}, Body: body}
	if dest != "" {
		m.Headers[dbus.FieldDestination] = dbus.MakeVariant(dest)
	}
	if len(body) > 0 {
		m.Headers[dbus.FieldSignature] = dbus.MakeVariant(dbus.SignatureOf(body...))
	}
	c.send(m)
}

func (c *Controller) emitPropertiesChanged(path dbus.ObjectPath, iface string, changed map[string]dbus.Variant) {
	c.emit(path, propertiesIface, "PropertiesChanged", iface, changed, []string{})
}

// handle dispatches one method call (loop goroutine).
func (c *Controller) handle(r *request) {
	c.callCount[r.iface+"."+r.member]++
	if c.stopped {
		c.sendError(r, ErrFailed, "Controller is shutting down")
		return
	}
	switch {
	case r.iface == introspectIface && r.member == "Introspect":
		c.introspect(r)
		return
	case r.iface == propertiesIface:
		c.properties(r)
		return
	}
	path := r.path
	switch {
	case path == ControllerPath:
		c.controllerMethod(r)
	case c.nodeByPath[path] != nil:
		c.nodeMethod(r, c.nodeByPath[path])
	case c.jobAt(path) != nil:
		c.jobMethod(r, c.jobAt(path))
	case c.monitors[path] != nil:
		c.monitorMethod(r, c.monitors[path])
	default:
		if r.member == "Introspect" && (r.iface == "" || r.iface == introspectIface) {
			c.introspect(r)
			return
		}
		c.unknownObject(r)
	}
}

func (c *Controller) unknownObject(r *request) {
	c.sendError(r, ErrUnknownObject, "Unknown object '%s'.", r.path)
}

func (c *Controller) unknownMethod(r *request) {
	c.sendError(r, ErrUnknownMethod, "Unknown method %s or interface %s.", r.member, r.iface)
}

// checkArgs verifies the call's signature and stores the body into ptrs.
func (c *Controller) checkArgs(r *request, want string, ptrs ...any) bool {
	if got := r.signature(); got != want {
		c.sendError(r, ErrInvalidArgs, "Invalid arguments '%s' to call %s.%s(), expecting '%s'.",
			got, r.iface, r.member, want)
		return false
	}
	if len(ptrs) > 0 {
		if err := dbus.Store(r.msg.Body, ptrs...); err != nil {
			c.sendError(r, ErrInvalidArgs, "Invalid arguments: %v", err)
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------------------------
// org.eclipse.bluechi.Controller

func (c *Controller) onlineCount() int {
	n := 0
	for _, nd := range c.nodes {
		if nd.session != nil {
			n++
		}
	}
	return n
}

func (c *Controller) status() string {
	on := c.onlineCount()
	switch {
	case on == 0:
		return "down"
	case on == len(c.nodes):
		return "up"
	}
	return "degraded"
}

func (c *Controller) emitStatusChanged() {
	c.emitPropertiesChanged(ControllerPath, ControllerIface,
		map[string]dbus.Variant{"Status": dbus.MakeVariant(c.status())})
}

func validLogLevel(l string) bool {
	switch l {
	case "DEBUG", "INFO", "WARN", "ERROR":
		return true
	}
	return false
}

func (c *Controller) controllerMethod(r *request) {
	if r.iface != "" && r.iface != ControllerIface {
		c.unknownMethod(r)
		return
	}
	switch r.member {
	case "ListNodes":
		if !c.checkArgs(r, "") {
			return
		}
		type nodeEntry struct {
			Name   string
			Path   dbus.ObjectPath
			Status string
			PeerIP string
		}
		out := make([]nodeEntry, 0, len(c.nodes))
		for _, n := range c.nodes {
			out = append(out, nodeEntry{n.name, n.path, n.status(), n.peerIPNow()})
		}
		c.reply(r, out)
	case "GetNode":
		var name string
		if !c.checkArgs(r, "s", &name) {
			return
		}
		n := c.nodeByName[name]
		if n == nil {
			c.sendError(r, ErrServiceUnknown, "Node not found")
			return
		}
		c.reply(r, n.path)
	case "ListUnits", "ListUnitFiles":
		if !c.checkArgs(r, "") {
			return
		}
		c.fleetList(r)
	case "CreateMonitor":
		if !c.checkArgs(r, "") {
			return
		}
		m := c.newMonitor(r.sender)
		c.reply(r, m.path)
	case "EnableMetrics":
		if !c.checkArgs(r, "") {
			return
		}
		if c.metrics {
			c.sendError(r, ErrInconsistentMessage, "Metrics already enabled")
			return
		}
		c.metrics = true
		c.reply(r)
	case "DisableMetrics":
		if !c.checkArgs(r, "") {
			return
		}
		if !c.metrics {
			c.sendError(r, ErrInconsistentMessage, "Metrics already disabled")
			return
		}
		c.metrics = false
		c.reply(r)
	case "SetLogLevel":
		var level string
		if !c.checkArgs(r, "s", &level) {
			return
		}
		if !validLogLevel(level) {
			c.sendError(r, ErrInvalidArgs, "Invalid input for log level")
			return
		}
		c.logLevel = level
		c.reply(r)
	default:
		c.unknownMethod(r)
	}
}

// fleetList is BlueChi's agent_fleet_request: ListUnits/ListUnitFiles on every online node; if
// one node fails the whole call fails.
func (c *Controller) fleetList(r *request) {
	type result struct {
		node string
		body []any
		err  error
	}
	var online []*node
	for _, n := range c.nodes {
		if n.session != nil {
			online = append(online, n)
		}
	}
	results := make([]result, len(online))
	var wg sync.WaitGroup
	for i, n := range online {
		i, n := i, n
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.ctx, c.callTimeout)
			defer cancel()
			body, err := n.backend.Call(ctx, r.member, nil)
			results[i] = result{n.name, body, err}
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		wg.Wait()
		c.post(func() {
			for _, res := range results {
				if res.err != nil {
					c.sendError(r, ErrFailed, "Request to at least one node failed: %s", errText(res.err))
					return
				}
			}
			if r.member == "ListUnits" {
				out := map[string][]UnitInfo{}
				for _, res := range results {
					var units []UnitInfo
					if len(res.body) == 1 {
						if err := dbus.Store(res.body, &units); err != nil {
							c.sendError(r, ErrFailed, "Request to at least one node failed: %v", err)
							return
						}
					}
					if units == nil {
						units = []UnitInfo{}
					}
					out[res.node] = units
				}
				c.reply(r, out)
				return
			}
			out := map[string][]UnitFileInfo{}
			for _, res := range results {
				var files []UnitFileInfo
				if len(res.body) == 1 {
					if err := dbus.Store(res.body, &files); err != nil {
						c.sendError(r, ErrFailed, "Request to at least one node failed: %v", err)
						return
					}
				}
				if files == nil {
					files = []UnitFileInfo{}
				}
				out[res.node] = files
			}
			c.reply(r, out)
		})
	}()
}

func errText(err error) string {
	var de dbus.Error
	if errors.As(err, &de) && len(de.Body) > 0 {
		if s, ok := de.Body[0].(string); ok {
			return s
		}
	}
	return err.Error()
}

// ---------------------------------------------------------------------------------------------
// org.eclipse.bluechi.Node

func (n *node) status() string {
	if n.session != nil {
		return "online"
	}
	return "offline"
}

func (n *node) peerIPNow() string {
	if n.session == nil {
		return "" // BlueChi frees peer_ip when the agent disconnects
	}
	return n.peerIP
}

func (c *Controller) nodeMethod(r *request, n *node) {
	if r.iface != "" && r.iface != NodeIface {
		c.unknownMethod(r)
		return
	}
	spec, ok := nodeMethods[r.member]
	if !ok {
		c.unknownMethod(r)
		return
	}
	// BlueChi's controller_dbus_filter: every Node method on an offline node fails.
	if n.session == nil {
		c.sendError(r, ErrOffline, "Node is offline")
		return
	}
	if !c.checkArgs(r, spec.in) {
		return
	}
	args := r.msg.Body
	sess := n.session
	if spec.job {
		var unit, mode string
		if !c.checkArgs(r, spec.in, &unit, &mode) {
			return
		}
		c.startJob(r, n, sess, r.member, unit, mode)
		return
	}
	if r.member == "SetLogLevel" {
		var level string
		if !c.checkArgs(r, "s", &level) {
			return
		}
		if !validLogLevel(level) {
			// BlueChi replies success to an invalid level (node_method_set_log_level).
			c.reply(r)
			return
		}
	}
	c.backendCall(n, r.member, func(ctx context.Context) {
		body, err := n.backend.Call(ctx, r.member, args)
		c.post(func() {
			if err != nil {
				c.replyErr(r, err)
				return
			}
			outs, _ := splitSig(spec.out)
			if len(body) != len(outs) {
				c.sendError(r, ErrFailed, "backend returned %d values for %s, want %d", len(body), r.member, len(outs))
				return
			}
			for i := range body {
				if v, err := retype(outs[i], body[i]); err == nil {
					body[i] = v.Interface()
				}
			}
			c.reply(r, body...)
		})
	})
}

// quickBackend is a backend whose calls may return at once (the in-memory one without
// configured delays).
type quickBackend interface {
	quickCall(method string) bool
}

// backendCall runs f (a backend call that posts its outcome) on a goroutine of its own, as the
// agent answers asynchronously; a call a quick backend answers at once runs right here on the
// loop instead, which saves a goroutine per call and keeps the order: whatever the backend
// reports during the call is posted before the outcome, as from a goroutine.
func (c *Controller) backendCall(n *node, method string, f func(ctx context.Context)) {
	if q, ok := n.backend.(quickBackend); ok && q.quickCall(method) {
		f(c.ctx)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, c.callTimeout)
		defer cancel()
		f(ctx)
	}()
}

// startJob is node_run_unit_lifecycle_method: the job id is taken before the agent is asked
// (so a refused start still uses up an id), the job exists (JobNew) only once systemd accepted it.
func (c *Controller) startJob(r *request, n *node, sess *session, method, unit, mode string) {
	c.nextJobID++
	id := c.nextJobID
	c.pendingJob[id] = []func(){}
	c.backendCall(n, method, func(ctx context.Context) {
		err := n.backend.StartJob(ctx, method, unit, mode, id)
		c.post(func() {
			buffered := c.pendingJob[id]
			delete(c.pendingJob, id)
			if err != nil {
				c.replyErr(r, err)
				return
			}
			if n.session != sess || c.stopped {
				c.sendError(r, ErrOffline, "Node is offline")
				return
			}
			j := &job{
				id:    id,
				path:  dbus.ObjectPath(fmt.Sprintf("%s/%d", JobPathPrefix, id)),
				node:  n,
				unit:  unit,
				typ:   jobTypes[method],
				state: "waiting",
			}
			c.jobs[id] = j
			c.jobOrder = append(c.jobOrder, id)
			c.emit(ControllerPath, ControllerIface, "JobNew", id, j.path)
			c.reply(r, j.path)
			for _, f := range buffered {
				f()
			}
		})
	})
}

func (c *Controller) removeJob(j *job, result string) {
	c.emit(ControllerPath, ControllerIface, "JobRemoved", j.id, j.path, j.node.name, j.unit, result)
	c.dropJob(j)
}

// dropJob forgets a job without any signal (node disconnect).
func (c *Controller) dropJob(j *job) {
	delete(c.jobs, j.id)
	for i, id := range c.jobOrder {
		if id == j.id {
			c.jobOrder = append(c.jobOrder[:i], c.jobOrder[i+1:]...)
			break
		}
	}
}

// jobEvent runs f for job id now, or after its setup finished if the StartUnit reply is pending.
func (c *Controller) jobEvent(id uint32, f func(j *job)) {
	if buf, pending := c.pendingJob[id]; pending {
		c.pendingJob[id] = append(buf, func() {
			if j := c.jobs[id]; j != nil {
				f(j)
			}
		})
		return
	}
	if j := c.jobs[id]; j != nil {
		f(j)
	}
}

// ---------------------------------------------------------------------------------------------
// org.eclipse.bluechi.Job

func (c *Controller) jobMethod(r *request, j *job) {
	if (r.iface != "" && r.iface != JobIface) || r.member != "Cancel" {
		c.unknownMethod(r)
		return
	}
	if !c.checkArgs(r, "") {
		return
	}
	n := j.node
	id := j.id
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, c.callTimeout)
		defer cancel()
		if err := n.backend.CancelJob(ctx, id); err != nil {
			c.log.Info("cancelling job failed", "job", id, "err", err)
		}
	}()
	// BlueChi replies at once; the outcome comes as JobRemoved.
	c.reply(r)
}

// ---------------------------------------------------------------------------------------------
// Node connect / disconnect (node.c: node_method_register, node_disconnect)

type link struct {
	c *Controller
	n *node
}

type session struct {
	c    *Controller
	n    *node
	dead bool // loop-owned
}

func (l *link) Connect(peerIP string, units []UnitState) Session {
	s := &session{c: l.c, n: l.n}
	units = append([]UnitState(nil), units...)
	l.c.post(func() { l.c.nodeConnected(l.n, s, peerIP, units) })
	return s
}

func (s *session) on(f func()) {
	s.c.post(func() {
		if s.dead || s.n.session != s {
			return
		}
		f()
	})
}

func (s *session) Heartbeat() {
	s.on(func() { s.n.touch() })
}

func (s *session) JobState(id uint32, state string) {
	s.on(func() {
		s.c.jobEvent(id, func(j *job) {
			if j.node != s.n {
				return
			}
			j.state = state
			s.c.emitPropertiesChanged(j.path, JobIface, map[string]dbus.Variant{"State": dbus.MakeVariant(state)})
		})
	})
}

func (s *session) JobDone(id uint32, result string) {
	s.on(func() {
		s.c.jobEvent(id, func(j *job) {
			if j.node != s.n {
				return
			}
			s.c.removeJob(j, result)
		})
	})
}

func (s *session) UnitNew(unit string) {
	s.on(func() { s.c.agentSystemdUnitNew(s.n, unit) })
}

func (s *session) UnitRemoved(unit string) {
	s.on(func() { s.c.agentSystemdUnitRemoved(s.n, unit) })
}

func (s *session) UnitPropertiesChanged(unit, iface string, changed map[string]dbus.Variant) {
	s.on(func() { s.c.agentSystemdUnitChanged(s.n, unit, iface, changed) })
}

func (s *session) Close() {
	s.c.post(func() {
		if s.dead {
			return
		}
		s.dead = true
		if s.n.session == s {
			s.c.nodeDisconnected(s.n)
		}
	})
}

func (n *node) touch() {
	n.lastSeen = uint64(time.Now().UnixMicro())
	n.lastSeenMono = monotonicMicros()
}

func (c *Controller) nodeConnected(n *node, s *session, peerIP string, units []UnitState) {
	if s.dead || c.stopped {
		return
	}
	if n.session != nil {
		// A new connection while the old one is still registered: BlueChi refuses the new
		// registration ("The node is already connected"); the backend only does this after its
		// old connection died, so treat it as disconnect + connect.
		old := n.session
		c.nodeDisconnected(n)
		old.dead = true
	}
	prev := c.onlineCount()
	n.session = s
	n.peerIP = peerIP
	n.touch()
	// A fresh agent: it knows the units systemd lists, nothing is subscribed yet.
	n.agentUnits = map[string]*agentUnit{}
	n.agentWildcard = false
	for _, u := range units {
		n.agentUnits[u.Name] = &agentUnit{loaded: true, active: u.ActiveState, sub: u.SubState}
	}
	c.emitPropertiesChanged(n.path, NodeIface, map[string]dbus.Variant{"Status": dbus.MakeVariant("online")})
	if prev == 0 || prev+1 == len(c.nodes) || prev == len(c.nodes) {
		c.emitStatusChanged()
	}
	// node_send_agent_subscribe_all: re-subscribe every unit monitors are interested in.
	for _, unit := range sortedKeys(n.usubs) {
		c.agentSubscribe(n, unit)
	}
}

func (c *Controller) nodeDisconnected(n *node) {
	// Virtual UnitStateChanged(inactive/agent-offline) and UnitRemoved for loaded units.
	for _, unit := range sortedKeys(n.usubs) {
		us := n.usubs[unit]
		if !us.loaded {
			continue
		}
		sendState := false
		if us.active != "" && us.active != "inactive" {
			us.active = "inactive"
			us.sub = "agent-offline"
			sendState = true
		}
		us.loaded = false
		if sendState {
			for _, sub := range c.uniqueSubs(n, unit) {
				c.monitorUnitStateChanged(sub.mon, n.name, unit, us.active, us.sub, "virtual")
			}
		}
		for _, sub := range c.uniqueSubs(n, unit) {
			c.monitorUnitRemoved(sub.mon, n.name, unit, "virtual")
		}
	}
	// Jobs of the node are dropped WITHOUT JobRemoved (BlueChi 1.3 behaviour).
	for _, id := range append([]uint32(nil), c.jobOrder...) {
		if j := c.jobs[id]; j != nil && j.node == n {
			c.dropJob(j)
		}
	}
	prev := c.onlineCount()
	n.session = nil
	n.agentUnits = map[string]*agentUnit{}
	n.agentWildcard = false
	c.emitPropertiesChanged(n.path, NodeIface, map[string]dbus.Variant{"Status": dbus.MakeVariant("offline")})
	if prev == len(c.nodes) || prev-1 == 0 || prev == 0 {
		c.emitStatusChanged()
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ---------------------------------------------------------------------------------------------
// Agent behaviour (agent.c): subscriptions on the agent side and the events it forwards.

func (c *Controller) agentSubscribe(n *node, unit string) {
	if n.session == nil {
		return
	}
	s := n.session
	// The agent answers asynchronously: its virtual events arrive after the monitor's reply.
	c.post(func() {
		if n.session != s {
			return
		}
		if unit == wildcard {
			if n.agentWildcard {
				return // "Already wildcard subscribed"
			}
			n.agentWildcard = true
			c.ctlUnitNew(n, wildcard, "virtual")
			return
		}
		au := n.agentUnits[unit]
		if au == nil {
			au = &agentUnit{}
			n.agentUnits[unit] = au
		}
		if au.subscribed {
			return // "Already subscribed"
		}
		au.subscribed = true
		if au.loaded {
			c.ctlUnitNew(n, unit, "virtual")
			if au.active != "" {
				c.ctlUnitStateChanged(n, unit, au.active, au.sub, "virtual")
			}
		}
	})
}

func (c *Controller) agentUnsubscribe(n *node, unit string) {
	if n.session == nil {
		return
	}
	if unit == wildcard {
		n.agentWildcard = false
		return
	}
	if au := n.agentUnits[unit]; au != nil {
		au.subscribed = false
		if !au.loaded {
			delete(n.agentUnits, unit)
		}
	}
}

func (c *Controller) agentForwards(n *node, au *agentUnit) bool {
	return (au != nil && au.subscribed) || n.agentWildcard
}

func (c *Controller) agentSystemdUnitNew(n *node, unit string) {
	au := n.agentUnits[unit]
	if au == nil {
		au = &agentUnit{}
		n.agentUnits[unit] = au
	}
	au.loaded = true
	// systemd units start inactive(dead); the agent uses that as the first state.
	au.active = "inactive"
	au.sub = "dead"
	if c.agentForwards(n, au) {
		c.ctlUnitNew(n, unit, "real")
	}
}

func (c *Controller) agentSystemdUnitRemoved(n *node, unit string) {
	au := n.agentUnits[unit]
	if au == nil {
		return
	}
	au.loaded = false
	au.active = ""
	au.sub = ""
	if c.agentForwards(n, au) {
		c.ctlUnitRemoved(n, unit)
	}
	if !au.subscribed {
		delete(n.agentUnits, unit)
	}
}

func (c *Controller) agentSystemdUnitChanged(n *node, unit, iface string, changed map[string]dbus.Variant) {
	au := n.agentUnits[unit]
	if au == nil {
		return
	}
	if iface == systemdUnitIface {
		stateChanged := false
		if v, ok := changed["ActiveState"]; ok {
			if s, ok := v.Value().(string); ok && s != au.active {
				au.active = s
				stateChanged = true
			}
		}
		if v, ok := changed["SubState"]; ok {
			if s, ok := v.Value().(string); ok && s != au.sub {
				au.sub = s
				stateChanged = true
			}
		}
		if stateChanged && c.agentForwards(n, au) {
			c.ctlUnitStateChanged(n, unit, au.active, au.sub, "real")
		}
	}
	if !c.agentForwards(n, au) {
		return
	}
	c.ctlUnitPropertiesChanged(n, unit, iface, changed)
}

// ---------------------------------------------------------------------------------------------
// Controller side of unit events (node.c node_match_unit_*)

// uniqueSubs are the subscriptions that get an event for unit: those on the unit and, unless the
// unit is the wildcard itself, those on "*" — one per monitor.
func (c *Controller) uniqueSubs(n *node, unit string) []*subscription {
	var out []*subscription
	seen := map[*monitor]bool{}
	add := func(us *unitSubs) {
		if us == nil {
			return
		}
		for _, s := range us.subs {
			if !seen[s.mon] {
				seen[s.mon] = true
				out = append(out, s)
			}
		}
	}
	add(n.usubs[unit])
	if unit != wildcard {
		add(n.usubs[wildcard])
	}
	return out
}

func (c *Controller) ctlUnitNew(n *node, unit, reason string) {
	if us := n.usubs[unit]; us != nil {
		us.loaded = true
		if unit == wildcard {
			us.active = "active"
			us.sub = "running"
		}
	}
	for _, s := range c.uniqueSubs(n, unit) {
		c.monitorUnitNew(s.mon, n.name, unit, reason)
	}
}

func (c *Controller) ctlUnitStateChanged(n *node, unit, active, sub, reason string) {
	if us := n.usubs[unit]; us != nil {
		us.loaded = true
		us.active = active
		us.sub = sub
	}
	for _, s := range c.uniqueSubs(n, unit) {
		c.monitorUnitStateChanged(s.mon, n.name, unit, active, sub, reason)
	}
}

func (c *Controller) ctlUnitRemoved(n *node, unit string) {
	if us := n.usubs[unit]; us != nil {
		us.loaded = false
	}
	for _, s := range c.uniqueSubs(n, unit) {
		c.monitorUnitRemoved(s.mon, n.name, unit, "real")
	}
}

func (c *Controller) ctlUnitPropertiesChanged(n *node, unit, iface string, changed map[string]dbus.Variant) {
	for _, s := range c.uniqueSubs(n, unit) {
		c.monitorUnitPropertiesChanged(s.mon, n.name, unit, iface, changed)
	}
}
