package main

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// Golden files of the documented output (docs/json.md): testdata/NAME.golden. After an
// intended change, rewrite them with
//
//	go test ./cmd/qmorch -run Golden -update
//
// and review the diff: a JSON golden that changes other than by an added field breaks the
// qmorch/v1 promise.
var updateGolden = flag.Bool("update", false, "rewrite cmd/qmorch/testdata/*.golden")

var (
	goldenDuration = regexp.MustCompile(`"durationMs": [0-9]+`)
	goldenTime     = regexp.MustCompile(`"(deployedAt|lastSeen|since)": "[^"]+"`)
	goldenSeconds  = regexp.MustCompile(`(?m)\b[0-9]+\.[0-9]s$`)
)

// normalizeGolden replaces what differs from run to run (durations, wall-clock times).
func normalizeGolden(s string) string {
	s = goldenDuration.ReplaceAllString(s, `"durationMs": 0`)
	s = goldenTime.ReplaceAllString(s, `"$1": "2006-01-02T15:04:05Z"`)
	return goldenSeconds.ReplaceAllString(s, "0.0s")
}

// assertGolden compares got (normalized) with testdata/name.golden, or rewrites it with -update.
func assertGolden(t *testing.T, name, got string) {
	t.Helper()
	got = normalizeGolden(got)
	p := filepath.Join("testdata", name+".golden")
	if *updateGolden {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(p, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(p)
	require.NoError(t, err, "missing golden file; run: go test ./cmd/qmorch -run %s -update", t.Name())
	require.Equal(t, string(want), got, "output differs from %s (after an intended change: go test ./cmd/qmorch -run %s -update)", p, t.Name())
}
