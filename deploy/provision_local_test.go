package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/qmconf"
)

// writeTree writes files (paths relative to root) into a new temp root.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
	return root
}

const (
	hostAgentConf = "etc/bluechi/agent.conf"
	hostDefault   = "usr/share/bluechi-agent/config/agent.conf"
	qmDropIn      = "etc/qm/bluechi/agent.conf.d/99-qmorch.conf"
	socketDropIn  = "etc/containers/systemd/qm.container.d/90-qmorch-bluechi-socket.conf"
)

// TestProvisionQMAgentLocal runs the derivation cases of acceptance 2 through the file
// system: what lands on disk, and which files are written.
func TestProvisionQMAgentLocal(t *testing.T) {
	t.Parallel()
	stock := "[bluechi-agent]\n#NodeName=\n#ControllerHost=127.0.0.1\n#ControllerPort=842\n"
	tests := []struct {
		name       string
		files      map[string]string
		req        QMAgentLocalRequest
		wantLines  []string // lines the QM drop-in must hold
		wantSocket bool
		wantErr    string
	}{
		{
			name:       "NodeName=foo",
			files:      map[string]string{hostDefault: stock, hostAgentConf: "[bluechi-agent]\nNodeName=foo\n"},
			wantLines:  []string{"NodeName=qm.foo", "ControllerAddress=unix:path=/run/bluechi.sock"},
			wantSocket: true,
		},
		{
			name:       "empty NodeName uses the hostname",
			files:      map[string]string{hostDefault: stock, hostAgentConf: "[bluechi-agent]\nNodeName=\n"},
			wantLines:  []string{"NodeName=qm.testhost"},
			wantSocket: true,
		},
		{
			name:       "#NodeName= template only uses the hostname",
			files:      map[string]string{hostDefault: stock, hostAgentConf: "[bluechi-agent]\n#NodeName=\n"},
			wantLines:  []string{"NodeName=qm.testhost"},
			wantSocket: true,
		},
		{
			name:       "no host files at all",
			files:      map[string]string{},
			wantLines:  []string{"NodeName=qm.testhost"},
			wantSocket: true,
		},
		{
			name: "template in agent.conf, name in a drop-in",
			files: map[string]string{hostDefault: stock, hostAgentConf: "[bluechi-agent]\n#NodeName=\n",
				"etc/bluechi/agent.conf.d/50-name.conf": "[bluechi-agent]\nNodeName=node1\n"},
			wantLines:  []string{"NodeName=qm.node1"},
			wantSocket: true,
		},
		{
			name:    "loopback controller in tcp mode is an error",
			files:   map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nControllerHost=127.0.0.1\n"},
			req:     QMAgentLocalRequest{Mode: qmconf.ReachTCP},
			wantErr: "loopback",
		},
		{
			name:      "ControllerPort=8420 carried in tcp mode",
			files:     map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nControllerHost=10.0.0.5\nControllerPort=8420\n"},
			wantLines: []string{"NodeName=qm.n", "ControllerHost=10.0.0.5", "ControllerPort=8420", "ControllerAddress="},
		},
		{
			name:       "host unix address becomes QM's socket",
			files:      map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nControllerAddress=unix:path=/run/bluechi/bluechi.sock\n"},
			wantLines:  []string{"NodeName=qm.n", "ControllerAddress=unix:path=/run/bluechi.sock"},
			wantSocket: true,
		},
		{
			name:      "prefix qm-",
			files:     map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nControllerHost=10.0.0.5\n"},
			req:       QMAgentLocalRequest{Prefix: "qm-"},
			wantLines: []string{"NodeName=qm-n"},
		},
		{
			name:    "host syntax error names file and line",
			files:   map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nbroken\n"},
			wantErr: "/etc/bluechi/agent.conf:3:",
		},
		{
			name: "a QM drop-in sorting after 99-qmorch.conf overrides the name",
			files: map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nControllerHost=10.0.0.5\n",
				"etc/qm/bluechi/agent.conf.d/agent.conf": "[bluechi-agent]\nNodeName=qm.old\n"},
			wantErr: "QM's bluechi-agent would use NodeName=qm.old from /etc/qm/bluechi/agent.conf.d/agent.conf:2",
		},
		{
			name: "a broken QM drop-in sorting last",
			files: map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nControllerHost=10.0.0.5\n",
				"etc/qm/bluechi/agent.conf.d/zz.conf": "oops\n"},
			wantErr: "would not start",
		},
		{
			name: "RWETCFS moved by a qm.container drop-in",
			files: map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nControllerHost=10.0.0.5\n",
				"usr/share/containers/systemd/qm.container":                "[Service]\nEnvironment=RWETCFS=/etc/qm\n[Container]\nVolume=${RWETCFS}:/etc\n",
				"etc/containers/systemd/qm.container.d/10-etc.conf":        "[Service]\nEnvironment=RWETCFS=/srv/qmetc\n",
				"srv/qmetc/bluechi/agent.conf.d/10-qm-setup-leftover.conf": "[bluechi-agent]\nNodeName=random\n"},
			wantLines: []string{"NodeName=qm.n"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			root := writeTree(t, tc.files)
			req := tc.req
			req.Root, req.Hostname = root, "testhost"
			p, err := ProvisionQMAgentLocal(req)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.ErrorIs(t, err, ErrInvalid)
				require.NoFileExists(t, filepath.Join(root, qmDropIn))
				require.NoFileExists(t, filepath.Join(root, socketDropIn))
				return
			}
			require.NoError(t, err)
			require.True(t, p.Changed())
			dropIn := filepath.Join(root, strings.TrimPrefix(p.RWETCFS, "/"), "bluechi/agent.conf.d/99-qmorch.conf")
			require.Equal(t, dropIn, p.Files[0].LocalPath)
			data, err := os.ReadFile(dropIn)
			require.NoError(t, err)
			lines := strings.Split(string(data), "\n")
			for _, l := range tc.wantLines {
				require.Contains(t, lines, l)
			}
			fi, err := os.Stat(dropIn)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
			if tc.wantSocket {
				b, err := os.ReadFile(filepath.Join(root, socketDropIn))
				require.NoError(t, err)
				require.Contains(t, string(b), "Volume=/run/bluechi/bluechi.sock:/run/bluechi.sock\n")
			} else {
				require.NoFileExists(t, filepath.Join(root, socketDropIn))
			}
		})
	}
}

