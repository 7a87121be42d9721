package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"syscall"

	"github.com/qmorch/qmorch/internal/safefile"
)

// LoadOptions are the inputs of a merge. Everything BlueChi would take from
// the running system is explicit so the merge stays pure.
type LoadOptions struct {
	// FS is the target's "/" (e.g. deploy.RootFS for --root). Nil means the
	// real root. Its Open should not block on a FIFO (os.DirFS does): files
	// are checked with Stat first, but only an O_NONBLOCK open closes the race.
	FS fs.FS
	// Hostname is the compiled-in default NodeName of the agent.
	Hostname string
	// Env holds BC_LOG_LEVEL, BC_LOG_TARGET, BC_LOG_IS_QUIET (others are ignored).
	Env map[string]string
	// ConfigFile is the -c option (the last one when given twice), "" if none.
	ConfigFile string
	// Paths overrides the compiled-in paths; zero value means PathsFor(program).
	Paths Paths
}

// LoadAgent merges the agent configuration like bluechi-agent.
func LoadAgent(opts LoadOptions) (*Config, error) { return Load(ProgramAgent, opts) }

// LoadController merges the controller configuration like bluechi-controller.
func LoadController(opts LoadOptions) (*Config, error) { return Load(ProgramController, opts) }

// Load merges built-in defaults, the default file, the main file, the
// drop-ins, the env and the -c file in BlueChi's order
// (cfg_load_complete_configuration). A *ParseError is returned for every
// case where BlueChi exits.
func Load(p Program, opts LoadOptions) (*Config, error) {
	fsys := opts.FS
	if fsys == nil {
		fsys = safefile.DirFS("/")
	}
	paths := opts.Paths
	if paths == (Paths{}) {
		paths = PathsFor(p)
	}
	l := loader{fsys: fsys, cfg: newConfig(p)}
	section := p.DefaultSection()
	for _, kv := range builtinDefaults(p, opts.Hostname) {
		l.cfg.set(section, kv[0], kv[1], Origin{Kind: OriginBuiltin})
	}

	// 1. The default file must exist.
	if paths.Default != "" {
		f, status, err := l.readFile(paths.Default)
		if err != nil {
			return nil, l.fileError(err, paths.Default, "Error loading default configuration file '%s': '%s'.\n")
		}
		l.apply(f, paths.Default, "default", status)
	}

	// 2. The main file may be absent; any other error is fatal.
	if paths.Main != "" {
		f, status, err := l.readFile(paths.Main)
		var ioErr *ioError
		switch {
		case errors.As(err, &ioErr) && ioErr.errno == syscall.ENOENT:
			l.cfg.Files = append(l.cfg.Files, FileStatus{Path: paths.Main, Role: "main", Status: "missing"})
		case err != nil:
			return nil, l.fileError(err, paths.Main, "Error loading custom configuration file '%s': '%s'.\n")
		default:
			l.apply(f, paths.Main, "main", status)
		}
	}

	// 3. Drop-ins.
	if paths.DropIn != "" {
		if err := l.dropIns(paths.DropIn); err != nil {
			return nil, err
		}
	}

	// 4. Env: non-empty values overwrite the program's own section.
	for _, ev := range envKeys {
		if v := opts.Env[ev.Env]; v != "" {
			l.cfg.set(section, ev.Key, v, Origin{Kind: OriginEnv, Path: ev.Env})
		}
	}

	// 5. The -c file.
	if opts.ConfigFile != "" {
		f, status, err := l.readFile(opts.ConfigFile)
		if err != nil {
			return nil, l.fileError(err, opts.ConfigFile, "Error loading configuration file '%s', error code '%s'.\n")
		}
		l.apply(f, opts.ConfigFile, "cli", status)
	}

	l.checkLogLevel()
	return l.cfg, nil
}

type loader struct {
	fsys fs.FS
	cfg  *Config
}

// ioError is a failure to access a file, as errno.
type ioError struct {
	errno syscall.Errno
	err   error
}

func (e *ioError) Error() string { return strerror(e.errno) }
func (e *ioError) Unwrap() error { return e.err }

// fsPath turns an absolute path into an fs.FS name.
func fsPath(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "."
	}
	return strings.TrimPrefix(p, "/")
}

// readFile is cfg_load_from_file up to the parse: access(R_OK), then
// fopen+fgets, where a directory opens fine and reads as empty.
func (l *loader) readFile(name string) (*File, string, error) {
	info, err := fs.Stat(l.fsys, fsPath(name))
	if err != nil {
		return nil, "", &ioError{errno: errnoOf(err), err: err}
	}
	if info.IsDir() {
		return &File{Path: name, index: map[sectionKey]*FileEntry{}}, "directory", nil
	}
	// BlueChi would block on a FIFO and read a device without end; qmorch refuses both
	// (and files above safefile.MaxSize) with a fatal error naming the file.
	if err := safefile.Check(info, safefile.MaxSize); err != nil {
		return nil, "", refusedError(name, err)
	}
	data, err := safefile.ReadFS(l.fsys, fsPath(name), safefile.MaxSize)
	if safefile.Refused(err) { // changed since the Stat
		return nil, "", refusedError(name, err)
	}
	if err != nil {
		return nil, "", &ioError{errno: errnoOf(err), err: err}
	}
	f, err := Read(name, data)
	if err != nil {
		return nil, "", err
	}
	return f, "loaded", nil
}

