package unitfile

import (
	"bytes"
	"fmt"
	"strings"
)

// MaxLineSize is the longest physical line, and the longest joined continuation, systemd accepts
// (LONG_LINE_MAX in systemd's conf-parser).
const MaxLineSize = 1 << 20

// whitespace is systemd's WHITESPACE set.
const whitespace = " \t\n\r"

const bom = "\xef\xbb\xbf"

// Kind says what a Line is.
type Kind int

const (
	// Blank is an empty or whitespace-only line.
	Blank Kind = iota
	// Comment is a line starting with '#' or ';' (after leading whitespace).
	Comment
	// SectionHeader is a "[Name]" line.
	SectionHeader
	// Assignment is a "Key=Value" line, possibly continued over several physical lines.
	Assignment
)

func (k Kind) String() string {
	switch k {
	case Blank:
		return "blank"
	case Comment:
		return "comment"
	case SectionHeader:
		return "section"
	case Assignment:
		return "assignment"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Line is one logical line of a unit file. Comment lines that sit between the physical lines of a
// continued assignment belong to that assignment (they are kept in its text, and skipped for its
// value).
type Line struct {
	Kind Kind
	// Section is the section the line belongs to: the header's own name for a SectionHeader, the
	// enclosing section for the other kinds ("" before the first header).
	Section string
	// Key and Value are set for an Assignment. Value has continuations joined.
	Key, Value string
	// Text is the comment text for a Comment (from the '#' or ';' on, trailing whitespace removed).
	Text string
	// Path and Line say where the line comes from (1-based number of its first physical line,
	// EndLine of its last). Lines added by setters have the file's Path and Line 0.
	Path          string
	Line, EndLine int

	// The original text (physical lines with their terminators, the last terminator in eol) and
	// the parsed fields it produced: Bytes writes raw while the exported fields still match.
	raw, eol string
	orig     *Line
}

// Generated reports whether the line was created by a setter rather than read from a file.
func (l *Line) Generated() bool { return l.orig == nil }

// Raw returns the original text of the line (its physical lines, without the final line
// terminator), or "" for a generated line.
func (l *Line) Raw() string { return l.raw }

// Where returns "path:line" (or just the path for a generated line).
func (l *Line) Where() string {
	if l.Line == 0 {
		return l.Path
	}
	return fmt.Sprintf("%s:%d", l.Path, l.Line)
}

func (l *Line) unchanged() bool {
	o := l.orig
	return o != nil && o.Kind == l.Kind && o.Section == l.Section && o.Key == l.Key &&
		o.Value == l.Value && o.Text == l.Text
}

func (l *Line) snapshot() {
	c := *l
	c.orig = nil
	l.orig = &c
}

// File is a parsed unit file: an ordered list of lines.
type File struct {
	Path  string
	Lines []*Line
}

// ParseError is a syntax error at a line of a file.
type ParseError struct {
	Path string
	Line int
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.Path, e.Line, e.Msg)
}

// New returns an empty file with the given path.
func New(path string) *File { return &File{Path: path} }

// physLine is one physical line.
type physLine struct {
	text, eol string // eol: "\n", "\r\n", "\r", "\x00" or "" at end of data
	num       int
}

// splitPhysical splits data at systemd's line terminators.
func splitPhysical(data []byte) []physLine {
	var out []physLine
	num := 0
	for len(data) > 0 {
		num++
		i := bytes.IndexAny(data, "\n\r\x00")
		if i < 0 {
			out = append(out, physLine{text: string(data), num: num})
			break
		}
		eol := data[i : i+1]
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			eol = data[i : i+2]
		}
		out = append(out, physLine{text: string(data[:i]), eol: string(eol), num: num})
		data = data[i+len(eol):]
	}
	return out
}

func isCommentStart(s string) bool {
	return s != "" && (s[0] == '#' || s[0] == ';')
}

// endsEscaped reports whether s ends in a backslash that is not itself escaped, scanning like
// systemd does (the escape state runs over the whole string).
func endsEscaped(s string) bool {
	escaped := false
	for i := 0; i < len(s); i++ {
		if escaped {
			escaped = false
		} else if s[i] == '\\' {
			escaped = true
		}
	}
	return escaped
}

