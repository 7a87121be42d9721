package testcontroller

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	systemdDest = "org.freedesktop.systemd1"
	systemdPath = dbus.ObjectPath("/org/freedesktop/systemd1")
)

// SystemdNode is a backend for a real systemd reached over a D-Bus address, typically a node's
// system bus socket ("unix:path=/.../nodes/node1/dbus/system_bus_socket"). It plays BlueChi's
// agent: calls Manager methods, subscribes to systemd's signals and maps systemd jobs to BlueChi
// jobs. While the address is unreachable the node is offline; it reconnects every
// RetryInterval, so a node that was stopped comes back online when its bus socket returns.
type SystemdNode struct {
	Name    string
	Address string
	PeerIP  string
	// RetryInterval between connection attempts (default 200 ms).
	RetryInterval time.Duration
	// HeartbeatInterval between pings of systemd (default 1 s); a failed ping drops the
	// connection. LastSeenTimestamp is the last successful contact.
	HeartbeatInterval time.Duration
	Logger            *slog.Logger

	mu         sync.Mutex
	conn       *dbus.Conn
	sess       Session
	tracked    map[dbus.ObjectPath][]uint32 // systemd job path -> BlueChi job ids
	byID       map[uint32]dbus.ObjectPath
	early      map[dbus.ObjectPath]earlyResult // JobRemoved seen before the StartUnit reply
	unitByPath map[dbus.ObjectPath]string
}

type earlyResult struct {
	result string
	at     time.Time
}

// NewSystemdNode returns a backend for the systemd at address.
func NewSystemdNode(name, address, peerIP string) *SystemdNode {
	return &SystemdNode{Name: name, Address: address, PeerIP: peerIP}
}

func (s *SystemdNode) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Run implements Backend.
func (s *SystemdNode) Run(ctx context.Context, link Link) {
	retry := s.RetryInterval
	if retry <= 0 {
		retry = 200 * time.Millisecond
	}
	lastErr := ""
	for ctx.Err() == nil {
		err := s.session(ctx, link)
		if err != nil && err.Error() != lastErr {
			s.logger().Info("node connection", "node", s.Name, "address", s.Address, "err", err)
			lastErr = err.Error()
		}
		if err == nil {
			lastErr = ""
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

func (s *SystemdNode) dial(ctx context.Context) (*dbus.Conn, error) {
	conn, err := dbus.Dial(s.Address) // not WithContext: that would close the connection with ctx
	if err != nil {
		return nil, err
	}
	// Auth and Hello have no timeout of their own: a hung peer must not hang the reconnect loop.
	done := make(chan error, 1)
	go func() {
		if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
			done <- fmt.Errorf("auth: %w", err)
			return
		}
		if err := conn.Hello(); err != nil {
			done <- fmt.Errorf("hello: %w", err)
			return
		}
		done <- nil
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		conn.Close()
		<-done
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// session runs one connection until it ends; returns the connect error, or nil after a session.
func (s *SystemdNode) session(ctx context.Context, link Link) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := s.dial(cctx)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()

	ch := make(chan *dbus.Signal, 4096)
	conn.Signal(ch)
	setupCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, m := range [][]dbus.MatchOption{
		{dbus.WithMatchSender(systemdDest), dbus.WithMatchInterface(systemdManagerIfc), dbus.WithMatchMember("JobRemoved")},
		{dbus.WithMatchSender(systemdDest), dbus.WithMatchInterface(systemdManagerIfc), dbus.WithMatchMember("UnitNew")},
		{dbus.WithMatchSender(systemdDest), dbus.WithMatchInterface(systemdManagerIfc), dbus.WithMatchMember("UnitRemoved")},
		{dbus.WithMatchSender(systemdDest), dbus.WithMatchInterface(propertiesIface), dbus.WithMatchMember("PropertiesChanged"),
			dbus.WithMatchPathNamespace(systemdPath)},
	} {
		if err := conn.AddMatchSignalContext(setupCtx, m...); err != nil {
			return fmt.Errorf("add match: %w", err)
		}
	}
	mgr := conn.Object(systemdDest, systemdPath)
	if err := mgr.CallWithContext(setupCtx, systemdManagerIfc+".Subscribe", 0).Err; err != nil {
		return fmt.Errorf("systemd Subscribe: %w", err)
	}
	var units []UnitInfo
	if err := mgr.CallWithContext(setupCtx, systemdManagerIfc+".ListUnits", 0).Store(&units); err != nil {
		return fmt.Errorf("systemd ListUnits: %w", err)
	}
	states := make([]UnitState, 0, len(units))
	byPath := make(map[dbus.ObjectPath]string, len(units))
	for _, u := range units {
		states = append(states, UnitState{Name: u.Name, ActiveState: u.ActiveState, SubState: u.SubState})
		byPath[u.Path] = u.Name
	}

	s.mu.Lock()
	s.conn = conn
	s.tracked = map[dbus.ObjectPath][]uint32{}
	s.byID = map[uint32]dbus.ObjectPath{}
	s.early = map[dbus.ObjectPath]earlyResult{}
	s.unitByPath = byPath
	sess := link.Connect(s.PeerIP, states)
	s.sess = sess
	s.mu.Unlock()
	s.logger().Info("node online", "node", s.Name)

	defer func() {
		s.mu.Lock()
		s.sess.Close()
		s.sess = nil
		s.conn = nil
		s.tracked, s.byID, s.early = nil, nil, nil
		s.mu.Unlock()
		s.logger().Info("node offline", "node", s.Name)
	}()

	hb := s.HeartbeatInterval
	if hb <= 0 {
		hb = time.Second
	}
	tick := time.NewTicker(hb)
	defer tick.Stop()
	pingDone := make(chan error, 1)
	pinging := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-ch:
			if !ok {
				return nil // connection closed
			}
			s.handleSignal(sig)
		case <-tick.C:
			if pinging {
				continue
			}
			pinging = true
			go func() {
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				defer cancel()
				pingDone <- conn.Object(systemdDest, systemdPath).CallWithContext(pctx, peerIface+".Ping", 0).Err
			}()
		case err := <-pingDone:
			pinging = false
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return nil // systemd stopped answering: the node is offline
			}
			sess.Heartbeat()
		}
	}
}

