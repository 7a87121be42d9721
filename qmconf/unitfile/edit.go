package unitfile

import (
	"fmt"
	"strings"
)

// CheckKey reports whether key can be written as the key of an assignment and read back as is.
func CheckKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty key")
	}
	if isCommentStart(key) || key[0] == '[' || strings.HasPrefix(key, ".include") {
		return fmt.Errorf("key %q would not be read as a key", key)
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c <= ' ' || c == 0x7f || c == '=' || c == '\\' {
			return fmt.Errorf("bad character %q in key %q", c, key)
		}
	}
	return nil
}

// CheckValue reports whether value can be written verbatim after "Key=" and read back unchanged:
// no line terminators or NUL, no surrounding whitespace (the parser strips it), no unescaped
// trailing backslash (it would continue the line), at most MaxLineSize bytes. Values that fail can
// be written with SetWords/AddWords, which quote them.
func CheckValue(value string) error {
	if strings.ContainsAny(value, "\n\r\x00") {
		return fmt.Errorf("value contains a line terminator or NUL")
	}
	if value != strings.Trim(value, whitespace) {
		return fmt.Errorf("value %q has leading or trailing whitespace", value)
	}
	if endsEscaped(value) {
		return fmt.Errorf("value %q ends in a backslash", value)
	}
	if len(value) >= MaxLineSize {
		return fmt.Errorf("value longer than %d bytes", MaxLineSize-1)
	}
	return nil
}

// EscapeSpecifiers doubles '%' so systemd's specifier expansion gives s back.
func EscapeSpecifiers(s string) string { return strings.ReplaceAll(s, "%", "%%") }

// QuoteWord returns s as one word for keys systemd splits into words with quotes and C escapes
// (ExecStart=, Environment=, and the Quadlet keys podman splits the same way): s unchanged when it
// is non-empty and has no whitespace, quotes, backslashes or control characters, otherwise in double
// quotes with '"' and '\' escaped and control characters as \n, \t or \xNN. Specifiers are not
// touched (see EscapeSpecifiers).
func QuoteWord(s string) string {
	plain := s != ""
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		if c <= ' ' || c == 0x7f || c == '"' || c == '\'' || c == '\\' {
			plain = false
		}
	}
	if plain {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < ' ' || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// JoinWords quotes each word with QuoteWord, escapes specifiers, and joins them with spaces.
func JoinWords(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = QuoteWord(EscapeSpecifiers(w))
	}
	return strings.Join(q, " ")
}

// sectionEnd returns the index after which a new assignment of section goes: after the last
// assignment (or header) of the section's last block. It returns -1 if there is no such section.
func (f *File) sectionEnd(section string) int {
	at := -1
	cur := ""
	for i, l := range f.Lines {
		if l.Kind == SectionHeader {
			cur = l.Section
			if cur == section {
				at = i
			}
			continue
		}
		if cur == section && l.Kind == Assignment {
			at = i
		}
	}
	return at
}

func (f *File) insert(at int, l *Line) {
	f.Lines = append(f.Lines, nil)
	copy(f.Lines[at+1:], f.Lines[at:])
	f.Lines[at] = l
}

// Add appends "key=value" to section (creating "[section]" at the end of the file if needed) after
// the section's last assignment. value is written verbatim and must pass CheckValue.
func (f *File) Add(section, key, value string) error {
	if err := checkSectionName(section); err != nil {
		return err
	}
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := CheckValue(value); err != nil {
		return fmt.Errorf("%s=: %w", key, err)
	}
	if len(key)+1+len(value) > MaxLineSize {
		return fmt.Errorf("%s=: line longer than %d bytes", key, MaxLineSize)
	}
	l := &Line{Kind: Assignment, Section: section, Key: key, Value: value, Path: f.Path}
	at := f.sectionEnd(section)
	if at < 0 {
		if n := len(f.Lines); n > 0 && f.Lines[n-1].Kind != Blank {
			f.Lines = append(f.Lines, &Line{Kind: Blank, Section: f.Lines[n-1].Section, Path: f.Path})
		}
		f.Lines = append(f.Lines, &Line{Kind: SectionHeader, Section: section, Path: f.Path}, l)
		return nil
	}
	f.insert(at+1, l)
	return nil
}

// Set makes "key=value" the only assignment of key in section: it replaces the last assignment in
// place and removes the others, or adds one.
func (f *File) Set(section, key, value string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := CheckValue(value); err != nil {
		return fmt.Errorf("%s=: %w", key, err)
	}
	if len(key)+1+len(value) > MaxLineSize {
		return fmt.Errorf("%s=: line longer than %d bytes", key, MaxLineSize)
	}
	last, ok := f.LookupLine(section, key)
	if !ok {
		return f.Add(section, key, value)
	}
	kept := f.Lines[:0]
	for _, l := range f.Lines {
		if l.Kind == Assignment && l.Section == section && l.Key == key && l != last {
			continue
		}
		kept = append(kept, l)
	}
	f.Lines = kept
	*last = Line{Kind: Assignment, Section: section, Key: key, Value: value, Path: f.Path}
	return nil
}

// AddWords adds key with the words quoted and specifier-escaped (JoinWords).
func (f *File) AddWords(section, key string, words ...string) error {
	return f.Add(section, key, JoinWords(words...))
}

// SetWords sets key to the words quoted and specifier-escaped (JoinWords).
func (f *File) SetWords(section, key string, words ...string) error {
	return f.Set(section, key, JoinWords(words...))
}

// Reset appends an empty assignment "key=", which clears a list-valued key.
func (f *File) Reset(section, key string) error { return f.Add(section, key, "") }

// Remove deletes every assignment of key in section and returns how many there were.
func (f *File) Remove(section, key string) int {
	n := 0
	kept := f.Lines[:0]
	for _, l := range f.Lines {
		if l.Kind == Assignment && l.Section == section && l.Key == key {
			n++
			continue
		}
		kept = append(kept, l)
	}
	f.Lines = kept
	return n
}
