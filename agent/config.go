package agent

import (
	"sort"
	"strconv"
	"strings"
)

// OriginKind says what kind of source set a value.
type OriginKind string

const (
	OriginBuiltin OriginKind = "builtin" // compiled-in default
	OriginFile    OriginKind = "file"
	OriginEnv     OriginKind = "env"
)

// Origin is where a value came from: a file and the lines that built it, or
// an env variable, or the compiled-in defaults.
type Origin struct {
	Kind  OriginKind
	Path  string // file path, or env variable name
	Lines []int  // file lines that contributed, in order
}

// Line is the first line that contributed, or 0.
func (o Origin) Line() int {
	if len(o.Lines) == 0 {
		return 0
	}
	return o.Lines[0]
}

func (o Origin) String() string {
	switch o.Kind {
	case OriginBuiltin:
		return "built-in default"
	case OriginEnv:
		return "env " + o.Path
	}
	if len(o.Lines) == 0 {
		return o.Path
	}
	return o.Path + ":" + strconv.Itoa(o.Line())
}

// Assignment is one value a key had at some point of the merge.
type Assignment struct {
	Value  string
	Origin Origin
}

// Entry is the effective value of one key with its history. An empty Value
// means the key is present but unset (BlueChi's `Key=`).
type Entry struct {
	Section string
	Key     string
	Value   string
	Origin  Origin
	// Replaced holds the earlier values, oldest first.
	Replaced []Assignment
}

// FileStatus records what happened to one file of the load order.
type FileStatus struct {
	Path   string
	Role   string // "default", "main", "drop-in", "cli"
	Status string // "loaded", "missing", "directory", "skipped"
}

// Config is a merged configuration as BlueChi holds it just before it logs
// "Final configuration used" (CLI flags are applied by the typed accessors).
type Config struct {
	Program  Program
	Files    []FileStatus
	Warnings []Warning
	entries  map[sectionKey]*Entry
	order    []sectionKey
	// bySection indexes order per section, so listing a section is linear in its own keys
	// (a 1 MiB file can hold ~70k sections).
	bySection map[string][]sectionKey
}

func newConfig(p Program) *Config {
	return &Config{Program: p, entries: map[sectionKey]*Entry{}, bySection: map[string][]sectionKey{}}
}

func (c *Config) set(section, key, value string, origin Origin) {
	k := sectionKey{section, key}
	if e := c.entries[k]; e != nil {
		e.Replaced = append(e.Replaced, Assignment{Value: e.Value, Origin: e.Origin})
		e.Value, e.Origin = value, origin
		return
	}
	c.entries[k] = &Entry{Section: section, Key: key, Value: value, Origin: origin}
	c.order = append(c.order, k)
	c.bySection[section] = append(c.bySection[section], k)
}

// Lookup returns the entry of section/key, or nil when the key was never set.
func (c *Config) Lookup(section, key string) *Entry {
	return c.entries[sectionKey{section, key}]
}

// Get returns the value of key in the program's own section and whether it
// is set to something non-empty (BlueChi treats `Key=` as unset).
func (c *Config) Get(key string) (string, bool) {
	return c.GetIn(c.Program.DefaultSection(), key)
}

// GetIn is Get for any section.
func (c *Config) GetIn(section, key string) (string, bool) {
	e := c.Lookup(section, key)
	if e == nil || e.Value == "" {
		return "", false
	}
	return e.Value, true
}

// Sections returns the sections that hold at least one key, sorted bytewise
// like BlueChi's cfg_list_sections.
func (c *Config) Sections() []string {
	out := make([]string, 0, len(c.bySection))
	for s := range c.bySection {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Entries returns the entries of section in the order they were first set.
func (c *Config) Entries(section string) []*Entry {
	keys := c.bySection[section]
	out := make([]*Entry, 0, len(keys))
	for _, k := range keys {
		out = append(out, c.entries[k])
	}
	return out
}

// Dump renders the configuration like BlueChi's cfg_dump. BlueChi prints
// keys in hash map order; Dump uses first-set order, which is deterministic.
func (c *Config) Dump() string {
	var b strings.Builder
	for i, s := range c.Sections() {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("[" + s + "]\n")
		for _, e := range c.Entries(s) {
			b.WriteString(e.Key + "=" + e.Value + "\n")
		}
	}
	return b.String()
}

// LogLevels are the values BlueChi accepts for LogLevel (case-sensitive).
var LogLevels = []string{"DEBUG", "INFO", "WARN", "ERROR"}

// DumpVisible reports whether BlueChi would print its DEBUG configuration
// dump on stderr with these log settings (bc_log_init): level exactly DEBUG,
// target stderr or stderr-full (any case), not quiet.
func (c *Config) DumpVisible() bool {
	level, _ := c.Get("LogLevel")
	target, _ := c.Get("LogTarget")
	quiet, hasQuiet := c.Get("LogIsQuiet")
	toStderr := strings.EqualFold(target, "stderr") || strings.EqualFold(target, "stderr-full")
	return level == "DEBUG" && toStderr && !(hasQuiet && ParseBool(quiet))
}

// ParseBool is BlueChi's cfg_get_bool_value: true, t, yes, y, on in any case.
func ParseBool(s string) bool {
	for _, t := range []string{"true", "t", "yes", "y", "on"} {
		if strings.EqualFold(s, t) {
			return true
		}
	}
	return false
}
