package qmconf

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"unicode"

	"github.com/qmorch/qmorch/qmconf/unitfile"
)

// Quadlet section and key names qmorch reads.
const (
	secContainer = "Container"
	secService   = "Service"

	keyImage       = "Image"
	keyRootfs      = "Rootfs"
	keyServiceName = "ServiceName"
)

// quadletValue reads a value the way podman 5.4's UnitFile.Lookup does: the last assignment,
// trailing whitespace removed, then '"' trimmed from both ends.
func quadletValue(f *unitfile.File, section, key string) (string, *unitfile.Line, bool) {
	l, ok := f.LookupLine(section, key)
	if !ok {
		return "", nil, false
	}
	return strings.Trim(strings.TrimRightFunc(l.Value, unicode.IsSpace), `"`), l, true
}

// ValidateQuadlet checks a nested Quadlet container file before anything touches a node, and
// returns the parsed file and the systemd unit Quadlet generates from it ("NAME.service").
//
// path is a local path: it may contain directories; only its base name is used on the node, and
// that name must be NAME.container with NAME made of systemd unit-name characters
// [A-Za-z0-9:_.\-] (see checkUnitPrefix: no "..", no leading '-' or '.', no spaces or control
// characters). Template and instance files (NAME@.container, NAME@INST.container) are refused:
// deploy starts NAME.service, which a template cannot provide, and Quadlet names their containers
// and drop-in directories differently.
//
// The content must be non-empty, valid unit-file syntax (see package unitfile, which also rejects
// what podman's parser rejects), and have a [Container] section with a non-empty Image= — or
// Rootfs=, which podman 5.4 accepts instead of Image= (QM itself runs that way). Values are read like
// Quadlet reads them (last assignment, surrounding '"' removed).
//
// If [Container] sets ServiceName= (podman >= 5.3), the unit is that name + ".service", as Quadlet
// generates it; the name must follow the same rules as NAME.
//
// Every error is a *unitfile.ParseError naming the file and, where there is one, the line.
func ValidateQuadlet(path string, data []byte) (*unitfile.File, string, error) {
	fail := func(line int, format string, args ...any) (*unitfile.File, string, error) {
		return nil, "", &unitfile.ParseError{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)}
	}
	if path == "" || strings.HasSuffix(path, "/") {
		return fail(0, "not a file path")
	}
	unit, err := ServiceName(filepath.Base(path))
	if err != nil {
		return fail(0, "%v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fail(0, "empty Quadlet file")
	}
	f, err := unitfile.Parse(path, data)
	if err != nil {
		return nil, "", err
	}
	if !f.HasSection(secContainer) {
		return fail(0, "no [%s] section", secContainer)
	}
	image, imageLine, hasImage := quadletValue(f, secContainer, keyImage)
	rootfs, _, _ := quadletValue(f, secContainer, keyRootfs)
	if image == "" && rootfs == "" {
		if hasImage {
			return fail(imageLine.Line, "%s= is empty", keyImage)
		}
		return fail(0, "[%s] has no %s=", secContainer, keyImage)
	}
	if name, l, ok := quadletValue(f, secContainer, keyServiceName); ok {
		if err := checkUnitPrefix(name); err != nil {
			return fail(l.Line, "bad %s=: %v", keyServiceName, err)
		}
		if len(name)+len(".service") > maxUnitName {
			return fail(l.Line, "%s= too long", keyServiceName)
		}
		unit = name + ".service"
	}
	return f, unit, nil
}
