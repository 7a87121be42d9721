package testcontroller

import "strings"

// PathEncode escapes a node name like systemd's sd_bus_path_encode: every byte outside
// [A-Za-z0-9], and a leading digit, becomes "_xx" (lowercase hex). The empty name becomes "_".
func PathEncode(name string) string {
	if name == "" {
		return "_"
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !alnum || (i == 0 && c >= '0' && c <= '9') {
			b.WriteByte('_')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// NodePath is the object path BlueChi gives the node called name.
func NodePath(name string) string { return NodePathPrefix + "/" + PathEncode(name) }
