package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/qmorch/qmorch/internal/safefile"
	"github.com/qmorch/qmorch/qmconf"
)

// MaxFileSize bounds a Quadlet file: systemd refuses credentials above 1 MiB.
const MaxFileSize = 1 << 20

// quadletName is what deploy accepts as NAME.container: systemd unit-name characters only,
// no template ('@'), no leading dot, no path separators. Node-side paths are built from it,
// so it must never carry '$', '%', '/', whitespace or quotes.
var quadletName = regexp.MustCompile(`^[A-Za-z0-9_:-][A-Za-z0-9_.:-]*\.container$`)

// ValidateFile checks the file name and content before any node is touched and returns the
// unit Quadlet generates from it (NAME.service, or ServiceName= + ".service"). source is the
// local path the user gave (used in messages; may be empty), name the file's base name, which
// is what lands on the node.
func ValidateFile(source, name string, content []byte) (unit string, err error) {
	if source == "" || filepath.Base(source) != name {
		source = name
	}
	if err := validateName(name); err != nil {
		return "", err
	}
	if len(bytes.TrimSpace(content)) == 0 {
		return "", invalidf("%s: file is empty", source)
	}
	if len(content) > MaxFileSize {
		return "", invalidf("%s: file is %d bytes, more than the %d bytes a systemd credential can carry",
			source, len(content), MaxFileSize)
	}
	if err := checkNUL(source, content); err != nil {
		return "", err
	}
	_, unit, err = qmconf.ValidateQuadlet(source, content)
	if err != nil {
		return "", withClass(ErrInvalid, err)
	}
	return unit, nil
}

// ReadSourceFile reads the local Quadlet file given to deploy. The file name is checked
// first; then only a regular file of at most MaxFileSize bytes is read: a FIFO (which would
// block), a device such as /dev/zero (which never ends), a socket or a directory is refused.
// Name checks and refusals are ErrInvalid naming the file; an I/O error (a missing file) is
// returned as the *fs.PathError.
func ReadSourceFile(source string) ([]byte, error) {
	if err := validateName(filepath.Base(source)); err != nil {
		return nil, err
	}
	b, err := safefile.ReadFile(source, MaxFileSize)
	var tl *safefile.TooLargeError
	switch {
	case err == nil:
		return b, nil
	case errors.As(err, &tl) && !tl.AtLeast:
		return nil, invalidf("%s: file is %d bytes, more than the %d bytes a systemd credential can carry",
			source, tl.Size, MaxFileSize)
	case errors.As(err, &tl):
		return nil, invalidf("%s: file is more than the %d bytes a systemd credential can carry", source, MaxFileSize)
	case safefile.Refused(err):
		return nil, invalidf("%s: %v; deploy reads only regular files", source, unwrapPathErr(err))
	}
	return nil, err
}

func validateName(name string) error {
	switch {
	case name == "":
		return invalidf("no file name")
	case strings.HasPrefix(name, "-"):
		return invalidf("file name %q: must not start with '-'", name)
	case strings.ContainsAny(name, `/\`) || strings.Contains(name, ".."):
		return invalidf("file name %q: must be a plain NAME.container (no path separators or \"..\")", name)
	case len(name) > 255-len(".service")+len(".container"):
		return invalidf("file name %q: too long for a unit name", name)
	case !quadletName.MatchString(name):
		return invalidf("file name %q: must be NAME.container with NAME made of letters, digits and \"_.:-\"", name)
	}
	return nil
}

// checkNUL refuses a NUL byte: systemd's unit-file reader ends the line there (the rest of it
// would reach the parser as a line of its own), so the file cannot mean what it says.
func checkNUL(source string, content []byte) error {
	i := bytes.IndexByte(content, 0)
	if i < 0 {
		return nil
	}
	return invalidf("%s:%d: file contains a NUL byte (systemd would split the line there); remove it",
		source, 1+bytes.Count(content[:i], []byte("\n")))
}

// validateRWETCFS checks the QM writable /etc path used on nodes: absolute, clean and free of
// characters that systemd or sh would interpret.
func validateRWETCFS(p string) error {
	if p == "" || !path.IsAbs(p) || path.Clean(p) != p {
		return invalidf("rwetcfs %q: must be a clean absolute path", p)
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f || strings.ContainsRune(`$%\"'`+"`", r) {
			return invalidf("rwetcfs %q: must not contain whitespace, control characters or $%%\\\"'`", p)
		}
	}
	return nil
}

// quadletDir is where QM's systemd reads nested Quadlet files, on the host.
func quadletDir(rwetcfs string) string {
	return path.Join(rwetcfs, "containers", "systemd")
}

func nodeDest(rwetcfs, file string) string {
	return path.Join(quadletDir(rwetcfs), file)
}

func describeBytes(n int) string { return fmt.Sprintf("%d bytes", n) }