// Parse parses data as a unit file read from path (used in errors and provenance only).
func Parse(path string, data []byte) (*File, error) {
	f := &File{Path: path}
	phys := splitPhysical(data)
	section := ""
	var (
		cont     strings.Builder // joined continuation so far
		inCont   bool
		contFrom int // index in phys of the first line of the continuation
	)
	for i := 0; i < len(phys); i++ {
		pl := phys[i]
		text := pl.text
		if i == 0 {
			text = strings.TrimPrefix(text, bom)
		}
		if len(text) > MaxLineSize {
			return nil, &ParseError{path, pl.num, fmt.Sprintf("line longer than %d bytes", MaxLineSize)}
		}
		trimmed := strings.TrimLeft(text, whitespace)
		if isCommentStart(trimmed) {
			if inCont {
				continue // comment inside a continuation: skipped, kept in the assignment's raw text
			}
			l := &Line{Kind: Comment, Section: section, Text: strings.TrimRight(trimmed, whitespace)}
			f.addParsed(l, phys, i, i)
			continue
		}
		if inCont {
			if cont.Len()+len(text) > MaxLineSize {
				return nil, &ParseError{path, phys[contFrom].num, fmt.Sprintf("continued line longer than %d bytes", MaxLineSize)}
			}
			cont.WriteString(text)
		} else {
			cont.Reset()
			cont.WriteString(text)
			contFrom = i
		}
		joined := cont.String()
		if endsEscaped(joined) {
			// The backslash becomes a space and the next non-comment line is appended.
			cont.Reset()
			cont.WriteString(joined[:len(joined)-1])
			cont.WriteByte(' ')
			inCont = true
			continue
		}
		inCont = false
		l, err := parseLogical(path, phys[contFrom].num, joined, &section)
		if err != nil {
			return nil, err
		}
		f.addParsed(l, phys, contFrom, i)
	}
	if inCont {
		// Continuation at end of file: systemd parses what it has collected.
		l, err := parseLogical(path, phys[contFrom].num, cont.String(), &section)
		if err != nil {
			return nil, err
		}
		f.addParsed(l, phys, contFrom, len(phys)-1)
	}
	return f, nil
}

func (f *File) addParsed(l *Line, phys []physLine, from, to int) {
	l.Path = f.Path
	l.Line = phys[from].num
	l.EndLine = phys[to].num
	var raw strings.Builder
	for j := from; j <= to; j++ {
		raw.WriteString(phys[j].text)
		if j < to {
			raw.WriteString(phys[j].eol)
		}
	}
	l.raw = raw.String()
	l.eol = phys[to].eol
	l.snapshot()
	f.Lines = append(f.Lines, l)
}

// parseLogical parses one logical (joined) line, like systemd's parse_line, with podman's
// strictness for lines systemd would only warn about.
func parseLogical(path string, num int, s string, section *string) (*Line, error) {
	s = strings.Trim(s, whitespace)
	switch {
	case s == "":
		return &Line{Kind: Blank, Section: *section}, nil
	case isCommentStart(s):
		return &Line{Kind: Comment, Section: *section, Text: s}, nil
	case strings.HasPrefix(s, ".include ") || s == ".include":
		return nil, &ParseError{path, num, ".include directives are not supported"}
	case s[0] == '[':
		if s[len(s)-1] != ']' {
			return nil, &ParseError{path, num, fmt.Sprintf("invalid section header %q", s)}
		}
		name := s[1 : len(s)-1]
		if err := checkSectionName(name); err != nil {
			return nil, &ParseError{path, num, err.Error()}
		}
		*section = name
		return &Line{Kind: SectionHeader, Section: name}, nil
	}
	eq := strings.IndexByte(s, '=')
	if eq < 0 {
		return nil, &ParseError{path, num, fmt.Sprintf("line is not a comment, a section header or Key=Value: %q", abbrev(s))}
	}
	if *section == "" {
		return nil, &ParseError{path, num, fmt.Sprintf("assignment outside of a section: %q", abbrev(s))}
	}
	key := strings.TrimRight(s[:eq], whitespace)
	if key == "" {
		return nil, &ParseError{path, num, "empty key"}
	}
	return &Line{Kind: Assignment, Section: *section, Key: key, Value: strings.TrimLeft(s[eq+1:], whitespace)}, nil
}

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