func (s *SystemdNode) handleSignal(sig *dbus.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return
	}
	switch sig.Name {
	case systemdManagerIfc + ".JobRemoved":
		var id uint32
		var path dbus.ObjectPath
		var unit, result string
		if dbus.Store(sig.Body, &id, &path, &unit, &result) != nil {
			return
		}
		if ids, ok := s.tracked[path]; ok {
			for _, bc := range ids {
				s.sess.JobDone(bc, result)
				delete(s.byID, bc)
			}
			delete(s.tracked, path)
			return
		}
		now := time.Now()
		s.early[path] = earlyResult{result, now}
		for p, e := range s.early {
			if now.Sub(e.at) > time.Minute {
				delete(s.early, p)
			}
		}
	case systemdManagerIfc + ".UnitNew":
		var unit string
		var path dbus.ObjectPath
		if dbus.Store(sig.Body, &unit, &path) != nil {
			return
		}
		s.unitByPath[path] = unit
		s.sess.UnitNew(unit)
	case systemdManagerIfc + ".UnitRemoved":
		var unit string
		var path dbus.ObjectPath
		if dbus.Store(sig.Body, &unit, &path) != nil {
			return
		}
		delete(s.unitByPath, path)
		s.sess.UnitRemoved(unit)
	case propertiesIface + ".PropertiesChanged":
		var iface string
		var changed map[string]dbus.Variant
		var invalidated []string
		if dbus.Store(sig.Body, &iface, &changed, &invalidated) != nil {
			return
		}
		p := string(sig.Path)
		switch {
		case strings.HasPrefix(p, string(systemdPath)+"/job/"):
			if iface != systemdJobIface {
				return
			}
			if v, ok := changed["State"]; ok {
				state, _ := v.Value().(string)
				for _, bc := range s.tracked[sig.Path] {
					s.sess.JobState(bc, state)
				}
			}
		case strings.HasPrefix(p, string(systemdPath)+"/unit/"):
			unit, ok := s.unitByPath[sig.Path]
			if !ok {
				unit = labelUnescape(p[len(systemdPath)+len("/unit/"):])
			}
			s.sess.UnitPropertiesChanged(unit, iface, changed)
		}
	}
}

