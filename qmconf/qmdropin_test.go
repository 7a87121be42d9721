package qmconf

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/qmconf/unitfile"
)

func TestParseQMSet(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg      string
		wantErr  string // substring; "" = valid
		wantWarn string // substring of a warning; "" = no warning
		dropIn   string
	}{
		// MemoryHigh / MemoryMax: systemd size syntax
		{arg: "MemoryHigh=2G", dropIn: "50-qmorch-memory-high.conf"},
		{arg: "MemoryHigh=infinity"},
		{arg: "MemoryHigh=1.5G"},
		{arg: "MemoryHigh=2147483648"},
		{arg: "MemoryHigh=512M"},
		{arg: "MemoryHigh=1T"},
		{arg: "MemoryHigh=80%"},
		{arg: "MemoryHigh=12.5%"},
		{arg: "MemoryHigh=100%"},
		{arg: "MemoryHigh=101%", wantErr: "MemoryHigh=101%: percentage above 100%"},
		{arg: "MemoryHigh=1.234%", wantErr: "bad percentage"},
		{arg: "MemoryHigh=2g", wantErr: `unknown size suffix "g"`},
		{arg: "MemoryHigh=2GB", wantErr: "not a size"},
		{arg: "MemoryHigh=-1", wantErr: "not a size"},
		{arg: "MemoryHigh=", wantErr: "MemoryHigh: empty value"},
		{arg: "MemoryHigh= 2G", wantErr: "surrounding whitespace"},
		{arg: "MemoryHigh=16E", wantErr: "too large"},
		{arg: "MemoryHigh=Infinity", wantErr: "not a size"},
		{arg: "MemoryHigh=1M", wantWarn: "very little for QM"},
		{arg: "MemoryHigh=0.5%", wantWarn: "very little for QM"},
		{arg: "MemoryMax=4G", dropIn: "50-qmorch-memory-max.conf"},
		{arg: "MemoryMax=1 G", wantErr: "MemoryMax=1 G: not a size"},
		// CPUWeight
		{arg: "CPUWeight=idle", dropIn: "50-qmorch-cpu.conf"},
		{arg: "CPUWeight=1"},
		{arg: "CPUWeight=10000"},
		{arg: "CPUWeight=0", wantErr: "CPUWeight=0: out of range or not a number (want 1..10000 or idle)"},
		{arg: "CPUWeight=10001", wantErr: "out of range"},
		{arg: "CPUWeight=high", wantErr: "out of range or not a number"},
		// OOMScoreAdjust
		{arg: "OOMScoreAdjust=500", dropIn: "50-qmorch-oom.conf"},
		{arg: "OOMScoreAdjust=1", wantWarn: ""},
		{arg: "OOMScoreAdjust=0", wantWarn: "QM must stay above ASIL processes"},
		{arg: "OOMScoreAdjust=-1000", wantWarn: "at or below 0"},
		{arg: "OOMScoreAdjust=1000", wantWarn: "above the 750 of nested containers"},
		{arg: "OOMScoreAdjust=1001", wantErr: "OOMScoreAdjust=1001: out of range"},
		{arg: "OOMScoreAdjust=-1001", wantErr: "out of range"},
		{arg: "OOMScoreAdjust=5x", wantErr: "not an integer"},
		// Realtime, NestedOOM
		{arg: "Realtime=yes", wantWarn: "realtime scheduling", dropIn: "50-qmorch-realtime.conf"},
		{arg: "Realtime=true", wantWarn: "realtime scheduling"},
		{arg: "Realtime=no", wantErr: "qm unset"},
		{arg: "Realtime=maybe", wantErr: "not a boolean"},
		{arg: "NestedOOM=yes", wantWarn: "CAP_SYS_RESOURCE", dropIn: "50-qmorch-nested-oom.conf"},
		{arg: "NestedOOM=0", wantErr: "qm unset"},
		// ControllerSocket
		{arg: "ControllerSocket=/run/bluechi/bluechi.sock", dropIn: "90-qmorch-bluechi-socket.conf"},
		{arg: "ControllerSocket=run/bluechi.sock", wantErr: "not a clean absolute path"},
		{arg: "ControllerSocket=/run/a:b", wantErr: `contains ':'`},
		{arg: "ControllerSocket=/run/../x", wantErr: "not a clean absolute path"},
		// unknown keys
		{arg: "memoryhigh=2G", wantErr: "did you mean MemoryHigh?"},
		{arg: "SeccompProfile=x", wantErr: "managed through Realtime="},
		{arg: "IOWeight=10", wantErr: "unknown key (qmorch manages CPUWeight, ControllerSocket, MemoryHigh"},
		{arg: "MemoryHigh", wantErr: "MemoryHigh: want KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			t.Parallel()
			a, err := ParseQMSet(tc.arg)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				var ke *QMKeyError
				require.True(t, errors.As(err, &ke), "error names the key")
				return
			}
			require.NoError(t, err)
			if tc.dropIn != "" {
				require.Equal(t, tc.dropIn, a.DropIn)
			}
			if tc.wantWarn == "" {
				require.Empty(t, a.Warnings)
			} else {
				require.Len(t, a.Warnings, 1)
				require.Contains(t, a.Warnings[0], tc.wantWarn)
			}
			// The rendered drop-in parses back and carries the value.
			f, err := unitfile.Parse(a.Path(), a.Content())
			require.NoError(t, err)
			require.True(t, f.HasSection(a.Section))
		})
	}
}

