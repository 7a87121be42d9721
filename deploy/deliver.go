package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/qmorch/qmorch/controller"
)

// systemd D-Bus interfaces read through Node.GetUnitProperties.
const (
	unitIface    = "org.freedesktop.systemd1.Unit"
	serviceIface = "org.freedesktop.systemd1.Service"
)

// exitWritten is the delivery script's exit status for "written" (exitSame: unchanged).
const exitWritten = 0

// deliverScript is the constant program the transient unit runs on the host node:
//
//	/bin/sh -c deliverScript qmorch-deliver PAYLOAD TMP DEST DIR
//
// It only reads its positional arguments; the file content never appears in a command line.
// PAYLOAD is the systemd credential holding the content; TMP is in DIR, so mv is a rename.
// Exit 10 = DEST already has this content, 0 = written, anything else = failure (TMP removed).
// It is written with plain '$' and escaped for systemd by oneshot.props, the only place that
// knows about systemd's "$$" rule. It must not contain '%' (systemd specifiers).
const deliverScript = `set -u; p=$1; t=$2; d=$3; dir=$4; ` +
	`if [ -f "$d" ] && cmp -s "$p" "$d"; then exit 10; fi; ` +
	`mkdir -p "$dir" || exit 1; ` +
	`trap 'rm -f "$t"' EXIT; ` +
	`install -m 0644 "$p" "$t" || exit 1; ` +
	`sync "$t" 2>/dev/null || sync; ` +
	`mv -f "$t" "$d" || exit 1; ` +
	`sync "$dir" 2>/dev/null || sync; ` +
	`exit 0`

// credentialArg is the script's PAYLOAD argument: the one place where systemd must expand a
// variable, so it is not escaped.
const credentialArg = "${CREDENTIALS_DIRECTORY}/payload"

// systemdLiteral escapes s for an ExecStart argument so that systemd passes it on unchanged:
// systemd expands $VAR and ${VAR} in ExecStart arguments, and "$$" stands for a literal '$'.
func systemdLiteral(s string) string { return strings.ReplaceAll(s, "$", "$$") }

// execStartArgv is the argv of the delivery command (argv[0] included), not yet escaped for
// systemd (oneshot.props does that, leaving credentialArg alone).
func execStartArgv(tmp, dest, dir string) []string {
	return []string{"/bin/sh", "-c", deliverScript, "qmorch-deliver", credentialArg, tmp, dest, dir}
}

// D-Bus shapes of the systemd properties used (Go structs marshal as D-Bus structs).
type (
	// ExecCommand is one ExecStart entry, a(sasb): path, argv (with argv[0]), ignore-failure.
	ExecCommand struct {
		Path          string
		Argv          []string
		IgnoreFailure bool
	}
	// Credential is one SetCredential entry, a(say): id, data.
	Credential struct {
		ID   string
		Data []byte
	}
	// ExitStatusSet is SuccessExitStatus, (aiai): exit statuses, signals.
	ExitStatusSet struct {
		Statuses []int32
		Signals  []int32
	}
)

// deliverUnit names the paths of one atomic write: the temp file is hidden in the same
// directory (so mv is a rename) and has a random suffix.
type deliverUnit struct {
	Dest string // e.g. ${RWETCFS}/containers/systemd/NAME.container
	Tmp  string
	Dir  string
}