// refusedError is a file qmorch will not read (see safefile). It is fatal wherever it
// occurs, drop-ins included: there is no BlueChi behaviour to mimic (it would hang).
func refusedError(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &ParseError{Path: name, Msg: err.Error() + "; qmorch reads only regular files", Err: err}
}

// fileError turns a readFile error into the fatal *ParseError BlueChi would
// report, with its exact stderr text.
func (l *loader) fileError(err error, name, ioFormat string) error {
	var ioErr *ioError
	if errors.As(err, &ioErr) {
		return &ParseError{Path: name, Msg: strerror(ioErr.errno), Err: ioErr.err,
			Stderr: fmt.Sprintf(ioFormat, name, strerror(ioErr.errno))}
	}
	return err // already a *ParseError with BlueChi's text
}

// apply copies one parsed file over the config (cfg_copy_overwrite): every
// key of the file replaces the earlier value, `Key=` included.
func (l *loader) apply(f *File, name, role, status string) {
	l.cfg.Files = append(l.cfg.Files, FileStatus{Path: name, Role: role, Status: status})
	l.cfg.Warnings = append(l.cfg.Warnings, f.Warnings...)
	for _, e := range f.Entries {
		if kind, msg := checkKey(l.cfg.Program, e.Section, e.Key); kind != "" {
			l.cfg.Warnings = append(l.cfg.Warnings, Warning{Kind: kind, Path: name, Line: e.Lines[0], Msg: msg})
		}
		l.cfg.set(e.Section, e.Key, e.Value, Origin{Kind: OriginFile, Path: name, Lines: e.Lines})
	}
}

// dropIns is cfg_load_from_dir. Its quirks come from the loop keeping only
// the last file's result: a broken drop-in is skipped whole, unless it is the
// last one, which makes BlueChi exit 1 without a message. A file that cannot
// be accessed (a dangling symlink) stops the loop and is fatal.
func (l *loader) dropIns(dir string) error {
	name := fsPath(dir)
	info, err := fs.Stat(l.fsys, name)
	if err != nil {
		return nil // access(F_OK) failed: a missing directory is fine
	}
	dirErr := func(errno syscall.Errno, err error) error {
		return &ParseError{Path: dir, Msg: strerror(errno), Err: err,
			Stderr: fmt.Sprintf("Error loading configuration from conf.d dir '%s': '%s'.\n", dir, strerror(errno))}
	}
	if !info.IsDir() {
		return dirErr(syscall.ENOTDIR, nil)
	}
	list, err := fs.ReadDir(l.fsys, name)
	if err != nil {
		return dirErr(errnoOf(err), err)
	}
	var names []string
	for _, de := range list {
		if strings.HasSuffix(de.Name(), ".conf") {
			names = append(names, de.Name())
		}
	}
	sort.Strings(names) // alphasort in the C locale is byte order

	var last error
	for _, n := range names {
		file := dir + "/" + n
		f, status, err := l.readFile(file)
		last = err
		var ioErr *ioError
		if errors.As(err, &ioErr) {
			msg := fmt.Sprintf("Error loading confd file '%s' on line %d.\n", file, -int(ioErr.errno))
			e := dirErr(ioErr.errno, ioErr.err).(*ParseError)
			e.Path, e.Msg, e.Stderr = file, "drop-in: "+strerror(ioErr.errno), msg+e.Stderr
			return e
		}
		if safefile.Refused(err) {
			return err
		}
		if err != nil {
			l.cfg.Files = append(l.cfg.Files, FileStatus{Path: file, Role: "drop-in", Status: "skipped"})
			var pe *ParseError
			errors.As(err, &pe)
			l.cfg.Warnings = append(l.cfg.Warnings, Warning{Kind: WarnSkippedDropIn, Path: file, Line: pe.Line,
				Msg: "drop-in skipped whole by BlueChi: " + pe.Msg})
			continue
		}
		l.apply(f, file, "drop-in", status)
	}
	var pe *ParseError
	if errors.As(last, &pe) {
		// Drop the skip warning: here BlueChi does not skip, it exits.
		l.cfg.Warnings = l.cfg.Warnings[:len(l.cfg.Warnings)-1]
		return &ParseError{Path: pe.Path, Line: pe.Line,
			Msg: pe.Msg + " (last drop-in: BlueChi exits 1 without a message)"}
	}
	return nil
}

func (l *loader) checkLogLevel() {
	e := l.cfg.Lookup(l.cfg.Program.DefaultSection(), "LogLevel")
	if e == nil || e.Value == "" || contains(LogLevels, e.Value) {
		return
	}
	w := Warning{Kind: WarnBadLogLevel, Path: e.Origin.Path, Line: e.Origin.Line(),
		Msg: fmt.Sprintf("LogLevel %q is not one of %s (case-sensitive): BlueChi ignores it and logs at INFO", e.Value, strings.Join(LogLevels, ", "))}
	if e.Origin.Kind == OriginEnv {
		w.Path = "env " + e.Origin.Path
	}
	l.cfg.Warnings = append(l.cfg.Warnings, w)
}
