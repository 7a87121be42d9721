package controller

import (
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/stretchr/testify/require"
)

func TestEscapePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		in    string
		label string
	}{
		{"plain", "node1", "node1"},
		{"dash", "node-1", "node_2d1"},
		{"dot", "qm.node1", "qm_2enode1"},
		{"leading digit", "1node", "_31node"},
		{"digits only", "42", "_342"},
		{"underscore", "a_b", "a_5fb"},
		{"empty", "", "_"},
		{"upper case kept", "Node-A", "Node_2dA"},
		{"slash and space", "a/b c", "a_2fb_20c"},
		{"utf-8 bytes", "nö", "n_c3_b6"},
		{"control byte", "a\x01", "a_01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.label, EscapeLabel(tt.in))
			p := EscapePath(tt.in)
			require.Equal(t, NodePathPrefix+"/"+dbus.ObjectPath(tt.label), p)
			require.True(t, p.IsValid(), "%q is not a valid object path", p)
			require.Equal(t, tt.in, UnescapeLabel(tt.label))
			name, ok := nodeNameFromPath(p)
			require.True(t, ok)
			require.Equal(t, tt.in, name)
		})
	}
}

func TestNodeNameFromPathRejects(t *testing.T) {
	t.Parallel()
	for _, p := range []dbus.ObjectPath{"/org/eclipse/bluechi", "/org/eclipse/bluechi/node", "/org/eclipse/bluechi/node/", "/org/eclipse/bluechi/node/a/b", "/org/eclipse/bluechi/job/1"} {
		_, ok := nodeNameFromPath(p)
		require.False(t, ok, p)
	}
}
