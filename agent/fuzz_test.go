package agent

import (
	"errors"
	"strings"
	"testing"
)

// FuzzRead checks that the reader never panics and that its results are
// self-consistent.
func FuzzRead(f *testing.F) {
	f.Add([]byte("[bluechi-agent]\nNodeName=foo ; c\n  cont\nA:B=c\n"))
	f.Add([]byte("\xef\xbb\xbf[s]\r\nA=" + strings.Repeat("a", 600) + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Read("fuzz.conf", data)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || pe.Line < 1 {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		for _, e := range file.Entries {
			if len(e.Section) > maxName || len(e.Lines) == 0 {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}

// FuzzRoundTrip builds a Document from the input, and when the writer
// accepts it, checks that reading the output gives back the same keys and
// values. Input lines: "[name]" starts a section, "key=value" adds a
// scalar, "*key=a,b,c" adds a list.
func FuzzRoundTrip(f *testing.F) {
	f.Add("[bluechi-agent]\nNodeName=qm.node1\nControllerAddress=unix:path=/run/bluechi.sock\n")
	f.Add("[bluechi-controller]\n*AllowedNodeNames=node1,qm.node1,node2,qm.node2\n[node qm.node1]\nAllowed=true\n")
	f.Add("[s]\nA=\n*B=\n")
	f.Fuzz(func(t *testing.T, spec string) {
		doc := docFromSpec(spec)
		out, err := Render(doc)
		if err != nil {
			return
		}
		requireRoundTrip(t, doc, out)
	})
}

func docFromSpec(spec string) Document {
	var doc Document
	for _, line := range strings.Split(spec, "\n") {
		switch {
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			doc.Sections = append(doc.Sections, DocSection{Name: line[1 : len(line)-1]})
		case len(doc.Sections) > 0 && strings.Contains(line, "="):
			k, v, _ := strings.Cut(line, "=")
			s := &doc.Sections[len(doc.Sections)-1]
			if rest, ok := strings.CutPrefix(k, "*"); ok {
				list := []string{}
				if v != "" {
					list = strings.Split(v, ",")
				}
				s.Keys = append(s.Keys, DocKey{Key: rest, List: list})
			} else {
				s.Keys = append(s.Keys, DocKey{Key: k, Value: v})
			}
		}
	}
	return doc
}
