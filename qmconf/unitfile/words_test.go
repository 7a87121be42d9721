package unitfile

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  string
	}{
		{"", nil, ""},
		{"  a  b\tc ", []string{"a", "b", "c"}, ""},
		{`A=1 "B=two words" 'C=x y'`, []string{"A=1", "B=two words", "C=x y"}, ""},
		{`a"b c"d`, []string{"ab cd"}, ""},
		{`""`, []string{""}, ""},
		{`"a\"b" 'c\'d'`, []string{`a"b`, `c'd`}, ""},
		{`a\ b`, nil, "unknown escape"},
		{`\x41\101\u00e9\U0001F600\s\n\t\\`, []string{"AA\u00e9\U0001F600 \n\t\\"}, ""},
		{`%h %%`, []string{"%h", "%%"}, ""},
		{`"open`, nil, "unterminated"},
		{`end\`, nil, "trailing backslash"},
		{`\q`, nil, "unknown escape"},
		{`\x0`, nil, "short"},
		{`\xzz`, nil, "bad escape"},
		{`\x00`, nil, "not allowed"},
		{`\777`, nil, "bad octal"},
		{`\uD800`, nil, "bad code point"},
	}
	for _, tt := range tests {
		got, err := SplitWords(tt.in)
		if tt.err != "" {
			assert.ErrorContains(t, err, tt.err, "%q", tt.in)
			continue
		}
		require.NoError(t, err, "%q", tt.in)
		assert.Equal(t, tt.want, got, "%q", tt.in)
	}
}

func TestQuoteWordSplitsBack(t *testing.T) {
	for _, s := range []string{"plain", "", "a b", `a"b'c\d`, "tab\there", "nl\nx", "\x01\x7f", "é ü", "50%", "  ", "=x="} {
		got, err := SplitWords(QuoteWord(s))
		require.NoError(t, err, "%q -> %q", s, QuoteWord(s))
		assert.Equal(t, []string{s}, got, "%q -> %q", s, QuoteWord(s))
	}
	got, err := SplitWords(JoinWords("RWETCFS=/etc/q m", "x"))
	require.NoError(t, err)
	assert.Equal(t, []string{"RWETCFS=/etc/q m", "x"}, got)
}