// labelUnescape reverses systemd's bus_label_escape ("_2e" -> ".").
func labelUnescape(s string) string {
	if s == "_" {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '_' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func (s *SystemdNode) current() (*dbus.Conn, Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil || s.sess == nil {
		return nil, nil, offlineErr()
	}
	return s.conn, s.sess, nil
}

// StartJob implements Backend.
func (s *SystemdNode) StartJob(ctx context.Context, method, unit, mode string, id uint32) error {
	conn, sess, err := s.current()
	if err != nil {
		return err
	}
	var path dbus.ObjectPath
	call := conn.Object(systemdDest, systemdPath).CallWithContext(ctx, systemdManagerIfc+"."+method, 0, unit, mode)
	if err := call.Store(&path); err != nil {
		return passError(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess != sess {
		return offlineErr()
	}
	if e, ok := s.early[path]; ok {
		delete(s.early, path)
		sess.JobDone(id, e.result)
		return nil
	}
	s.tracked[path] = append(s.tracked[path], id)
	s.byID[id] = path
	return nil
}

// CancelJob implements Backend.
func (s *SystemdNode) CancelJob(ctx context.Context, id uint32) error {
	conn, _, err := s.current()
	if err != nil {
		return err
	}
	s.mu.Lock()
	path, ok := s.byID[id]
	s.mu.Unlock()
	if !ok {
		return dbusErr(ErrFailed, fmt.Sprintf("No job with ID '%d' found", id))
	}
	return passError(conn.Object(systemdDest, path).CallWithContext(ctx, systemdJobIface+".Cancel", 0).Err)
}

// passError keeps systemd's D-Bus errors as they are (value type dbus.Error).
func passError(err error) error {
	if err == nil {
		return nil
	}
	var de dbus.Error
	if errors.As(err, &de) {
		return de
	}
	var dep *dbus.Error
	if errors.As(err, &dep) && dep != nil {
		return *dep
	}
	return err
}

// Call implements Backend: what BlueChi's agent does for each passthrough method.
func (s *SystemdNode) Call(ctx context.Context, method string, args []any) ([]any, error) {
	conn, _, err := s.current()
	if err != nil {
		return nil, err
	}
	spec, ok := nodeMethods[method]
	if !ok {
		return nil, dbusErr(ErrUnknownMethod, "Unknown method "+method)
	}
	ins, _ := splitSig(spec.in)
	typed := make([]any, len(args))
	for i, a := range args {
		typed[i] = a
		if i < len(ins) {
			if v, err := retype(ins[i], a); err == nil {
				typed[i] = v.Interface()
			}
		}
	}
	str := func(i int) string {
		if i < len(args) {
			v, _ := args[i].(string)
			return v
		}
		return ""
	}
	mgr := conn.Object(systemdDest, systemdPath)
	var call *dbus.Call
	switch method {
	case "SetLogLevel":
		return nil, nil // the agent's own log level; nothing to do on systemd
	case "FreezeUnit", "ThawUnit":
		member := "Freeze"
		if method == "ThawUnit" {
			member = "Thaw"
		}
		call = conn.Object(systemdDest, unitPath(str(0))).CallWithContext(ctx, systemdUnitIface+"."+member, 0)
	case "GetUnitProperties":
		call = conn.Object(systemdDest, unitPath(str(0))).CallWithContext(ctx, propertiesIface+".GetAll", 0, str(1))
	case "GetUnitProperty":
		call = conn.Object(systemdDest, unitPath(str(0))).CallWithContext(ctx, propertiesIface+".Get", 0, str(1), str(2))
	default:
		call = mgr.CallWithContext(ctx, systemdManagerIfc+"."+method, 0, typed...)
	}
	if call.Err != nil {
		return nil, passError(call.Err)
	}
	return call.Body, nil
}