func newDeliverUnit(dest string) deliverUnit {
	dir, file := path.Split(dest)
	dir = path.Clean(dir)
	return deliverUnit{
		Dest: dest,
		Tmp:  path.Join(dir, "."+file+".qmorch-"+randomHex()),
		Dir:  dir,
	}
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// deliver writes the Quadlet file into QM's Quadlet directory on the host node and reports
// whether the content changed (see putFile).
func (r *run) deliver(ctx context.Context, t *target) (changed bool, cleanup <-chan string, err error) {
	return r.putFile(ctx, t, path.Join(quadletDir(r.d.opts.rwetcfs), r.req.File), r.req.Content)
}

func statusText(status int32, ok bool) string {
	if !ok {
		return "unknown"
	}
	return fmt.Sprint(status)
}

// waitTransient waits until the oneshot unit is active (exited, RemainAfterExit) or failed.
// The watch was subscribed before the unit was started, and the unit did not exist before
// (random name): the controller passes the subscription to the agent before the start
// (both go over the controller's one connection to the agent, in order), so every state
// change of the unit arrives as an event and no initial property read is needed. Lost
// events (overflow) are covered by a read.
func (r *run) waitTransient(ctx context.Context, t *target, unit string, w *unitWatch, off *nodeWatch) (string, error) {
	terminal := func(active string) bool { return active == "active" || active == "failed" }
	last := ""
	for {
		select {
		case <-w.notify:
			for _, ev := range w.take() {
				if ev.Kind == controller.EventOverflow {
					props, err := t.hostNode.GetUnitProperties(ctx, unit, unitIface)
					if err == nil {
						ev = controller.Event{Kind: controller.EventUnitStateChanged}
						ev.ActiveState, _ = props["ActiveState"].Value().(string)
					}
				}
				if ev.Kind != controller.EventUnitStateChanged {
					continue
				}
				if ev.SubState == subAgentOffline {
					return "", fmt.Errorf("wait for %s: host node %s: %w", unit, t.host, controller.ErrNodeOffline)
				}
				last = ev.ActiveState
				if terminal(last) {
					return last, nil
				}
			}
		case <-off.offline:
			return "", fmt.Errorf("wait for %s: host node %s: %w", unit, t.host, controller.ErrNodeOffline)
		case <-w.ended:
			return "", fmt.Errorf("wait for %s: %w", unit, errMonitorEnded)
		case <-ctx.Done():
			return "", fmt.Errorf("wait for %s (last state %q): %w", unit, last, ctxErr(ctx))
		}
	}
}

// subAgentOffline is the SubState of the virtual UnitStateChanged BlueChi sends when an
// agent disconnects.
const subAgentOffline = "agent-offline"

const cleanupTimeout = 10 * time.Second

// cleanupTransient collects the delivery unit in the background, detached from ctx's
// cancellation (Ctrl-C still cleans up): it ends w's subscription, then stops the unit when
// it may still be loaded as active (RemainAfterExit) and resets it when it may have failed,
// so systemd collects it. state is how the unit ended ("active", "failed", or "" when
// unknown: then both).
func (r *run) cleanupTransient(ctx context.Context, t *target, unit string, w *unitWatch, state string) <-chan string {
	out := make(chan string, 1)
	go func() {
		if t.cleanupGate != nil {
			select {
			case <-t.cleanupGate:
			case <-r.allStarted: // never ready when nil (outside Deploy)
			}
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		w.close(cctx)
		var warn []string
		if state != "failed" {
			job, err := t.hostNode.StopUnit(cctx, unit, controller.JobReplace)
			if err == nil {
				_, err = job.Wait(cctx)
			}
			if err != nil && !errors.Is(err, controller.ErrNoSuchUnit) {
				warn = append(warn, fmt.Sprintf("stop %s on %s: %v", unit, t.host, err))
			}
		}
		// A stopped "active (exited)" oneshot ends inactive, not failed: nothing to reset.
		if state != "active" {
			err := t.hostNode.ResetFailedUnit(cctx, unit)
			if err != nil && !errors.Is(err, controller.ErrNoSuchUnit) && !errors.Is(err, controller.ErrNodeOffline) {
				warn = append(warn, fmt.Sprintf("reset-failed %s on %s: %v", unit, t.host, err))
			}
		}
		out <- strings.Join(warn, "; ")
	}()
	return out
}

// closeWatch unsubscribes w, also after ctx was cancelled.
func closeWatch(ctx context.Context, w *unitWatch) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	w.close(cctx)
}

// releaseWatch releases w (see unitWatch.release), also after ctx was cancelled.
func releaseWatch(ctx context.Context, w *unitWatch) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	w.release(cctx)
}

// ctxErr names a deadline as controller.ErrTimeout (which the CLI reports as a timeout).
func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return controller.ErrTimeout
	}
	return ctx.Err()
}
