package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/qmorch/qmorch/agent"
	"github.com/qmorch/qmorch/deploy"
)

// configError is a configuration BlueChi would refuse: exit code 2 (it wraps deploy.ErrInvalid,
// which main maps to ExitUsage) with the message kept as is.
type configError struct{ err error }

func (e *configError) Error() string   { return e.err.Error() }
func (e *configError) Unwrap() []error { return []error{e.err, deploy.ErrInvalid} }

// NewCmdConfig is `qmorch config`.
func NewCmdConfig(d deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect BlueChi agent and controller configuration",
		Example: `  qmorch config show --explain
  qmorch config show --controller --root /mnt/image -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(NewCmdConfigShow(d))
	return cmd
}

// ConfigShowOptions holds `qmorch config show`'s flags.
type ConfigShowOptions struct {
	Root       string
	Agent      bool
	Controller bool
	Explain    bool
	Hostname   string
	Env        []string
	Output     string

	// Filled by Complete.
	env map[string]string

	d deps
}

// NewCmdConfigShow is `qmorch config show`.
func NewCmdConfigShow(d deps) *cobra.Command {
	o := &ConfigShowOptions{Root: "/", Output: "table", d: d}
	cmd := &cobra.Command{
		Use:   "show [--agent|--controller] [--root DIR] [--explain]",
		Short: "Print the effective configuration as bluechi-agent or bluechi-controller computes it",
		Long: `show merges the built-in defaults, /usr/share/bluechi-agent/config/agent.conf, /etc/bluechi/agent.conf,
/etc/bluechi/agent.conf.d/*.conf (byte order) and the BC_LOG_* environment given with --env, with
BlueChi's exact parsing rules (controller: the same with controller.conf), and prints the result.

--explain adds, above every key, the file and line that set it and the earlier values it replaced.
Files are read inside --root: symlinks resolve inside it (absolute ones too) and may not lead out.

Problems BlueChi accepts silently (the same key twice in a file, unknown keys, keys in a section it
never reads, a drop-in it skips whole, AllowedNodeNames entries with spaces, a bad LogLevel) are
warnings on stderr (JSON: "warnings"). Problems BlueChi exits on (syntax error, over-long line, a
broken last drop-in, a bad port) are errors naming file and line; exit code 2.`,
		Example: `  # the agent configuration of this host, with where every value comes from
  qmorch config show --explain

  # the controller configuration of an image tree, as JSON
  qmorch config show --controller --root /mnt/image -o json

  # as the agent would see it with BC_LOG_LEVEL=DEBUG and hostname node1
  qmorch config show --root /mnt/image --hostname node1 --env BC_LOG_LEVEL=DEBUG`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.Root, "root", o.Root, "read the configuration of the system tree at this directory")
	f.BoolVar(&o.Agent, "agent", false, "the agent configuration (default)")
	f.BoolVar(&o.Controller, "controller", false, "the controller configuration")
	f.BoolVar(&o.Explain, "explain", false, "show for every key the file:line that set it and the values it replaced")
	f.StringVar(&o.Hostname, "hostname", "", "hostname for the default NodeName (default: this host's for --root /, else the tree's /etc/hostname)")
	f.StringArrayVar(&o.Env, "env", nil, "NAME=VALUE of the agent's environment (BC_LOG_LEVEL, BC_LOG_TARGET, BC_LOG_IS_QUIET); repeatable")
	f.StringVarP(&o.Output, "output", "o", o.Output, outputHelp)
	return cmd
}

var configEnvNames = []string{"BC_LOG_LEVEL", "BC_LOG_TARGET", "BC_LOG_IS_QUIET"}

// Complete turns --env into the environment map (later values win, like the shell).
func (o *ConfigShowOptions) Complete([]string) error {
	o.env = map[string]string{}
	for _, e := range o.Env {
		if k, v, ok := strings.Cut(e, "="); ok {
			o.env[k] = v
		}
	}
	return nil
}

// Validate checks the flags (no I/O).
func (o *ConfigShowOptions) Validate() error {
	if err := validateOutput(o.Output); err != nil {
		return err
	}
	switch {
	case o.Agent && o.Controller:
		return usageErrorf("--agent and --controller exclude each other")
	case o.Root == "":
		return usageErrorf("--root must not be empty")
	}
	for _, e := range o.Env {
		name, _, ok := strings.Cut(e, "=")
		if !ok || !containsString(configEnvNames, name) {
			return usageErrorf("--env %q: want NAME=VALUE with NAME one of %s", e, strings.Join(configEnvNames, ", "))
		}
	}
	return nil
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (o *ConfigShowOptions) program() agent.Program {
	if o.Controller {
		return agent.ProgramController
	}
	return agent.ProgramAgent
}

// Run loads and prints the configuration.
func (o *ConfigShowOptions) Run(context.Context) error {
	rfs, err := deploy.OpenRootFS(o.Root)
	if err != nil {
		return &configError{fmt.Errorf("--root: %w", err)}
	}
	defer rfs.Close()
	host, hostSrc := o.Hostname, "--hostname"
	if host == "" {
		host, hostSrc = deploy.RootHostname(rfs)
	}
	prog := o.program()
	cfg, err := agent.Load(prog, agent.LoadOptions{FS: rfs, Hostname: host, Env: o.env})
	if err != nil {
		var pe *agent.ParseError
		if errors.As(err, &pe) && pe.Stderr != "" {
			err = fmt.Errorf("%w\n%s would print: %s", err, prog, strings.TrimRight(pe.Stderr, "\n"))
		}
		if errors.Is(err, deploy.ErrEscapesRoot) {
			err = fmt.Errorf("%w (symlinks resolve inside --root and may not lead out of it)", err)
		}
		return &configError{err}
	}
	warnings := append([]agent.Warning{}, cfg.Warnings...)
	var fatal []string
	if prog == agent.ProgramController {
		cc, err := cfg.Controller(agent.ControllerFlags{})
		if err != nil {
			fatal = append(fatal, err.Error())
		} else {
			warnings = append(warnings, cc.Warnings...)
			if !cc.Serves() {
				fatal = append(fatal, "UseTCP and UseUDS are both false: bluechi-controller exits (no connection request handler)")
			}
		}
	} else {
		ac, err := cfg.Agent(agent.AgentFlags{})
		switch {
		case err != nil:
			fatal = append(fatal, err.Error())
		case ac.NodeName == "":
			where := "no hostname known"
			if e := cfg.Lookup(agent.SectionAgent, "NodeName"); e != nil && e.Origin.Kind == agent.OriginFile {
				where = "emptied at " + e.Origin.String()
			}
			fatal = append(fatal, "NodeName is empty ("+where+"): bluechi-agent exits with \"No agent name specified\"; set NodeName= or pass --hostname")
		}
	}

	out := configOutput(cfg, host, hostSrc, warnings, fatal)
	if o.Output == "json" {
		if err := writeJSON(o.d.streams.Out, out); err != nil {
			return err
		}
	} else if err := printConfig(o.d.streams.Out, out, o.Explain); err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintf(o.d.streams.ErrOut, "warning: %s\n", w)
	}
	if len(fatal) > 0 {
		return &configError{errors.New(strings.Join(fatal, "; "))}
	}
	return nil
}

// ConfigOutput is the JSON document `qmorch config show -o json` prints (apiVersion qmorch/v1;
// fields are only ever added):
//
//	{
//	  "apiVersion": "qmorch/v1", "kind": "EffectiveConfig",
//	  "program": "bluechi-agent",            // or "bluechi-controller"
//	  "hostname": "node1", "hostnameSource": "this host", // "--hostname", "/etc/hostname" or ""
//	  "files": [{"path": "/etc/bluechi/agent.conf", "role": "main", "status": "loaded"}], // load order;
//	                                         // status loaded | missing | directory | skipped
//	  "sections": [{"name": "bluechi-agent", "keys": [
//	    {"key": "NodeName", "value": "node1",  // "" = unset (Key=)
//	     "origin": {"kind": "file", "path": "/etc/bluechi/agent.conf.d/50-name.conf", "lines": [1]},
//	     "replaced": [{"value": "testhost", "origin": {"kind": "builtin"}}]}]}], // oldest first
//	  "warnings": [{"kind": "duplicate-key", "path": "...", "line": 3, "message": "..."}],
//	  "errors": ["..."]                      // present when BlueChi would exit after reading (exit code 2)
//	}
//
// A file BlueChi cannot parse prints nothing on stdout: the error (file:line) goes to stderr, exit 2.
type ConfigOutput struct {
	APIVersion     string          `json:"apiVersion"`
	Kind           string          `json:"kind"`
	Program        string          `json:"program"`
	Hostname       string          `json:"hostname"`
	HostnameSource string          `json:"hostnameSource"`
	Files          []ConfigFile    `json:"files"`
	Sections       []ConfigSection `json:"sections"`
	Warnings       []ConfigWarning `json:"warnings"`
	Errors         []string        `json:"errors,omitempty"`
}

// ConfigFile is one file of the load order.
type ConfigFile struct {
	Path   string `json:"path"`
	Role   string `json:"role"`
	Status string `json:"status"`
}

// ConfigSection is one section of the effective configuration.
type ConfigSection struct {
	Name string      `json:"name"`
	Keys []ConfigKey `json:"keys"`
}

// ConfigKey is one key with its provenance.
type ConfigKey struct {
	Key      string             `json:"key"`
	Value    string             `json:"value"`
	Origin   ConfigOrigin       `json:"origin"`
	Replaced []ConfigAssignment `json:"replaced,omitempty"`
}

// ConfigAssignment is an earlier value of a key.
type ConfigAssignment struct {
	Value  string       `json:"value"`
	Origin ConfigOrigin `json:"origin"`
}

// ConfigOrigin says where a value came from: kind builtin, file (path, lines) or env (path = variable).
type ConfigOrigin struct {
	Kind  string `json:"kind"`
	Path  string `json:"path,omitempty"`
	Lines []int  `json:"lines,omitempty"`
}

// ConfigWarning is something BlueChi accepts silently that is almost always a mistake.
type ConfigWarning struct {
	Kind    string `json:"kind"`
	Path    string `json:"path,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
}

func origin(o agent.Origin) ConfigOrigin {
	return ConfigOrigin{Kind: string(o.Kind), Path: o.Path, Lines: o.Lines}
}

func configOutput(cfg *agent.Config, host, hostSrc string, warnings []agent.Warning, fatal []string) ConfigOutput {
	out := ConfigOutput{APIVersion: apiVersion, Kind: "EffectiveConfig", Program: string(cfg.Program),
		Hostname: host, HostnameSource: hostSrc, Files: []ConfigFile{}, Sections: []ConfigSection{},
		Warnings: []ConfigWarning{}, Errors: fatal}
	for _, f := range cfg.Files {
		out.Files = append(out.Files, ConfigFile{Path: f.Path, Role: f.Role, Status: f.Status})
	}
	for _, s := range cfg.Sections() {
		cs := ConfigSection{Name: s, Keys: []ConfigKey{}}
		for _, e := range cfg.Entries(s) {
			k := ConfigKey{Key: e.Key, Value: e.Value, Origin: origin(e.Origin)}
			for _, r := range e.Replaced {
				k.Replaced = append(k.Replaced, ConfigAssignment{Value: r.Value, Origin: origin(r.Origin)})
			}
			cs.Keys = append(cs.Keys, k)
		}
		out.Sections = append(out.Sections, cs)
	}
	for _, w := range warnings {
		out.Warnings = append(out.Warnings, ConfigWarning{Kind: string(w.Kind), Path: w.Path, Line: w.Line, Message: w.Msg})
	}
	return out
}

// originText is "path:1,4", "built-in default" or "env NAME".
func originText(o ConfigOrigin) string {
	switch o.Kind {
	case string(agent.OriginBuiltin):
		return "built-in default"
	case string(agent.OriginEnv):
		return "env " + o.Path
	}
	if len(o.Lines) == 0 {
		return o.Path
	}
	lines := make([]string, len(o.Lines))
	for i, l := range o.Lines {
		lines[i] = strconv.Itoa(l)
	}
	return o.Path + ":" + strings.Join(lines, ",")
}

// printConfig prints the configuration in BlueChi's INI syntax (it reads back as the same
// configuration: explanations are whole-line comments). With explain, every key is preceded
// by where it was set and what it replaced, like systemd-analyze cat-config.
func printConfig(w io.Writer, out ConfigOutput, explain bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Effective %s configuration", out.Program)
	if out.Hostname != "" {
		fmt.Fprintf(&b, " (hostname %q, from %s)", out.Hostname, out.HostnameSource)
	}
	b.WriteString("\n")
	if explain {
		b.WriteString("# Files, in load order:\n")
		for _, f := range out.Files {
			fmt.Fprintf(&b, "#   %-9s %-8s %s\n", f.Status, f.Role, f.Path)
		}
	}
	for _, s := range out.Sections {
		fmt.Fprintf(&b, "\n[%s]\n", s.Name)
		for _, k := range s.Keys {
			if explain {
				fmt.Fprintf(&b, "# %s\n", originText(k.Origin))
				for i := len(k.Replaced) - 1; i >= 0; i-- {
					r := k.Replaced[i]
					fmt.Fprintf(&b, "#   replaced %q (%s)\n", r.Value, originText(r.Origin))
				}
			}
			if k.Value == "" && explain {
				b.WriteString("# (unset)\n")
			}
			fmt.Fprintf(&b, "%s=%s\n", k.Key, k.Value)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
