package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// conformanceDir finds the golden vectors made with the real BlueChi
// binaries: ../shared/conformance/bluechi-config beside the repository
// (CI puts a read-only copy of shared/ there).
func conformanceDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("QMORCH_BLUECHI_CONFORMANCE"); d != "" {
		return d
	}
	repoRoot, err := filepath.Abs("..")
	require.NoError(t, err)
	d := filepath.Join(repoRoot, "..", "shared", "conformance", "bluechi-config")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("BlueChi conformance vectors not found at %s (set QMORCH_BLUECHI_CONFORMANCE): %v", d, err)
	}
	return d
}

// conformanceCmd is a parsed cmd.txt.
type conformanceCmd struct {
	env        map[string]string
	program    Program
	configFile string
	agent      AgentFlags
	controller ControllerFlags
}

func parseCmd(t *testing.T, path string) conformanceCmd {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var words []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		words = strings.Fields(line)
		break
	}
	cmd := conformanceCmd{env: map[string]string{}}
	for len(words) > 0 && strings.Contains(words[0], "=") {
		k, v, _ := strings.Cut(words[0], "=")
		cmd.env[k] = v
		words = words[1:]
	}
	require.NotEmpty(t, words, "no program in %s", path)
	cmd.program = Program(words[0])
	require.Contains(t, []Program{ProgramAgent, ProgramController}, cmd.program)
	args := words[1:]
	for i := 0; i < len(args); i++ {
		opt, val := args[i], ""
		if long, v, ok := strings.Cut(opt, "="); ok && strings.HasPrefix(opt, "--") {
			opt, val = long, v
		} else if len(opt) > 2 && opt[0] == '-' && opt[1] != '-' {
			opt, val = opt[:2], opt[2:]
		} else {
			require.Less(t, i+1, len(args), "option %s without value", opt)
			i++
			val = args[i]
		}
		switch opt {
		case "-c", "--config":
			cmd.configFile = val // getopt: the last one wins
		case "-n", "--name":
			cmd.agent.Name = val
		case "-H", "--host":
			cmd.agent.Host = val
		case "-a", "--address":
			cmd.agent.Address = val
		case "-i", "--interval":
			cmd.agent.HeartbeatInterval = val
		case "-p", "--port":
			cmd.agent.Port, cmd.controller.Port = val, val
		default:
			t.Fatalf("%s: unsupported option %s", path, opt)
		}
	}
	return cmd
}

// parseDump reads cfg_dump text into section -> key -> value, plus the
// section order.
func parseDump(t *testing.T, text string) (map[string]map[string]string, []string) {
	t.Helper()
	out := map[string]map[string]string{}
	var order []string
	var cur map[string]string
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case line == "":
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") && !strings.Contains(line, "="):
			name := line[1 : len(line)-1]
			cur = map[string]string{}
			out[name] = cur
			order = append(order, name)
		default:
			require.NotNil(t, cur, "key outside a section in dump: %q", line)
			k, v, ok := strings.Cut(line, "=")
			require.True(t, ok, "dump line without '=': %q", line)
			_, dup := cur[k]
			require.False(t, dup, "key %q twice in one dump section", k)
			cur[k] = v
		}
	}
	return out, order
}

func readNodes(t *testing.T, path string) ([]string, bool) {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	require.NoError(t, err)
	defer f.Close()
	nodes := []string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sc.Text() == "" {
			continue
		}
		var n string
		require.NoError(t, json.Unmarshal(sc.Bytes(), &n), "nodes.txt line %q", sc.Text())
		nodes = append(nodes, n)
	}
	require.NoError(t, sc.Err())
	return nodes, true
}

var (
	noHostRe = regexp.MustCompile(`No controller host specified for agent '([^']*)'`)
	portRe   = regexp.MustCompile(`Waiting for connection requests on port (\d+)\.\.\.`)
)

func TestConformance(t *testing.T) {
	root := conformanceDir(t)
	var cases []string
	for _, prog := range []string{"agent", "controller"} {
		entries, err := os.ReadDir(filepath.Join(root, prog))
		require.NoError(t, err)
		for _, e := range entries {
			if e.IsDir() {
				cases = append(cases, filepath.Join(prog, e.Name()))
			}
		}
	}
	sort.Strings(cases)
	require.NotEmpty(t, cases)

	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(root, name)
			cmd := parseCmd(t, filepath.Join(dir, "cmd.txt"))
			expected, err := os.ReadFile(filepath.Join(dir, "expected.txt"))
			require.NoError(t, err)
			head, body, _ := strings.Cut(string(expected), "\n")

			cfg, err := Load(cmd.program, LoadOptions{
				FS:         os.DirFS(dir),
				Hostname:   "testhost",
				Env:        cmd.env,
				ConfigFile: cmd.configFile,
			})

			switch head {
			case "result: error":
				require.Error(t, err)
				var pe *ParseError
				require.ErrorAs(t, err, &pe)
				exitLine, rest, _ := strings.Cut(body, "\n")
				require.Equal(t, "exit: 1", exitLine)
				stderr, ok := strings.CutPrefix(rest, "stderr:\n")
				if !ok {
					stderr = strings.TrimPrefix(rest, "stderr:")
				}
				require.Equal(t, stderr, pe.Stderr)
				return
			case "result: no-dump":
				require.NoError(t, err)
				require.False(t, cfg.DumpVisible(), "BlueChi showed no dump, but these settings would show it:\n%s", cfg.Dump())
				return
			case "result: config":
			default:
				t.Fatalf("unknown result line %q", head)
			}

			require.NoError(t, err)
			require.True(t, cfg.DumpVisible(), "the dump would be hidden by the log settings")
			want, wantOrder := parseDump(t, body)
			got, gotOrder := parseDump(t, cfg.Dump())
			require.Equal(t, wantOrder, gotOrder, "sections")
			require.Equal(t, want, got)

			stderrTxt, _ := os.ReadFile(filepath.Join(dir, "stderr.txt"))
			if cmd.program == ProgramAgent {
				a, err := cfg.Agent(cmd.agent)
				if m := noHostRe.FindSubmatch(stderrTxt); m != nil {
					require.NoError(t, err)
					require.Equal(t, string(m[1]), a.NodeName)
					require.Empty(t, a.ControllerHost)
					require.Empty(t, a.ControllerAddress)
				}
				return
			}
			cc, err := cfg.Controller(cmd.controller)
			require.NoError(t, err)
			if m := portRe.FindSubmatch(stderrTxt); m != nil {
				port, _ := strconv.Atoi(string(m[1]))
				require.Equal(t, uint16(port), cc.ControllerPort)
			}
			nodes, served := readNodes(t, filepath.Join(dir, "nodes.txt"))
			require.Equal(t, served, cc.Serves(), "nodes.txt exists iff the controller serves the bus")
			if served {
				if nodes == nil {
					nodes = []string{}
				}
				got := cc.Nodes
				if got == nil {
					got = []string{}
				}
				require.Equal(t, nodes, got, "ListNodes order")
			}
		})
	}
}
