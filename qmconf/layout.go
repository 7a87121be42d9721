package qmconf

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/qmorch/qmorch/qmconf/unitfile"
)

// QM host directories when qm.container does not set them.
const (
	DefaultRWVARFS = "/var/qm"
	DefaultROOTFS  = "/usr/lib/qm/rootfs"
)

// Layout is where QM's filesystems live on the host, read from the effective qm.container.
type Layout struct {
	RWETCFS string // host directory mounted as QM's /etc
	RWVARFS string // host directory mounted as QM's /var
	ROOTFS  string // QM's (read-only) root filesystem
}

// DefaultLayout is the layout of a stock QM install.
func DefaultLayout() Layout {
	return Layout{RWETCFS: DefaultRWETCFS, RWVARFS: DefaultRWVARFS, ROOTFS: DefaultROOTFS}
}

// Warning is something odd found while reading configuration that did not stop qmorch: it names the
// file and line it comes from (Line 0 when it concerns the file as a whole, Path "" when it concerns
// no file).
type Warning struct {
	Path string
	Line int
	Msg  string
}

func (w Warning) String() string {
	switch {
	case w.Path == "":
		return w.Msg
	case w.Line == 0:
		return fmt.Sprintf("%s: %s", w.Path, w.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", w.Path, w.Line, w.Msg)
}

func lineWarning(l *unitfile.Line, format string, args ...any) Warning {
	return Warning{Path: l.Path, Line: l.Line, Msg: fmt.Sprintf(format, args...)}
}

func lineError(l *unitfile.Line, format string, args ...any) error {
	return &unitfile.ParseError{Path: l.Path, Line: l.Line, Msg: fmt.Sprintf(format, args...)}
}

// envVar is one variable of [Service] Environment= and where it was set.
type envVar struct {
	value string
	line  *unitfile.Line
}

// serviceEnvironment evaluates [Service] Environment= like systemd (config_parse_environ): an empty
// assignment clears the list, each assignment holds whitespace-separated (quoted, C-escaped)
// NAME=VALUE words, a later word overrides an earlier one with the same NAME. Specifiers are
// expanded only for "%%"; a value with another specifier is kept as is (checkHostDir later refuses it).
func serviceEnvironment(f *unitfile.File) (map[string]envVar, []Warning) {
	env := map[string]envVar{}
	var warns []Warning
	for _, l := range f.LookupAllLines(secService, "Environment") {
		words, err := unitfile.SplitWords(l.Value)
		if err != nil {
			warns = append(warns, lineWarning(l, "Environment=: %v; systemd ignores this line", err))
			continue
		}
		for _, w := range words {
			name, value, ok := strings.Cut(w, "=")
			if !ok || name == "" {
				warns = append(warns, lineWarning(l, "Environment=: %q is not NAME=VALUE; systemd ignores it", w))
				continue
			}
			env[name] = envVar{value: unescapePercent(value), line: l}
		}
	}
	if ls := f.LookupAllLines(secService, "EnvironmentFile"); len(ls) > 0 {
		warns = append(warns, lineWarning(ls[len(ls)-1],
			"EnvironmentFile= is not read by qmorch; variables it sets (they override Environment=) are not considered"))
	}
	return env, warns
}

// unescapePercent turns "%%" into "%" and leaves other specifiers alone.
func unescapePercent(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+1 < len(s) && s[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// expandVars expands ${NAME} and $NAME the way systemd expands them in ExecStart= (where Quadlet
// puts Volume= and Rootfs=): from env, an undefined variable expanding to "". It reports the names
// that were undefined.
func expandVars(s string, env map[string]envVar) (string, []string) {
	var b strings.Builder
	var undefined []string
	isName := func(c byte, first bool) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		var name string
		var end int
		if s[i+1] == '{' {
			j := strings.IndexByte(s[i+2:], '}')
			if j < 0 {
				b.WriteByte(s[i])
				continue
			}
			name, end = s[i+2:i+2+j], i+2+j+1
		} else if isName(s[i+1], true) {
			j := i + 1
			for j < len(s) && isName(s[j], j == i+1) {
				j++
			}
			name, end = s[i+1:j], j
		} else {
			b.WriteByte(s[i])
			continue
		}
		v, ok := env[name]
		if !ok {
			undefined = append(undefined, name)
		}
		b.WriteString(v.value)
		i = end - 1
	}
	return b.String(), undefined
}

// volumeFor returns the last [Container] Volume= whose destination is dest, its source expanded.
// Volume= is SOURCE:DEST[:OPTIONS] (one volume per line, as Quadlet reads it).
func volumeFor(f *unitfile.File, dest string, env map[string]envVar) (src string, line *unitfile.Line, warns []Warning) {
	var found []*unitfile.Line
	var srcs []string
	for _, l := range f.LookupAllLines(secContainer, "Volume") {
		parts := strings.Split(strings.Trim(l.Value, `"`), ":")
		if len(parts) < 2 || filepath.Clean(parts[1]) != dest {
			continue
		}
		s, undef := expandVars(parts[0], env)
		if len(undef) > 0 {
			warns = append(warns, lineWarning(l, "Volume=%s: ${%s} is not set in [Service] Environment=", l.Value, strings.Join(undef, "}, ${")))
		}
		found = append(found, l)
		srcs = append(srcs, s)
	}
	if len(found) == 0 {
		return "", nil, warns
	}
	if len(found) > 1 {
		warns = append(warns, lineWarning(found[len(found)-1], "%d volumes are mounted on %s; using the last one", len(found), dest))
	}
	return srcs[len(srcs)-1], found[len(found)-1], warns
}

// rootfsPath strips podman's --rootfs suffixes (":O" overlay, ":idmap..." options) from a Rootfs=
// value: the part after the last ':' when it has no '/'.
func rootfsPath(v string) string {
	if i := strings.LastIndexByte(v, ':'); i >= 0 && !strings.Contains(v[i+1:], "/") {
		return v[:i]
	}
	return v
}

// LayoutFromUnit reads QM's host layout from the effective (merged, see unitfile.Merge)
// qm.container:
//
//   - RWETCFS, RWVARFS and ROOTFS come from [Service] Environment= (defaults /etc/qm, /var/qm,
//     /usr/lib/qm/rootfs when unset);
//   - the [Container] Volume= mounted on /etc (and on /var), with ${VAR} expanded from that
//     environment, is what QM really sees as its /etc: when its source differs from RWETCFS, the
//     volume wins and a warning says so (files written to RWETCFS would be invisible to QM);
//   - likewise Rootfs= (after expansion, without ":O"-style options) wins over ROOTFS.
//
// Every resulting path must be absolute and clean, without '$' or '%'; otherwise it is an error
// naming the file and line that set it (a *unitfile.ParseError).
func LayoutFromUnit(f *unitfile.File) (Layout, []Warning, error) {
	env, warns := serviceEnvironment(f)
	lay := DefaultLayout()
	type field struct {
		name   string
		ptr    *string
		dest   string // mount point inside QM, "" for ROOTFS
		source *unitfile.Line
	}
	fields := []*field{
		{name: "RWETCFS", ptr: &lay.RWETCFS, dest: "/etc"},
		{name: "RWVARFS", ptr: &lay.RWVARFS, dest: "/var"},
		{name: "ROOTFS", ptr: &lay.ROOTFS},
	}
	for _, fl := range fields {
		if v, ok := env[fl.name]; ok {
			*fl.ptr, fl.source = v.value, v.line
		}
		var mounted string
		var ml *unitfile.Line
		if fl.dest != "" {
			var w []Warning
			mounted, ml, w = volumeFor(f, fl.dest, env)
			warns = append(warns, w...)
		} else if l, ok := f.LookupLine(secContainer, "Rootfs"); ok && l.Value != "" {
			var undef []string
			mounted, undef = expandVars(rootfsPath(strings.Trim(l.Value, `"`)), env)
			ml = l
			if len(undef) > 0 {
				warns = append(warns, lineWarning(l, "Rootfs=%s: ${%s} is not set in [Service] Environment=", l.Value, strings.Join(undef, "}, ${")))
			}
		}
		if ml != nil && mounted != *fl.ptr {
			what := "Rootfs="
			if fl.dest != "" {
				what = "the volume on " + fl.dest
			}
			from := "the default"
			if fl.source != nil {
				from = "Environment= at " + fl.source.Where()
			}
			warns = append(warns, lineWarning(ml, "%s uses %q but %s=%q (%s); using %q",
				what, mounted, fl.name, *fl.ptr, from, mounted))
			*fl.ptr, fl.source = mounted, ml
		}
		if err := checkHostDir(*fl.ptr); err != nil {
			if fl.source != nil {
				return Layout{}, warns, lineError(fl.source, "%s: %v", fl.name, err)
			}
			return Layout{}, warns, fmt.Errorf("%s: %w", fl.name, err)
		}
	}
	return lay, warns, nil
}
