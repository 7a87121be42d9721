package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/qmorch/qmorch/controller"
)

// oneshot is a command run once on a host node in a transient systemd service started
// through BlueChi (Node.StartTransientUnit). StartTransientUnit returns no BlueChi job, so
// the run watches the unit through the shared monitor and reads ExecMainStatus at the end.
//
// Every node-side effect of qmorch (file delivery, removal, comparison, node-side qmorch
// runs) goes through here: user data only ever travels as credentials or as separate argv
// elements of a constant program, never inside a shell command line.
type oneshot struct {
	Prefix      string       // unit name prefix, e.g. "qmorch-deliver-"; a random suffix is added
	Description string       // the unit's Description=
	Argv        []string     // argv (argv[0] is the program), not escaped; see credentialArg
	Credentials []Credential // SetCredential entries, readable as ${CREDENTIALS_DIRECTORY}/ID
	OK          []int32      // exit statuses that mean success besides 0 (SuccessExitStatus)
}

// props are the StartTransientUnit properties: Type=oneshot with RemainAfterExit so the
// result stays readable until cleanupTransient collects the unit.
func (o oneshot) props(timeout time.Duration) []controller.Property {
	argv := make([]string, len(o.Argv))
	for i, a := range o.Argv {
		if a == credentialArg {
			argv[i] = a // the one place where systemd must expand a variable
			continue
		}
		argv[i] = systemdLiteral(a)
	}
	props := []controller.Property{
		{Name: "Description", Value: dbus.MakeVariant(o.Description)},
		{Name: "Type", Value: dbus.MakeVariant("oneshot")},
		{Name: "RemainAfterExit", Value: dbus.MakeVariant(true)},
	}
	if len(o.Credentials) > 0 {
		props = append(props, controller.Property{Name: "SetCredential", Value: dbus.MakeVariant(o.Credentials)})
	}
	if len(o.OK) > 0 {
		props = append(props, controller.Property{Name: "SuccessExitStatus",
			Value: dbus.MakeVariant(ExitStatusSet{Statuses: o.OK, Signals: []int32{}})})
	}
	props = append(props, controller.Property{Name: "ExecStart",
		Value: dbus.MakeVariant([]ExecCommand{{Path: argv[0], Argv: argv}})})
	if timeout > 0 {
		props = append(props, controller.Property{Name: "TimeoutStartUSec",
			Value: dbus.MakeVariant(uint64(timeout / time.Microsecond))})
	}
	return props
}

// runOneshot starts o on t's host node, waits until it finished, and returns its exit
// status, which is 0 or one of o.OK (any other end is an error naming the unit, its state,
// result and status). The unit is collected in the background once its result was read
// (or the wait failed); the outcome of that (a warning or "") arrives on cleanup, which is
// nil when there is nothing to collect.
func (r *run) runOneshot(ctx context.Context, t *target, o oneshot) (status int32, cleanup <-chan string, err error) {
	status, _, cleanup, err = r.runOneshotNamed(ctx, t, o)
	return status, cleanup, err
}

