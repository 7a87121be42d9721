package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"
)

// Typed errors. Every error the client returns wraps one of these when it applies, so callers use
// errors.Is; the original dbus.Error stays reachable with errors.As (value target).
var (
	// ErrNodeOffline: org.eclipse.bluechi.Offline, or a job's node went offline while waiting.
	ErrNodeOffline = errors.New("node is offline")
	// ErrNodeNotFound: GetNode with an unknown name (org.freedesktop.DBus.Error.ServiceUnknown "Node not found").
	ErrNodeNotFound = errors.New("node not found")
	// ErrAccessDenied: the bus policy refused the caller; the BlueChi API only admits root.
	ErrAccessDenied = errors.New("access denied: the BlueChi API only admits root (the D-Bus policy refused the caller)")
	// ErrNoSuchUnit: org.freedesktop.systemd1.NoSuchUnit passed through from a node.
	ErrNoSuchUnit = errors.New("no such unit")
	// ErrUnitExists: org.freedesktop.systemd1.UnitExists (e.g. StartTransientUnit with a loaded name).
	ErrUnitExists = errors.New("unit exists")
	// ErrTimeout: a context deadline or a D-Bus timeout; wraps context.DeadlineExceeded when that was the cause.
	ErrTimeout = errors.New("timed out")

	// Additional errors (not in the architecture contract, additive).

	// ErrControllerUnavailable: nobody owns org.eclipse.bluechi on the bus, or the owner went away
	// while a job was being waited for.
	ErrControllerUnavailable = errors.New("BlueChi controller is not available on the bus")
	// ErrDisconnected: the bus connection closed (or the client was closed) while waiting.
	ErrDisconnected = errors.New("bus connection closed")
	// ErrUnreachable: the bus socket could not be reached or the connection handshake failed.
	ErrUnreachable = errors.New("bus unreachable")
)

// Error is a D-Bus error mapped to a typed error. Its text keeps the D-Bus name and message.
type Error struct {
	Kind    error  // one of the Err* sentinels, nil when the name is not known
	Name    string // D-Bus error name
	Message string // D-Bus error message (first body string), may be empty
	dbusErr dbus.Error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Kind != nil {
		b.WriteString(e.Kind.Error())
		b.WriteString(": ")
	}
	b.WriteString(e.Name)
	if e.Message != "" && e.Message != e.Name {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap exposes the sentinel and the original dbus.Error.
func (e *Error) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.dbusErr}
	}
	return []error{e.Kind, e.dbusErr}
}

// timeoutError is ErrTimeout caused by a context deadline (errors.Is matches both).
type timeoutError struct{ cause error }

func (e *timeoutError) Error() string   { return ErrTimeout.Error() + ": " + e.cause.Error() }
func (e *timeoutError) Unwrap() []error { return []error{ErrTimeout, e.cause} }

func newTimeout(cause error) error { return &timeoutError{cause: cause} }

// MapError turns an error returned by godbus into a typed error:
//   - a remote error (value type dbus.Error) becomes *Error wrapping the matching sentinel
//     (unknown names are kept as *Error with a nil Kind, so the name stays in the text);
//   - context.DeadlineExceeded becomes ErrTimeout (still errors.Is context.DeadlineExceeded);
//   - anything else (context.Canceled, dbus.ErrClosed, ...) is returned unchanged.
//
// Errors that were already mapped are returned unchanged. MapError(nil) is nil.
func MapError(err error) error {
	if err == nil {
		return nil
	}
	var mapped *Error
	if errors.As(err, &mapped) {
		return err
	}
	var te *timeoutError
	if errors.As(err, &te) {
		return err
	}
	var de dbus.Error
	if errors.As(err, &de) {
		return fromDBusError(de)
	}
	var dep *dbus.Error
	if errors.As(err, &dep) && dep != nil {
		return fromDBusError(*dep)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return newTimeout(err)
	}
	return err
}

func fromDBusError(de dbus.Error) *Error {
	msg := ""
	if len(de.Body) > 0 {
		msg, _ = de.Body[0].(string)
	}
	e := &Error{Name: de.Name, Message: msg, dbusErr: de}
	switch de.Name {
	case ErrorNameOffline:
		e.Kind = ErrNodeOffline
	case ErrorNameServiceUnknown:
		// BlueChi answers GetNode("unknown") with ServiceUnknown "Node not found"; the bus daemon
		// uses the same name when nobody owns org.eclipse.bluechi ("The name ... was not provided
		// by any .service files").
		if strings.Contains(msg, "was not provided") {
			e.Kind = ErrControllerUnavailable
		} else {
			e.Kind = ErrNodeNotFound
		}
	case ErrorNameNameHasNoOwner:
		e.Kind = ErrControllerUnavailable
	case ErrorNameAccessDenied, ErrorNameAuthFailed:
		e.Kind = ErrAccessDenied
	case ErrorNameNoSuchUnit:
		e.Kind = ErrNoSuchUnit
	case ErrorNameUnitExists:
		e.Kind = ErrUnitExists
	case ErrorNameNoReply, ErrorNameTimeout, ErrorNameTimedOut:
		e.Kind = ErrTimeout
	}
	return e
}

// wrap maps err and prefixes it with what was being done.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf(format+": %w", append(args, MapError(err))...)
}

// unreachableError says which bus could not be reached; errors.Is matches ErrUnreachable and the cause.
type unreachableError struct {
	addr  string
	cause error
}

func (e *unreachableError) Error() string {
	if errors.Is(e.cause, ErrTimeout) {
		return "controller bus " + e.addr + " did not answer within the timeout: " + e.cause.Error()
	}
	return "controller bus " + e.addr + " unreachable: " + e.cause.Error()
}
func (e *unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.cause} }
