package qmconf

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/qmorch/qmorch/qmconf/unitfile"
)

const goodQuadlet = `# nested workload
[Unit]
Description=nested

[Container]
Image=quay.io/fedora/fedora:latest
Exec=sleep infinity

[Install]
WantedBy=default.target
`

func TestValidateQuadlet(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		data     string
		wantUnit string
		wantErr  string // substring of the error text; "" = valid
		wantLine int
	}{
		{name: "good", path: "nested.container", data: goodQuadlet, wantUnit: "nested.service"},
		{name: "local dirs allowed, base name used", path: "/abs/x.container", data: goodQuadlet, wantUnit: "x.service"},
		{name: "relative parent dir is a local path", path: "../x.container", data: goodQuadlet, wantUnit: "x.service"},
		{name: "dashes dots colons", path: "my-app.v2:x.container", data: goodQuadlet, wantUnit: "my-app.v2:x.service"},
		{name: "rootfs instead of image", path: "r.container", data: "[Container]\nRootfs=/srv/r\n", wantUnit: "r.service"},
		{name: "ServiceName honoured", path: "a.container", data: "[Container]\nImage=x\nServiceName=other\n", wantUnit: "other.service"},
		{name: "ServiceName quoted like Quadlet", path: "a.container", data: "[Container]\nImage=x\nServiceName=\"other\"\n", wantUnit: "other.service"},
		{name: "Image across continuation", path: "a.container", data: "[Container]\nImage=\\\n  x\n", wantUnit: "a.service"},
		{name: "repeated Container header merges", path: "a.container", data: "[Container]\nExec=x\n[Unit]\n[Container]\nImage=x\n", wantUnit: "a.service"},

		{name: "space in name", path: "a b.container", data: goodQuadlet, wantErr: `not allowed in a unit name`},
		{name: "wrong extension", path: "x.txt", data: goodQuadlet, wantErr: `must end in .container`},
		{name: "volume is not a container", path: "x.volume", data: "[Volume]\n", wantErr: `must end in .container`},
		{name: "only extension", path: ".container", data: goodQuadlet, wantErr: `empty unit name`},
		{name: "dotdot in name", path: "a..b.container", data: goodQuadlet, wantErr: `".."`},
		{name: "hidden", path: ".x.container", data: goodQuadlet, wantErr: `starts with`},
		{name: "leading dash", path: "-x.container", data: goodQuadlet, wantErr: `starts with`},
		{name: "template", path: "web@.container", data: goodQuadlet, wantErr: `template`},
		{name: "instance", path: "web@1.container", data: goodQuadlet, wantErr: `template`},
		{name: "control char", path: "a\tb.container", data: goodQuadlet, wantErr: `not allowed`},
		{name: "percent", path: "a%n.container", data: goodQuadlet, wantErr: `not allowed`},
		{name: "trailing slash", path: "x.container/", data: goodQuadlet, wantErr: `not a file path`},
		{name: "too long", path: strings.Repeat("a", 250) + ".container", data: goodQuadlet, wantErr: `too long`},
		{name: "empty file", path: "x.container", data: "", wantErr: `empty Quadlet file`},
		{name: "whitespace only", path: "x.container", data: " \n\t\n", wantErr: `empty Quadlet file`},
		{name: "missing Container", path: "x.container", data: "[Unit]\nDescription=x\n", wantErr: `no [Container] section`},
		{name: "missing Image", path: "x.container", data: "[Container]\nExec=sleep 1\n", wantErr: `[Container] has no Image=`},
		{name: "Image in wrong section", path: "x.container", data: "[Service]\nImage=x\n[Container]\n", wantErr: `has no Image=`},
		{name: "empty Image", path: "x.container", data: "[Container]\nImage=x\n\nImage=\n", wantErr: `Image= is empty`, wantLine: 4},
		{name: "quoted empty Image", path: "x.container", data: "[Container]\nImage=\"\"\n", wantErr: `Image= is empty`, wantLine: 2},
		{name: "syntax error line", path: "x.container", data: "[Container]\nImage=x\nthis is not valid\n", wantErr: `not a comment, a section header or Key=Value`, wantLine: 3},
		{name: "assignment before section", path: "x.container", data: "Image=x\n[Container]\n", wantErr: `outside of a section`, wantLine: 1},
		{name: "bad header", path: "x.container", data: "[Container]\nImage=x\n[Service\n", wantErr: `invalid section header`, wantLine: 3},
		{name: "bad ServiceName", path: "x.container", data: "[Container]\nImage=x\nServiceName=a/b\n", wantErr: `bad ServiceName=`, wantLine: 3},
		{name: "template ServiceName", path: "x.container", data: "[Container]\nImage=x\nServiceName=a@\n", wantErr: `template`, wantLine: 3},
		{name: "empty ServiceName", path: "x.container", data: "[Container]\nImage=x\nServiceName=\n", wantErr: `empty unit name`, wantLine: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, unit, err := ValidateQuadlet(tt.path, []byte(tt.data))
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.NotNil(t, f)
				assert.Equal(t, tt.wantUnit, unit)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
			assert.Nil(t, f)
			assert.Empty(t, unit)
			var pe *unitfile.ParseError
			require.True(t, errors.As(err, &pe), "error %T is not a *unitfile.ParseError", err)
			assert.Equal(t, tt.path, pe.Path)
			assert.Equal(t, tt.wantLine, pe.Line)
			if tt.wantLine > 0 {
				assert.True(t, strings.HasPrefix(err.Error(), tt.path+":"), err.Error())
			}
		})
	}
}