// runOneshotNamed is runOneshot that also returns the unit's name (for reports).
func (r *run) runOneshotNamed(ctx context.Context, t *target, o oneshot) (status int32, unit string, cleanup <-chan string, err error) {
	unit = o.Prefix + randomHex() + ".service"
	log := r.d.opts.logger.With("node", t.host, "unit", unit)

	w, err := r.hub.watchUnit(ctx, t.host, unit)
	if err != nil {
		return 0, unit, nil, fmt.Errorf("monitor %s: %w", unit, err)
	}
	off := r.hub.watchNode(t.host)
	defer off.close()

	// On the way out the listener goes at once; the subscription ends in the background
	// cleanup (before the unit is stopped, so its stop events are not sent), or here when
	// there is nothing to clean up.
	mayExist, state := false, ""
	defer func() {
		w.h.drop(w)
		if mayExist {
			cleanup = r.cleanupTransient(ctx, t, unit, w, state)
			return
		}
		closeWatch(ctx, w)
	}()
	log.Debug("StartTransientUnit", "argv", o.Argv, "credentials", len(o.Credentials))
	if _, err := t.hostNode.StartTransientUnit(ctx, unit, controller.JobReplace, o.props(r.d.opts.timeout), nil); err != nil {
		mayExist = ctx.Err() != nil // the call may have reached systemd
		return 0, unit, nil, fmt.Errorf("start transient unit %s on %s: %w", unit, t.host, err)
	}
	mayExist = true

	state, err = r.waitTransient(ctx, t, unit, w, off)
	if err != nil {
		return 0, unit, nil, err
	}
	props, err := t.hostNode.GetUnitProperties(ctx, unit, serviceIface)
	if err != nil {
		return 0, unit, nil, fmt.Errorf("read result of %s on %s: %w", unit, t.host, err)
	}
	result, _ := props["Result"].Value().(string)
	status, ok := props["ExecMainStatus"].Value().(int32)
	log.Debug("transient unit finished", "state", state, "result", result, "status", status)
	if ok && state == "active" && (status == 0 || slices.Contains(o.OK, status)) {
		return status, unit, nil, nil
	}
	return 0, unit, nil, fmt.Errorf("unit %s on %s ended %s, result %q, exit status %s (see `journalctl -u %s` on %s)",
		unit, t.host, state, result, statusText(status, ok), unit, t.host)
}

// Exit statuses of the file scripts besides 0.
const (
	exitSame    = 10 // put: the file already has this content; compare: same content
	exitMissing = 11 // remove: nothing to remove; compare: no such file
)

// removeScript removes DEST (argv $1) and syncs its directory; exit 11 when it was absent.
const removeScript = `set -u; d=$1; ` +
	`if [ ! -e "$d" ] && [ ! -L "$d" ]; then exit 11; fi; ` +
	`rm -f "$d" || exit 1; ` +
	`sync "$(dirname "$d")" 2>/dev/null || sync; exit 0`

// compareScript compares the credential PAYLOAD ($1) with DEST ($2): 10 same, 0 differs,
// 11 missing.
const compareScript = `set -u; p=$1; d=$2; ` +
	`if [ ! -f "$d" ]; then exit 11; fi; ` +
	`if cmp -s "$p" "$d"; then exit 10; fi; exit 0`

// FileState is what CompareFile found.
type FileState string

const (
	FileSame    FileState = "same"
	FileDiffers FileState = "differs"
	FileMissing FileState = "missing"
)

// putFile writes content to dest on t's host node atomically (temp file in the same
// directory, fsync, rename, mode 0644) and reports whether it changed.
func (r *run) putFile(ctx context.Context, t *target, dest string, content []byte) (changed bool, cleanup <-chan string, err error) {
	u := newDeliverUnit(dest)
	status, cleanup, err := r.runOneshot(ctx, t, oneshot{
		Prefix:      "qmorch-deliver-",
		Description: "qmorch: write " + dest,
		Argv:        execStartArgv(u.Tmp, u.Dest, u.Dir),
		Credentials: []Credential{{ID: "payload", Data: content}},
		OK:          []int32{exitSame},
	})
	if err != nil {
		return false, cleanup, fmt.Errorf("write %s: %w", dest, err)
	}
	return status == exitWritten, cleanup, nil
}

// removeFile removes path on t's host node; removed is false when it was already absent.
func (r *run) removeFile(ctx context.Context, t *target, path string) (removed bool, cleanup <-chan string, err error) {
	status, cleanup, err := r.runOneshot(ctx, t, oneshot{
		Prefix:      "qmorch-rm-",
		Description: "qmorch: remove " + path,
		Argv:        []string{"/bin/sh", "-c", removeScript, "qmorch-rm", path},
		OK:          []int32{exitMissing},
	})
	if err != nil {
		return false, cleanup, fmt.Errorf("remove %s: %w", path, err)
	}
	return status == 0, cleanup, nil
}

