// Package safefile reads files that come from the user or from a directory tree (--root)
// without trusting what sits at the path: only regular files are read, at most a bounded
// number of bytes, and opening never blocks. A FIFO blocks open(2) for a reader until a
// writer appears, and /dev/zero or /dev/urandom never end, so a plain os.ReadFile on such a
// path hangs or grows memory without bound.
//
// Every open uses O_RDONLY|O_NONBLOCK|O_CLOEXEC, the type check is an fstat of the opened
// descriptor (no window between check and use), and the read stops at limit+1 bytes.
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// MaxSize is the per-file limit for configuration and Quadlet files. BlueChi config lines
// are at most 519 bytes and systemd refuses credentials above 1 MiB; nothing qmorch reads
// legitimately comes close.
const MaxSize = 1 << 20

var (
	// ErrNotRegular: the path is a device, FIFO, socket or directory, not a regular file.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: the file is larger than the limit.
	ErrTooLarge = errors.New("file too large")
)

// openFlags never block on open (FIFO) and keep the descriptor out of children.
const openFlags = os.O_RDONLY | syscall.O_NONBLOCK | syscall.O_CLOEXEC

// TooLargeError is ErrTooLarge with the sizes.
type TooLargeError struct {
	Size    int64 // the size from fstat, or Limit+1 when only the read found out (AtLeast)
	AtLeast bool  // a device or a file that grew while read: Size is a lower bound
	Limit   int64
}

func (e *TooLargeError) Error() string {
	if e.AtLeast {
		return fmt.Sprintf("file is more than the limit of %d bytes", e.Limit)
	}
	return fmt.Sprintf("file is %d bytes, more than the limit of %d bytes", e.Size, e.Limit)
}

func (e *TooLargeError) Unwrap() error { return ErrTooLarge }

// Refused reports whether err is a refusal by this package (not a regular file, too large),
// as opposed to an I/O error such as a missing file.
func Refused(err error) bool {
	return errors.Is(err, ErrNotRegular) || errors.Is(err, ErrTooLarge)
}

// ReadFile reads the file at name (a host path; symlinks are followed) if it is a regular
// file of at most limit bytes. Errors are *fs.PathError naming name.
func ReadFile(name string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(name, openFlags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f, name, limit)
}

// ReadRoot is ReadFile for name inside r (os.Root's rules: nothing outside r is opened).
func ReadRoot(r *os.Root, name string, limit int64) ([]byte, error) {
	f, err := r.OpenFile(name, openFlags, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f, name, limit)
}

// ReadFS is ReadFile for name in fsys. Whether the open can block is up to fsys: the FSes of
// this package (DirFS, RootFS) and deploy.RootFS open with O_NONBLOCK.
func ReadFS(fsys fs.FS, name string, limit int64) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(f, name, limit)
}

// Check returns the refusal for a file with this info (nil for a regular file within limit).
func Check(fi fs.FileInfo, limit int64) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w (%s)", ErrNotRegular, Kind(fi.Mode()))
	}
	if fi.Size() > limit {
		return &TooLargeError{Size: fi.Size(), Limit: limit}
	}
	return nil
}

func read(f fs.File, name string, limit int64) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: unwrap(err)}
	}
	if err := Check(fi, limit); err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	// The size from fstat is a hint (the file may grow): never read more than limit+1.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: unwrap(err)}
	}
	if int64(len(data)) > limit {
		return nil, &fs.PathError{Op: "read", Path: name, Err: &TooLargeError{Size: int64(len(data)), AtLeast: true, Limit: limit}}
	}
	return data, nil
}

func unwrap(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Kind names a file type for messages ("character device", "FIFO", ...).
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "regular file"
	case m.IsDir():
		return "directory"
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	default:
		return "special file " + m.Type().String()
	}
}

// OpenRoot opens name inside r for reading without blocking (a FIFO opens at once). Use it
// for fs.FS Open implementations; the caller still decides what to do with the file type.
func OpenRoot(r *os.Root, name string) (*os.File, error) {
	return r.OpenFile(name, openFlags, 0)
}

// RootFS is r.FS() with non-blocking opens and a ReadFile that reads only regular files of
// at most MaxSize bytes.
func RootFS(r *os.Root) fs.FS { return rootFS{r: r, fsys: r.FS()} }

type rootFS struct {
	r    *os.Root
	fsys fs.FS
}

func (f rootFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	file, err := OpenRoot(f.r, name)
	if err != nil {
		return nil, err
	}
	return file, nil
}

func (f rootFS) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	return ReadRoot(f.r, name, MaxSize)
}

func (f rootFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(f.fsys, name) }
func (f rootFS) Stat(name string) (fs.FileInfo, error)      { return fs.Stat(f.fsys, name) }

// DirFS is os.DirFS(dir) with non-blocking opens and a ReadFile that reads only regular
// files of at most MaxSize bytes. Like os.DirFS it follows symlinks, also out of dir.
func DirFS(dir string) fs.FS { return dirFS{dir: dir, fsys: os.DirFS(dir)} }

type dirFS struct {
	dir  string
	fsys fs.FS
}

func (f dirFS) join(op, name string) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	return filepath.Join(f.dir, filepath.FromSlash(name)), nil
}

func (f dirFS) Open(name string) (fs.File, error) {
	p, err := f.join("open", name)
	if err != nil {
		return nil, err
	}
	file, err := os.OpenFile(p, openFlags, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: unwrap(err)}
	}
	return file, nil
}

func (f dirFS) ReadFile(name string) ([]byte, error) {
	p, err := f.join("read", name)
	if err != nil {
		return nil, err
	}
	b, err := ReadFile(p, MaxSize)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: unwrap(err)}
	}
	return b, nil
}

func (f dirFS) ReadDir(name string) ([]fs.DirEntry, error) { return fs.ReadDir(f.fsys, name) }
func (f dirFS) Stat(name string) (fs.FileInfo, error)      { return fs.Stat(f.fsys, name) }
