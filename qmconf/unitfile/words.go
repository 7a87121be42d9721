package unitfile

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SplitWords splits a value into words the way systemd reads Environment= and similar keys
// (extract_first_word with EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE): words are separated by whitespace;
// single or double quotes group (and may start in the middle of a word: a"b c" is one word "ab c");
// backslash escapes are C escapes (\a \b \f \n \r \t \v \\ \" \' \s \xNN \NNN \uNNNN \UNNNNNNNN),
// inside and outside quotes. An unknown escape, a trailing backslash or an unterminated quote is an
// error. Specifiers ('%') are not expanded; systemd expands them after splitting.
func SplitWords(s string) ([]string, error) {
	var words []string
	i := 0
	for {
		for i < len(s) && strings.IndexByte(whitespace, s[i]) >= 0 {
			i++
		}
		if i >= len(s) {
			return words, nil
		}
		var b strings.Builder
		var quote byte
		for i < len(s) {
			c := s[i]
			if quote == 0 && strings.IndexByte(whitespace, c) >= 0 {
				break
			}
			switch {
			case c == '\\':
				n, err := cunescapeOne(s[i+1:], &b)
				if err != nil {
					return nil, fmt.Errorf("word %d: %w", len(words)+1, err)
				}
				i += 1 + n
				continue
			case quote != 0 && c == quote:
				quote = 0
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			default:
				b.WriteByte(c)
			}
			i++
		}
		if quote != 0 {
			return nil, fmt.Errorf("word %d: unterminated %c quote", len(words)+1, quote)
		}
		words = append(words, b.String())
	}
}

var simpleEscapes = map[byte]byte{'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t',
	'v': '\v', '\\': '\\', '"': '"', '\'': '\'', 's': ' '}

// cunescapeOne decodes the escape after a backslash (s starts after the '\') into b and returns how
// many bytes of s it used, like systemd's cunescape_one.
func cunescapeOne(s string, b *strings.Builder) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("trailing backslash")
	}
	if c, ok := simpleEscapes[s[0]]; ok {
		b.WriteByte(c)
		return 1, nil
	}
	num := func(digits, base, n int) (uint64, error) {
		if len(s) < 1+digits {
			return 0, fmt.Errorf("short \\%c escape", s[0])
		}
		v, err := strconv.ParseUint(s[n:n+digits], base, 32)
		if err != nil {
			return 0, fmt.Errorf("bad escape \\%s", s[:n+digits])
		}
		return v, nil
	}
	switch s[0] {
	case 'x':
		v, err := num(2, 16, 1)
		if err != nil {
			return 0, err
		}
		if v == 0 {
			return 0, fmt.Errorf("\\x00 is not allowed")
		}
		b.WriteByte(byte(v))
		return 3, nil
	case 'u', 'U':
		digits := 4
		if s[0] == 'U' {
			digits = 8
		}
		v, err := num(digits, 16, 1)
		if err != nil {
			return 0, err
		}
		if v == 0 || v > utf8.MaxRune || !utf8.ValidRune(rune(v)) {
			return 0, fmt.Errorf("bad code point in \\%s", s[:1+digits])
		}
		b.WriteRune(rune(v))
		return 1 + digits, nil
	case '0', '1', '2', '3', '4', '5', '6', '7':
		v, err := num(3-1, 8, 1) // first digit is s[0]
		if err != nil {
			return 0, err
		}
		v += uint64(s[0]-'0') << 6
		if v == 0 || v > 0xff {
			return 0, fmt.Errorf("bad octal escape \\%s", s[:3])
		}
		b.WriteByte(byte(v))
		return 3, nil
	}
	return 0, fmt.Errorf("unknown escape \\%c", s[0])
}