// compareFile tells whether path on t's host node holds exactly content.
func (r *run) compareFile(ctx context.Context, t *target, path string, content []byte) (FileState, <-chan string, error) {
	status, cleanup, err := r.runOneshot(ctx, t, oneshot{
		Prefix:      "qmorch-cmp-",
		Description: "qmorch: compare " + path,
		Argv:        []string{"/bin/sh", "-c", compareScript, "qmorch-cmp", credentialArg, path},
		Credentials: []Credential{{ID: "payload", Data: content}},
		OK:          []int32{exitSame, exitMissing},
	})
	if err != nil {
		return "", cleanup, fmt.Errorf("compare %s: %w", path, err)
	}
	switch status {
	case exitSame:
		return FileSame, cleanup, nil
	case exitMissing:
		return FileMissing, cleanup, nil
	}
	return FileDiffers, cleanup, nil
}

// Session runs node-side file operations through BlueChi with one shared monitor. Commands
// other than deploy (remove, qm set/unset, list) use it; Close releases the monitor.
type Session struct{ r *run }

// Session opens a Session; the caller must Close it.
func (d *Deployer) Session(ctx context.Context) (*Session, error) {
	if d.c == nil {
		return nil, withClass(ErrUnreachable, fmt.Errorf("no controller connection"))
	}
	return &Session{r: &run{d: d, hub: newHub(ctx, d.c)}}, nil
}

// Close releases the session's monitor.
func (s *Session) Close(ctx context.Context) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	s.r.hub.close(cctx)
}

func (s *Session) target(ctx context.Context, node string) (*target, error) {
	n, err := s.r.d.c.GetNode(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	return &target{host: node, hostNode: n}, nil
}

// wait collects the background cleanup of a transient unit into warnings.
func wait(cleanup <-chan string) []string {
	if cleanup == nil {
		return nil
	}
	if w := <-cleanup; w != "" {
		return []string{w}
	}
	return nil
}

// PutFile writes content to path (absolute, on the node) atomically with mode 0644 and
// reports whether the content changed. Warnings are cleanup problems that did not fail it.
func (s *Session) PutFile(ctx context.Context, node, path string, content []byte) (changed bool, warnings []string, err error) {
	if err := validateNodePath(path); err != nil {
		return false, nil, err
	}
	t, err := s.target(ctx, node)
	if err != nil {
		return false, nil, err
	}
	changed, cleanup, err := s.r.putFile(ctx, t, path, content)
	return changed, wait(cleanup), err
}

// RemoveFile removes path on the node; removed is false when it was already gone.
func (s *Session) RemoveFile(ctx context.Context, node, path string) (removed bool, warnings []string, err error) {
	if err := validateNodePath(path); err != nil {
		return false, nil, err
	}
	t, err := s.target(ctx, node)
	if err != nil {
		return false, nil, err
	}
	removed, cleanup, err := s.r.removeFile(ctx, t, path)
	return removed, wait(cleanup), err
}

// CompareFile tells whether path on the node holds exactly content.
func (s *Session) CompareFile(ctx context.Context, node, path string, content []byte) (FileState, []string, error) {
	if err := validateNodePath(path); err != nil {
		return "", nil, err
	}
	t, err := s.target(ctx, node)
	if err != nil {
		return "", nil, err
	}
	st, cleanup, err := s.r.compareFile(ctx, t, path, content)
	return st, wait(cleanup), err
}

// Run runs argv (argv[0] an absolute program path; no shell) once on the node in a
// transient oneshot unit and returns its exit status, which is 0 or one of ok.
func (s *Session) Run(ctx context.Context, node, description string, argv []string, ok ...int32) (int32, []string, error) {
	if len(argv) == 0 || !strings.HasPrefix(argv[0], "/") {
		return 0, nil, invalidf("run on %s: program must be an absolute path, got %q", node, argv)
	}
	t, err := s.target(ctx, node)
	if err != nil {
		return 0, nil, err
	}
	status, cleanup, err := s.r.runOneshot(ctx, t, oneshot{
		Prefix: "qmorch-run-", Description: "qmorch: " + description, Argv: argv, OK: ok,
	})
	return status, wait(cleanup), err
}

// validateNodePath refuses relative paths and paths with ".." (which could escape the
// directory a caller meant).
func validateNodePath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return invalidf("path %q on the node must be absolute", p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return invalidf("path %q on the node must not contain \"..\"", p)
		}
	}
	return nil
}
