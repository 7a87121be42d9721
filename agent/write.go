package agent

import (
	"bytes"
	"fmt"
	"strings"
)

// MaxLine is the longest line (without its newline) the writer emits. BlueChi
// reads lines in 519-byte chunks; staying well under 500 leaves room for
// hand edits and keeps clear of the chunk boundary.
const MaxLine = 400

// Document is a file for the writer: sections and keys in the order given.
type Document struct {
	Header   []string // comment lines at the top, written as "# ..."
	Sections []DocSection
}

// DocSection is one [Name] section.
type DocSection struct {
	Name string
	Keys []DocKey
}

// DocKey is one key. If List is non-nil the value is List joined with ","
// and wrapped over continuation lines; otherwise Value is written as is.
// An empty value writes `Key=`, which unsets the key from earlier files.
type DocKey struct {
	Key   string
	Value string
	List  []string
}

// Text returns the value BlueChi will read back for k.
func (k DocKey) Text() string {
	if k.List != nil {
		return strings.Join(k.List, ",")
	}
	return k.Value
}

// Render writes doc following the writer rules of docs/bluechi.md: one key
// per line, no quotes added, no inline comments, no duplicate keys, lists
// wrapped with the comma at the end of the line and an indented
// continuation. It refuses anything BlueChi would not read back unchanged.
func Render(doc Document) ([]byte, error) {
	var b bytes.Buffer
	for _, h := range doc.Header {
		for _, line := range strings.Split(h, "\n") {
			line = strings.TrimRight("# "+line, " \t")
			if err := checkText(line); err != nil || len(line) > MaxLine {
				return nil, fmt.Errorf("header line %q: not writable", line)
			}
			b.WriteString(line + "\n")
		}
	}
	seenSection := map[string]bool{}
	for i, s := range doc.Sections {
		if err := checkSectionName(s.Name); err != nil {
			return nil, fmt.Errorf("section %q: %w", s.Name, err)
		}
		if seenSection[s.Name] {
			return nil, fmt.Errorf("section %q given twice", s.Name)
		}
		seenSection[s.Name] = true
		if i > 0 || len(doc.Header) > 0 {
			b.WriteString("\n")
		}
		b.WriteString("[" + s.Name + "]\n")
		seenKey := map[string]bool{}
		for _, k := range s.Keys {
			if err := checkKeyName(k.Key); err != nil {
				return nil, fmt.Errorf("[%s] key %q: %w", s.Name, k.Key, err)
			}
			if seenKey[k.Key] {
				// BlueChi would concatenate the two values.
				return nil, fmt.Errorf("[%s] key %s given twice", s.Name, k.Key)
			}
			seenKey[k.Key] = true
			lines, err := renderKey(k)
			if err != nil {
				return nil, fmt.Errorf("[%s] %s: %w", s.Name, k.Key, err)
			}
			for _, l := range lines {
				b.WriteString(l + "\n")
			}
		}
	}
	return b.Bytes(), nil
}

func renderKey(k DocKey) ([]string, error) {
	if k.List == nil {
		if err := checkValue(k.Value); err != nil {
			return nil, err
		}
		line := k.Key + "=" + k.Value
		if len(line) > MaxLine {
			return nil, fmt.Errorf("line of %d bytes is longer than %d", len(line), MaxLine)
		}
		return []string{line}, nil
	}
	for _, item := range k.List {
		if err := checkListItem(item); err != nil {
			return nil, fmt.Errorf("list item %q: %w", item, err)
		}
	}
	const indent = "  "
	lines := []string{k.Key + "="}
	for i, item := range k.List {
		if i < len(k.List)-1 {
			item += "," // the comma ends the line, so rstrip never eats it
		}
		cur := &lines[len(lines)-1]
		fresh := *cur == k.Key+"=" || *cur == indent
		if !fresh && len(*cur)+len(item) > MaxLine {
			lines = append(lines, indent)
			cur = &lines[len(lines)-1]
		}
		if len(*cur)+len(item) > MaxLine {
			return nil, fmt.Errorf("list item %q does not fit in a %d-byte line", item, MaxLine)
		}
		*cur += item
	}
	return lines, nil
}

// checkText rejects bytes that change how a line is read: control bytes
// (newline, NUL, CR, ...) and an inline comment (';' after whitespace).
func checkText(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 && c != '\t' || c == 0x7f {
			return fmt.Errorf("control byte 0x%02x", c)
		}
		if c == ';' && i > 0 && isSpace(s[i-1]) {
			return fmt.Errorf("' ;' would start an inline comment")
		}
	}
	return nil
}

func checkValue(v string) error {
	if err := checkText(v); err != nil {
		return err
	}
	if v != "" && (isSpace(v[0]) || isSpace(v[len(v)-1])) {
		return fmt.Errorf("leading or trailing whitespace is trimmed by BlueChi")
	}
	return nil
}

func checkListItem(item string) error {
	switch {
	case item == "":
		return fmt.Errorf("empty item")
	case strings.ContainsAny(item, ", \t\v\f\r\n"):
		return fmt.Errorf("items must not contain ',' or whitespace")
	case item[0] == '#' || item[0] == ';':
		return fmt.Errorf("an item starting a continuation line with '#' or ';' reads as a comment")
	}
	// On a continuation line "KEY=..." or "KEY:..." is still appended, but it reads like a key
	// to people and the reader warns (WarnContinuationKey): never write that.
	if k := strings.IndexAny(item, "=:"); k >= 0 && looksLikeKey([]byte(item[:k])) {
		return fmt.Errorf("an item like %q starting a continuation line reads like a new key", item[:k+1])
	}
	return checkText(item)
}

func checkKeyName(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("empty key")
	case len(k) > maxName:
		return fmt.Errorf("longer than %d bytes", maxName)
	case strings.ContainsAny(k, "=: \t\v\f\r\n"):
		return fmt.Errorf("must not contain '=', ':' or whitespace")
	case k[0] == '[' || k[0] == '#' || k[0] == ';':
		return fmt.Errorf("must not start with '[', '#' or ';'")
	}
	return checkText(k)
}

func checkSectionName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty section name")
	case len(s) > maxName:
		return fmt.Errorf("longer than %d bytes (BlueChi cuts it)", maxName)
	case strings.Contains(s, "]"):
		return fmt.Errorf("must not contain ']'")
	}
	return checkText(s)
}
