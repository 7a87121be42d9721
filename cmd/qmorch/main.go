// Command qmorch deploys and manages workloads in the QM partitions of BlueChi nodes.
//
// Exit codes (mapped once, in exitCode):
//
//	0  success on every node
//	1  some node or unit failed (or the run was interrupted)
//	2  usage or validation error (bad flags or arguments, invalid file, unknown node); nothing was touched
//	3  the controller is unreachable, or the bus policy denied access (BlueChi admits only root)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-multierror"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/deploy"
)

// Set by the linker (see Makefile).
var (
	version = "dev"
	commit  = "unknown"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitUnreachable = 3
)

func main() {
	ctx, stop := notifyContext(context.Background())
	code := run(ctx, os.Args[1:], defaultDeps())
	stop()
	os.Exit(code)
}

// notifyContext is a context cancelled by the first SIGINT or SIGTERM. After that signal the
// default handling is restored, so a second Ctrl-C or SIGTERM kills the process even when
// something does not honour the context.
func notifyContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}

// run executes one command line and returns the exit code; errors are printed here, once.
func run(ctx context.Context, args []string, d deps) int {
	root := NewRootCmd(d)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var ec exitCoder
	if errors.As(err, &ec) && err.Error() == "" {
		return ec.ExitCode() // a status, not a failure (provision --changed-exit-code)
	}
	printError(d.streams.ErrOut, err)
	code := exitCode(err)
	if isUsage(err) && cmd != nil {
		fmt.Fprintf(d.streams.ErrOut, "See '%s --help'.\n", cmd.CommandPath())
	}
	if errors.Is(err, controller.ErrAccessDenied) && os.Geteuid() != 0 {
		fmt.Fprintf(d.streams.ErrOut, "hint: BlueChi's D-Bus policy admits only root; run qmorch as root (you are uid %d)\n", os.Geteuid())
	}
	if ctx.Err() != nil {
		fmt.Fprintln(d.streams.ErrOut, "qmorch: interrupted")
		if code == ExitUnreachable {
			code = ExitFailed // interrupted while connecting: the documented exit code of an interrupted run
		}
	}
	return code
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case isUsage(err), errors.Is(err, deploy.ErrInvalid):
		return ExitUsage
	case errors.Is(err, controller.ErrAccessDenied),
		errors.Is(err, controller.ErrUnreachable),
		errors.Is(err, controller.ErrControllerUnavailable),
		errors.Is(err, deploy.ErrUnreachable):
		return ExitUnreachable
	default:
		return ExitFailed
	}
}

// exitCoder is an error that picks its own exit code; with an empty message nothing is printed.
type exitCoder interface{ ExitCode() int }

// usageError marks bad flags or arguments.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

func isUsage(err error) bool {
	var ue *usageError
	return errors.As(err, &ue)
}

// printError writes err to w, one line per node for aggregated errors.
func printError(w io.Writer, err error) {
	var merr *multierror.Error
	if errors.As(err, &merr) {
		for _, e := range merr.Errors {
			fmt.Fprintf(w, "error: %v\n", e)
		}
		return
	}
	fmt.Fprintf(w, "error: %v\n", err)
}
