package qmconf

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/qmorch/qmorch/qmconf/unitfile"
)

// qmorch-owned drop-ins for qm.container live in QMContainerDropInDir. Each file holds exactly one
// setting and its content is a function of that setting's value only: BlueChi has no file-read
// API, so `qm set` must be able to write a file without knowing what is on the node, and `qm unset`
// must be able to remove one setting without touching another.
const (
	// QMDropInPrefix starts the name of every drop-in `qm set` writes (besides DefaultSocketDropIn).
	QMDropInPrefix = "50-qmorch-"
	// QMService is the host unit Quadlet generates from qm.container.
	QMService = "qm.service"
)

// QMSetting is one curated key of `qmorch qm set`: what the user writes (Key=VALUE), where it goes
// (Section, DropIn) and how it is checked.
type QMSetting struct {
	Key     string // what the user writes, e.g. "MemoryHigh"
	Section string // unit-file section of the drop-in ("Service" or "Container")
	DropIn  string // file name in QMContainerDropInDir
	// UnitKeys are the unit-file keys the drop-in writes (several for NestedOOM).
	UnitKeys []string
	Syntax   string // accepted values, for help and errors
	Summary  string

	check  func(v string) (warnings []string, err error)
	render func(v string) [][2]string // (unit key, value) assignments in order
}

// Path is the drop-in's absolute path on the host.
func (s QMSetting) Path() string { return path.Join(QMContainerDropInDir, s.DropIn) }

// qmSettings is the curated table; keep it sorted by Key.
var qmSettings = []QMSetting{
	{
		Key: "CPUWeight", Section: secService, DropIn: QMDropInPrefix + "cpu.conf", UnitKeys: []string{"CPUWeight"},
		Syntax:  "1..10000 or idle",
		Summary: "CPU share of QM against other host services (vendor: idle)",
		check:   checkCPUWeight, render: single("CPUWeight"),
	},
	{
		Key: "ControllerSocket", Section: secContainer, DropIn: DefaultSocketDropIn, UnitKeys: []string{"Volume"},
		Syntax:  "absolute path of the host's BlueChi controller socket",
		Summary: "mount the host controller socket into QM at " + DefaultQMSocket + " (what `provision` writes in socket mode)",
		check:   checkSocketPath,
		render:  func(v string) [][2]string { return [][2]string{{"Volume", v + ":" + DefaultQMSocket}} },
	},
	{
		Key: "MemoryHigh", Section: secService, DropIn: QMDropInPrefix + "memory-high.conf", UnitKeys: []string{"MemoryHigh"},
		Syntax:  "bytes with optional K, M, G, T, P, E suffix (base 1024), N% of RAM, or infinity",
		Summary: "memory throttling limit of QM (vendor: infinity)",
		check:   checkMemory, render: single("MemoryHigh"),
	},
	{
		Key: "MemoryMax", Section: secService, DropIn: QMDropInPrefix + "memory-max.conf", UnitKeys: []string{"MemoryMax"},
		Syntax:  "bytes with optional K, M, G, T, P, E suffix (base 1024), N% of RAM, or infinity",
		Summary: "hard memory limit of QM (vendor: infinity)",
		check:   checkMemory, render: single("MemoryMax"),
	},
	{
		Key: "NestedOOM", Section: secContainer, DropIn: QMDropInPrefix + "nested-oom.conf",
		UnitKeys: []string{"DropCapability", "AddCapability"},
		Syntax:   "yes",
		Summary:  "let nested units set their own OOMScoreAdjust= (grants CAP_SYS_RESOURCE to QM)",
		check:    checkYes(nestedOOMWarning),
		// The reset-then-set pattern of QM's docs: empty DropCapability= clears the vendor list,
		// then everything but sys_resource is dropped again.
		render: func(string) [][2]string {
			return [][2]string{{"DropCapability", ""}, {"DropCapability", "sys_boot"}, {"AddCapability", "sys_resource"}}
		},
	},
	{
		Key: "OOMScoreAdjust", Section: secService, DropIn: QMDropInPrefix + "oom.conf", UnitKeys: []string{"OOMScoreAdjust"},
		Syntax:  "-1000..1000 (keep it above 0: ASIL processes use -1..-1000)",
		Summary: "OOM score of QM's processes (vendor: 500; nested containers get 750)",
		check:   checkOOMScore, render: single("OOMScoreAdjust"),
	},
	{
		Key: "Realtime", Section: secContainer, DropIn: QMDropInPrefix + "realtime.conf", UnitKeys: []string{"SeccompProfile"},
		Syntax:  "yes",
		Summary: "drop QM's seccomp profile that blocks realtime scheduling (SeccompProfile=\"\")",
		check:   checkYes(realtimeWarning),
		render:  func(string) [][2]string { return [][2]string{{"SeccompProfile", `""`}} },
	},
}

