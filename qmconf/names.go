package qmconf

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DefaultRWETCFS is QM's writable /etc on the host when qm.container does not say otherwise.
const DefaultRWETCFS = "/etc/qm"

// DefaultTwinPrefix is prepended to a host node name to name the QM agent on that host.
const DefaultTwinPrefix = "qm."

// maxUnitName is systemd's UNIT_NAME_MAX - 1 (the NUL): the longest unit name, and also NAME_MAX.
const maxUnitName = 255

// quadletExts are the Quadlet source file kinds podman 5.4 generates units from.
var quadletExts = []string{".container", ".volume", ".network", ".kube", ".image", ".build", ".pod"}

// checkUnitPrefix checks the part of a unit name before the type suffix as qmorch accepts it:
// systemd's unit-name characters [A-Za-z0-9:_.\-] (plus '\' for systemd-escape sequences), no "..",
// no leading '-' or '.' (options and hidden files), and no '@': template and instance units are
// refused (see ValidateQuadlet).
func checkUnitPrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("empty unit name")
	}
	if strings.Contains(prefix, "..") {
		return fmt.Errorf("%q contains \"..\"", prefix)
	}
	if prefix[0] == '-' || prefix[0] == '.' {
		return fmt.Errorf("%q starts with %q", prefix, prefix[0])
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == ':' || c == '_' || c == '.' || c == '-' || c == '\\':
		case c == '@':
			return fmt.Errorf("%q: template and instance units (with '@') are not supported", prefix)
		default:
			return fmt.Errorf("%q: character %q is not allowed in a unit name", prefix, c)
		}
	}
	return nil
}

// splitQuadletName checks a Quadlet file name (a base name, no directories) and returns its stem and
// extension. Only the extensions in exts are accepted.
func splitQuadletName(name string, exts ...string) (stem, ext string, err error) {
	if name == "" {
		return "", "", fmt.Errorf("empty file name")
	}
	if strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return "", "", fmt.Errorf("%q is not a plain file name", name)
	}
	for _, e := range exts {
		if strings.HasSuffix(name, e) {
			stem, ext = strings.TrimSuffix(name, e), e
			break
		}
	}
	if ext == "" {
		return "", "", fmt.Errorf("%q: file name must end in %s", name, strings.Join(exts, " or "))
	}
	if err := checkUnitPrefix(stem); err != nil {
		return "", "", fmt.Errorf("bad Quadlet file name: %w", err)
	}
	if len(name) > maxUnitName || len(stem)+len(".service") > maxUnitName {
		return "", "", fmt.Errorf("%q: name too long", name)
	}
	return stem, ext, nil
}

// ServiceName maps a Quadlet container file name to the systemd unit Quadlet generates from it:
// "nested.container" -> "nested.service". The argument is a file name, not a path.
//
// The file name alone decides the result here. Since podman 5.3 a ServiceName= key in [Container]
// renames the generated unit (podman 5.4: getServiceName returns the ServiceName= value + ".service"
// when the key is present); use the unit returned by ValidateQuadlet, which reads the content, when
// the content is at hand.
func ServiceName(quadletFile string) (string, error) {
	stem, _, err := splitQuadletName(quadletFile, ".container")
	if err != nil {
		return "", err
	}
	return stem + ".service", nil
}

// NestedQuadletPath returns where a nested Quadlet file lives on the host:
// ${RWETCFS}/containers/systemd/NAME. rwetcfs must be a clean absolute path without '$' or '%'
// (an unexpanded variable or specifier) or control characters; fileName must be a plain Quadlet file
// name (NAME.container, .volume, .network, .kube, .image, .build or .pod) that stays in that
// directory.
func NestedQuadletPath(rwetcfs, fileName string) (string, error) {
	if err := checkHostDir(rwetcfs); err != nil {
		return "", fmt.Errorf("RWETCFS: %w", err)
	}
	if _, _, err := splitQuadletName(fileName, quadletExts...); err != nil {
		return "", err
	}
	dir := filepath.Join(rwetcfs, "containers", "systemd")
	p := filepath.Join(dir, fileName)
	if filepath.Dir(p) != dir {
		return "", fmt.Errorf("%q escapes %s", fileName, dir)
	}
	return p, nil
}

// checkHostDir checks a directory taken from qm.container: absolute, clean, no '$' or '%', valid
// UTF-8 without control characters.
func checkHostDir(dir string) error {
	switch {
	case dir == "":
		return fmt.Errorf("empty path")
	case !filepath.IsAbs(dir):
		return fmt.Errorf("%q is not an absolute path", dir)
	case filepath.Clean(dir) != dir:
		return fmt.Errorf("%q is not a clean path (want %q)", dir, filepath.Clean(dir))
	case strings.ContainsAny(dir, "$%"):
		return fmt.Errorf("%q contains '$' or '%%' (unexpanded variable or specifier)", dir)
	case !utf8.ValidString(dir):
		return fmt.Errorf("%q is not valid UTF-8", dir)
	}
	for _, r := range dir {
		if unicode.IsControl(r) {
			return fmt.Errorf("%q contains a control character", dir)
		}
	}
	return nil
}

// ValidateNodeName checks a BlueChi node name as qmorch accepts it: non-empty valid UTF-8 without
// whitespace, control characters, '/', ',' (AllowedNodeNames is a comma list) or '[' ']' (node names
// appear in "[node NAME]" section headers). Letters, digits, '-', '.', '_' and other printable
// characters are allowed. Use ValidateProxyNodeName for nodes used with proxy services.
func ValidateNodeName(name string) error {
	if name == "" {
		return fmt.Errorf("empty node name")
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("node name %q is not valid UTF-8", name)
	}
	for _, r := range name {
		switch {
		case unicode.IsSpace(r):
			return fmt.Errorf("node name %q contains whitespace", name)
		case unicode.IsControl(r):
			return fmt.Errorf("node name %q contains a control character", name)
		case r == '/' || r == ',' || r == '[' || r == ']':
			return fmt.Errorf("node name %q contains %q", name, r)
		}
	}
	return nil
}

// ValidateProxyNodeName is ValidateNodeName for nodes named in proxy services
// (bluechi-proxy@NODE_UNIT.service): BlueChi splits the instance at the first '_', so '_' is refused.
func ValidateProxyNodeName(name string) error {
	if err := ValidateNodeName(name); err != nil {
		return err
	}
	if strings.ContainsRune(name, '_') {
		return fmt.Errorf("node name %q contains '_', which proxy services cannot address", name)
	}
	return nil
}

// TwinName returns the node name of the QM agent on a host node: prefix + node ("qm." + "node1").
func TwinName(prefix, node string) string { return prefix + node }
