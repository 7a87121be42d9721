package qmconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/qmorch/qmorch/internal/safefile"
	"github.com/qmorch/qmorch/qmconf/unitfile"
)

// QMContainerFile is the Quadlet file that defines QM.
const QMContainerFile = "qm.container"

// QuadletUnitDirs are the directories the rootful Quadlet generator (podman 5.4) reads, highest
// precedence first: a file found in an earlier directory (or its subdirectories) masks files with
// the same name in later ones. Subdirectories are searched too, except those ending in ".d".
var QuadletUnitDirs = []string{
	"/run/containers/systemd",
	"/etc/containers/systemd",
	"/usr/share/containers/systemd",
}

// maxQuadletDirDepth bounds the subdirectory walk (Quadlet has no limit; loops are impossible for it
// because it tracks visited paths, and this walk does not follow symlinked directories).
const maxQuadletDirDepth = 8

// unitDirs lists the Quadlet unit directories under fsys in search order: each top directory,
// then its subdirectories depth first in name order, skipping "*.d" directories.
func unitDirs(fsys fs.FS) ([]string, error) {
	var out []string
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		out = append(out, dir)
		if depth >= maxQuadletDirDepth {
			return nil
		}
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		for _, e := range entries {
			if e.IsDir() && !strings.HasSuffix(e.Name(), ".d") {
				if err := walk(path.Join(dir, e.Name()), depth+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, d := range QuadletUnitDirs {
		if err := walk(strings.TrimPrefix(d, "/"), 0); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// EffectiveQuadlet reads the Quadlet file name (e.g. "qm.container") as the rootful Quadlet
// generator sees it on the filesystem fsys (rooted at the host's "/"): the first file with that name
// in QuadletUnitDirs, with its drop-ins (unitfile.DropInDirs in every unit directory, masked and
// ordered by unitfile.OrderDropIns) merged in. Paths in the result and in errors are host paths
// ("/etc/containers/systemd/qm.container.d/10-x.conf"). A missing file is an error wrapping
// fs.ErrNotExist. It returns the merged file and the files it was made of, in order.
func EffectiveQuadlet(fsys fs.FS, name string) (*unitfile.File, []string, error) {
	if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return nil, nil, fmt.Errorf("bad Quadlet file name %q", name)
	}
	dirs, err := unitDirs(fsys)
	if err != nil {
		return nil, nil, err
	}
	var basePath string
	for _, d := range dirs {
		p := path.Join(d, name)
		if _, err := fs.Stat(fsys, p); err == nil {
			basePath = p
			break
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("/%s: %w", p, err)
		}
	}
	if basePath == "" {
		return nil, nil, fmt.Errorf("%s not found in %s: %w", name, strings.Join(QuadletUnitDirs, ", "), fs.ErrNotExist)
	}

	var candidates []string
	for _, d := range dirs {
		for _, dd := range unitfile.DropInDirs(name) {
			dir := path.Join(d, dd)
			entries, err := fs.ReadDir(fsys, dir)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return nil, nil, fmt.Errorf("/%s: %w", dir, err)
			}
			names := make([]string, 0, len(entries))
			for _, e := range entries {
				names = append(names, e.Name())
			}
			sort.Strings(names)
			for _, n := range names {
				candidates = append(candidates, path.Join(dir, n))
			}
		}
	}

	files := append([]string{basePath}, unitfile.OrderDropIns(candidates)...)
	parsed := make([]*unitfile.File, 0, len(files))
	hostPaths := make([]string, 0, len(files))
	for _, p := range files {
		host := "/" + p
		// Only regular files of bounded size: a FIFO or device in the tree must not hang us.
		data, err := safefile.ReadFS(fsys, p, safefile.MaxSize)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, nil, fmt.Errorf("%s: %w", host, err)
		}
		f, err := unitfile.Parse(host, data)
		if err != nil {
			return nil, nil, err
		}
		parsed = append(parsed, f)
		hostPaths = append(hostPaths, host)
	}
	return unitfile.Merge(parsed[0], parsed[1:]...), hostPaths, nil
}

// LoadLayout reads QM's host layout from the effective qm.container of the system rooted at root
// ("/" or "" for this host; a directory holding another system's tree for tests and images): the
// vendor /usr/share/containers/systemd/qm.container (or an /etc or /run copy that masks it) with
// its drop-ins (qm.container.d/*.conf and container.d/*.conf) merged in Quadlet's order, then
// LayoutFromUnit. Every file is read through os.Root, so a path or symlink that leads outside root
// is refused (absolute symlinks included). A missing qm.container is an error wrapping
// fs.ErrNotExist.
func LoadLayout(root string) (Layout, []Warning, error) {
	if root == "" {
		root = "/"
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return Layout{}, nil, err
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return Layout{}, nil, err
	}
	defer r.Close()
	f, _, err := EffectiveQuadlet(safefile.RootFS(r), QMContainerFile)
	if err != nil {
		return Layout{}, nil, fmt.Errorf("QM layout under %s: %w", abs, err)
	}
	return LayoutFromUnit(f)
}