const nestedOOMWarning = "NestedOOM resets DropCapability: the vendor list (sys_boot sys_resource) and any drops " +
	"from earlier drop-ins are replaced by sys_boot only, so QM gets CAP_SYS_RESOURCE. Nested units can then set " +
	"their own OOMScoreAdjust=, but every process in QM may also lower its oom_score_adj below QM's (even to -1000) " +
	"and exceed resource limits, undoing the OOM order that protects ASIL processes"

const realtimeWarning = "Realtime replaces QM's seccomp profile (which blocks sched_setscheduler and friends) " +
	"with podman's default: processes in QM may use realtime scheduling and can starve host (ASIL) workloads"

// QMSettings returns the curated settings, sorted by key.
func QMSettings() []QMSetting { return slices.Clone(qmSettings) }

// LookupQMSetting finds a curated setting by its exact key.
func LookupQMSetting(key string) (QMSetting, bool) {
	for _, s := range qmSettings {
		if s.Key == key {
			return s, true
		}
	}
	return QMSetting{}, false
}

func qmKeyNames() string {
	names := make([]string, len(qmSettings))
	for i, s := range qmSettings {
		names[i] = s.Key
	}
	return strings.Join(names, ", ")
}

// QMKeyError is a refused setting: it names the key and says why.
type QMKeyError struct {
	Key, Value string
	Reason     string
}

func (e *QMKeyError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("%s=%s: %s", e.Key, e.Value, e.Reason)
}

