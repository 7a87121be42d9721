package deploy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/qmorch/qmorch/internal/safefile"
)

// ErrEscapesRoot: a path, or a symlink on the way to it, leads out of the root directory.
var ErrEscapesRoot = errors.New("path leads outside the root directory")

// maxSymlinks is Linux's limit on symlinks followed while resolving one path (ELOOP).
const maxSymlinks = 40

// RootFS is an fs.FS over the directory tree at root, read the way a system booted from that
// tree would see it: symlinks are followed, and an absolute link target is resolved against
// root (not against the host's "/"). A path or link that climbs above root with ".." is
// refused with an error wrapping ErrEscapesRoot. Resolution yields a symlink-free path that is
// then opened through an os.Root, so a link swapped in concurrently cannot leave root either.
//
// os.DirFS follows absolute symlinks out of the tree, and os.Root refuses absolute symlinks
// altogether (common in images: agent.conf.d/x.conf -> /usr/share/...); RootFS does neither.
type RootFS struct {
	dir string // absolute, clean
	r   *os.Root
}

// OpenRootFS opens root (a directory) as a RootFS. Close releases it.
func OpenRootFS(root string) (*RootFS, error) {
	if root == "" {
		root = "/"
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, err
	}
	return &RootFS{dir: abs, r: r}, nil
}

// Close releases the root directory.
func (f *RootFS) Close() error { return f.r.Close() }

// Dir is the root directory on this machine.
func (f *RootFS) Dir() string { return f.dir }

// Resolve returns name (an fs.FS name, or an absolute path inside the tree) with every
// symlink resolved, as a clean fs.FS name ("." for the root). From the first name that does
// not exist on, the rest is kept as given (the result names where it would be).
func (f *RootFS) Resolve(name string) (string, error) {
	return f.resolve("resolve", name, true)
}

func (f *RootFS) resolve(op, name string, followLast bool) (string, error) {
	orig := name
	name = strings.TrimPrefix(name, "/")
	if name == "" {
		name = "."
	}
	if strings.HasPrefix(orig, "/") {
		name = path.Clean(name)
	}
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: orig, Err: fs.ErrInvalid}
	}
	var done []string // resolved components, symlink-free
	todo := splitPath(name)
	links := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", &fs.PathError{Op: op, Path: orig, Err: ErrEscapesRoot}
			}
			done = done[:len(done)-1]
			continue
		}
		cur := path.Join(append(append([]string{}, done...), c)...)
		if len(todo) == 0 && !followLast {
			done = append(done, c)
			break
		}
		fi, err := f.r.Lstat(cur)
		if errors.Is(err, fs.ErrNotExist) {
			// Nothing below a missing name can be a symlink: keep the rest as it is.
			rest := path.Join(append(append([]string{}, done...), append([]string{c}, todo...)...)...)
			if !fs.ValidPath(rest) {
				return "", &fs.PathError{Op: op, Path: orig, Err: ErrEscapesRoot}
			}
			return rest, nil
		}
		if err != nil {
			return "", &fs.PathError{Op: op, Path: orig, Err: unwrapPathErr(err)}
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = append(done, c)
			continue
		}
		links++
		if links > maxSymlinks {
			return "", &fs.PathError{Op: op, Path: orig, Err: syscall.ELOOP}
		}
		target, err := f.r.Readlink(cur)
		if err != nil {
			return "", &fs.PathError{Op: op, Path: orig, Err: unwrapPathErr(err)}
		}
		if strings.HasPrefix(target, "/") {
			done = nil
		}
		todo = append(splitPath(target), todo...)
	}
	if len(done) == 0 {
		return ".", nil
	}
	return path.Join(done...), nil
}

func splitPath(p string) []string {
	var out []string
	for _, c := range strings.Split(p, "/") {
		if c != "" {
			out = append(out, c)
		}
	}
	return out
}

// unwrapPathErr keeps the cause of an os.Root error (its path is the resolved one, which
// would confuse messages that name the path asked for).
func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Open implements fs.FS.
func (f *RootFS) Open(name string) (fs.File, error) {
	p, err := f.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	// Non-blocking: opening a FIFO for reading would wait for a writer.
	file, err := safefile.OpenRoot(f.r, p)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: unwrapPathErr(err)}
	}
	return file, nil
}

// Stat implements fs.StatFS (following symlinks).
func (f *RootFS) Stat(name string) (fs.FileInfo, error) {
	p, err := f.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	fi, err := f.r.Stat(p)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: unwrapPathErr(err)}
	}
	return fi, nil
}

// ReadFile implements fs.ReadFileFS. It reads only regular files of at most
// safefile.MaxSize bytes: a tree's FIFO, device or socket is refused (errors.Is
// safefile.ErrNotRegular / ErrTooLarge) instead of blocking or reading without end.
func (f *RootFS) ReadFile(name string) ([]byte, error) {
	p, err := f.resolve("read", name, true)
	if err != nil {
		return nil, err
	}
	b, err := safefile.ReadRoot(f.r, p, safefile.MaxSize)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: unwrapPathErr(err)}
	}
	return b, nil
}

// ReadDir implements fs.ReadDirFS: entries sorted by name, symlinks reported as symlinks.
func (f *RootFS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := f.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	list, err := fs.ReadDir(f.r.FS(), p)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: unwrapPathErr(err)}
	}
	return list, nil
}

// RootHostname returns the hostname a system booted from the tree would have, and where it
// came from: this machine's hostname when the tree is "/", else the first line of the tree's
// /etc/hostname. It returns "" when it cannot tell (an image without /etc/hostname).
func RootHostname(f *RootFS) (name, source string) {
	if f.dir == "/" {
		if h, err := os.Hostname(); err == nil && h != "" {
			return h, "this host"
		}
	}
	b, err := f.ReadFile("etc/hostname")
	if err != nil {
		return "", ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			return line, "/etc/hostname"
		}
	}
	return "", ""
}

// describeRootErr adds what a root escape means to an error.
func describeRootErr(err error) error {
	if errors.Is(err, ErrEscapesRoot) {
		return fmt.Errorf("%w (symlinks and paths are resolved inside --root and may not climb above it)", err)
	}
	return err
}