func checkSectionName(name string) error {
	if name == "" {
		return fmt.Errorf("empty section name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < ' ' || c == 0x7f || c == '[' || c == ']' || c == '"' || c == '\'' || c == '\\' {
			return fmt.Errorf("bad character %q in section name %q", c, name)
		}
	}
	return nil
}

// Sections returns the names of the sections in order of first appearance, each once.
func (f *File) Sections() []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range f.Lines {
		if l.Kind == SectionHeader && !seen[l.Section] {
			seen[l.Section] = true
			out = append(out, l.Section)
		}
	}
	return out
}

// HasSection reports whether the file has a [section] header.
func (f *File) HasSection(section string) bool {
	for _, l := range f.Lines {
		if l.Kind == SectionHeader && l.Section == section {
			return true
		}
	}
	return false
}

// Assignments returns the assignments of section in file order (all headers of the section merged).
// key == "" returns every key.
func (f *File) Assignments(section, key string) []*Line {
	var out []*Line
	for _, l := range f.Lines {
		if l.Kind == Assignment && l.Section == section && (key == "" || l.Key == key) {
			out = append(out, l)
		}
	}
	return out
}

// Keys returns the keys assigned in section, in order of first appearance, each once.
func (f *File) Keys(section string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range f.Assignments(section, "") {
		if !seen[l.Key] {
			seen[l.Key] = true
			out = append(out, l.Key)
		}
	}
	return out
}

// LookupLine returns the last assignment of key in section (it may have an empty value).
func (f *File) LookupLine(section, key string) (*Line, bool) {
	for i := len(f.Lines) - 1; i >= 0; i-- {
		l := f.Lines[i]
		if l.Kind == Assignment && l.Section == section && l.Key == key {
			return l, true
		}
	}
	return nil, false
}

// Lookup returns the value of the last assignment of key in section, verbatim (quotes, escapes and
// specifiers are left to the caller). ok is false when the key is not assigned.
func (f *File) Lookup(section, key string) (string, bool) {
	l, ok := f.LookupLine(section, key)
	if !ok {
		return "", false
	}
	return l.Value, true
}

// LookupAllLines returns the assignments of a list-valued key: every assignment of key in
// section, where an assignment with an empty value drops all earlier ones (and is not returned).
func (f *File) LookupAllLines(section, key string) []*Line {
	var out []*Line
	for _, l := range f.Assignments(section, key) {
		if l.Value == "" {
			out = out[:0]
			continue
		}
		out = append(out, l)
	}
	return out
}

// LookupAll returns the values of a list-valued key (see LookupAllLines); an empty assignment
// resets the list.
func (f *File) LookupAll(section, key string) []string {
	lines := f.LookupAllLines(section, key)
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, l.Value)
	}
	return out
}

// Clone returns a deep copy of f.
func (f *File) Clone() *File {
	c := &File{Path: f.Path, Lines: make([]*Line, len(f.Lines))}
	for i, l := range f.Lines {
		n := *l
		c.Lines[i] = &n
	}
	return c
}

// Bytes renders the file. Lines read from a file and not modified are written exactly as read
// (same terminators, comments kept); generated or modified lines are written in canonical form
// ("[Section]", "Key=Value", "\n" terminated).
func (f *File) Bytes() []byte {
	var b bytes.Buffer
	for i, l := range f.Lines {
		if l.unchanged() {
			b.WriteString(l.raw)
			eol := l.eol
			if eol == "" && i < len(f.Lines)-1 {
				eol = "\n"
			}
			b.WriteString(eol)
			continue
		}
		switch l.Kind {
		case Blank:
		case Comment:
			b.WriteString(l.Text)
		case SectionHeader:
			b.WriteString("[" + l.Section + "]")
		case Assignment:
			b.WriteString(l.Key + "=" + l.Value)
			if endsEscaped(l.Value) {
				// A value read from "Key=a\ " ends in a backslash; the space keeps it from
				// continuing the line (setters refuse such values, see CheckValue).
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// String returns Bytes as a string.
func (f *File) String() string { return string(f.Bytes()) }
