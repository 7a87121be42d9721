package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra/doc"
	"github.com/stretchr/testify/require"
)

// The man pages (docs/man/*.1) are generated from the command tree by `make man`, which runs
// TestManPages with QMORCH_WRITE_MAN=1; without it the test generates them into a temporary
// directory and fails when the committed pages differ.

// manDate is the date in every page's header: a constant, so regenerating the pages changes
// nothing unless the command tree changed (no timestamp churn, reproducible RPMs).
var manDate = time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)

// manDir is docs/man, seen from this package's directory (go test runs in it).
var manDir = filepath.Join("..", "..", "docs", "man")

// generateManPages writes one page per command (qmorch.1, qmorch-deploy.1, ...) into dir.
func generateManPages(dir string) error {
	root := NewRootCmd(deps{streams: IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}})
	root.DisableAutoGenTag = true // no "Auto generated ... on DATE" line
	return doc.GenManTree(root, &doc.GenManHeader{
		Section: "1",
		Date:    &manDate,
		Source:  "qmorch",
		Manual:  "qmorch manual",
	}, dir)
}

func readManPages(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.1"))
	require.NoError(t, err)
	pages := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		pages[filepath.Base(f)] = string(b)
	}
	return pages
}

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: committed %q, generated %q", i+1, gl, wl)
		}
	}
	return "identical"
}

// manStaleness compares committed pages with generated ones and lists every difference.
func manStaleness(committed, generated map[string]string) []string {
	var problems []string
	for name, want := range generated {
		got, ok := committed[name]
		switch {
		case !ok:
			problems = append(problems, name+": missing")
		case got != want:
			problems = append(problems, name+": out of date, "+firstDiff(got, want))
		}
	}
	for name := range committed {
		if _, ok := generated[name]; !ok {
			problems = append(problems, name+": no such command any more")
		}
	}
	sort.Strings(problems)
	return problems
}

func TestManPages(t *testing.T) {
	if os.Getenv("QMORCH_WRITE_MAN") == "1" {
		require.NoError(t, os.MkdirAll(manDir, 0o755))
		old, err := filepath.Glob(filepath.Join(manDir, "*.1"))
		require.NoError(t, err)
		for _, f := range old {
			require.NoError(t, os.Remove(f))
		}
		require.NoError(t, generateManPages(manDir))
		t.Logf("wrote %d man pages to docs/man", len(readManPages(t, manDir)))
		return
	}
	tmp := t.TempDir()
	require.NoError(t, generateManPages(tmp))
	generated := readManPages(t, tmp)
	require.NotEmpty(t, generated)
	require.Contains(t, generated, "qmorch.1")
	if problems := manStaleness(readManPages(t, manDir), generated); len(problems) > 0 {
		t.Fatalf("docs/man is stale: run `make man` and commit docs/man.\n  %s", strings.Join(problems, "\n  "))
	}
}

func TestManStaleness(t *testing.T) {
	tests := []struct {
		name      string
		committed map[string]string
		generated map[string]string
		want      []string
	}{
		{"in sync", map[string]string{"a.1": "x\n"}, map[string]string{"a.1": "x\n"}, nil},
		{"missing page", map[string]string{}, map[string]string{"a.1": "x\n"}, []string{"a.1: missing"}},
		{"stale page", map[string]string{"a.1": "x\ny\n"}, map[string]string{"a.1": "x\nz\n"},
			[]string{`a.1: out of date, line 2: committed "y", generated "z"`}},
		{"removed command", map[string]string{"a.1": "x\n", "b.1": "y\n"}, map[string]string{"a.1": "x\n"},
			[]string{"b.1: no such command any more"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, manStaleness(tt.committed, tt.generated))
		})
	}
}
