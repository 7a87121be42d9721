package unitfile

import (
	"bytes"
	"errors"
	"testing"
)

var fuzzSeeds = []string{
	"[Container]\nImage=quay.io/x\nVolume=${RWETCFS}:/etc\n",
	"# c\n[A]\nk=a\\\n# inside\n  b\n\n[B]\nj=\n[A]\nk=\"q\" 'r'\n",
	"\xef\xbb\xbf[A]\r\nk=v\r\n",
	"[A]\nk=a\\\\\nj=b\\",
	"[A]\rk=v\x00j=w",
	"k=v\n",
	"[A\n",
	"[A]\n.include x\n",
	"[node a]\n =v\n",
}

// FuzzParse checks that Parse never panics, that errors are *ParseError with a line inside the
// input, and that an unmodified parsed file is written back byte for byte.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		uf, err := Parse("fuzz", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *ParseError: %v", err, err)
			}
			if pe.Line < 1 || pe.Line > bytes.Count(data, []byte("\n"))+bytes.Count(data, []byte("\r"))+bytes.Count(data, []byte{0})+1 {
				t.Fatalf("error line %d out of range: %v", pe.Line, err)
			}
			return
		}
		if got := uf.Bytes(); !bytes.Equal(got, data) {
			t.Fatalf("Bytes() = %q, want the input %q", got, data)
		}
		for _, l := range uf.Lines {
			if l.Line < 1 || l.EndLine < l.Line {
				t.Fatalf("bad line numbers %d-%d", l.Line, l.EndLine)
			}
		}
	})
}

// regenerate marks every line as modified so Bytes writes the canonical form.
func regenerate(f *File) *File {
	c := f.Clone()
	for _, l := range c.Lines {
		l.orig = nil
	}
	return c
}

func sameModel(t *testing.T, a, b *File) {
	t.Helper()
	strip := func(f *File) []Line {
		var out []Line
		for _, l := range f.Lines {
			out = append(out, Line{Kind: l.Kind, Section: l.Section, Key: l.Key, Value: l.Value, Text: l.Text})
		}
		return out
	}
	sa, sb := strip(a), strip(b)
	if len(sa) != len(sb) {
		t.Fatalf("line count %d != %d\n%q\n%q", len(sa), len(sb), a.Bytes(), b.Bytes())
	}
	for i := range sa {
		if sa[i] != sb[i] {
			t.Fatalf("line %d: %+v != %+v", i, sa[i], sb[i])
		}
	}
}

// FuzzRoundTrip checks parse -> Bytes -> parse for the verbatim and the canonical rendering, and
// that a file rebuilt with the setters reads back the same assignments.
func FuzzRoundTrip(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		uf, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		again, err := Parse("fuzz", uf.Bytes())
		if err != nil {
			t.Fatalf("verbatim output does not parse: %v", err)
		}
		sameModel(t, uf, again)

		canon := regenerate(uf)
		again, err = Parse("fuzz", canon.Bytes())
		if err != nil {
			t.Fatalf("canonical output %q does not parse: %v", canon.Bytes(), err)
		}
		sameModel(t, canon, again)

		built := New("built")
		for _, l := range uf.Lines {
			if l.Kind != Assignment {
				continue
			}
			if CheckKey(l.Key) != nil {
				continue // keys with spaces, '\' ... are read fine but not generated
			}
			if CheckValue(l.Value) == nil { // values ending in '\' are refused; AddWords quotes them
				if err := built.Add(l.Section, l.Key, l.Value); err != nil {
					t.Fatalf("Add(%q, %q, %q): %v", l.Section, l.Key, l.Value, err)
				}
			}
			if len(l.Value) > MaxLineSize/8 {
				continue
			}
			if err := built.AddWords(l.Section, "W", l.Value, l.Key); err != nil {
				t.Fatalf("AddWords(%q): %v", l.Value, err)
			}
		}
		back, err := Parse("built", built.Bytes())
		if err != nil {
			t.Fatalf("built file %q does not parse: %v", built.Bytes(), err)
		}
		for _, sec := range built.Sections() {
			for _, k := range built.Keys(sec) {
				a, b := built.Assignments(sec, k), back.Assignments(sec, k)
				if len(a) != len(b) {
					t.Fatalf("[%s] %s: %d != %d assignments", sec, k, len(a), len(b))
				}
				for i := range a {
					if a[i].Value != b[i].Value {
						t.Fatalf("[%s] %s: %q != %q", sec, k, a[i].Value, b[i].Value)
					}
				}
			}
		}
	})
}