// TestProvisionQMAgentLocalSecondRun: a second run changes nothing (same bytes, same mtime).
// The first run's mtime is moved into the past so that a rewrite would show whatever the
// clock's resolution.
func TestProvisionQMAgentLocalSecondRun(t *testing.T) {
	t.Parallel()
	root := writeTree(t, map[string]string{hostAgentConf: "[bluechi-agent]\n#NodeName=\n",
		"etc/bluechi/agent.conf.d/50-name.conf": "[bluechi-agent]\nNodeName=node1\nControllerPort=8420\n"})
	req := QMAgentLocalRequest{Root: root, Hostname: "testhost"}
	p, err := ProvisionQMAgentLocal(req)
	require.NoError(t, err)
	require.True(t, p.Changed())
	require.Len(t, p.Files, 2)

	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	before := map[string][]byte{}
	for _, f := range p.Files {
		require.Equal(t, FileChanged, f.Action)
		require.NoError(t, os.Chtimes(f.LocalPath, past, past))
		before[f.LocalPath], err = os.ReadFile(f.LocalPath)
		require.NoError(t, err)
	}

	p2, err := ProvisionQMAgentLocal(req)
	require.NoError(t, err)
	require.False(t, p2.Changed())
	for _, f := range p2.Files {
		require.Equal(t, FileUnchanged, f.Action, f.Path)
		b, err := os.ReadFile(f.LocalPath)
		require.NoError(t, err)
		require.Equal(t, before[f.LocalPath], b)
		fi, err := os.Stat(f.LocalPath)
		require.NoError(t, err)
		require.True(t, fi.ModTime().Equal(past), "%s was rewritten (mtime %s)", f.Path, fi.ModTime())
	}
	// No temp files left behind.
	entries, err := os.ReadDir(filepath.Join(root, "etc/qm/bluechi/agent.conf.d"))
	require.NoError(t, err)
	require.Len(t, entries, 1)

	// A changed host name changes the file again.
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/bluechi/agent.conf.d/50-name.conf"), []byte("[bluechi-agent]\nNodeName=node9\n"), 0o644))
	p3, err := ProvisionQMAgentLocal(req)
	require.NoError(t, err)
	require.Equal(t, FileChanged, p3.Files[0].Action)
	require.Equal(t, "qm.node9", p3.NodeName)
}

