package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The JSON/exit-code contract (docs/json.md) on the cases a tester found broken: "ok" is
// exit code 0; exit 2 prints nothing on stdout; exit 1 prints a document; a QM twin named as
// a host node is a request error before any node is touched.
func TestContractExitCodes(t *testing.T) {
	f := newFLFleet(t)
	file := flWriteQuadlet(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		return p
	}
	nul := write("nul.container", "[Container]\n\nImage=busy\x00box\n")
	dash := write("-rf.container", flQuadlet)
	rootFile := write("rootfile", "")
	escRoot := t.TempDir()
	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(escRoot, "etc"))) // absolute: outside the root
	escTarget := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(escTarget, "etc/qm/containers/systemd"), 0o755))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(escTarget, "etc/qm/containers/systemd/nested.container")))
	qmEsc := t.TempDir()
	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(qmEsc, "etc")))
	corrupt := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(corrupt, "manifest.json"), []byte("{oops"), 0o644))
	state := "--state-dir=" + f.stateDir
	f.nodes["qm.node2"].SetOnline(false)
	t.Cleanup(func() { f.nodes["qm.node2"].SetOnline(true) })

	cases := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		// 1: a QM twin named as a host node, in every command that takes NODES.
		{"deploy twin", []string{"deploy", "node1,qm.node1", file, "--settle=0", state}, 2, "node qm.node1 is a QM twin; name its host node node1"},
		{"deploy two twins", []string{"deploy", "qm.node1,qm.node2", file, state}, 2, "nodes qm.node1, qm.node2 are QM twins; name their host nodes node1, node2"},
		{"start twin", []string{"start", "qm.node1", "test"}, 2, "is a QM twin"},
		{"stop twin in list", []string{"stop", "node1,qm.node1", "test"}, 2, "is a QM twin"},
		{"remove twin", []string{"remove", "qm.node1", "nested.container", state}, 2, "is a QM twin"},
		{"list twin", []string{"list", "qm.node1", state}, 2, "is a QM twin"},
		{"qm set twin", []string{"qm", "set", "qm.node1", "CPUWeight=5"}, 2, "is a QM twin"},
		{"qm show twin", []string{"qm", "show", "qm.node1"}, 2, "is a QM twin"},
		{"provision twin", []string{"provision", "qm-agent", "--nodes", "qm.node1", "--dry-run"}, 2, "is a QM twin"},
		// 2: dry runs exit non-zero exactly when a row failed.
		{"deploy dry run offline twin", []string{"deploy", "--dry-run", "node2", file}, 1, "error: node node2: QM twin qm.node2 is offline"},
		{"deploy dry run ok", []string{"deploy", "--dry-run", "node1", file}, 0, ""},
		{"deploy dry run twin", []string{"deploy", "--dry-run", "qm.node1", file}, 2, "is a QM twin"},
		{"deploy dry run unknown", []string{"deploy", "--dry-run", "node3", file}, 2, `unknown node "node3"`},
		{"qm dry run ok", []string{"qm", "set", "node1", "CPUWeight=5", "--dry-run"}, 0, ""},
		// 4: local input problems are exit 2 with nothing on stdout.
		{"deploy root is a file", []string{"deploy", "--root", rootFile, file}, 2, "root " + rootFile + " is not a directory"},
		{"deploy root dry run is a file", []string{"deploy", "--dry-run", "--root", rootFile, file}, 2, "is not a directory"},
		{"deploy root etc escapes", []string{"deploy", "--root", escRoot, file}, 2, filepath.Join(escRoot, "etc") + " leads outside the root"},
		{"deploy root target escapes", []string{"deploy", "--root", escTarget, file}, 2, "systemd/nested.container leads outside the root"},
		{"qm set root escapes", []string{"qm", "set", "--root", qmEsc, "CPUWeight=5"}, 2, filepath.Join(qmEsc, "etc") + " leads outside the root"},
		{"list corrupt record", []string{"list", "--state-dir", corrupt}, 2, "manifest.json is corrupt"},
		{"list record is a file", []string{"list", "--state-dir", rootFile}, 2, "record of deployed units"},
		// 5, 6, 7: names and messages.
		{"raw key too long", []string{"qm", "set", "--root", t.TempDir(), "--raw", "Service." + strings.Repeat("K", 300) + "=1"}, 2, "is 300 characters long"},
		{"unit with a non-ASCII character", []string{"start", "node1", "é"}, 2, `character 'é' is not allowed`},
		{"unit with a non-UTF-8 byte", []string{"start", "node1", "a\xffb"}, 2, `byte \xff (not UTF-8)`},
		{"NUL byte", []string{"deploy", "node1", nul, state}, 2, "nul.container:3: file contains a NUL byte"},
		{"leading dash", []string{"deploy", "node1", dash, state}, 2, `invalid request: file name "-rf.container": must not start with '-'`},
		{"controller context once", []string{"start", "node1", "nosuch"}, 1, "error: node node1: start nosuch.service on qm.node1: no such unit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{"table", "json"} {
				args := append(append([]string{}, tc.args...), "-o", format)
				out, stderr, code := f.run(t, args...)
				require.Equal(t, tc.code, code, "qmorch %q\nstdout: %s\nstderr: %s", args, out, stderr)
				require.Contains(t, stderr, tc.stderr)
				if code >= 2 {
					require.Empty(t, out, "request errors print nothing on stdout")
					continue
				}
				require.NotEmpty(t, out, "exit 0 and 1 print the report")
				if format == "json" {
					var doc struct {
						OK *bool `json:"ok"`
					}
					require.NoError(t, json.Unmarshal([]byte(out), &doc))
					require.NotNil(t, doc.OK)
					require.Equal(t, code == 0, *doc.OK, "ok is exit code 0: %s", out)
				}
			}
		})
	}
	// The deploy that named a twin touched no node.
	_, ok := f.fs.get("node1", flQuadletDir+"/nested.container")
	require.False(t, ok, "nothing deployed on node1")
}

