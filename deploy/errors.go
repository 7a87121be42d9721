package deploy

import (
	"errors"
	"fmt"
)

// Error classes. Every error the engine returns wraps at most one of them, so the CLI
// maps exit codes with errors.Is (per-node failures wrap none of them).
var (
	// ErrInvalid: the request is wrong (file name or content, options, unknown node);
	// nothing was touched.
	ErrInvalid = errors.New("invalid request")
	// ErrUnreachable: the controller could not be asked (bus down, BlueChi not running,
	// access denied). Access denied also wraps controller.ErrAccessDenied.
	ErrUnreachable = errors.New("controller unreachable")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// classError wraps err with a class so errors.Is finds both, while the text stays err's.
type classError struct {
	class, err error
}

func (e *classError) Error() string   { return e.err.Error() }
func (e *classError) Unwrap() []error { return []error{e.err, e.class} }

func withClass(class, err error) error {
	if err == nil {
		return nil
	}
	return &classError{class: class, err: err}
}
