// Package plans checks the tmt metadata (.fmf/version, tests/plans/*.fmf, every main.fmf): every
// fmf file is valid YAML, every script a plan calls exists and is executable, and the test
// scripts the plans run are exactly the test scripts `make test` (CI) runs.
package plans

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

// fmfTest is a test from a main.fmf (or NAME.fmf) with a `test` key.
type fmfTest struct {
	Name   string // fmf name: /tests/e2e
	File   string // repo-relative fmf file
	Script string // repo-relative script its command runs
}

// plan is an fmf node with an `execute` key.
type plan struct {
	Name    string
	File    string
	Tests   []string // names of the tests its discover phases select
	Scripts []string // repo-relative scripts of its prepare/finish shell phases
}

// fmfTree is the parsed metadata of the repository.
type fmfTree struct {
	files map[string]map[string]any // repo-relative path -> document
	tests map[string]fmfTest        // by name
	plans []plan
}

func skipDir(rel string) bool {
	switch rel {
	case ".git", "vendor", "dist", "bin", "node_modules":
		return true
	}
	return false
}

// fmfName is the fmf node name of a file: /dir for dir/main.fmf, /dir/x for dir/x.fmf.
func fmfName(rel string) string {
	dir, base := path.Split(filepath.ToSlash(rel))
	name := "/" + strings.TrimSuffix(dir, "/")
	if base != "main.fmf" {
		name = path.Join(name, strings.TrimSuffix(base, ".fmf"))
	}
	return name
}

func loadTree(t *testing.T, root string) *fmfTree {
	t.Helper()
	tree := &fmfTree{files: map[string]map[string]any{}, tests: map[string]fmfTest{}}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() && skipDir(rel) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".fmf") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Errorf("%s: not valid YAML: %v", rel, err)
			return nil
		}
		if len(doc) == 0 {
			t.Errorf("%s: empty fmf file", rel)
		}
		tree.files[rel] = doc
		return nil
	})
	require.NoError(t, err)
	for rel, doc := range tree.files {
		name := fmfName(rel)
		if cmd, ok := doc["test"]; ok {
			s, ok := cmd.(string)
			if !ok || strings.TrimSpace(s) == "" {
				t.Errorf("%s: test must be a command string, got %#v", rel, cmd)
				continue
			}
			// tmt runs the command in the test's directory.
			script := filepath.ToSlash(filepath.Join(filepath.Dir(rel), strings.Fields(s)[0]))
			tree.tests[name] = fmfTest{Name: name, File: rel, Script: script}
		}
		if _, ok := doc["execute"]; ok {
			tree.plans = append(tree.plans, loadPlan(t, rel, name, doc))
		}
	}
	sort.Slice(tree.plans, func(i, j int) bool { return tree.plans[i].Name < tree.plans[j].Name })
	return tree
}

// phases returns a step's phases: a step is one mapping or a list of them.
func phases(step any) []map[string]any {
	switch v := step.(type) {
	case map[string]any:
		return []map[string]any{v}
	case []any:
		var out []map[string]any
		for _, p := range v {
			if m, ok := p.(map[string]any); ok {
				out = append(out, m)
			}
		}
		return out
	}
	return nil
}

func stringList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, s := range v {
			if str, ok := s.(string); ok {
				out = append(out, str)
			}
		}
		return out
	}
	return nil
}

// scriptPath matches a repository script in a shell command: ./x/y.sh, tests/x/y.sh.
var scriptPath = regexp.MustCompile(`(?:^|[\s;&|(])(?:\./)?((?:[\w.-]+/)*[\w.-]+\.sh)\b`)

func loadPlan(t *testing.T, rel, name string, doc map[string]any) plan {
	t.Helper()
	p := plan{Name: name, File: rel}
	discover := phases(doc["discover"])
	if len(discover) == 0 {
		t.Errorf("%s: plan has no discover phase", rel)
	}
	for _, ph := range discover {
		if ph["how"] != "fmf" {
			t.Errorf("%s: discover how %v: only fmf is checked", rel, ph["how"])
		}
		tests := stringList(ph["test"])
		if len(tests) == 0 {
			t.Errorf("%s: discover phase %v selects no tests by name", rel, ph["name"])
		}
		p.Tests = append(p.Tests, tests...)
	}
	for _, step := range []string{"prepare", "finish"} {
		for _, ph := range phases(doc[step]) {
			if ph["how"] != "shell" {
				continue
			}
			for _, cmd := range stringList(ph["script"]) {
				for _, m := range scriptPath.FindAllStringSubmatch(cmd, -1) {
					p.Scripts = append(p.Scripts, m[1])
				}
			}
		}
	}
	return p
}

