package unitfile

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type kv struct{ Section, Key, Value string }

func assignments(f *File) []kv {
	var out []kv
	for _, l := range f.Lines {
		if l.Kind == Assignment {
			out = append(out, kv{l.Section, l.Key, l.Value})
		}
	}
	return out
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []kv
	}{
		{"simple", "[A]\nk=v\n", []kv{{"A", "k", "v"}}},
		{"no final newline", "[A]\nk=v", []kv{{"A", "k", "v"}}},
		{"whitespace around key and value", "[A]\n  k \t=  v w  \n", []kv{{"A", "k", "v w"}}},
		{"empty value", "[A]\nk=\n", []kv{{"A", "k", ""}}},
		{"equals in value", "[A]\nk=a=b\n", []kv{{"A", "k", "a=b"}}},
		{"quotes kept verbatim", "[A]\nk=\"a b\" 'c'\n", []kv{{"A", "k", `"a b" 'c'`}}},
		{"specifiers and escapes kept", "[A]\nk=%h \\x20 \\n\n", []kv{{"A", "k", `%h \x20 \n`}}},
		{"continuation joined with a space", "[A]\nk=a\\\nb\n", []kv{{"A", "k", "a b"}}},
		{"continuation keeps next line's indentation", "[A]\nk=a \\\n   b\n", []kv{{"A", "k", "a     b"}}},
		{"three physical lines", "[A]\nk=a\\\nb\\\nc\n", []kv{{"A", "k", "a b c"}}},
		{"comments inside continuation skipped", "[A]\nk=a\\\n# c1\n  ; c2\nb\n", []kv{{"A", "k", "a b"}}},
		{"empty line ends continuation", "[A]\nk=a\\\n\nj=b\n", []kv{{"A", "k", "a"}, {"A", "j", "b"}}},
		{"escaped backslash does not continue", "[A]\nk=a\\\\\nj=b\n", []kv{{"A", "k", `a\\`}, {"A", "j", "b"}}},
		{"backslash then space does not continue", "[A]\nk=a\\ \nj=b\n", []kv{{"A", "k", `a\`}, {"A", "j", "b"}}},
		{"continuation at EOF", "[A]\nk=a\\", []kv{{"A", "k", "a"}}},
		{"continuation then comments at EOF", "[A]\nk=a\\\n#x\n", []kv{{"A", "k", "a"}}},
		{"continued key", "[A]\nke\\\ny=v\n", []kv{{"A", "ke y", "v"}}},
		{"comment chars", "#c\n;c\n  # c\n[A]\nk=v # not a comment\n", []kv{{"A", "k", "v # not a comment"}}},
		{"repeated headers merge", "[A]\nk=1\n[B]\nj=2\n[A]\nk=3\n", []kv{{"A", "k", "1"}, {"B", "j", "2"}, {"A", "k", "3"}}},
		{"header whitespace", "  [A]  \nk=v\n", []kv{{"A", "k", "v"}}},
		{"section names with spaces", "[node a]\nk=v\n", []kv{{"node a", "k", "v"}}},
		{"CRLF", "[A]\r\nk=v\r\nj=a\\\r\nb\r\n", []kv{{"A", "k", "v"}, {"A", "j", "a b"}}},
		{"CR only", "[A]\rk=v\r", []kv{{"A", "k", "v"}}},
		{"BOM", "\xef\xbb\xbf[A]\nk=v\n", []kv{{"A", "k", "v"}}},
		{"NUL ends a line", "[A]\nk=v\x00j=w\n", []kv{{"A", "k", "v"}, {"A", "j", "w"}}},
		{"empty", "", nil},
		{"only comments", "# x\n\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.conf", []byte(tt.in))
			require.NoError(t, err)
			assert.Equal(t, tt.want, assignments(f))
			assert.Equal(t, tt.in, string(f.Bytes()), "unmodified file must be written back byte for byte")
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		msg  string
	}{
		{"assignment before section", "k=v\n", 1, "outside of a section"},
		{"not key value", "[A]\nk=v\njunk\n", 3, "not a comment, a section header or Key=Value"},
		{"empty key", "[A]\n =v\n", 2, "empty key"},
		{"unterminated header", "[A]\n[B\n", 2, "invalid section header"},
		{"text after header", "[A] x\n", 1, "invalid section header"},
		{"empty section name", "[]\n", 1, "empty section name"},
		{"bracket in name", "[a]b]\n", 1, "bad character"},
		{"control in name", "[a\x01]\n", 1, "bad character"},
		{".include", "[A]\n.include /x\n", 2, ".include"},
		{"error on first line of continuation", "[A]\n\njunk\\\nmore\n", 3, "not a comment"},
		{"line too long", "[A]\nk=" + strings.Repeat("x", MaxLineSize) + "\n", 2, "longer than"},
		{"continuation too long", "[A]\nk=" + strings.Repeat("x", MaxLineSize/2) + "\\\n" + strings.Repeat("y", MaxLineSize/2) + "\n", 2, "continued line longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("dir/f.container", []byte(tt.in))
			require.Error(t, err)
			var pe *ParseError
			require.True(t, errors.As(err, &pe))
			assert.Equal(t, "dir/f.container", pe.Path)
			assert.Equal(t, tt.line, pe.Line)
			assert.Contains(t, pe.Msg, tt.msg)
			assert.True(t, strings.HasPrefix(err.Error(), "dir/f.container:"), err.Error())
		})
	}
}

func TestLongLineAccepted(t *testing.T) {
	v := strings.Repeat("x", MaxLineSize-2)
	f, err := Parse("f", []byte("[A]\nk="+v+"\n"))
	require.NoError(t, err)
	got, ok := f.Lookup("A", "k")
	require.True(t, ok)
	assert.Equal(t, v, got)
}

func TestLineNumbers(t *testing.T) {
	in := "# head\n[A]\nk=a\\\n#c\nb\n\n[B]\nj=1\n"
	f, err := Parse("f", []byte(in))
	require.NoError(t, err)
	type pos struct {
		Kind          Kind
		Line, EndLine int
	}
	var got []pos
	for _, l := range f.Lines {
		got = append(got, pos{l.Kind, l.Line, l.EndLine})
	}
	assert.Equal(t, []pos{
		{Comment, 1, 1}, {SectionHeader, 2, 2}, {Assignment, 3, 5}, {Blank, 6, 6},
		{SectionHeader, 7, 7}, {Assignment, 8, 8},
	}, got)
	assert.Equal(t, "# head", f.Lines[0].Text)
	assert.Equal(t, "k=a\\\n#c\nb", f.Lines[2].Raw())
	l, ok := f.LookupLine("B", "j")
	require.True(t, ok)
	assert.Equal(t, "f:8", l.Where())
}

func TestLookups(t *testing.T) {
	in := `[Container]
Volume=/a:/a
Volume=/b:/b
Image=one
[Service]
Environment=A=1
[Container]
Image=two
Volume=
Volume=/c:/c
Empty=
`
	f, err := Parse("f", []byte(in))
	require.NoError(t, err)

	v, ok := f.Lookup("Container", "Image")
	assert.True(t, ok)
	assert.Equal(t, "two", v)
	v, ok = f.Lookup("Container", "Empty")
	assert.True(t, ok)
	assert.Equal(t, "", v)
	_, ok = f.Lookup("Container", "Nope")
	assert.False(t, ok)
	_, ok = f.Lookup("Nope", "Image")
	assert.False(t, ok)
	_, ok = f.Lookup("container", "Image")
	assert.False(t, ok, "section names are case-sensitive")

	assert.Equal(t, []string{"/c:/c"}, f.LookupAll("Container", "Volume"))
	assert.Equal(t, []string{}, f.LookupAll("Container", "Empty"))
	assert.Equal(t, []string{}, f.LookupAll("Container", "Nope"))
	assert.Equal(t, []string{"A=1"}, f.LookupAll("Service", "Environment"))
	assert.Equal(t, []string{"Container", "Service"}, f.Sections())
	assert.Equal(t, []string{"Volume", "Image", "Empty"}, f.Keys("Container"))
	assert.True(t, f.HasSection("Service"))
	assert.False(t, f.HasSection("Unit"))
}

func TestSetters(t *testing.T) {
	in := "# keep me\n[Container]\nImage=a # c\nVolume=/x:/x\n\n[Service]\nRestart=always\n[Container]\nImage=b\n"
	f, err := Parse("f", []byte(in))
	require.NoError(t, err)

	require.NoError(t, f.Set("Container", "Image", "quay.io/x:1"))
	require.NoError(t, f.Add("Container", "Volume", "/y:/y"))
	require.NoError(t, f.Add("Unit", "Description", "new section"))
	require.NoError(t, f.AddWords("Service", "Environment", "RWETCFS=/etc/q m", `a"b\c`, "50%"))
	require.NoError(t, f.Reset("Container", "AddCapability"))

	want := "# keep me\n[Container]\nVolume=/x:/x\n\n[Service]\nRestart=always\n" +
		"Environment=\"RWETCFS=/etc/q m\" \"a\\\"b\\\\c\" 50%%\n" +
		"[Container]\nImage=quay.io/x:1\nVolume=/y:/y\nAddCapability=\n\n[Unit]\nDescription=new section\n"
	assert.Equal(t, want, f.String())

	g, err := Parse("f", f.Bytes())
	require.NoError(t, err)
	assert.Equal(t, assignments(f), assignments(g))
	assert.Equal(t, []string{"/x:/x", "/y:/y"}, g.LookupAll("Container", "Volume"))

	assert.Equal(t, 2, f.Remove("Container", "Volume"))
	assert.Empty(t, f.LookupAll("Container", "Volume"))

	for _, bad := range []string{"a\nb", " lead", "trail ", "end\\", "nul\x00"} {
		assert.Error(t, f.Set("Container", "X", bad), "%q", bad)
		assert.Error(t, f.Add("Container", "X", bad), "%q", bad)
	}
	for _, bad := range []string{"", "a=b", "a b", "#x", ";x", "[x", "a\\"} {
		assert.Error(t, f.Add("Container", bad, "v"), "key %q", bad)
	}
	assert.Error(t, f.Add("a]b", "k", "v"))
	assert.NoError(t, f.Set("Container", "X", `end\\`), "escaped backslash is fine")
}

func TestAddToEmptyFile(t *testing.T) {
	f := New("g.conf")
	require.NoError(t, f.Add("Service", "Environment", "A=1"))
	require.NoError(t, f.Add("Container", "Volume", "/a:/b"))
	assert.Equal(t, "[Service]\nEnvironment=A=1\n\n[Container]\nVolume=/a:/b\n", f.String())
	l, ok := f.LookupLine("Service", "Environment")
	require.True(t, ok)
	assert.True(t, l.Generated())
	assert.Equal(t, "g.conf", l.Where())
}

func TestAddAfterUnterminatedLastLine(t *testing.T) {
	f, err := Parse("f", []byte("[A]\nk=v"))
	require.NoError(t, err)
	require.NoError(t, f.Add("A", "j", "w"))
	assert.Equal(t, "[A]\nk=v\nj=w\n", f.String())
}

func TestQuoteWord(t *testing.T) {
	tests := map[string]string{
		"plain":  "plain",
		"":       `""`,
		"a b":    `"a b"`,
		`a"b`:    `"a\"b"`,
		`a\b`:    `"a\\b"`,
		"a'b":    `"a'b"`,
		"a\nb":   `"a\nb"`,
		"a\tb":   `"a\tb"`,
		"a\x01b": `"a\x01b"`,
		"%h":     "%h",
	}
	for in, want := range tests {
		assert.Equal(t, want, QuoteWord(in), "%q", in)
	}
	assert.Equal(t, `a "b c" %%h`, JoinWords("a", "b c", "%h"))
}

func TestMergeProvenance(t *testing.T) {
	base, err := Parse("/usr/share/containers/systemd/qm.container", []byte(
		"[Container]\nImage=base\nDropCapability=sys_boot sys_resource\nVolume=/a:/a\n[Service]\nMemoryHigh=infinity\n"))
	require.NoError(t, err)
	d1, err := Parse("/etc/containers/systemd/qm.container.d/10-caps.conf", []byte(
		"[Container]\nDropCapability=\nDropCapability=sys_boot\nAddCapability=sys_resource\n"))
	require.NoError(t, err)
	d2, err := Parse("/etc/containers/systemd/qm.container.d/20-mem.conf", []byte(
		"# mem\n[Service]\nMemoryHigh=2G\n[Container]\nVolume=/b:/b\n"))
	require.NoError(t, err)

	m := Merge(base, d1, d2)
	assert.Equal(t, base.Path, m.Path)
	assert.Equal(t, []string{"sys_boot"}, m.LookupAll("Container", "DropCapability"))
	assert.Equal(t, []string{"/a:/a", "/b:/b"}, m.LookupAll("Container", "Volume"))
	l, ok := m.LookupLine("Service", "MemoryHigh")
	require.True(t, ok)
	assert.Equal(t, "2G", l.Value)
	assert.Equal(t, d2.Path+":3", l.Where())
	l, ok = m.LookupLine("Container", "Image")
	require.True(t, ok)
	assert.Equal(t, base.Path+":2", l.Where())
	lines := m.LookupAllLines("Container", "DropCapability")
	require.Len(t, lines, 1)
	assert.Equal(t, d1.Path+":3", lines[0].Where())

	// Merge does not touch its inputs, and its rendering reads back to the same values.
	require.NoError(t, m.Set("Service", "MemoryHigh", "1G"))
	v, _ := d2.Lookup("Service", "MemoryHigh")
	assert.Equal(t, "2G", v)
	g, err := Parse("merged", m.Bytes())
	require.NoError(t, err)
	assert.Equal(t, assignments(m), assignments(g))
}

func TestDropInDirs(t *testing.T) {
	assert.Equal(t, []string{"qm.container.d", "container.d"}, DropInDirs("qm.container"))
	assert.Equal(t, []string{"foo-bar.container.d", "foo-.container.d", "container.d"}, DropInDirs("foo-bar.container"))
	assert.Equal(t, []string{"a-b-c.volume.d", "a-b-.volume.d", "a-.volume.d", "volume.d"}, DropInDirs("a-b-c.volume"))
	assert.Equal(t, []string{
		"foo-bar@x.container.d", "foo-bar@.container.d", "foo-@.container.d", "foo-.container.d", "container.d",
	}, DropInDirs("foo-bar@x.container"))
	assert.Equal(t, []string{"web@.container.d", "container.d"}, DropInDirs("web@.container"))
}

func TestOrderDropIns(t *testing.T) {
	in := []string{
		// /run first, then /etc, then /usr/share; in each, the unit's own dir before container.d.
		"/run/containers/systemd/qm.container.d/50-run.conf",
		"/etc/containers/systemd/qm.container.d/a-late.conf",
		"/etc/containers/systemd/qm.container.d/100-x.conf",
		"/etc/containers/systemd/qm.container.d/10-x.conf",
		"/etc/containers/systemd/qm.container.d/README",
		"/etc/containers/systemd/qm.container.d/01-x.conf",
		"/etc/containers/systemd/qm.container.d/50-run.conf", // masked by /run
		"/etc/containers/systemd/container.d/10-x.conf",      // masked by qm.container.d/10-x.conf
		"/etc/containers/systemd/container.d/B-upper.conf",
		"/usr/share/containers/systemd/qm.container.d/05-vendor.conf",
		"/etc/containers/systemd/qm.container.d/x.conf.bak",
	}
	assert.Equal(t, []string{
		"/etc/containers/systemd/qm.container.d/01-x.conf",
		"/usr/share/containers/systemd/qm.container.d/05-vendor.conf",
		"/etc/containers/systemd/qm.container.d/10-x.conf",
		"/etc/containers/systemd/qm.container.d/100-x.conf",
		"/run/containers/systemd/qm.container.d/50-run.conf",
		"/etc/containers/systemd/container.d/B-upper.conf",
		"/etc/containers/systemd/qm.container.d/a-late.conf",
	}, OrderDropIns(in))
}
