package qmconf

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/qmconf/unitfile"
)

// vendorQM is the relevant part of QM's vendor qm.container.
const vendorQM = `[Unit]
Description=QM Environment
After=network-online.target

[Service]
CPUWeight=idle
Delegate=true
Environment=ROOTFS=/usr/lib/qm/rootfs
Environment=RWETCFS=/etc/qm
Environment=RWVARFS=/var/qm
MemoryHigh=infinity
OOMScoreAdjust=500
Restart=always

[Container]
AddCapability=all
ContainerName=qm
DropCapability=sys_boot sys_resource
Exec=/sbin/init
Network=private
ReadOnly=true
ReadOnlyTmpfs=true
Rootfs=${ROOTFS}
SeccompProfile=/usr/share/qm/seccomp-no-rt.json
Volume=${RWETCFS}:/etc
Volume=${RWVARFS}:/var
Volume=${RWVARFS}/tmp:/var/tmp

[Install]
WantedBy=multi-user.target default.target
`

func parseQM(t *testing.T, files ...string) *unitfile.File {
	t.Helper()
	var parsed []*unitfile.File
	for i, data := range files {
		f, err := unitfile.Parse(filepath.Join("/in", string(rune('a'+i))+".conf"), []byte(data))
		require.NoError(t, err)
		parsed = append(parsed, f)
	}
	return unitfile.Merge(parsed[0], parsed[1:]...)
}

func warnText(ws []Warning) string {
	var s []string
	for _, w := range ws {
		s = append(s, w.String())
	}
	return strings.Join(s, "\n")
}

