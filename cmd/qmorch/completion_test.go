package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// buildQmorchBinary builds this command into a temporary directory (with version and commit set
// the way the Makefile does) and returns the directory.
func buildQmorchBinary(t *testing.T, version, commit string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath",
		"-ldflags", "-X main.version="+version+" -X main.commit="+commit,
		"-o", filepath.Join(dir, "qmorch"), ".")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return dir
}

// shellRun runs script with shell (bash -c ...) with binDir first on PATH.
func shellRun(t *testing.T, binDir, shell, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell, "-c", script)
	cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// bashCompletionLib is the bash-completion package's library: cobra's bash script uses its
// _get_comp_words_by_ref when it completes (loading the script does not need it).
const bashCompletionLib = "/usr/share/bash-completion/bash_completion"

// bashCompleteScript is what bash does on TAB with the cursor at the end of words (the last word
// may be empty): it calls qmorch's completion function and prints the candidates.
func bashCompleteScript(words ...string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = "'" + w + "'"
	}
	return fmt.Sprintf(`source %s || exit 1
source <(qmorch completion bash) || exit 1
COMP_LINE=%q; COMP_WORDS=(%s); COMP_CWORD=%d; COMP_POINT=${#COMP_LINE}; COMP_TYPE=9
__start_qmorch qmorch
printf '%%s\n' "${COMPREPLY[@]}"`, bashCompletionLib, strings.Join(words, " "), strings.Join(quoted, " "), len(words)-1)
}

func TestCompletionScripts(t *testing.T) {
	bin := buildQmorchBinary(t, "v0.0.0-test", "0000000")
	tests := []struct {
		name   string
		shell  string
		script string
		needs  string   // a file the case needs (skipped without it)
		want   []string // lines the output must contain
	}{
		{
			name:   "bash loads the script (acceptance 3)",
			shell:  "bash",
			script: `source <(qmorch completion bash) && complete -p qmorch`,
			want:   []string{"complete -o default -F __start_qmorch qmorch"},
		},
		{
			name:   "qmorch answers bash's completion requests",
			shell:  "bash",
			script: `qmorch __complete ver; qmorch __complete completion ''`,
			want:   []string{"version\tPrint qmorch's version, commit and Go version", "bash", "zsh", "fish", "powershell"},
		},
		{
			name:   "bash completes commands",
			shell:  "bash",
			script: bashCompleteScript("qmorch", "ver"),
			needs:  bashCompletionLib,
			want:   []string{"version"},
		},
		{
			name:   "bash completes completion's shells",
			shell:  "bash",
			script: bashCompleteScript("qmorch", "completion", ""),
			needs:  bashCompletionLib,
			want:   []string{"bash", "zsh", "fish", "powershell"},
		},
		{
			name:   "bash completes flags",
			shell:  "bash",
			script: bashCompleteScript("qmorch", "version", "--out"),
			needs:  bashCompletionLib,
			want:   []string{"--output"},
		},
		{name: "zsh script parses", shell: "zsh", script: `qmorch completion zsh > "$TMPDIR/_qmorch" && zsh -n "$TMPDIR/_qmorch" && echo ok`, want: []string{"ok"}},
		{name: "fish script parses", shell: "fish", script: `qmorch completion fish | fish --no-execute && echo ok`, want: []string{"ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := exec.LookPath(tt.shell); err != nil {
				t.Skipf("%s not installed", tt.shell)
			}
			if tt.needs != "" {
				if _, err := os.Stat(tt.needs); err != nil {
					t.Skipf("%s not installed (bash-completion package)", tt.needs)
				}
			}
			t.Setenv("TMPDIR", t.TempDir())
			out, err := shellRun(t, bin, tt.shell, tt.script)
			require.NoError(t, err, "output: %s", out)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			for _, w := range tt.want {
				require.Contains(t, lines, w, "output: %s", out)
			}
		})
	}
}

func TestCompletionCommand(t *testing.T) {
	tests := []struct {
		shell string
		want  string // a line the script must contain
	}{
		{"bash", "complete -o default -F __start_qmorch qmorch"},
		{"zsh", "#compdef qmorch"},
		{"fish", "complete -c qmorch -e"},
		{"powershell", "Register-ArgumentCompleter -CommandName 'qmorch' -ScriptBlock ${__qmorchCompleterBlock}"},
	}
	for _, tt := range tests {
		t.Run(tt.shell, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), []string{"completion", tt.shell}, deps{streams: IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}})
			require.Equal(t, ExitOK, code, errOut.String())
			require.Contains(t, out.String(), tt.want)
		})
	}
	t.Run("unknown shell is a usage error", func(t *testing.T) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"completion", "tcsh"}, deps{streams: IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}})
		require.Equal(t, ExitUsage, code)
		require.Empty(t, out.String())
		require.Contains(t, errOut.String(), "tcsh")
	})
}

func TestVersionBinary(t *testing.T) {
	bin := buildQmorchBinary(t, "v1.2.3-4-gabcdef0", "abcdef0")
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{"table", []string{"version"}, func(t *testing.T, out string) {
			require.Contains(t, out, "qmorch v1.2.3-4-gabcdef0\n")
			require.Contains(t, out, "commit:   abcdef0\n")
			require.Contains(t, out, "go:       go1.")
		}},
		{"json", []string{"version", "-o", "json"}, func(t *testing.T, out string) {
			var v VersionOutput
			require.NoError(t, json.Unmarshal([]byte(out), &v), out)
			require.Equal(t, "v1.2.3-4-gabcdef0", v.Version)
			require.Equal(t, "abcdef0", v.Commit)
			require.True(t, strings.HasPrefix(v.GoVersion, "go1."), v.GoVersion)
			require.Equal(t, "Version", v.Kind)
		}},
		{"--version flag", []string{"--version"}, func(t *testing.T, out string) {
			require.Contains(t, out, "v1.2.3-4-gabcdef0 (abcdef0)")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(filepath.Join(bin, "qmorch"), tt.args...).Output()
			require.NoError(t, err)
			tt.check(t, string(out))
		})
	}
}

func TestVersionCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"table", []string{"version"}, ExitOK, "qmorch " + version + "\ncommit:   " + commit + "\n", ""},
		{"json", []string{"version", "-o", "json"}, ExitOK, `"kind": "Version"`, ""},
		{"bad output", []string{"version", "-o", "yaml"}, ExitUsage, "", `--output must be table or json, not "yaml"`},
		{"no arguments", []string{"version", "extra"}, ExitUsage, "", "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), tt.args, deps{streams: IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}})
			require.Equal(t, tt.wantCode, code, errOut.String())
			if tt.wantOut == "" {
				require.Empty(t, out.String())
			} else {
				require.Contains(t, out.String(), tt.wantOut)
			}
			require.Contains(t, errOut.String(), tt.wantErr)
		})
	}
}
