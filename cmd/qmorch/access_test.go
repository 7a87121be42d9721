package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/tests/testcontroller"
)

// A non-root caller refused by BlueChi's bus policy gets exit 3 and a message that says why
// (issue: "a non-root caller refused by the bus policy gets an error that says so").
func TestNonRootCallerIsDenied(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	if !testcontroller.IsRoot() {
		t.Skip("needs root to run the binary as uid 65534")
	}
	binDir := buildQmorchBinary(t, "v0.0.0-test", "0000000")
	h := testcontroller.Start(t, testcontroller.WithMemoryNodes("node1", "qm.node1"), testcontroller.WithRootOnly(true))
	sock, ok := strings.CutPrefix(h.Address, "unix:path=")
	require.True(t, ok, "bus address %q", h.Address)
	// Test temp dirs are 0700: let uid 65534 reach the socket and the binary (the bus policy,
	// not file modes, must be what refuses it).
	for _, dir := range []string{filepath.Dir(sock), binDir} {
		for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
			require.NoError(t, os.Chmod(d, 0o755))
		}
	}

	for _, args := range [][]string{
		{"status"},
		{"deploy", "node1", "../../examples/nested.container"},
	} {
		t.Run(args[0], func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(binDir, "qmorch"), append(args, "--bus-address", h.Address, "-o", "json")...)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			err := cmd.Run()
			var ee *exec.ExitError
			require.True(t, errors.As(err, &ee), "err %v, stderr %s", err, errOut.String())
			require.Equal(t, ExitUnreachable, ee.ExitCode(), errOut.String())
			require.Contains(t, errOut.String(), "access denied")
			require.Contains(t, errOut.String(), "run qmorch as root (you are uid 65534)")
			require.Empty(t, out.String(), "no document on exit 3")
		})
	}
}