func TestLayoutFromUnit(t *testing.T) {
	tests := []struct {
		name    string
		files   []string
		want    Layout
		warn    []string // substrings, one per warning, in order
		wantErr string
	}{
		{name: "vendor", files: []string{vendorQM}, want: DefaultLayout()},
		{name: "no environment, no volumes", files: []string{"[Container]\nImage=x\n"}, want: DefaultLayout()},
		{
			name:  "drop-in moves RWETCFS, volume follows",
			files: []string{vendorQM, "[Service]\nEnvironment=RWETCFS=/srv/qm/etc\n"},
			want:  Layout{RWETCFS: "/srv/qm/etc", RWVARFS: "/var/qm", ROOTFS: "/usr/lib/qm/rootfs"},
		},
		{
			name:  "one line, several words, quoted",
			files: []string{vendorQM, "[Service]\nEnvironment=\"RWETCFS=/data/q m/etc\" RWVARFS=/data/var ROOTFS=/data/root\n"},
			want:  Layout{RWETCFS: "/data/q m/etc", RWVARFS: "/data/var", ROOTFS: "/data/root"},
		},
		{
			name:  "later drop-in wins",
			files: []string{vendorQM, "[Service]\nEnvironment=RWETCFS=/a\n", "[Service]\nEnvironment=RWETCFS=/b\n"},
			want:  Layout{RWETCFS: "/b", RWVARFS: "/var/qm", ROOTFS: "/usr/lib/qm/rootfs"},
		},
		{
			name:  "empty Environment= resets to defaults",
			files: []string{"[Service]\nEnvironment=RWETCFS=/a\n[Container]\nVolume=${RWETCFS}:/etc\n", "[Service]\nEnvironment=\n"},
			want:  DefaultLayout(),
			warn:  []string{"/in/a.conf:4: Volume=${RWETCFS}:/etc: ${RWETCFS} is not set", `/in/a.conf:4: the volume on /etc uses "" but RWETCFS="/etc/qm"`},
			// The mount source is empty: refused below.
			wantErr: "RWETCFS",
		},
		{
			name:  "volume hard-coded elsewhere wins over Environment",
			files: []string{vendorQM, "[Container]\nVolume=/data/etc:/etc:Z\n"},
			want:  Layout{RWETCFS: "/data/etc", RWVARFS: "/var/qm", ROOTFS: "/usr/lib/qm/rootfs"},
			warn:  []string{"2 volumes are mounted on /etc", `/in/b.conf:2: the volume on /etc uses "/data/etc" but RWETCFS="/etc/qm" (Environment= at /in/a.conf:9)`},
		},
		{
			name:  "volume list reset, /etc volume re-added",
			files: []string{vendorQM, "[Container]\nVolume=\nVolume=${RWVARFS}:/var\nVolume=/x/etc:/etc/\n"},
			want:  Layout{RWETCFS: "/x/etc", RWVARFS: "/var/qm", ROOTFS: "/usr/lib/qm/rootfs"},
			warn:  []string{`the volume on /etc uses "/x/etc"`},
		},
		{
			name:  "rootfs overlay option stripped",
			files: []string{vendorQM, "[Container]\nRootfs=${ROOTFS}:O\n"},
			want:  DefaultLayout(),
		},
		{
			name:  "percent escape",
			files: []string{vendorQM, "[Service]\nEnvironment=RWETCFS=/etc/q%%m\n"},
			want:  Layout{RWETCFS: "/etc/q%m", RWVARFS: "/var/qm", ROOTFS: "/usr/lib/qm/rootfs"},
			// '%' survives unescaping: refused.
			wantErr: "/in/b.conf:2: RWETCFS",
		},
		{
			name:    "specifier refused with line",
			files:   []string{vendorQM, "# x\n[Service]\nEnvironment=RWVARFS=%h/qm\n"},
			wantErr: "/in/b.conf:3: RWVARFS",
		},
		{
			name:    "relative path refused",
			files:   []string{vendorQM, "[Service]\nEnvironment=RWETCFS=etc/qm\n"},
			wantErr: "not an absolute path",
		},
		{
			name:  "bad words and EnvironmentFile warned",
			files: []string{vendorQM, "[Service]\nEnvironment=\"RWETCFS=/x\nEnvironment=NOEQUALS\nEnvironmentFile=/etc/qm.env\n"},
			want:  DefaultLayout(),
			warn:  []string{"/in/b.conf:2: Environment=: word 1: unterminated", `"NOEQUALS" is not NAME=VALUE`, "/in/b.conf:4: EnvironmentFile= is not read"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warns, err := LayoutFromUnit(parseQM(t, tt.files...))
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			require.Len(t, warns, len(tt.warn), warnText(warns))
			for i, w := range tt.warn {
				assert.Contains(t, warns[i].String(), w)
			}
		})
	}
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, data := range files {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(data), 0o644))
	}
	return root
}

const (
	vendorPath = "usr/share/containers/systemd/qm.container"
	dropDir    = "etc/containers/systemd/qm.container.d/"
)

