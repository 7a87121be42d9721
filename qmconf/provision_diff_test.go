package qmconf

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUnifiedDiff(t *testing.T) {
	t.Parallel()
	ten := func(repl map[int]string) string {
		var b strings.Builder
		for i := 1; i <= 10; i++ {
			if r, ok := repl[i]; ok {
				b.WriteString(r)
				continue
			}
			b.WriteString("l" + string(rune('0'+i%10)) + "\n")
		}
		return b.String()
	}
	tests := []struct {
		name     string
		old, new string
		want     string
	}{
		{"equal", "a\n", "a\n", ""},
		{"new file", "", "a\nb\n", "--- o\n+++ n\n@@ -0,0 +1,2 @@\n+a\n+b\n"},
		{"removed file", "a\n", "", "--- o\n+++ n\n@@ -1 +0,0 @@\n-a\n"},
		{"change, deletions first", "[s]\nA=1\nB=2\n", "[s]\nA=9\nB=2\n",
			"--- o\n+++ n\n@@ -1,3 +1,3 @@\n [s]\n-A=1\n+A=9\n B=2\n"},
		{"no newline at end", "a", "a\n", "--- o\n+++ n\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n"},
		{"two hunks", ten(map[int]string{1: "X\n"}), ten(map[int]string{10: "Y\n"}),
			"--- o\n+++ n\n@@ -1,4 +1,4 @@\n-X\n+l1\n l2\n l3\n l4\n@@ -7,4 +7,4 @@\n l7\n l8\n l9\n-l0\n+Y\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, UnifiedDiff("o", "n", []byte(tc.old), []byte(tc.new)))
		})
	}
}