func TestParseMemorySizeBytes(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]uint64{
		"2G": 2 << 30, "2147483648": 2147483648, "1.5K": 1536, "1.5G": 3 << 29, "10B": 10, "1E": 1 << 60, "0": 0,
	} {
		m, err := ParseMemorySize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, m.Bytes, in)
	}
}

func TestQMDropInContent(t *testing.T) {
	t.Parallel()
	render := func(arg string) string {
		a, err := ParseQMSet(arg)
		require.NoError(t, err)
		return string(a.Content())
	}
	require.Equal(t, "# Written by qmorch (qmorch qm set NODES MemoryHigh=...); `qmorch qm unset` removes it. Do not edit.\n"+
		"\n[Service]\nMemoryHigh=2G\n", render("MemoryHigh=2G"))
	require.Contains(t, render("NestedOOM=yes"), "[Container]\nDropCapability=\nDropCapability=sys_boot\nAddCapability=sys_resource\n")
	require.Contains(t, render("Realtime=yes"), "[Container]\nSeccompProfile=\"\"\n")

	// The socket drop-in is byte for byte what provisioning writes.
	d, err := DeriveQMAgentFromFS(hostFS(map[string]string{"etc/bluechi/agent.conf": "[bluechi-agent]\nNodeName=n1\n"}),
		DeriveOptions{Hostname: "h", Mode: ReachSocket})
	require.NoError(t, err)
	require.NotNil(t, d.ContainerDropIn)
	a, err := ParseQMSet("ControllerSocket=" + DefaultHostSocket)
	require.NoError(t, err)
	require.Equal(t, d.ContainerDropIn.Path, a.Path())
	require.Equal(t, string(d.ContainerDropIn.Content), string(a.Content()))
}

func TestParseQMRaw(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg, wantErr, dropIn string
	}{
		{arg: "Service.IOWeight=20", dropIn: "50-qmorch-raw-Service-IOWeight.conf"},
		// systemd keys are case-sensitive: another key, another file.
		{arg: "Service.ioweight=5", dropIn: "50-qmorch-raw-Service-ioweight.conf"},
		{arg: "Service." + strings.Repeat("K", MaxRawNameLen) + "=1", dropIn: "50-qmorch-raw-Service-" + strings.Repeat("K", MaxRawNameLen) + ".conf"},
		{arg: "Service." + strings.Repeat("K", 300) + "=1", wantErr: "is 300 characters long, more than 64"},
		{arg: "X-" + strings.Repeat("S", 70) + ".Note=1", wantErr: "is 72 characters long"},
		{arg: "Container.PodmanArgs=--log-level=debug", dropIn: "50-qmorch-raw-Container-PodmanArgs.conf"},
		{arg: "X-Site.Note=hello world", dropIn: "50-qmorch-raw-X-Site-Note.conf"},
		{arg: "Service.Environment=A=1", dropIn: "50-qmorch-raw-Service-Environment.conf"},
		{arg: "Servic.IOWeight=20", wantErr: `section "Servic" is not one Quadlet reads`},
		{arg: "Service.MemoryHigh=2G", wantErr: "managed by qmorch: use MemoryHigh="},
		{arg: "Container.SeccompProfile=", wantErr: "managed by qmorch: use Realtime="},
		{arg: "Service.IO_Weight=1", wantErr: "only letters, digits and '-'"},
		{arg: "Service.IOWeight=a\\", wantErr: "ends in a backslash"},
		{arg: "Service.IOWeight= 20", wantErr: "leading or trailing whitespace"},
		{arg: "IOWeight=20", wantErr: "SECTION.KEY=VALUE"},
		{arg: "Service.IOWeight", wantErr: "SECTION.KEY=VALUE"},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			t.Parallel()
			a, err := ParseQMRaw(tc.arg)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.dropIn, a.DropIn)
			require.True(t, IsQMOwnedDropIn(a.DropIn))
		})
	}
}