func TestLoadLayout(t *testing.T) {
	t.Run("vendor only", func(t *testing.T) {
		root := writeTree(t, map[string]string{vendorPath: vendorQM})
		got, warns, err := LoadLayout(root)
		require.NoError(t, err)
		assert.Equal(t, DefaultLayout(), got)
		assert.Empty(t, warns)
	})
	t.Run("drop-ins move RWETCFS, byte order", func(t *testing.T) {
		root := writeTree(t, map[string]string{
			vendorPath:               vendorQM,
			dropDir + "10-etc.conf":  "[Service]\nEnvironment=RWETCFS=/ten\n",
			dropDir + "100-etc.conf": "[Service]\nEnvironment=RWETCFS=/hundred\n",
			dropDir + "9-etc.conf":   "[Service]\nEnvironment=RWETCFS=/nine\n", // "9" sorts after "100"
			dropDir + "README":       "not a drop-in",
			"etc/containers/systemd/container.d/99-all.conf": "[Service]\nEnvironment=RWVARFS=/all/var\n",
		})
		got, warns, err := LoadLayout(root)
		require.NoError(t, err)
		assert.Equal(t, Layout{RWETCFS: "/nine", RWVARFS: "/all/var", ROOTFS: DefaultROOTFS}, got)
		assert.Empty(t, warns)

		f, files, err := EffectiveQuadlet(os.DirFS(root), QMContainerFile)
		require.NoError(t, err)
		assert.Equal(t, []string{
			"/" + vendorPath,
			"/" + dropDir + "10-etc.conf",
			"/" + dropDir + "100-etc.conf",
			"/" + dropDir + "9-etc.conf",
			"/etc/containers/systemd/container.d/99-all.conf",
		}, files)
		l, ok := f.LookupLine("Service", "Environment")
		require.True(t, ok)
		assert.Equal(t, "/etc/containers/systemd/container.d/99-all.conf:2", l.Where())
		lines := f.LookupAllLines("Service", "Environment")
		assert.Equal(t, "/"+dropDir+"9-etc.conf:2", lines[len(lines)-2].Where())
	})
	t.Run("run masks etc drop-in of the same name, etc copy masks vendor", func(t *testing.T) {
		root := writeTree(t, map[string]string{
			vendorPath:                                             "[Service]\nEnvironment=RWETCFS=/vendor\n",
			"etc/containers/systemd/qm.container":                  vendorQM,
			dropDir + "50-x.conf":                                  "[Service]\nEnvironment=RWETCFS=/etc-dropin\n",
			"run/containers/systemd/qm.container.d/50-x.conf":      "[Service]\nEnvironment=RWETCFS=/run-dropin\n",
			"etc/containers/systemd/sub/dir/container.d/60-x.conf": "[Service]\nEnvironment=RWVARFS=/sub\n",
		})
		got, _, err := LoadLayout(root)
		require.NoError(t, err)
		assert.Equal(t, Layout{RWETCFS: "/run-dropin", RWVARFS: "/sub", ROOTFS: DefaultROOTFS}, got)
	})
	t.Run("missing qm.container", func(t *testing.T) {
		root := writeTree(t, map[string]string{dropDir + "10.conf": "[Service]\n"})
		_, _, err := LoadLayout(root)
		require.Error(t, err)
		assert.True(t, errors.Is(err, fs.ErrNotExist), err.Error())
	})
	t.Run("syntax error in drop-in names the host path", func(t *testing.T) {
		root := writeTree(t, map[string]string{vendorPath: vendorQM, dropDir + "10.conf": "[Service]\nbroken\n"})
		_, _, err := LoadLayout(root)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "/"+dropDir+"10.conf:2: ")
	})
	t.Run("symlink escaping root refused", func(t *testing.T) {
		outside := writeTree(t, map[string]string{"evil.conf": "[Service]\nEnvironment=RWETCFS=/evil\n"})
		root := writeTree(t, map[string]string{vendorPath: vendorQM})
		require.NoError(t, os.MkdirAll(filepath.Join(root, dropDir), 0o755))
		require.NoError(t, os.Symlink(filepath.Join(outside, "evil.conf"), filepath.Join(root, dropDir, "10.conf")))
		_, _, err := LoadLayout(root)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "10.conf")

		rel, err := filepath.Rel(filepath.Join(root, dropDir), filepath.Join(outside, "evil.conf"))
		require.NoError(t, err)
		require.NoError(t, os.Remove(filepath.Join(root, dropDir, "10.conf")))
		require.NoError(t, os.Symlink(rel, filepath.Join(root, dropDir, "10.conf")))
		_, _, err = LoadLayout(root)
		require.Error(t, err, "relative symlink through .. escaping root")
	})
	t.Run("symlink inside root followed", func(t *testing.T) {
		root := writeTree(t, map[string]string{vendorPath: vendorQM, "etc/qm-overrides/10.conf": "[Service]\nEnvironment=RWETCFS=/inside\n"})
		require.NoError(t, os.MkdirAll(filepath.Join(root, dropDir), 0o755))
		require.NoError(t, os.Symlink("../../../qm-overrides/10.conf", filepath.Join(root, dropDir, "10.conf")))
		got, _, err := LoadLayout(root)
		require.NoError(t, err)
		assert.Equal(t, "/inside", got.RWETCFS)
	})
}
