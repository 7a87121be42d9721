package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func qmRun(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	d := deps{streams: IOStreams{In: strings.NewReader(""), Out: &o, ErrOut: &e}}
	code = run(context.Background(), args, d)
	return o.String(), e.String(), code
}

func qmTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range map[string]string{
		"usr/share/containers/systemd/qm.container": "[Service]\nMemoryHigh=infinity\nOOMScoreAdjust=500\n" +
			"[Container]\nAddCapability=all\nDropCapability=sys_boot sys_resource\nSeccompProfile=/usr/share/qm/seccomp-no-rt.json\n",
		"etc/containers/systemd/qm.container.d/10-admin.conf": "[Service]\nCPUWeight=20\n",
	} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte(c), 0o644))
	}
	return root
}

func TestQMCLILocal(t *testing.T) {
	t.Parallel()
	root := qmTree(t)
	out, errOut, code := qmRun(t, "qm", "set", "--root", root, "MemoryHigh=2G", "NestedOOM=yes", "--raw", "Service.IOWeight=20")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `MemoryHigh\s+\S+/50-qmorch-memory-high.conf\s+written`, out)
	require.Contains(t, out, "local: restart pending")
	require.Contains(t, errOut, "CAP_SYS_RESOURCE")
	require.Contains(t, errOut, "not validated by qmorch (--raw)")

	out, errOut, code = qmRun(t, "qm", "show", "--root", root, "--explain", "-o", "json")
	require.Equal(t, 0, code, errOut)
	var doc QMShowOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.Equal(t, "files", doc.Results[0].Source)
	vals := map[string]QMShowValue{}
	for _, v := range doc.Results[0].Values {
		vals[v.Key] = v
	}
	require.Equal(t, "2G", vals["MemoryHigh"].Value)
	require.Equal(t, "20", vals["CPUWeight"].Value)
	require.Equal(t, []string{"sys_boot"}, vals["DropCapability"].Values)
	require.Equal(t, "/etc/containers/systemd/qm.container.d/50-qmorch-nested-oom.conf:4", vals["DropCapability"].ResetAt)
	require.Equal(t, "all sys_resource", vals["AddCapability"].Value)

	out, _, code = qmRun(t, "qm", "show", "--root", root, "--explain")
	require.Equal(t, 0, code)
	require.Contains(t, out, "/etc/containers/systemd/qm.container.d/50-qmorch-memory-high.conf  (qmorch)")
	require.Regexp(t, `Service\s+MemoryHigh\s+2G\s+/etc/containers/systemd/qm.container.d/50-qmorch-memory-high.conf:4`, out)

	out, errOut, code = qmRun(t, "qm", "unset", "--root", root, "MemoryHigh", "NestedOOM", "Service.IOWeight", "-o", "json")
	require.Equal(t, 0, code, errOut)
	var ch QMChangeOutput
	require.NoError(t, json.Unmarshal([]byte(out), &ch))
	require.Len(t, ch.Results[0].Files, 3)
	entries, err := os.ReadDir(filepath.Join(root, "etc/containers/systemd/qm.container.d"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "only the admin's file is left")
}

func TestQMCLIErrors(t *testing.T) {
	t.Parallel()
	root := qmTree(t)
	tests := []struct {
		args    []string
		code    int
		wantErr []string
	}{
		{args: []string{"qm", "set", "--root", root, "MemoryHigh=2g", "CPUWeight=0", "Foo=1"}, code: ExitUsage,
			wantErr: []string{"error: MemoryHigh=2g: unknown size suffix", "error: CPUWeight=0: out of range", "error: Foo=1: unknown key"}},
		{args: []string{"qm", "set", "--root", root, "--raw", "Bogus.X=1"}, code: ExitUsage,
			wantErr: []string{`--raw Bogus.X=1: section "Bogus" is not one Quadlet reads`}},
		{args: []string{"qm", "set", "--root", root, "CPUWeight=5", "--restart"}, code: ExitUsage,
			wantErr: []string{"--restart needs nodes"}},
		{args: []string{"qm", "set", "node1"}, code: ExitUsage, wantErr: []string{"need NODES and at least one setting"}},
		{args: []string{"qm", "unset", "--root", root, "/etc/passwd"}, code: ExitUsage, wantErr: []string{"unknown key"}},
		{args: []string{"qm", "show", "--root", root, "node1"}, code: ExitUsage, wantErr: []string{"give no NODES"}},
		{args: []string{"qm", "show", "--root", t.TempDir()}, code: ExitFailed, wantErr: []string{"qm.container not found"}},
	}
	for _, tc := range tests {
		_, errOut, code := qmRun(t, tc.args...)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, errOut)
		for _, w := range tc.wantErr {
			require.Contains(t, errOut, w, tc.args)
		}
	}
	entries, err := os.ReadDir(filepath.Join(root, "etc/containers/systemd/qm.container.d"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing written on errors")
}
