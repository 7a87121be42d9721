package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/qmorch/qmorch/internal/safefile"
)

// State directory: the controller-side record of what qmorch deployed, read by `qmorch list`.
const (
	DefaultStateDir = "/var/lib/qmorch"
	StateDirEnv     = "QMORCH_STATE_DIR"
	manifestFile    = "manifest.json"
	lockFile        = "manifest.lock"
	contentDir      = "content" // content/<sha256>: the deployed bytes, for CompareFile
	manifestKind    = "Manifest"
	manifestAPI     = "qmorch/v1"
)

// lockWait bounds how long a qmorch run waits for another one holding the state lock.
var lockWait = 30 * time.Second

// ManifestEntry is one Quadlet file qmorch deployed to one node.
type ManifestEntry struct {
	Node       string    `json:"node"`       // host node
	QMNode     string    `json:"qmNode"`     // its QM twin
	File       string    `json:"file"`       // NAME.container
	Path       string    `json:"path"`       // on the host node
	Unit       string    `json:"unit"`       // the unit Quadlet generates
	SHA256     string    `json:"sha256"`     // of the deployed content (stored as content/<sha256>)
	DeployedAt time.Time `json:"deployedAt"` // when the deploy finished (UTC)
}

// Manifest is the state file (manifest.json).
type Manifest struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Entries    []ManifestEntry `json:"entries"`
}

// ForNode returns the node's entries, sorted by file.
func (m *Manifest) ForNode(node string) []ManifestEntry {
	var out []ManifestEntry
	for _, e := range m.Entries {
		if e.Node == node {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b ManifestEntry) int { return strings.Compare(a.File, b.File) })
	return out
}

// Lookup finds the entry of file on node.
func (m *Manifest) Lookup(node, file string) (ManifestEntry, bool) {
	for _, e := range m.Entries {
		if e.Node == node && e.File == file {
			return e, true
		}
	}
	return ManifestEntry{}, false
}

func (m *Manifest) set(e ManifestEntry) {
	for i := range m.Entries {
		if m.Entries[i].Node == e.Node && m.Entries[i].File == e.File {
			m.Entries[i] = e
			return
		}
	}
	m.Entries = append(m.Entries, e)
}

func (m *Manifest) remove(node, file string) bool {
	n := len(m.Entries)
	m.Entries = slices.DeleteFunc(m.Entries, func(e ManifestEntry) bool { return e.Node == node && e.File == file })
	return len(m.Entries) != n
}

// StateStore is the state directory. Writers take an exclusive flock on manifest.lock (readers a
// shared one), so concurrent qmorch runs never lose each other's entries; files are replaced
// atomically (temp file in the same directory, fsync, rename).
type StateStore struct{ dir string }

// OpenState returns the store at dir: dir itself, else $QMORCH_STATE_DIR, else DefaultStateDir.
// Nothing is created until the first write.
func OpenState(dir string) *StateStore {
	if dir == "" {
		dir = os.Getenv(StateDirEnv)
	}
	if dir == "" {
		dir = DefaultStateDir
	}
	return &StateStore{dir: dir}
}

// Dir is the state directory.
func (s *StateStore) Dir() string { return s.dir }

func (s *StateStore) manifestPath() string { return filepath.Join(s.dir, manifestFile) }

