package agent

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRead(t *testing.T) {
	t.Parallel()
	long := func(n int, c string) string { return strings.Repeat(c, n) }
	tests := []struct {
		name  string
		in    string
		want  map[string]string // "section/key" -> value
		warns []WarningKind
	}{
		{"plain", "[s]\nA=1\nB : 2\n", map[string]string{"s/A": "1", "s/B": "2"}, nil},
		{"outside section", "A=1\n", map[string]string{"/A": "1"}, nil},
		{"inline comment needs whitespace", "[s]\nA=x ;c\nB=x;c\nC=x #c\nD=\t;c\n",
			map[string]string{"s/A": "x", "s/B": "x;c", "s/C": "x #c", "s/D": ""}, nil},
		{"comment cut inside quotes", "[s]\nQ=\"a ; b\"\n", map[string]string{"s/Q": `"a`}, []WarningKind{WarnCommentInQuotes}},
		{"continuation no separator across blank and comment", "[s]\nA=a\n\n# c\n  b\n",
			map[string]string{"s/A": "ab"}, nil},
		{"indented key after header is a key", "[s]\n  A=1\n  B=2\n", map[string]string{"s/A": "1B=2"}, []WarningKind{WarnContinuationKey}},
		{"same key twice concatenates", "[s]\nA=x\nA=y\n", map[string]string{"s/A": "xy"}, []WarningKind{WarnDuplicateKey}},
		{"empty does not unset in one file", "[s]\nA=x\nA=\n", map[string]string{"s/A": "x"}, []WarningKind{WarnDuplicateKey}},
		{"repeated section header", "[s]\nA=x\n[t]\nB=1\n[s]\nA=y\n", map[string]string{"s/A": "xy", "t/B": "1"}, []WarningKind{WarnDuplicateKey}},
		{"crlf and bom", "\xef\xbb\xbf[s]\r\nA=1\r\n  2\r\n", map[string]string{"s/A": "12"}, nil},
		{"bom only on line 1", "[s]\n\xef\xbb\xbfA=1\n", map[string]string{"s/\xef\xbb\xbfA": "1"}, nil},
		{"section spaces kept", "[ s ]\nA=1\n", map[string]string{" s /A": "1"}, nil},
		{"section cut at 49", "[" + long(60, "S") + "]\nA=1\n", map[string]string{long(49, "S") + "/A": "1"}, []WarningKind{WarnNameTruncated}},
		{"long key kept, continuation goes to the cut name", "[s]\n" + long(60, "K") + "=1\n  2\n",
			map[string]string{"s/" + long(60, "K"): "1", "s/" + long(49, "K"): "2"}, []WarningKind{WarnNameTruncated}},
		{"519-byte line", "[s]\nA=" + long(517, "a") + "\n", map[string]string{"s/A": long(517, "a")}, []WarningKind{WarnLongLine}},
		{"tail with = is a new key", "[s]\nA=" + long(517, "a") + "T=c\n", map[string]string{"s/A": long(517, "a"), "s/T": "c"}, []WarningKind{WarnLongLine}},
		{"tail with # is cut", "[s]\nA=" + long(517, "a") + "#c\n", map[string]string{"s/A": long(517, "a")}, []WarningKind{WarnLongLine}},
		{"tail with space continues", "[s]\nA=" + long(517, "a") + " c\n", map[string]string{"s/A": long(517, "a") + "c"}, []WarningKind{WarnLongLine}},
		{"NUL ends the line", "[s]\nA=x\x00y\n", map[string]string{"s/A": "x"}, nil},
		{"empty key name", "[s]\n=v\n  w=1\n", map[string]string{"s/": "v", "s/w": "1"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := Read("x.conf", []byte(tc.in))
			require.NoError(t, err)
			got := map[string]string{}
			for _, e := range f.Entries {
				got[e.Section+"/"+e.Key] = e.Value
			}
			require.Equal(t, tc.want, got)
			var kinds []WarningKind
			for _, w := range f.Warnings {
				kinds = append(kinds, w.Kind)
			}
			require.Equal(t, tc.warns, kinds)
		})
	}
}

func TestReadErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		line int
	}{
		{"no separator", "[s]\nbroken\n", 2},
		{"unterminated section", "[s\nA=1\n", 1},
		{"comment before ]", "[s ;]\n", 1},
		{"520-byte line", "[s]\nA=" + strings.Repeat("a", 518) + "\nB=1\n", 3},
		{"stops at first error", "x\ny\n", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Read("/etc/x.conf", []byte(tc.in))
			var pe *ParseError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, tc.line, pe.Line)
			require.Equal(t, "/etc/x.conf", pe.Path)
			require.Contains(t, pe.Stderr, "on line ")
		})
	}
}
