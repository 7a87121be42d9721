package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func entry(node string) ManifestEntry {
	return ManifestEntry{Node: node, QMNode: "qm." + node, File: "nested.container", Path: nestedPath,
		Unit: "nested.service", DeployedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)}
}

func TestManifestRecordReadForget(t *testing.T) {
	t.Parallel()
	s := OpenState(filepath.Join(t.TempDir(), "state"))
	m, err := s.Read()
	require.NoError(t, err)
	require.Empty(t, m.Entries, "nothing recorded yet")
	_, err = os.Stat(s.Dir())
	require.ErrorIs(t, err, os.ErrNotExist, "reading creates nothing")

	require.NoError(t, s.Record([]byte("v1"), entry("node1"), entry("node2")))
	require.NoError(t, s.Record([]byte("v2"), entry("node2")))
	m, err = s.Read()
	require.NoError(t, err)
	require.Len(t, m.Entries, 2)
	e1, ok := m.Lookup("node1", "nested.container")
	require.True(t, ok)
	require.Equal(t, SHA256([]byte("v1")), e1.SHA256)
	require.Equal(t, time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), e1.DeployedAt)
	e2, _ := m.Lookup("node2", "nested.container")
	require.Equal(t, SHA256([]byte("v2")), e2.SHA256, "a redeploy replaces the entry")
	data, err := s.Content(e2.SHA256)
	require.NoError(t, err)
	require.Equal(t, "v2", string(data))

	removed, err := s.Forget("nested.container", "node1", "node3")
	require.NoError(t, err)
	require.Equal(t, []string{"node1"}, removed)
	m, err = s.Read()
	require.NoError(t, err)
	require.Len(t, m.Entries, 1)
	_, err = s.Content(SHA256([]byte("v1")))
	require.Error(t, err, "content nobody refers to is collected")
	left, err := filepath.Glob(filepath.Join(s.Dir(), ".*tmp*"))
	require.NoError(t, err)
	require.Empty(t, left, "no temp files left behind")
}

func TestManifestCorruptNamesTheFile(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"not json":     "{",
		"wrong kind":   `{"apiVersion":"qmorch/v1","kind":"Other","entries":[]}`,
		"unknown key":  `{"apiVersion":"qmorch/v1","kind":"Manifest","entries":[],"x":1}`,
		"bad path":     `{"apiVersion":"qmorch/v1","kind":"Manifest","entries":[{"node":"n","qmNode":"qm.n","file":"a.container","path":"/x/../a.container","unit":"a.service","sha256":"` + SHA256(nil) + `"}]}`,
		"bad sha":      `{"apiVersion":"qmorch/v1","kind":"Manifest","entries":[{"node":"n","qmNode":"qm.n","file":"a.container","path":"/x/a.container","unit":"a.service","sha256":"zz"}]}`,
		"bad filename": `{"apiVersion":"qmorch/v1","kind":"Manifest","entries":[{"node":"n","qmNode":"qm.n","file":"../a.container","path":"/x/a.container","unit":"a.service","sha256":"` + SHA256(nil) + `"}]}`,
	}
	for name, content := range cases {
		dir := t.TempDir()
		p := filepath.Join(dir, "manifest.json")
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
		s := OpenState(dir)
		_, err := s.Read()
		require.ErrorContains(t, err, "state file "+p+" is corrupt", name)
		require.ErrorIs(t, err, ErrInvalid, "%s: bad local input (exit 2)", name)
		require.Error(t, s.Record([]byte("x"), entry("node1")), "%s: a corrupt file is never overwritten", name)
		got, _ := os.ReadFile(p)
		require.Equal(t, content, string(got), name)
	}
	// Content whose hash does not match is refused.
	s := OpenState(t.TempDir())
	require.NoError(t, s.Record([]byte("v1"), entry("node1")))
	sum := SHA256([]byte("v1"))
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir(), "content", sum), []byte("tampered"), 0o600))
	_, err := s.Content(sum)
	require.ErrorContains(t, err, "is corrupt")
}

// Concurrent qmorch runs (separate lock file descriptions, as separate processes have) never
// lose each other's entries.
func TestManifestConcurrentWriters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, OpenState(dir).Record([]byte(fmt.Sprint(i)), entry(fmt.Sprintf("node%d", i))))
		}()
	}
	wg.Wait()
	m, err := OpenState(dir).Read()
	require.NoError(t, err)
	require.Len(t, m.Entries, 20)
}

func TestManifestEnvAndDefault(t *testing.T) {
	t.Setenv(StateDirEnv, "/tmp/from-env")
	require.Equal(t, "/tmp/from-env", OpenState("").Dir())
	require.Equal(t, "/x", OpenState("/x").Dir())
	t.Setenv(StateDirEnv, "")
	require.Equal(t, DefaultStateDir, OpenState("").Dir())
}

func TestDeployedEntries(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 0)
	rep := &Report{Results: []Result{
		{Node: "node1", Twin: "qm.node1", Unit: "nested.service", Path: nestedPath, Action: ActionDeployed},
		{Node: "node2", Twin: "qm.node2", Unit: "nested.service", Path: nestedPath, Action: ActionFailed},
		{Node: "node3", Twin: "qm.node3", Unit: "nested.service", Path: nestedPath, Action: ActionUnchanged},
		{Node: "", Path: "/root/x", Action: ActionInstalled},
	}}
	got := DeployedEntries(rep, "nested.container", at)
	require.Len(t, got, 2)
	require.Equal(t, "node1", got[0].Node)
	require.Equal(t, "node3", got[1].Node)
	require.Nil(t, DeployedEntries(&Report{DryRun: true, Results: rep.Results}, "nested.container", at))
}