func keyErr(key, value, format string, args ...any) error {
	return &QMKeyError{Key: key, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// unknownKey explains an unknown key, with a hint for a wrong case or a unit key that a
// curated setting covers.
func unknownKey(key, value string) error {
	for _, s := range qmSettings {
		if strings.EqualFold(s.Key, key) {
			return keyErr(key, value, "unknown key; did you mean %s?", s.Key)
		}
		for _, uk := range s.UnitKeys {
			if strings.EqualFold(uk, key) && uk != s.Key {
				return keyErr(key, value, "unknown key; %s is managed through %s=%s", uk, s.Key, s.Syntax)
			}
		}
	}
	return keyErr(key, value, "unknown key (qmorch manages %s; use --raw SECTION.KEY=VALUE for anything else)", qmKeyNames())
}

// QMAssignment is one validated `qm set` item.
type QMAssignment struct {
	Key      string // curated key, or "Section.Key" for a raw one
	Value    string
	Raw      bool
	Section  string
	UnitKey  string // raw only
	DropIn   string // file name
	Warnings []string
}

// Path is the drop-in's absolute path on the host.
func (a QMAssignment) Path() string { return path.Join(QMContainerDropInDir, a.DropIn) }

// Content renders the drop-in file for the assignment.
func (a QMAssignment) Content() []byte {
	if !a.Raw && a.Key == "ControllerSocket" {
		return SocketDropInContent(a.Value)
	}
	f := unitfile.New(a.Path())
	how := "qmorch qm set NODES " + a.Key + "=..."
	if a.Raw {
		how = "qmorch qm set NODES --raw " + a.Key + "=..."
	}
	f.Lines = append(f.Lines,
		&unitfile.Line{Kind: unitfile.Comment, Text: "# Written by qmorch (" + how + "); `qmorch qm unset` removes it. Do not edit."})
	var pairs [][2]string
	if a.Raw {
		pairs = [][2]string{{a.UnitKey, a.Value}}
	} else {
		s, _ := LookupQMSetting(a.Key)
		pairs = s.render(a.Value)
	}
	for _, p := range pairs {
		// Validated values only reach here; Add cannot fail on them.
		if err := f.Add(a.Section, p[0], p[1]); err != nil {
			panic(fmt.Sprintf("render %s: %v", a.Key, err))
		}
	}
	return f.Bytes()
}

// SocketDropInContent is the controller-socket drop-in (DefaultSocketDropIn) for the host socket
// sock, byte for byte what provisioning (DeriveQMAgent in socket mode) writes, so `qm set
// ControllerSocket=` and `provision` never rewrite each other's file.
func SocketDropInContent(sock string) []byte {
	return []byte("# Written by qmorch: lets the QM bluechi-agent reach the host controller.\n" +
		"[Container]\nVolume=" + sock + ":" + DefaultQMSocket + "\n")
}

// ParseQMSet validates one KEY=VALUE of a curated setting.
func ParseQMSet(arg string) (QMAssignment, error) {
	key, value, ok := strings.Cut(arg, "=")
	if !ok {
		return QMAssignment{}, keyErr(arg, "", "want KEY=VALUE")
	}
	s, found := LookupQMSetting(key)
	if !found {
		return QMAssignment{}, unknownKey(key, value)
	}
	if value != strings.TrimSpace(value) || value == "" {
		return QMAssignment{}, keyErr(key, value, "empty value or surrounding whitespace (want %s; to remove the setting use `qm unset`)", s.Syntax)
	}
	warns, err := s.check(value)
	if err != nil {
		return QMAssignment{}, keyErr(key, value, "%v (want %s)", err, s.Syntax)
	}
	return QMAssignment{Key: key, Value: value, Section: s.Section, DropIn: s.DropIn, Warnings: warns}, nil
}

// rawSections are the sections of a Quadlet .container file (podman 5.4) plus systemd's X- extensions.
var rawSections = []string{"Container", "Install", "Quadlet", "Service", "Unit"}

// ParseQMRaw validates one SECTION.KEY=VALUE given with --raw: the section must be one Quadlet
// reads, the key and value must be valid unit-file syntax (the rendered file is parsed back), and
// keys that a curated setting covers are refused.
func ParseQMRaw(arg string) (QMAssignment, error) {
	lhs, value, ok := strings.Cut(arg, "=")
	if !ok {
		return QMAssignment{}, keyErr(arg, "", "--raw wants SECTION.KEY=VALUE")
	}
	section, key, ok := strings.Cut(lhs, ".")
	if !ok || section == "" || key == "" {
		return QMAssignment{}, keyErr(lhs, value, "--raw wants SECTION.KEY=VALUE (e.g. Service.IOWeight=20)")
	}
	if err := checkRawName(key); err != nil {
		return QMAssignment{}, keyErr(lhs, value, "key: %v", err)
	}
	if strings.HasPrefix(section, "X-") {
		if err := checkRawName(section); err != nil {
			return QMAssignment{}, keyErr(lhs, value, "section: %v", err)
		}
	} else if !slices.Contains(rawSections, section) {
		return QMAssignment{}, keyErr(lhs, value, "section %q is not one Quadlet reads for qm.container (want %s or X-...)",
			section, strings.Join(rawSections, ", "))
	}
	for _, s := range qmSettings {
		if s.Section == section && slices.Contains(s.UnitKeys, key) {
			return QMAssignment{}, keyErr(lhs, value, "managed by qmorch: use %s=%s", s.Key, s.Syntax)
		}
	}
	if err := unitfile.CheckKey(key); err != nil {
		return QMAssignment{}, keyErr(lhs, value, "%v", err)
	}
	if err := unitfile.CheckValue(value); err != nil {
		return QMAssignment{}, keyErr(lhs, value, "%v", err)
	}
	a := QMAssignment{
		Key: lhs, Value: value, Raw: true, Section: section, UnitKey: key,
		// Keys and sections are case-sensitive in systemd (IOWeight and ioweight are different
		// keys): the file name keeps their case so two keys never share a file.
		DropIn:   QMDropInPrefix + "raw-" + section + "-" + key + ".conf",
		Warnings: []string{fmt.Sprintf("%s=%s is not validated by qmorch (--raw): check the result with `qmorch qm show --root /` or the Quadlet generator's --dryrun on the node", lhs, value)},
	}
	// Read the rendered file back as systemd and Quadlet will.
	f, err := unitfile.Parse(a.Path(), a.Content())
	if err != nil {
		return QMAssignment{}, keyErr(lhs, value, "does not render as a valid drop-in: %v", err)
	}
	if got, ok := f.Lookup(section, key); !ok || got != value {
		return QMAssignment{}, keyErr(lhs, value, "does not read back unchanged (got %q)", got)
	}
	return a, nil
}

// MaxRawNameLen bounds the section and the key of a --raw setting. systemd's and Quadlet's
// longest keys have 35 characters; both names go into the drop-in's file name
// (50-qmorch-raw-SECTION-KEY.conf, plus a temporary ".NAME.qmorch-RANDOM" while it is
// written), which must stay well under the file system's 255-byte NAME_MAX.
const MaxRawNameLen = 64

// checkRawName allows letters, digits and '-' (and a leading letter): every systemd and Quadlet
// key has that form, and the name becomes part of the drop-in file name.
func checkRawName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > MaxRawNameLen {
		return fmt.Errorf("%.20q... is %d characters long, more than %d (no systemd or Quadlet key is that long, and the name becomes part of the drop-in's file name)",
			s, len(s), MaxRawNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '-')
		if !ok {
			return fmt.Errorf("%q: only letters, digits and '-' (starting with a letter)", s)
		}
	}
	return nil
}

// QMUnsetTarget is the drop-in `qm unset KEY` removes.
type QMUnsetTarget struct {
	Key      string
	DropIn   string
	Warnings []string
}

// Path is the drop-in's absolute path on the host.
func (u QMUnsetTarget) Path() string { return path.Join(QMContainerDropInDir, u.DropIn) }

// ParseQMUnset resolves a key of `qm unset` (a curated key or SECTION.KEY of a raw setting) to the
// qmorch-owned drop-in that holds it. Only qmorch's own file names can come out of here.
func ParseQMUnset(key string) (QMUnsetTarget, error) {
	if s, ok := LookupQMSetting(key); ok {
		t := QMUnsetTarget{Key: key, DropIn: s.DropIn}
		if key == "ControllerSocket" {
			t.Warnings = []string{"removing the controller socket mount disconnects a QM agent provisioned in socket mode after the next QM restart"}
		}
		return t, nil
	}
	if strings.Contains(key, ".") {
		a, err := ParseQMRaw(key + "=x")
		if err != nil {
			var ke *QMKeyError
			if errors.As(err, &ke) {
				ke.Value = ""
			}
			return QMUnsetTarget{}, err
		}
		return QMUnsetTarget{Key: key, DropIn: a.DropIn}, nil
	}
	return QMUnsetTarget{}, unknownKey(key, "")
}

// IsQMOwnedDropIn reports whether a qm.container.d file name is one qmorch writes.
func IsQMOwnedDropIn(name string) bool {
	return name == DefaultSocketDropIn || strings.HasPrefix(name, QMDropInPrefix) && strings.HasSuffix(name, ".conf")
}

func single(key string) func(string) [][2]string {
	return func(v string) [][2]string { return [][2]string{{key, v}} }
}

func checkYes(warning string) func(string) ([]string, error) {
	return func(v string) ([]string, error) {
		switch strings.ToLower(v) {
		case "yes", "true", "on", "1":
			return []string{warning}, nil
		case "no", "false", "off", "0":
			return nil, errors.New("to turn it off, remove the setting with `qm unset`")
		}
		return nil, errors.New("not a boolean")
	}
}

func checkCPUWeight(v string) ([]string, error) {
	if v == "idle" {
		return nil, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n < 1 || n > 10000 {
		return nil, errors.New("out of range or not a number")
	}
	return nil, nil
}

func checkOOMScore(v string) ([]string, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, errors.New("not an integer")
	}
	if n < -1000 || n > 1000 {
		return nil, errors.New("out of range")
	}
	switch {
	case n <= 0:
		return []string{fmt.Sprintf("OOMScoreAdjust=%d: QM must stay above ASIL processes (-1..-1000) so the kernel kills QM's processes first; at or below 0 QM competes with them", n)}, nil
	case n > 750:
		return []string{fmt.Sprintf("OOMScoreAdjust=%d is above the 750 of nested containers: QM's own init is killed before its workloads", n)}, nil
	}
	return nil, nil
}

func checkSocketPath(v string) ([]string, error) {
	if err := checkVolumePath(v); err != nil {
		return nil, err
	}
	return nil, nil
}

// sizeUnits are the suffixes of systemd's parse_size with base 1024.
var sizeUnits = map[byte]uint{'B': 0, 'K': 10, 'M': 20, 'G': 30, 'T': 40, 'P': 50, 'E': 60}

// MemorySize is a parsed MemoryHigh=/MemoryMax= value.
type MemorySize struct {
	Infinity  bool
	Permyriad int    // set when Percent
	Percent   bool   // relative to the installed RAM
	Bytes     uint64 // absolute sizes
}

// ParseMemorySize parses a MemoryHigh=/MemoryMax= value as systemd does (config_parse_memory_limit):
// "infinity"; a percentage with up to two decimals ("50%", "12.5%", relative to installed RAM); or a
// size: a number (decimals allowed) with an optional suffix B, K, M, G, T, P or E, base 1024
// (systemd's suffixes are upper case). systemd also accepts sums ("1G 512M") and permille; qmorch
// does not write those.
func ParseMemorySize(v string) (MemorySize, error) {
	if v == "infinity" {
		return MemorySize{Infinity: true}, nil
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		whole, frac, hasFrac := strings.Cut(p, ".")
		if whole == "" || !allDigits(whole) || hasFrac && (frac == "" || len(frac) > 2 || !allDigits(frac)) {
			return MemorySize{}, errors.New("bad percentage")
		}
		w, _ := strconv.Atoi(whole)
		f := 0
		if hasFrac {
			f, _ = strconv.Atoi((frac + "0")[:2])
		}
		pm := w*100 + f
		if w > 100 || pm > 10000 {
			return MemorySize{}, errors.New("percentage above 100%")
		}
		return MemorySize{Percent: true, Permyriad: pm}, nil
	}
	num := v
	shift := uint(0)
	if n := len(v); n > 0 {
		if s, ok := sizeUnits[v[n-1]]; ok {
			num, shift = v[:n-1], s
		} else if c := v[n-1]; sizeUnits[c-'a'+'A'] != 0 && c >= 'a' && c <= 'z' && allDigits(strings.Replace(v[:n-1], ".", "", 1)) {
			return MemorySize{}, fmt.Errorf("unknown size suffix %q (systemd's suffixes are upper case: K, M, G, T, P, E)", string(c))
		}
	}
	whole, frac, hasFrac := strings.Cut(num, ".")
	if whole == "" || !allDigits(whole) || hasFrac && (frac == "" || !allDigits(frac)) {
		return MemorySize{}, errors.New("not a size")
	}
	// Exact arithmetic: whole and fraction times 2^shift, the fraction rounded down as systemd does.
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return MemorySize{}, errors.New("not a size")
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), shift)))
	b := new(big.Int).Quo(r.Num(), r.Denom())
	if !b.IsUint64() || b.Uint64() == math.MaxUint64 {
		return MemorySize{}, errors.New("too large")
	}
	return MemorySize{Bytes: b.Uint64()}, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func checkMemory(v string) ([]string, error) {
	m, err := ParseMemorySize(v)
	if err != nil {
		return nil, err
	}
	if !m.Infinity && !m.Percent && m.Bytes < 64<<20 || m.Percent && m.Permyriad < 100 {
		return []string{fmt.Sprintf("%s is very little for QM (its own systemd, podman and bluechi-agent run there): it may be throttled or killed", v)}, nil
	}
	return nil, nil
}