// A deploy whose record cannot be written still succeeded (exit 0), and says so where JSON
// consumers look: results[].warnings.
func TestDeployRecordWarning(t *testing.T) {
	f := newFLFleet(t)
	file := flWriteQuadlet(t)
	garbage := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(garbage, "manifest.json"), []byte("garbage"), 0o644))
	isDir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(isDir, "manifest.json"), 0o755))
	aFile := filepath.Join(t.TempDir(), "state")
	require.NoError(t, os.WriteFile(aFile, nil, 0o644))
	for name, dir := range map[string]string{"garbage": garbage, "manifest is a directory": isDir, "state dir is a file": aFile} {
		t.Run(name, func(t *testing.T) {
			out, stderr, code := f.run(t, "deploy", "node1,node2", file, "--settle=0", "--state-dir", dir, "-o", "json")
			require.Equal(t, 0, code, stderr)
			var doc DeployOutput
			require.NoError(t, json.Unmarshal([]byte(out), &doc))
			require.True(t, doc.OK)
			require.Len(t, doc.Results, 2)
			for _, r := range doc.Results {
				require.Len(t, r.Warnings, 1, r.Node)
				require.Contains(t, r.Warnings[0], "not recorded in qmorch's record of deployed units")
				require.Contains(t, stderr, "warning: node "+r.Node+": deployed, but not recorded")
			}
		})
	}
}

// --raw keys keep their case in the drop-in's name: IOWeight and ioweight are different
// systemd keys and must not overwrite each other. A failure without --restart does not say
// "restart failed".
func TestQMRawCaseAndRestartWording(t *testing.T) {
	t.Parallel()
	root := qmTree(t)
	_, errOut, code := qmRun(t, "qm", "set", "--root", root, "--raw", "Service.IOWeight=20")
	require.Equal(t, 0, code, errOut)
	_, errOut, code = qmRun(t, "qm", "set", "--root", root, "--raw", "Service.ioweight=5")
	require.Equal(t, 0, code, errOut)
	dir := filepath.Join(root, "etc/containers/systemd/qm.container.d")
	upper, err := os.ReadFile(filepath.Join(dir, "50-qmorch-raw-Service-IOWeight.conf"))
	require.NoError(t, err)
	require.Contains(t, string(upper), "IOWeight=20")
	lower, err := os.ReadFile(filepath.Join(dir, "50-qmorch-raw-Service-ioweight.conf"))
	require.NoError(t, err)
	require.Contains(t, string(lower), "ioweight=5")

	// A drop-in that cannot be written (a directory in its place): failed, no restart was asked.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "50-qmorch-cpu.conf"), 0o755))
	out, errOut, code := qmRun(t, "qm", "set", "--root", root, "CPUWeight=5")
	require.Equal(t, 1, code, errOut)
	require.NotContains(t, out, "restart failed")
	require.Contains(t, out, "local: failed (see the error)")
	out, _, code = qmRun(t, "qm", "set", "--root", root, "CPUWeight=5", "-o", "json")
	require.Equal(t, 1, code)
	var doc QMChangeOutput
	require.NoError(t, json.Unmarshal([]byte(out), &doc))
	require.False(t, doc.OK)
	require.Equal(t, "none", doc.Results[0].Restart)
}