// selected returns the tests a plan's name patterns select (tmt: regular expression search).
func (tree *fmfTree) selected(t *testing.T, p plan) []fmfTest {
	t.Helper()
	var out []fmfTest
	for _, pat := range p.Tests {
		re, err := regexp.Compile(pat)
		require.NoError(t, err, "%s: test pattern %q", p.File, pat)
		n := 0
		for _, name := range slices.Sorted(maps.Keys(tree.tests)) {
			if re.MatchString(name) {
				out = append(out, tree.tests[name])
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s: test pattern %q selects no test", p.File, pat)
		}
	}
	return out
}

// requireRunnable checks that a repo-relative script exists, is executable and parses.
func requireRunnable(t *testing.T, root, script, by string) {
	t.Helper()
	p := filepath.Join(root, script)
	st, err := os.Stat(p)
	if err != nil {
		t.Errorf("%s calls %s: %v", by, script, err)
		return
	}
	if !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s calls %s: not an executable file (mode %v)", by, script, st.Mode())
		return
	}
	if out, err := exec.Command("bash", "-n", p).CombinedOutput(); err != nil {
		t.Errorf("%s calls %s: bash -n: %v\n%s", by, script, err, out)
	}
}

// ciScripts lists the repository scripts `make test` runs (make -n: nothing is executed).
func ciScripts(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("make", "-n", "test")
	cmd.Dir = root
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "MAKEFLAGS=") && !strings.HasPrefix(e, "MFLAGS=") && !strings.HasPrefix(e, "MAKELEVEL=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "make -n test: %s", stderr.String())
	seen := map[string]bool{}
	for _, m := range scriptPath.FindAllStringSubmatch(string(out), -1) {
		seen[m[1]] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

func TestFmfVersion(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".fmf", "version"))
	require.NoError(t, err)
	require.Equal(t, "1", strings.TrimSpace(string(data)))
}

func TestPlansCallRunnableScripts(t *testing.T) {
	tree := loadTree(t, repoRoot)
	require.NotEmpty(t, tree.plans, "no tmt plans found")
	names := make([]string, 0, len(tree.plans))
	for _, p := range tree.plans {
		names = append(names, p.Name)
	}
	require.Subset(t, names, []string{"/tests/plans/local", "/tests/plans/multihost"})
	for _, p := range tree.plans {
		t.Run(strings.TrimPrefix(p.Name, "/"), func(t *testing.T) {
			for _, ft := range tree.selected(t, p) {
				requireRunnable(t, repoRoot, ft.Script, ft.File)
			}
			for _, s := range p.Scripts {
				requireRunnable(t, repoRoot, s, p.File)
			}
		})
	}
}

// The test scripts the plans run are exactly the test scripts CI runs: every fmf test is in some
// plan, and `make test` runs the script of every fmf test and no other script that lives beside
// a main.fmf.
func TestPlansRunWhatCIRuns(t *testing.T) {
	tree := loadTree(t, repoRoot)
	planned := map[string]bool{}
	for _, p := range tree.plans {
		for _, ft := range tree.selected(t, p) {
			planned[ft.Script] = true
		}
	}
	var all []string
	for _, ft := range tree.tests {
		all = append(all, ft.Script)
		if !planned[ft.Script] {
			t.Errorf("test %s (%s) is in no plan", ft.Name, ft.File)
		}
	}
	sort.Strings(all)
	all = slices.Compact(all)

	var ciTests []string
	for _, s := range ciScripts(t, repoRoot) {
		if _, err := os.Stat(filepath.Join(repoRoot, filepath.Dir(s), "main.fmf")); err == nil {
			ciTests = append(ciTests, s)
		}
	}
	require.Equal(t, all, ciTests,
		"the fmf tests' scripts (left) must be exactly the test scripts `make test` runs (right, from make -n test)")
}

func TestFmfName(t *testing.T) {
	tests := []struct{ rel, want string }{
		{"tests/e2e/main.fmf", "/tests/e2e"},
		{"tests/plans/local.fmf", "/tests/plans/local"},
		{"main.fmf", "/"},
	}
	for _, tt := range tests {
		t.Run(tt.rel, func(t *testing.T) {
			require.Equal(t, tt.want, fmfName(tt.rel))
		})
	}
}
