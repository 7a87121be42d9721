package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// VersionOutput is what `qmorch version -o json` prints (stable within apiVersion "qmorch/v1").
//
//	{"apiVersion": "qmorch/v1", "kind": "Version", "version": "v0.1.0", "commit": "1a2b3c4",
//	 "goVersion": "go1.26.8", "platform": "linux/amd64"}
type VersionOutput struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Version    string `json:"version"`
	Commit     string `json:"commit"`
	GoVersion  string `json:"goVersion"`
	Platform   string `json:"platform"`
}

// VersionOptions holds `qmorch version`'s flags.
type VersionOptions struct {
	Output string

	d deps
}

// NewCmdVersion is `qmorch version`.
func NewCmdVersion(d deps) *cobra.Command {
	o := &VersionOptions{Output: "table", d: d}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print qmorch's version, commit and Go version",
		Long: `version prints the release (git describe of the source, or the VERSION file of a release
tarball), the commit it was built from, and the Go toolchain and platform of the binary.`,
		Example: `  qmorch version
  qmorch version -o json`,
		Args: cobra.NoArgs,
		RunE: runE(o),
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", o.Output, outputHelp)
	return cmd
}

// Complete has nothing to do: version takes no arguments.
func (o *VersionOptions) Complete([]string) error { return nil }

// Validate checks the flags.
func (o *VersionOptions) Validate() error { return validateOutput(o.Output) }

// Run prints the version information.
func (o *VersionOptions) Run(context.Context) error {
	v := versionInfo()
	w := o.d.streams.Out
	if o.Output == "json" {
		return writeJSON(w, v)
	}
	_, err := fmt.Fprintf(w, "qmorch %s\ncommit:   %s\ngo:       %s\nplatform: %s\n",
		v.Version, v.Commit, v.GoVersion, v.Platform)
	return err
}

func versionInfo() VersionOutput {
	return VersionOutput{
		APIVersion: apiVersion,
		Kind:       "Version",
		Version:    version,
		Commit:     commit,
		GoVersion:  runtime.Version(),
		Platform:   runtime.GOOS + "/" + runtime.GOARCH,
	}
}
