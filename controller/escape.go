package controller

import (
	"strings"

	"github.com/godbus/dbus/v5"
)

const hexDigits = "0123456789abcdef"

// EscapePath returns the object path BlueChi gives the node called name:
// NodePathPrefix + "/" + EscapeLabel(name), i.e. sd_bus_path_encode("/org/eclipse/bluechi/node", name).
//
// It exists for tests and the test double only. Clients must not build node paths by hand; use
// Client.GetNode (or the path from ListNodes).
func EscapePath(name string) dbus.ObjectPath {
	return NodePathPrefix + "/" + dbus.ObjectPath(EscapeLabel(name))
}

// EscapeLabel is systemd's bus_label_escape, the last path element sd_bus_path_encode produces:
// every byte outside [A-Za-z0-9], and a leading digit, becomes "_xx" (lowercase hex); the empty
// string becomes "_". Examples: "node-1" -> "node_2d1", "qm.node1" -> "qm_2enode1".
func EscapeLabel(name string) string {
	if name == "" {
		return "_"
	}
	var b strings.Builder
	b.Grow(len(name) * 3)
	for i := 0; i < len(name); i++ {
		c := name[i]
		alpha := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		digit := c >= '0' && c <= '9'
		if alpha || (digit && i > 0) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('_')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

// UnescapeLabel reverses EscapeLabel (systemd's bus_label_unescape): "_" alone is the empty string,
// "_xx" is the byte 0xxx. Malformed escapes are kept literally.
func UnescapeLabel(label string) string {
	if label == "_" {
		return ""
	}
	var b strings.Builder
	b.Grow(len(label))
	for i := 0; i < len(label); i++ {
		c := label[i]
		if c == '_' && i+2 < len(label) {
			hi, okh := unhex(label[i+1])
			lo, okl := unhex(label[i+2])
			if okh && okl {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(c)
	}
	return b.String()
}

// nodeNameFromPath returns the node name encoded in a node object path.
func nodeNameFromPath(p dbus.ObjectPath) (string, bool) {
	prefix := string(NodePathPrefix) + "/"
	s := string(p)
	if !strings.HasPrefix(s, prefix) || strings.Contains(s[len(prefix):], "/") || len(s) == len(prefix) {
		return "", false
	}
	return UnescapeLabel(s[len(prefix):]), true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