func TestParseQMUnset(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]string{
		"MemoryHigh":          "/etc/containers/systemd/qm.container.d/50-qmorch-memory-high.conf",
		"NestedOOM":           "/etc/containers/systemd/qm.container.d/50-qmorch-nested-oom.conf",
		"ControllerSocket":    "/etc/containers/systemd/qm.container.d/90-qmorch-bluechi-socket.conf",
		"Service.IOWeight":    "/etc/containers/systemd/qm.container.d/50-qmorch-raw-Service-IOWeight.conf",
		"Service.ioweight":    "/etc/containers/systemd/qm.container.d/50-qmorch-raw-Service-ioweight.conf",
		"X-Site.Note":         "/etc/containers/systemd/qm.container.d/50-qmorch-raw-X-Site-Note.conf",
		"Service.../../x":     "",
		"memoryhigh":          "",
		"Service.MemoryHigh":  "",
		"/etc/passwd":         "",
		"Container.Volume/..": "",
	} {
		u, err := ParseQMUnset(key)
		if want == "" {
			require.Error(t, err, key)
			continue
		}
		require.NoError(t, err, key)
		require.Equal(t, want, u.Path(), key)
		require.True(t, IsQMOwnedDropIn(u.DropIn))
	}
	require.False(t, IsQMOwnedDropIn("90-testbed.conf"))
	require.False(t, IsQMOwnedDropIn("100-AddCAPA.conf"))
}

// Quadlet applies drop-ins sorted by file name across all directories (a same-named file in a
// higher-precedence directory masks the others); later assignments win, list keys append, an
// empty value resets a list.
func TestQMViewMergeOrder(t *testing.T) {
	t.Parallel()
	const vendor = "[Service]\nMemoryHigh=infinity\nOOMScoreAdjust=500\n[Container]\nAddCapability=all\n" +
		"DropCapability=sys_boot sys_resource\nSeccompProfile=/usr/share/qm/seccomp-no-rt.json\nVolume=/etc/qm:/etc\n"
	etc := "etc/containers/systemd/qm.container.d/"
	usr := "usr/share/containers/systemd/qm.container.d/"
	fsys := fstest.MapFS{
		"usr/share/containers/systemd/qm.container":      {Data: []byte(vendor)},
		usr + "a-last.conf":                              {Data: []byte("[Service]\nMemoryHigh=4G\n[Container]\nDropCapability=mknod\n")},
		etc + "100-c.conf":                               {Data: []byte("[Service]\nMemoryHigh=3G\n[Container]\nDropCapability=\nDropCapability=sys_boot\n")},
		etc + "10-b.conf":                                {Data: []byte("[Service]\nMemoryHigh=2G\nOOMScoreAdjust=600\n[Container]\nSeccompProfile=\"\"\n")},
		usr + "01-a.conf":                                {Data: []byte("[Service]\nMemoryHigh=1G\n[Container]\nAddCapability=SYS_RESOURCE\n")},
		usr + "10-b.conf":                                {Data: []byte("[Service]\nMemoryHigh=masked\n")}, // masked by /etc's 10-b.conf
		etc + "README":                                   {Data: []byte("not a drop-in")},
		"etc/containers/systemd/container.d/05-all.conf": {Data: []byte("[Service]\nCPUWeight=50\n")},
	}
	f, files, err := EffectiveQuadlet(fsys, QMContainerFile)
	require.NoError(t, err)
	require.Equal(t, []string{
		"/usr/share/containers/systemd/qm.container",
		"/usr/share/containers/systemd/qm.container.d/01-a.conf",
		"/etc/containers/systemd/container.d/05-all.conf",
		"/etc/containers/systemd/qm.container.d/10-b.conf",
		"/etc/containers/systemd/qm.container.d/100-c.conf",
		"/usr/share/containers/systemd/qm.container.d/a-last.conf",
	}, files)
	v := QMViewFromUnit(f, files)
	get := func(key string) QMValue {
		for _, x := range v.Values {
			if x.Key == key {
				return x
			}
		}
		t.Fatalf("no %s", key)
		return QMValue{}
	}
	require.Equal(t, "4G", get("MemoryHigh").Value)
	require.Equal(t, "/usr/share/containers/systemd/qm.container.d/a-last.conf:2", get("MemoryHigh").From)
	require.Equal(t, "600", get("OOMScoreAdjust").Value)
	require.Equal(t, "50", get("CPUWeight").Value)
	require.Equal(t, "", get("SeccompProfile").Value)
	require.True(t, get("SeccompProfile").Set)
	drop := get("DropCapability")
	require.Equal(t, []string{"sys_boot", "mknod"}, drop.Values)
	require.Equal(t, "/etc/containers/systemd/qm.container.d/100-c.conf:4", drop.ResetAt)
	require.Equal(t, []string{"/etc/containers/systemd/qm.container.d/100-c.conf:5", "/usr/share/containers/systemd/qm.container.d/a-last.conf:4"}, drop.Froms)
	require.Equal(t, []string{"all", "sys_resource"}, get("AddCapability").Values)
	require.Equal(t, "/etc/qm:/etc", get("Volume").Value)
	require.False(t, get("MemoryMax").Set)
}
