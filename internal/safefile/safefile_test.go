package safefile

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// noHang runs f and fails the test if it has not returned after a generous grace period: the
// bugs this package fixes are hangs, which would otherwise cost the whole go test -timeout.
func noHang(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not return: it blocks", what)
	}
}

// specialTree makes a directory with one file of every kind; the names say the kind.
func specialTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "ok.conf"), []byte("[x]\nA=1\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big.conf"), make([]byte, MaxSize+1), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "exact.conf"), make([]byte, MaxSize), 0o644))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo.conf"), 0o644))
	require.NoError(t, os.Symlink("/dev/zero", filepath.Join(dir, "zero.conf")))
	require.NoError(t, os.Symlink("/dev/null", filepath.Join(dir, "null.conf")))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dir.conf"), 0o755))
	// A real device node in the tree (os.Root refuses the absolute /dev symlinks above).
	if err := syscall.Mknod(filepath.Join(dir, "chr.conf"), syscall.S_IFCHR|0o644, 1<<8|5); err != nil {
		t.Logf("mknod (needs root): %v; using a plain file", err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "chr.conf"), []byte("x"), 0o644))
		hasChr = false
	}
	l, err := net.Listen("unix", filepath.Join(dir, "sock.conf"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return dir
}

var hasChr = true // whether specialTree made chr.conf a character device (/dev/zero's 1,5)

var specialCases = []struct {
	name    string
	wantErr error
	wantMsg string
	size    int
}{
	{name: "ok.conf", size: 8},
	{name: "exact.conf", size: MaxSize},
	{name: "big.conf", wantErr: ErrTooLarge, wantMsg: "file is 1048577 bytes, more than the limit of 1048576 bytes"},
	{name: "fifo.conf", wantErr: ErrNotRegular, wantMsg: "not a regular file (FIFO)"},
	{name: "zero.conf", wantErr: ErrNotRegular, wantMsg: "not a regular file (character device)"},
	{name: "null.conf", wantErr: ErrNotRegular, wantMsg: "not a regular file (character device)"},
	{name: "chr.conf", wantErr: ErrNotRegular, wantMsg: "not a regular file (character device)"},
	{name: "dir.conf", wantErr: ErrNotRegular, wantMsg: "not a regular file (directory)"},
	{name: "sock.conf", wantErr: syscall.ENXIO}, // open(2) refuses a socket itself
	{name: "missing.conf", wantErr: fs.ErrNotExist},
}

func TestReaders(t *testing.T) {
	dir := specialTree(t)
	r, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer r.Close()
	readers := map[string]func(name string) ([]byte, error){
		"ReadFile": func(n string) ([]byte, error) { return ReadFile(filepath.Join(dir, n), MaxSize) },
		"ReadRoot": func(n string) ([]byte, error) { return ReadRoot(r, n, MaxSize) },
		"ReadFS(RootFS)": func(n string) ([]byte, error) {
			return ReadFS(RootFS(r), n, MaxSize)
		},
		"fs.ReadFile(RootFS)": func(n string) ([]byte, error) { return fs.ReadFile(RootFS(r), n) },
		"fs.ReadFile(DirFS)":  func(n string) ([]byte, error) { return fs.ReadFile(DirFS(dir), n) },
		"ReadFS(DirFS)":       func(n string) ([]byte, error) { return ReadFS(DirFS(dir), n, MaxSize) },
	}
	for rname, read := range readers {
		for _, tc := range specialCases {
			t.Run(rname+"/"+tc.name, func(t *testing.T) {
				if tc.name == "chr.conf" && !hasChr {
					t.Skip("no character device (mknod needs root)")
				}
				var b []byte
				var err error
				noHang(t, rname+"("+tc.name+")", func() { b, err = read(tc.name) })
				if tc.wantErr == nil {
					require.NoError(t, err)
					require.Len(t, b, tc.size)
					return
				}
				require.Error(t, err)
				if strings.Contains(rname, "Root") && (tc.name == "zero.conf" || tc.name == "null.conf") {
					// os.Root refuses absolute symlinks: nothing is opened.
					require.ErrorContains(t, err, "path escapes from parent")
					return
				}
				if tc.name == "sock.conf" {
					// open(2) refuses sockets itself (ENXIO); either way nothing is read.
					require.True(t, errors.Is(err, syscall.ENXIO) || errors.Is(err, ErrNotRegular), "%v", err)
					return
				}
				require.ErrorIs(t, err, tc.wantErr)
				require.Contains(t, err.Error(), tc.name, "the error names the file")
				if tc.wantMsg != "" {
					require.Contains(t, err.Error(), tc.wantMsg)
					require.True(t, Refused(err))
				}
			})
		}
	}
}

// A file that grows past the limit after the fstat is still cut at limit+1 bytes.
func TestReadStopsAtLimit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	require.NoError(t, os.WriteFile(p, []byte(strings.Repeat("x", 100)), 0o644))
	b, err := ReadFile(p, 100)
	require.NoError(t, err)
	require.Len(t, b, 100)
	_, err = ReadFile(p, 99)
	var tl *TooLargeError
	require.ErrorAs(t, err, &tl)
	require.Equal(t, int64(100), tl.Size)

	// Device files report size 0: the bounded read is what protects (here via a fake stat).
	f, err := os.Open("/dev/zero")
	require.NoError(t, err)
	defer f.Close()
	b, err = read(regularLie{f}, "/dev/zero", 10)
	require.ErrorAs(t, err, &tl)
	require.Nil(t, b)
	require.Equal(t, int64(11), tl.Size, "read at most limit+1 bytes")
	require.Equal(t, "read /dev/zero: file is more than the limit of 10 bytes", err.Error())
}

// regularLie is a file whose Stat claims an empty regular file.
type regularLie struct{ *os.File }

func (f regularLie) Stat() (fs.FileInfo, error) { return lieInfo{}, nil }

type lieInfo struct{}

func (lieInfo) Name() string       { return "lie" }
func (lieInfo) Size() int64        { return 0 }
func (lieInfo) Mode() fs.FileMode  { return 0o644 }
func (lieInfo) ModTime() time.Time { return time.Time{} }
func (lieInfo) IsDir() bool        { return false }
func (lieInfo) Sys() any           { return nil }

// Open of the FSes never blocks on a FIFO (the caller then sees its type).
func TestOpenFIFODoesNotBlock(t *testing.T) {
	dir := specialTree(t)
	r, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer r.Close()
	for name, fsys := range map[string]fs.FS{"RootFS": RootFS(r), "DirFS": DirFS(dir)} {
		t.Run(name, func(t *testing.T) {
			var f fs.File
			noHang(t, "Open(fifo.conf)", func() { f, err = fsys.Open("fifo.conf") })
			require.NoError(t, err)
			defer f.Close()
			fi, err := f.Stat()
			require.NoError(t, err)
			require.Equal(t, "FIFO", Kind(fi.Mode()))
			_, err = fsys.Open("../x")
			require.ErrorIs(t, err, fs.ErrInvalid)
			entries, err := fs.ReadDir(fsys, ".")
			require.NoError(t, err)
			require.Len(t, entries, 9)
		})
	}
}