func TestProvisionQMAgentLocalDryRun(t *testing.T) {
	t.Parallel()
	root := writeTree(t, map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=node1\nControllerHost=10.1.1.1\n",
		qmDropIn: "[bluechi-agent]\nNodeName=qm.old\n"})
	p, err := ProvisionQMAgentLocal(QMAgentLocalRequest{Root: root, Hostname: "h", DryRun: true})
	require.NoError(t, err)
	require.Len(t, p.Files, 1)
	require.Equal(t, FileWouldChange, p.Files[0].Action)
	require.Contains(t, p.Files[0].Diff, "-NodeName=qm.old\n+NodeName=qm.node1\n")
	b, err := os.ReadFile(filepath.Join(root, qmDropIn))
	require.NoError(t, err)
	require.Equal(t, "[bluechi-agent]\nNodeName=qm.old\n", string(b), "dry run must not write")
}

func TestProvisionQMAgentLocalWarnings(t *testing.T) {
	t.Parallel()
	root := writeTree(t, map[string]string{hostAgentConf: "[bluechi-agent]\nNodeName=n\nControllerHost=10.1.1.1\nNodeName=x\nBogus=1\nLogLevel=debug\n" +
		"[bluechi-controller]\nAllowedNodeNames=a\n",
		"etc/bluechi/agent.conf.d/10-broken.conf": "broken\n",
		"etc/bluechi/agent.conf.d/20-ok.conf":     "[bluechi-agent]\nHeartbeatInterval=3000\n"})
	p, err := ProvisionQMAgentLocal(QMAgentLocalRequest{Root: root, Hostname: "h"})
	require.NoError(t, err)
	require.Equal(t, "qm.nx", p.NodeName, "the same key twice in one file concatenates")
	all := strings.Join(p.Warnings, "\n")
	for _, want := range []string{
		"/etc/bluechi/agent.conf:4: NodeName set again in the same file",
		"/etc/bluechi/agent.conf:5: unknown key Bogus",
		"/etc/bluechi/agent.conf:8: [bluechi-controller] is never read",
		"/etc/bluechi/agent.conf.d/10-broken.conf:1: drop-in skipped whole",
		"LogLevel \"debug\"",
	} {
		require.Contains(t, all, want)
	}
}

func TestProvisionControllerLocal(t *testing.T) {
	t.Parallel()
	var nodes []string
	for i := 1; i <= 60; i++ {
		nodes = append(nodes, fmt.Sprintf("vehicle-ecu-node-%02d.fleet.example.com", i))
	}
	root := writeTree(t, map[string]string{"etc/bluechi/controller.conf": "[bluechi-controller]\nAllowedNodeNames=control\n",
		"usr/share/bluechi/config/controller.conf": "[bluechi-controller]\n"})
	req := ControllerLocalRequest{Root: root, Nodes: nodes}
	p, err := ProvisionControllerLocal(req)
	require.NoError(t, err)
	require.True(t, p.Changed())
	require.Len(t, p.Names, 121)
	require.Equal(t, "control", p.Names[0])
	data, err := os.ReadFile(p.Files[0].LocalPath)
	require.NoError(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		require.Less(t, len(l), 500)
	}

	past := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	require.NoError(t, os.Chtimes(p.Files[0].LocalPath, past, past))
	p2, err := ProvisionControllerLocal(req)
	require.NoError(t, err)
	require.False(t, p2.Changed())
	fi, err := os.Stat(p.Files[0].LocalPath)
	require.NoError(t, err)
	require.True(t, fi.ModTime().Equal(past))

	// A later drop-in that sets the list again makes ours pointless: an error naming it.
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/bluechi/controller.conf.d/zz-local.conf"),
		[]byte("[bluechi-controller]\nAllowedNodeNames=other\n"), 0o644))
	_, err = ProvisionControllerLocal(req)
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "/etc/bluechi/controller.conf.d/zz-local.conf:2")
}