func TestValidateQuadletErrorText(t *testing.T) {
	_, _, err := ValidateQuadlet("dir/x.container", []byte("[Container]\nImage=x\nbogus\n"))
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "dir/x.container:3: "), err.Error())
}

func TestServiceName(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"nested.container", "nested.service", ""},
		{"a-b_c.d.container", "a-b_c.d.service", ""},
		{"../x.container", "", "not a plain file name"},
		{"d/x.container", "", "not a plain file name"},
		{"x.txt", "", "must end in"},
		{"a b.container", "", "not allowed"},
		{"x@.container", "", "template"},
		{"", "", "empty"},
	}
	for _, tt := range tests {
		got, err := ServiceName(tt.in)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got)
	}
}

func TestNestedQuadletPath(t *testing.T) {
	tests := []struct{ rwetcfs, name, want, err string }{
		{DefaultRWETCFS, "nested.container", "/etc/qm/containers/systemd/nested.container", ""},
		{"/srv/qm/etc", "data.volume", "/srv/qm/etc/containers/systemd/data.volume", ""},
		{"/", "n.container", "/containers/systemd/n.container", ""},
		{"/etc/qm", "../x.container", "", "not a plain file name"},
		{"/etc/qm", "..", "", "not a plain file name"},
		{"/etc/qm", "a/b.container", "", "not a plain file name"},
		{"/etc/qm", "x.txt", "", "must end in"},
		{"/etc/qm", "a b.container", "", "not allowed"},
		{"/etc/qm", "", "", "empty"},
		{"etc/qm", "n.container", "", "not an absolute path"},
		{"", "n.container", "", "empty path"},
		{"/etc/qm/", "n.container", "", "not a clean path"},
		{"/etc/../qm", "n.container", "", "not a clean path"},
		{"/etc//qm", "n.container", "", "not a clean path"},
		{"${RWETCFS}", "n.container", "", "not an absolute path"},
		{"/etc/${X}", "n.container", "", "'$'"},
		{"/etc/%h", "n.container", "", "'$' or '%'"},
		{"/etc/q\nm", "n.container", "", "control character"},
	}
	for _, tt := range tests {
		got, err := NestedQuadletPath(tt.rwetcfs, tt.name)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, "%q %q", tt.rwetcfs, tt.name)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tt.want, got)
	}
}

func TestValidateNodeName(t *testing.T) {
	tests := []struct {
		name        string
		ok, proxyOK bool
	}{
		{"node1", true, true},
		{"node-1.example.com", true, true},
		{"qm.node1", true, true},
		{"123", true, true},
		{"my_node", true, false},
		{"", false, false},
		{"a b", false, false},
		{"a\tb", false, false},
		{"a\u00a0b", false, false},
		{"a\x01b", false, false},
		{"a/b", false, false},
		{"a,b", false, false},
		{"a]b", false, false},
		{"\xff", false, false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.ok, ValidateNodeName(tt.name) == nil, "ValidateNodeName(%q)", tt.name)
		assert.Equal(t, tt.proxyOK, ValidateProxyNodeName(tt.name) == nil, "ValidateProxyNodeName(%q)", tt.name)
	}
}

func TestTwinName(t *testing.T) {
	assert.Equal(t, "qm.node1", TwinName(DefaultTwinPrefix, "node1"))
	assert.Equal(t, "qm-node1", TwinName("qm-", "node1"))
}
