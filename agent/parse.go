package agent

import (
	"bytes"
	"fmt"
	"strings"
)

const (
	// chunkSize is what fgets reads at most with inih's INI_MAX_LINE=520
	// (one byte is the terminating NUL).
	chunkSize = 519
	// maxName is inih's MAX_SECTION/MAX_NAME (50) minus the NUL.
	maxName = 49
)

// File is one parsed file: every (section, key) once, in order of first
// appearance, with the value BlueChi builds from all its assignments.
type File struct {
	Path     string
	Entries  []*FileEntry
	Warnings []Warning
	index    map[sectionKey]*FileEntry
}

// FileEntry is the value of one key in one file. Lines lists every line that
// contributed (repeated keys and continuation lines), in order.
type FileEntry struct {
	Section string
	Key     string
	Value   string
	Lines   []int
	buf     []byte // value under construction; appending to a string would be quadratic
}

type sectionKey struct{ section, key string }

// Lookup returns the entry for section/key, or nil.
func (f *File) Lookup(section, key string) *FileEntry {
	return f.index[sectionKey{section, key}]
}

// Read parses data as inih (as built by BlueChi) would. Line numbers count
// 519-byte chunks like inih, so they match BlueChi's messages; they differ
// from editor line numbers only after a line longer than 519 bytes.
func Read(path string, data []byte) (*File, error) {
	p := parser{file: &File{Path: path, index: map[sectionKey]*FileEntry{}}}
	lineno := 0
	for pos := 0; pos < len(data); {
		end := pos
		for end < len(data) && end-pos < chunkSize {
			end++
			if data[end-1] == '\n' {
				break
			}
		}
		lineno++
		chunk := data[pos:end]
		if chunk[len(chunk)-1] != '\n' && end < len(data) {
			p.warn(WarnLongLine, lineno, "line longer than 519 bytes: BlueChi reads the rest as a new line")
		}
		pos = end
		if err := p.line(chunk, lineno); err != nil {
			return nil, err
		}
	}
	for _, e := range p.file.Entries {
		e.Value, e.buf = string(e.buf), nil
	}
	return p.file, nil
}

type parser struct {
	file     *File
	section  string
	prevName string
}

func (p *parser) warn(kind WarningKind, line int, format string, args ...any) {
	p.file.Warnings = append(p.file.Warnings, Warning{Kind: kind, Path: p.file.Path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) fail(line int, msg string) error {
	return &ParseError{Path: p.file.Path, Line: line, Msg: msg,
		Stderr: fmt.Sprintf("Error parsing configuration file '%s' on line %d\n", p.file.Path, line)}
}

// line mirrors the body of inih's ini_parse_stream loop.
func (p *parser) line(chunk []byte, lineno int) error {
	// C string functions stop at the first NUL that fgets copied.
	if i := bytes.IndexByte(chunk, 0); i >= 0 {
		chunk = chunk[:i]
	}
	off := 0
	if lineno == 1 && bytes.HasPrefix(chunk, []byte("\xef\xbb\xbf")) {
		off = 3
	}
	rest := rstrip(chunk[off:])
	trimmed := lskip(rest)
	start := off + len(rest) - len(trimmed) // index of the first non-space byte in the chunk
	s := trimmed

	switch {
	case len(s) == 0 || s[0] == ';' || s[0] == '#':
		// Blank line or whole-line comment: ignored, and it does not end a
		// continuation (inih keeps prev_name).
		return nil
	case p.prevName != "" && start > 0:
		v := rstrip(s[:findCharsOrComment(s, "")])
		if len(v) < len(s) && bytes.ContainsAny(v, `"'`) {
			p.warn(WarnCommentInQuotes, lineno, "' ;' starts a comment even inside quotes")
		}
		if k := findCharsOrComment(v, "=:"); k < len(v) && looksLikeKey(v[:k]) {
			p.warn(WarnContinuationKey, lineno, "indented %q is appended to %s, not a new key", string(v), p.prevName)
		}
		p.set(p.prevName, v, lineno, true)
		return nil
	case s[0] == '[':
		end := findCharsOrComment(s[1:], "]") + 1
		if end >= len(s) || s[end] != ']' {
			return p.fail(lineno, "section header without ']'")
		}
		name := s[1:end]
		if len(name) > maxName {
			p.warn(WarnNameTruncated, lineno, "section name longer than %d bytes is cut to %q", maxName, string(name[:maxName]))
			name = name[:maxName]
		}
		p.section = string(name)
		p.prevName = ""
		return nil
	}
	end := findCharsOrComment(s, "=:")
	if end >= len(s) {
		return p.fail(lineno, "line is neither a section, a comment nor Key=value")
	}
	name := rstrip(s[:end])
	raw := s[end+1:]
	cut := findCharsOrComment(raw, "")
	value := rstrip(lskip(raw[:cut]))
	if cut < len(raw) && bytes.ContainsAny(value, `"'`) {
		p.warn(WarnCommentInQuotes, lineno, "' ;' starts a comment even inside quotes")
	}
	// inih hands the full name to the handler but keeps only 49 bytes as
	// prev_name, so continuation lines of a longer key land on another key.
	p.prevName = string(name)
	if len(name) > maxName {
		p.warn(WarnNameTruncated, lineno, "key name longer than %d bytes: continuation lines go to %q", maxName, string(name[:maxName]))
		p.prevName = string(name[:maxName])
	}
	p.set(string(name), value, lineno, false)
	return nil
}

// set is BlueChi's parsing_handler: a key seen before in the same file gets
// the new text appended with no separator.
func (p *parser) set(name string, value []byte, lineno int, cont bool) {
	k := sectionKey{p.section, name}
	if e := p.file.index[k]; e != nil {
		if !cont {
			p.warn(WarnDuplicateKey, lineno, "%s set again in the same file (first on line %d): BlueChi concatenates the values", name, e.Lines[0])
		}
		e.buf = append(e.buf, value...)
		e.Lines = append(e.Lines, lineno)
		return
	}
	e := &FileEntry{Section: p.section, Key: name, buf: append([]byte(nil), value...), Lines: []int{lineno}}
	p.file.index[k] = e
	p.file.Entries = append(p.file.Entries, e)
}

// findCharsOrComment is inih's find_chars_or_comment with ';' as the inline
// comment prefix: the index of the first byte in chars, or of a ';' that
// follows a whitespace byte, or len(s).
func findCharsOrComment(s []byte, chars string) int {
	wasSpace := false
	for i, c := range s {
		if strings.IndexByte(chars, c) >= 0 || (wasSpace && c == ';') {
			return i
		}
		wasSpace = isSpace(c)
	}
	return len(s)
}

// isSpace is isspace() in the C locale, which BlueChi never changes.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func rstrip(s []byte) []byte {
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func lskip(s []byte) []byte {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}

// looksLikeKey reports whether s could be a BlueChi key name, to flag
// indented lines that were probably meant as keys.
func looksLikeKey(s []byte) bool {
	s = rstrip(s)
	if len(s) == 0 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