// lock takes the state lock (exclusive or shared), waiting at most lockWait. A missing state
// directory is created for an exclusive lock; for a shared one it means "nothing recorded"
// (ok=false, no error).
func (s *StateStore) lock(exclusive bool) (unlock func(), ok bool, err error) {
	if exclusive {
		if err := os.MkdirAll(s.dir, 0o755); err != nil {
			return nil, false, fmt.Errorf("state directory: %w", err)
		}
	} else if _, err := os.Stat(s.dir); errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	p := filepath.Join(s.dir, lockFile)
	flag := os.O_RDONLY
	if exclusive {
		flag = os.O_RDWR | os.O_CREATE
	}
	f, err := os.OpenFile(p, flag, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		// Readers create nothing. Writers create the lock file before the manifest, so no
		// writer is active; a manifest without a lock file was put there by hand.
		return func() {}, true, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state lock: %w", err)
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(lockWait)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, false, fmt.Errorf("state lock %s: %w", p, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, false, fmt.Errorf("state lock %s: still held by another qmorch after %s", p, lockWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, true, nil
}

// Read returns the manifest (empty when nothing was recorded yet). A file that does not parse
// or holds invalid entries is an error naming the file. Every error is ErrInvalid: the record is
// the caller's local input (--state-dir), read before any node is asked.
func (s *StateStore) Read() (*Manifest, error) {
	unlock, ok, err := s.lock(false)
	if err != nil {
		return nil, withClass(ErrInvalid, err)
	}
	if !ok {
		return emptyManifest(), nil
	}
	defer unlock()
	m, err := s.read()
	if err != nil {
		return nil, withClass(ErrInvalid, err)
	}
	return m, nil
}

func emptyManifest() *Manifest {
	return &Manifest{APIVersion: manifestAPI, Kind: manifestKind, Entries: []ManifestEntry{}}
}

// maxManifestSize bounds the record file (about 200 bytes per node and unit: room for a large
// fleet); like every file qmorch reads, it must be a regular file (safefile).
const maxManifestSize = 64 << 20

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *StateStore) read() (*Manifest, error) {
	p := s.manifestPath()
	data, err := safefile.ReadFile(p, maxManifestSize)
	if errors.Is(err, fs.ErrNotExist) {
		return emptyManifest(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("state file: %w", err)
	}
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("state file %s is corrupt: %s (move it away to start a new record)", p, fmt.Sprintf(format, args...))
	}
	var m Manifest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, corrupt("%v", err)
	}
	if m.Kind != manifestKind || m.APIVersion != manifestAPI {
		return nil, corrupt("kind %q apiVersion %q, want %s %s", m.Kind, m.APIVersion, manifestKind, manifestAPI)
	}
	for i, e := range m.Entries {
		switch {
		case validateNodeName(e.Node) != nil || validateNodeName(e.QMNode) != nil:
			return nil, corrupt("entry %d: bad node name %q/%q", i, e.Node, e.QMNode)
		case validateName(e.File) != nil:
			return nil, corrupt("entry %d: bad file name %q", i, e.File)
		case validateNodePath(e.Path) != nil || filepath.Base(e.Path) != e.File:
			return nil, corrupt("entry %d: bad path %q", i, e.Path)
		case !sha256Hex.MatchString(e.SHA256):
			return nil, corrupt("entry %d: bad sha256 %q", i, e.SHA256)
		}
		if _, err := NormalizeUnitName(e.Unit); err != nil {
			return nil, corrupt("entry %d: bad unit %q", i, e.Unit)
		}
	}
	if m.Entries == nil {
		m.Entries = []ManifestEntry{}
	}
	return &m, nil
}

// Content returns the deployed bytes recorded under sum, checking the hash.
func (s *StateStore) Content(sum string) ([]byte, error) {
	if !sha256Hex.MatchString(sum) {
		return nil, fmt.Errorf("bad content hash %q", sum)
	}
	p := filepath.Join(s.dir, contentDir, sum)
	data, err := safefile.ReadFile(p, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("deployed content: %w", err)
	}
	if got := SHA256(data); got != sum {
		return nil, fmt.Errorf("deployed content %s is corrupt: sha256 is %s", p, got)
	}
	return data, nil
}

// SHA256 is the hex sha256 of data.
func SHA256(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// Record stores content and sets entries (one per node; SHA256 is filled in), replacing
// earlier entries of the same node and file.
func (s *StateStore) Record(content []byte, entries ...ManifestEntry) error {
	if len(entries) == 0 {
		return nil
	}
	sum := SHA256(content)
	return s.update(func(m *Manifest) error {
		if err := writeAtomic(filepath.Join(s.dir, contentDir), sum, content, 0o600); err != nil {
			return err
		}
		for _, e := range entries {
			e.SHA256 = sum
			e.DeployedAt = e.DeployedAt.UTC().Truncate(time.Second)
			m.set(e)
		}
		return nil
	})
}

// Forget removes the entry of file on each node; removed lists the nodes that had one.
func (s *StateStore) Forget(file string, nodes ...string) (removed []string, err error) {
	if _, err := os.Stat(s.manifestPath()); errors.Is(err, fs.ErrNotExist) {
		return nil, nil // nothing recorded: do not create the state directory
	}
	err = s.update(func(m *Manifest) error {
		for _, n := range nodes {
			if m.remove(n, file) {
				removed = append(removed, n)
			}
		}
		return nil
	})
	return removed, err
}

// update runs f on the manifest under the exclusive lock, writes it back and drops content
// files no entry refers to.
func (s *StateStore) update(f func(m *Manifest) error) error {
	unlock, _, err := s.lock(true)
	if err != nil {
		return err
	}
	defer unlock()
	m, err := s.read()
	if err != nil {
		return err
	}
	if err := f(m); err != nil {
		return err
	}
	slices.SortFunc(m.Entries, func(a, b ManifestEntry) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return strings.Compare(a.File, b.File)
	})
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	if err := writeAtomic(s.dir, manifestFile, append(data, '\n'), 0o644); err != nil {
		return err
	}
	s.gcContent(m)
	return nil
}

// gcContent removes unreferenced content files (best effort: a leftover costs only disk).
func (s *StateStore) gcContent(m *Manifest) {
	dir := filepath.Join(s.dir, contentDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	used := map[string]bool{}
	for _, e := range m.Entries {
		used[e.SHA256] = true
	}
	for _, e := range ents {
		if !used[e.Name()] {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// writeAtomic writes dir/name through a temp file in dir: fsync, rename, fsync dir.
func writeAtomic(dir, name string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// DeployedEntries turns a deploy report into manifest entries: the nodes where the file is now
// in place (deployed, unchanged, installed). Dry runs and --root runs record nothing.
func DeployedEntries(rep *Report, file string, at time.Time) []ManifestEntry {
	if rep == nil || rep.DryRun {
		return nil
	}
	var out []ManifestEntry
	for _, r := range rep.Results {
		if r.Node == "" {
			continue
		}
		switch r.Action {
		case ActionDeployed, ActionUnchanged, ActionInstalled:
			out = append(out, ManifestEntry{Node: r.Node, QMNode: r.Twin, File: file, Path: r.Path, Unit: r.Unit, DeployedAt: at})
		}
	}
	return out
}
