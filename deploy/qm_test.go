package deploy

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/controller"
	"github.com/qmorch/qmorch/qmconf"
)

func qmSet(t *testing.T, args ...string) []qmconf.QMAssignment {
	t.Helper()
	var out []qmconf.QMAssignment
	for _, a := range args {
		x, err := qmconf.ParseQMSet(a)
		require.NoError(t, err)
		out = append(out, x)
	}
	return out
}

func qmUnset(t *testing.T, keys ...string) []qmconf.QMUnsetTarget {
	t.Helper()
	var out []qmconf.QMUnsetTarget
	for _, k := range keys {
		x, err := qmconf.ParseQMUnset(k)
		require.NoError(t, err)
		out = append(out, x)
	}
	return out
}

const dropInDir = "/etc/containers/systemd/qm.container.d/"

func TestQMSetWritesReloadsOnlyOnChange(t *testing.T) {
	f := newQMFake("node1", "qm.node1", "node2", "qm.node2")
	d := New(f, WithTimeout(5*time.Second))
	ctx := context.Background()
	req := QMChangeRequest{Selectors: []string{"node*"}, Set: qmSet(t, "MemoryHigh=2G", "NestedOOM=yes")}

	rep, err := d.QMChange(ctx, req)
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
	for _, r := range rep.Results {
		require.True(t, r.Changed)
		require.True(t, r.Reloaded)
		require.Equal(t, QMRestartPending, r.Restart)
		require.Len(t, r.Files, 2)
		ff, ok := f.file(r.Node, dropInDir+"50-qmorch-memory-high.conf")
		require.True(t, ok)
		require.Contains(t, string(ff.data), "[Service]\nMemoryHigh=2G\n")
		ff, ok = f.file(r.Node, dropInDir+"50-qmorch-nested-oom.conf")
		require.True(t, ok)
		require.Contains(t, string(ff.data), "DropCapability=\nDropCapability=sys_boot\n")
		require.Contains(t, r.Warnings[0], "CAP_SYS_RESOURCE")
	}
	require.Len(t, f.callsMatching("node1 Reload"), 1)
	require.Empty(t, f.callsMatching("RestartUnit"))

	// Same again: nothing changes, no daemon-reload.
	rep, err = d.QMChange(ctx, req)
	require.NoError(t, err)
	for _, r := range rep.Results {
		require.False(t, r.Changed)
		require.False(t, r.Reloaded)
		require.Equal(t, QMRestartNone, r.Restart)
	}
	require.Len(t, f.callsMatching("node1 Reload"), 1)
}

func TestQMSetRestartWaitsForTwin(t *testing.T) {
	f := newQMFake("node1", "qm.node1")
	d := New(f, WithTimeout(5*time.Second))
	rep, err := d.QMChange(context.Background(), QMChangeRequest{
		Selectors: []string{"node1"}, Set: qmSet(t, "OOMScoreAdjust=600"), Restart: true})
	require.NoError(t, err)
	r := rep.Results[0]
	require.Equal(t, QMRestartDone, r.Restart)
	require.True(t, f.online("qm.node1"))
	require.Equal(t, []string{"node1 Reload", "node1 RestartUnit qm.service"},
		append(f.callsMatching("node1 Reload"), f.callsMatching("RestartUnit")...))
	require.GreaterOrEqual(t, r.RestartTook, r.QMAway)
}

