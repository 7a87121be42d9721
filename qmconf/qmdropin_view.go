package qmconf

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/qmorch/qmorch/internal/safefile"
	"github.com/qmorch/qmorch/qmconf/unitfile"
)

// QMViewKey is a unit-file key of qm.container that the view reports.
type QMViewKey struct {
	Section, Key string
	List         bool // list-valued in Quadlet (LookupAll: values append, an empty one resets)
}

// QMViewKeys are the keys `qm show` reports: those the curated settings write. [Service] keys are
// copied into qm.service by Quadlet as they are (the last assignment wins in systemd); the
// [Container] ones become podman flags (--security-opt seccomp=, --cap-drop, --cap-add, -v).
var QMViewKeys = []QMViewKey{
	{Section: secService, Key: "MemoryHigh"},
	{Section: secService, Key: "MemoryMax"},
	{Section: secService, Key: "CPUWeight"},
	{Section: secService, Key: "OOMScoreAdjust"},
	{Section: secContainer, Key: "SeccompProfile"},
	{Section: secContainer, Key: "DropCapability", List: true},
	{Section: secContainer, Key: "AddCapability", List: true},
	{Section: secContainer, Key: "Volume", List: true},
}

// QMValue is the effective value of one key and where it comes from.
type QMValue struct {
	Section string
	Key     string
	Set     bool
	// Value is the effective value as Quadlet passes it on: for a [Service] key the last
	// assignment verbatim; for SeccompProfile the last assignment with surrounding quotes removed
	// (Quadlet's Lookup unquotes); for a list key the words of all assignments after the last reset,
	// space separated (capabilities lower-cased, as in --cap-drop/--cap-add).
	Value  string
	Values []string // list keys: one entry per word (DropCapability/AddCapability) or per line (Volume)
	// From is "path:line" of the assignment that set Value (for a list key: of each entry, and
	// ResetAt of the empty assignment that cleared earlier entries, if any).
	From    string
	Froms   []string
	ResetAt string
}

// QMFile is one file of the effective qm.container.
type QMFile struct {
	Path   string
	QMOrch bool // a drop-in qmorch writes (qm set, provision)
}

// QMView is the effective qm.container as the Quadlet generator builds it.
type QMView struct {
	Files  []QMFile // the vendor file first, then the drop-ins in the order they apply
	Values []QMValue
}

// Lookup returns the value of section.key.
func (v QMView) Lookup(section, key string) (QMValue, bool) {
	for _, x := range v.Values {
		if x.Section == section && x.Key == key {
			return x, true
		}
	}
	return QMValue{}, false
}

// QMViewFromUnit reads the reported keys from the merged qm.container (see EffectiveQuadlet).
func QMViewFromUnit(f *unitfile.File, files []string) QMView {
	var v QMView
	for _, p := range files {
		v.Files = append(v.Files, QMFile{Path: p, QMOrch: p != files[0] && IsQMOwnedDropIn(path.Base(p))})
	}
	for _, k := range QMViewKeys {
		val := QMValue{Section: k.Section, Key: k.Key}
		if !k.List {
			if l, ok := f.LookupLine(k.Section, k.Key); ok {
				val.Set, val.From, val.Value = true, l.Where(), l.Value
				if k.Key == "SeccompProfile" {
					val.Value = quadletUnquote(l.Value)
				}
			}
			v.Values = append(v.Values, val)
			continue
		}
		for _, l := range f.Assignments(k.Section, k.Key) {
			if l.Value == "" {
				val.Values, val.Froms, val.ResetAt = nil, nil, l.Where()
				continue
			}
			words := []string{l.Value}
			if k.Key != "Volume" {
				// Quadlet's LookupAllStrv: each value split into (unquoted) words.
				if w, err := unitfile.SplitWords(l.Value); err == nil {
					words = w
				}
				for i := range words {
					words[i] = strings.ToLower(words[i])
				}
			}
			for _, w := range words {
				val.Values = append(val.Values, w)
				val.Froms = append(val.Froms, l.Where())
			}
		}
		val.Set = len(val.Values) > 0
		val.Value = strings.Join(val.Values, " ")
		v.Values = append(v.Values, val)
	}
	return v
}

// quadletUnquote removes the quotes around a whole value, as podman's UnitFile.Lookup does:
// SeccompProfile="" is the empty profile (podman's default seccomp policy).
func quadletUnquote(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		if w, err := unitfile.SplitWords(s); err == nil && len(w) == 1 {
			return w[0]
		}
	}
	return s
}

// LoadQMView reads the effective qm.container of the system rooted at root ("" or "/" for this
// host) through os.Root (paths escaping root are refused) and returns the view.
func LoadQMView(root string) (QMView, error) {
	if root == "" {
		root = "/"
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return QMView{}, err
	}
	r, err := os.OpenRoot(abs)
	if err != nil {
		return QMView{}, err
	}
	defer r.Close()
	f, files, err := EffectiveQuadlet(safefile.RootFS(r), QMContainerFile)
	if err != nil {
		return QMView{}, fmt.Errorf("qm.container under %s: %w", abs, err)
	}
	return QMViewFromUnit(f, files), nil
}
