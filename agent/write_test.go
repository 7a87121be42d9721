package agent

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRender(t *testing.T) {
	t.Parallel()
	doc := Document{
		Header: []string{"Written by qmorch; do not edit."},
		Sections: []DocSection{
			{Name: "bluechi-agent", Keys: []DocKey{{Key: "NodeName", Value: "qm.node1"}, {Key: "ControllerHost", Value: ""}}},
			{Name: "node qm.node1", Keys: []DocKey{{Key: "Allowed", Value: "true"}}},
		},
	}
	out, err := Render(doc)
	require.NoError(t, err)
	require.Equal(t, "# Written by qmorch; do not edit.\n\n[bluechi-agent]\nNodeName=qm.node1\nControllerHost=\n\n[node qm.node1]\nAllowed=true\n", string(out))
	requireRoundTrip(t, doc, out)
}

func TestRenderWrapsLists(t *testing.T) {
	t.Parallel()
	var names []string
	for i := range 200 {
		names = append(names, fmt.Sprintf("worker-node-%03d.example.com", i))
	}
	doc := Document{Sections: []DocSection{{Name: "bluechi-controller", Keys: []DocKey{{Key: "AllowedNodeNames", List: names}}}}}
	out, err := Render(doc)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	require.Greater(t, len(lines), 10)
	for _, l := range lines {
		require.LessOrEqual(t, len(l), MaxLine)
	}
	requireRoundTrip(t, doc, out)
}

func TestRenderRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  Document
	}{
		{"duplicate key", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", Value: "1"}, {Key: "A", Value: "2"}}}}}},
		{"inline comment", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", Value: "x ;y"}}}}}},
		{"newline", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", Value: "x\ny"}}}}}},
		{"trailing space", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", Value: "x "}}}}}},
		{"long key", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: strings.Repeat("K", 50), Value: "1"}}}}}},
		{"long section", Document{Sections: []DocSection{{Name: strings.Repeat("S", 50)}}}},
		{"long value", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", Value: strings.Repeat("v", MaxLine)}}}}}},
		{"comma in item", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", List: []string{"a,b"}}}}}}},
		{"space in item", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", List: []string{"a b"}}}}}}},
		{"comment item", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", List: []string{"#a"}}}}}}},
		{"item like a key", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", List: []string{"a", "Key=v"}}}}}}},
		{"item like a colon key", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A", List: []string{"a", "0:x"}}}}}}},
		{"key with separator", Document{Sections: []DocSection{{Name: "s", Keys: []DocKey{{Key: "A:B", Value: "1"}}}}}},
		{"section twice", Document{Sections: []DocSection{{Name: "s"}, {Name: "s"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Render(tc.doc)
			require.Error(t, err)
		})
	}
}

// requireRoundTrip checks that reading out gives exactly doc's keys and values.
func requireRoundTrip(t testing.TB, doc Document, out []byte) {
	t.Helper()
	f, err := Read("rendered.conf", out)
	require.NoError(t, err, "%s", out)
	require.Empty(t, f.Warnings, "%s", out)
	n := 0
	for _, s := range doc.Sections {
		for _, k := range s.Keys {
			n++
			e := f.Lookup(s.Name, k.Key)
			require.NotNil(t, e, "[%s] %s missing in\n%s", s.Name, k.Key, out)
			require.Equal(t, k.Text(), e.Value)
		}
	}
	require.Len(t, f.Entries, n, "%s", out)
}