func TestQMRestartFailures(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(*qmFake)
		wantErr string
		is      error
	}{
		{name: "twin never comes back", setup: func(q *qmFake) { q.twinStaysAway = true },
			wantErr: "timed out waiting for QM twin qm.node1 to come back online", is: controller.ErrTimeout},
		{name: "restart job fails", setup: func(q *qmFake) { q.restartResult = controller.JobFailed },
			wantErr: `restart qm.service: job result "failed"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newQMFake("node1", "qm.node1")
			tc.setup(f)
			d := New(f, WithTimeout(5*time.Second))
			rep, err := d.QMChange(context.Background(), QMChangeRequest{
				Selectors: []string{"node1"}, Set: qmSet(t, "CPUWeight=100"), Restart: true,
				RestartTimeout: 100 * time.Millisecond})
			require.ErrorContains(t, err, "node node1: "+tc.wantErr)
			if tc.is != nil {
				require.ErrorIs(t, err, tc.is)
			}
			require.Equal(t, QMRestartFailed, rep.Results[0].Restart)
		})
	}
}

func TestQMUnsetRemovesOnlyOwnFiles(t *testing.T) {
	f := newQMFake("node1", "qm.node1")
	admin := dropInDir + "10-admin.conf"
	f.files["node1"][admin] = fakeFile{data: []byte("[Service]\nMemoryHigh=1G\n"), mode: 0o644}
	d := New(f, WithTimeout(5*time.Second))
	ctx := context.Background()
	_, err := d.QMChange(ctx, QMChangeRequest{Selectors: []string{"node1"}, Set: qmSet(t, "MemoryHigh=2G")})
	require.NoError(t, err)

	rep, err := d.QMChange(ctx, QMChangeRequest{Selectors: []string{"node1"}, Unset: qmUnset(t, "MemoryHigh", "Realtime")})
	require.NoError(t, err)
	r := rep.Results[0]
	require.Equal(t, []QMFileOp{
		{Key: "MemoryHigh", Path: dropInDir + "50-qmorch-memory-high.conf", Op: "remove", Changed: true},
		{Key: "Realtime", Path: dropInDir + "50-qmorch-realtime.conf", Op: "remove", Changed: false},
	}, r.Files)
	require.Equal(t, QMRestartPending, r.Restart)
	_, ok := f.file("node1", dropInDir+"50-qmorch-memory-high.conf")
	require.False(t, ok)
	ff, ok := f.file("node1", admin)
	require.True(t, ok, "others' drop-in untouched")
	require.Equal(t, "[Service]\nMemoryHigh=1G\n", string(ff.data))

	// A target that is not qmorch's own file is refused before any call.
	calls := len(f.Calls())
	_, err = d.QMChange(ctx, QMChangeRequest{Selectors: []string{"node1"},
		Unset: []qmconf.QMUnsetTarget{{Key: "x", DropIn: "10-admin.conf"}}})
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "not a qmorch-owned drop-in")
	require.Len(t, f.Calls(), calls)
}

func TestQMChangeRequestErrors(t *testing.T) {
	f := newQMFake("node1", "qm.node1", "node2:offline", "qm.node2")
	d := New(f, WithTimeout(5*time.Second))
	ctx := context.Background()

	_, err := d.QMChange(ctx, QMChangeRequest{Selectors: []string{"nodeX"}, Set: qmSet(t, "CPUWeight=5")})
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, `unknown node "nodeX"`)

	_, err = d.QMChange(ctx, QMChangeRequest{Selectors: []string{"node1"}})
	require.ErrorIs(t, err, ErrInvalid)

	_, err = d.QMChange(ctx, QMChangeRequest{Selectors: []string{"node1"}, Set: qmSet(t, "MemoryHigh=1G"), Unset: qmUnset(t, "MemoryHigh")})
	require.ErrorContains(t, err, "both change 50-qmorch-memory-high.conf")

	// One node offline: it fails, the other is done.
	rep, err := d.QMChange(ctx, QMChangeRequest{Selectors: []string{"node1,node2"}, Set: qmSet(t, "CPUWeight=5")})
	require.ErrorContains(t, err, "node node2: host node is offline")
	require.ErrorIs(t, err, controller.ErrNodeOffline)
	require.NoError(t, rep.Results[0].Err)
	require.True(t, rep.Results[0].Changed)
	require.Error(t, rep.Results[1].Err)
}

func TestQMSetDryRun(t *testing.T) {
	f := newQMFake("node1", "qm.node1")
	d := New(f)
	rep, err := d.QMChange(context.Background(), QMChangeRequest{Selectors: []string{"node1"},
		Set: qmSet(t, "Realtime=yes"), Restart: true, DryRun: true})
	require.NoError(t, err)
	require.True(t, rep.DryRun)
	plan := rep.Results[0].Plan
	require.Len(t, plan, 3)
	require.Equal(t, dropInDir+"50-qmorch-realtime.conf", plan[0].Target)
	require.Contains(t, plan[0].Detail, `SeccompProfile=""`)
	require.Equal(t, "Node.RestartUnit", plan[2].Op)
	require.Equal(t, []string{"ListNodes"}, f.Calls())
}

func TestQMSetVerifyWarnsWhenOverridden(t *testing.T) {
	f := newQMFake("node1", "qm.node1")
	// A later drop-in keeps MemoryHigh at 1G.
	f.qmProps["node1"] = map[string]dbus.Variant{"MemoryHigh": dbus.MakeVariant(uint64(1 << 30))}
	d := New(f, WithTimeout(5*time.Second))
	rep, err := d.QMChange(context.Background(), QMChangeRequest{Selectors: []string{"node1"}, Set: qmSet(t, "MemoryHigh=2G")})
	require.NoError(t, err)
	require.Len(t, rep.Results[0].Warnings, 1)
	require.Contains(t, rep.Results[0].Warnings[0], "MemoryHigh=2G was written but qm.service has MemoryHigh=1073741824")
}

func TestQMLocal(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "etc/containers/systemd/qm.container.d")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "usr/share/containers/systemd"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "usr/share/containers/systemd/qm.container"),
		[]byte("[Service]\nMemoryHigh=infinity\nOOMScoreAdjust=500\n[Container]\nDropCapability=sys_boot sys_resource\n"), 0o644))
	admin := filepath.Join(dir, "99-admin.conf")
	require.NoError(t, os.WriteFile(admin, []byte("[Service]\nOOMScoreAdjust=400\n"), 0o600))
	d := New(nil)

	rep, err := d.QMChange(context.Background(), QMChangeRequest{Root: root, Set: qmSet(t, "MemoryHigh=2G", "OOMScoreAdjust=600")})
	require.NoError(t, err)
	r := rep.Results[0]
	require.True(t, r.Changed)
	require.Equal(t, QMRestartPending, r.Restart)
	require.Contains(t, r.Warnings, "OOMScoreAdjust: OOMScoreAdjust= is overridden by /etc/containers/systemd/qm.container.d/99-admin.conf:2 (it sorts after 50-qmorch-oom.conf)")
	data, err := os.ReadFile(filepath.Join(dir, "50-qmorch-memory-high.conf"))
	require.NoError(t, err)
	require.Contains(t, string(data), "MemoryHigh=2G")
	st, err := os.Stat(filepath.Join(dir, "50-qmorch-memory-high.conf"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o644), st.Mode().Perm())

	// The merged view names the file that set each key.
	show, err := d.QMShow(context.Background(), QMShowRequest{Root: root})
	require.NoError(t, err)
	v, _ := show.Results[0].View.Lookup("Service", "MemoryHigh")
	require.Equal(t, "2G", v.Value)
	require.Equal(t, "/etc/containers/systemd/qm.container.d/50-qmorch-memory-high.conf:4", v.From)
	v, _ = show.Results[0].View.Lookup("Service", "OOMScoreAdjust")
	require.Equal(t, "400", v.Value)

	// Unset: only qmorch's files go; the admin's stays as it was.
	rep, err = d.QMChange(context.Background(), QMChangeRequest{Root: root, Unset: qmUnset(t, "MemoryHigh", "OOMScoreAdjust", "CPUWeight")})
	require.NoError(t, err)
	require.Equal(t, []bool{true, true, false}, []bool{rep.Results[0].Files[0].Changed, rep.Results[0].Files[1].Changed, rep.Results[0].Files[2].Changed})
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, "99-admin.conf", entries[0].Name())
	st, err = os.Stat(admin)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	_, err = d.QMChange(context.Background(), QMChangeRequest{Root: root, Set: qmSet(t, "CPUWeight=5"), Restart: true})
	require.ErrorIs(t, err, ErrInvalid)
}

func TestQMShowLive(t *testing.T) {
	f := newQMFake("node1", "qm.node1", "node2", "qm.node2")
	f.qmProps["node1"] = map[string]dbus.Variant{
		"ActiveState":    dbus.MakeVariant("active"),
		"SourcePath":     dbus.MakeVariant("/usr/share/containers/systemd/qm.container"),
		"MemoryHigh":     dbus.MakeVariant(uint64(2147483648)),
		"MemoryMax":      dbus.MakeVariant(uint64(math.MaxUint64)),
		"CPUWeight":      dbus.MakeVariant(uint64(0)),
		"OOMScoreAdjust": dbus.MakeVariant(int32(500)),
		"ExecStart": dbus.MakeVariant([][]any{{"/usr/bin/podman", []string{"/usr/bin/podman", "run", "--name", "qm",
			"--security-opt", "seccomp=", "--cap-drop", "sys_boot", "--cap-add=all", "--cap-add", "sys_resource",
			"-v", "${RWETCFS}:/etc", "--rootfs", "${ROOTFS}", "/sbin/init"}, false}}),
	}
	d := New(f, WithTimeout(5*time.Second))
	rep, err := d.QMShow(context.Background(), QMShowRequest{All: true})
	require.Error(t, err, "node2 has no qm.service")
	require.ErrorIs(t, err, controller.ErrNoSuchUnit)
	require.True(t, errors.Is(rep.Results[1].Err, controller.ErrNoSuchUnit))
	l := rep.Results[0].Live
	require.Equal(t, QMLive{ActiveState: "active", SourcePath: "/usr/share/containers/systemd/qm.container",
		MemoryHigh: "2147483648", MemoryMax: "infinity", CPUWeight: "idle", OOMScoreAdjust: "500",
		CapDrop: []string{"sys_boot"}, CapAdd: []string{"all", "sys_resource"}, Seccomp: "", SeccompSet: true,
		Volumes: []string{"${RWETCFS}:/etc"}}, *l)
}
