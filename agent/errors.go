package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
)

// ParseError is a configuration problem that makes BlueChi exit before it
// logs its configuration. Line is 0 when the problem is not tied to a line
// (a missing file, a drop-in directory that is a file, ...).
type ParseError struct {
	Path string
	Line int
	Msg  string
	// Stderr is exactly what BlueChi prints for this failure (it always
	// exits 1). Empty when BlueChi prints nothing, as for a broken last
	// drop-in.
	Stderr string
	// Err is the underlying file system error, if any.
	Err error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Path, e.Msg)
}

func (e *ParseError) Unwrap() error { return e.Err }

// errnoOf maps a file system error to the errno BlueChi would have seen, so
// messages can quote strerror() exactly.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno):
		return errno
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	default:
		return syscall.EIO
	}
}

// strerror returns glibc's text for the errnos that matter here.
func strerror(e syscall.Errno) string {
	switch e {
	case syscall.ENOENT:
		return "No such file or directory"
	case syscall.ENOTDIR:
		return "Not a directory"
	case syscall.EACCES:
		return "Permission denied"
	case syscall.EPERM:
		return "Operation not permitted"
	case syscall.ELOOP:
		return "Too many levels of symbolic links"
	case syscall.EIO:
		return "Input/output error"
	}
	return e.Error()
}
