package deploy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckLocalRoot(t *testing.T) {
	t.Parallel()
	const rel = "etc/qm/containers/systemd/nested.container"
	mk := func(setup func(root string)) string {
		root := t.TempDir()
		setup(root)
		return root
	}
	outside := t.TempDir()
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	cases := []struct {
		name, root, err string
	}{
		{"empty tree", mk(func(string) {}), ""},
		{"symlink inside", mk(func(r string) {
			require.NoError(t, os.MkdirAll(filepath.Join(r, "real"), 0o755))
			require.NoError(t, os.Symlink("real", filepath.Join(r, "etc")))
		}), ""},
		{"missing root", filepath.Join(outside, "nope"), "no such file or directory"},
		{"root is a file", file, "is not a directory"},
		{"etc escapes", mk(func(r string) { require.NoError(t, os.Symlink(outside, filepath.Join(r, "etc"))) }), "/etc leads outside the root"},
		{"quadlet dir escapes by ..", mk(func(r string) {
			require.NoError(t, os.MkdirAll(filepath.Join(r, "etc/qm/containers"), 0o755))
			require.NoError(t, os.Symlink("../../../..", filepath.Join(r, "etc/qm/containers/systemd")))
		}), "/etc/qm/containers/systemd leads outside the root"},
		{"target escapes", mk(func(r string) {
			require.NoError(t, os.MkdirAll(filepath.Join(r, "etc/qm/containers/systemd"), 0o755))
			require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(r, rel)))
		}), "nested.container leads outside the root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLocalRoot(tc.root, rel)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorContains(t, err, tc.err)
			require.ErrorContains(t, err, tc.root)
		})
	}
	require.ErrorContains(t, CheckLocalRoot(t.TempDir(), "../x"), "outside the root")
}

func TestValidateFileNamesAndNUL(t *testing.T) {
	t.Parallel()
	cases := []struct{ name, content, err string }{
		{"-rf.container", "[Container]\nImage=x\n", `invalid request: file name "-rf.container": must not start with '-'`},
		{"nul.container", "[Container]\n\nImage=busy\x00box\n", "invalid request: src/nul.container:3: file contains a NUL byte"},
		{"nul.container", "\x00", "nul.container:1: file contains a NUL byte"},
	}
	for _, tc := range cases {
		_, err := ValidateFile("src/"+tc.name, tc.name, []byte(tc.content))
		require.ErrorIs(t, err, ErrInvalid, tc.name)
		require.ErrorContains(t, err, tc.err)
	}
}
