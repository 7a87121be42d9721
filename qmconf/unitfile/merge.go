package unitfile

import (
	"path/filepath"
	"sort"
	"strings"
)

// Merge returns a new file: base followed by the drop-ins, in the order given (use OrderDropIns for
// Quadlet's order). As in podman's UnitFile.Merge, a drop-in's assignments are appended to the
// sections they name, so the last assignment wins for single-valued keys and an empty assignment in
// a drop-in resets a list key. Every line keeps the Path and Line it was read from, so
// LookupLine tells which file and line set a value. The result's Path is base.Path.
func Merge(base *File, dropIns ...*File) *File {
	out := base.Clone()
	for _, d := range dropIns {
		out.Lines = append(out.Lines, d.Clone().Lines...)
	}
	return out
}

// DropInDirs returns the names of the drop-in directories podman 5.4's Quadlet searches for the
// Quadlet file unitFile (a base name such as "qm.container"), most specific first, as
// UnitFile.GetUnitDropinPaths does:
//
//	foo-bar.container     -> foo-bar.container.d, foo-.container.d, container.d
//	foo-bar@x.container   -> foo-bar@x.container.d, foo-bar@.container.d, foo-@.container.d,
//	                         foo-.container.d, container.d
//
// Each name is looked up in every Quadlet unit directory (see OrderDropIns).
func DropInDirs(unitFile string) []string {
	ext := filepath.Ext(unitFile)
	base := strings.TrimSuffix(unitFile, ext)
	name, instance, template := strings.Cut(base, "@")
	dext := ext + ".d"

	broad := []string{strings.TrimPrefix(dext, ".")}
	if parts := strings.Split(name, "-"); len(parts) > 1 {
		for i := 1; i < len(parts); i++ {
			prefix := strings.Join(parts[:i], "-") + "-"
			broad = append(broad, prefix+dext)
			if template {
				broad = append(broad, prefix+"@"+dext)
			}
		}
	}
	if instance != "" {
		broad = append(broad, name+"@"+dext)
	}
	broad = append(broad, unitFile+".d")
	for i, j := 0, len(broad)-1; i < j; i, j = i+1, j-1 {
		broad[i], broad[j] = broad[j], broad[i]
	}
	return broad
}

// OrderDropIns returns the drop-in files Quadlet applies, in the order it applies them. paths must
// be listed in precedence order: for each Quadlet unit directory in search order
// (/run/containers/systemd, /etc/containers/systemd, /usr/share/containers/systemd for root), for
// each directory of DropInDirs (most specific first), the files in it. Files not ending in ".conf"
// are dropped; of several files with the same base name only the first counts (it masks the
// others); the survivors are sorted by base name in plain byte order (Go's sort.Strings, as podman's
// loadUnitDropins does), so "01-a.conf" < "10-a.conf" < "100-a.conf" < "A.conf" < "a.conf".
func OrderDropIns(paths []string) []string {
	byName := map[string]string{}
	var names []string
	for _, p := range paths {
		name := filepath.Base(p)
		if filepath.Ext(name) != ".conf" {
			continue
		}
		if _, seen := byName[name]; seen {
			continue
		}
		byName[name] = p
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = byName[n]
	}
	return out
}
