package main

import (
	"github.com/spf13/cobra"
)

// NewCmdCompletion is `qmorch completion SHELL`: cobra's generated completion scripts, as an
// explicit command so that it has its own help and man page (cobra then adds no default one).
func NewCmdCompletion(_ deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "completion (bash|zsh|fish|powershell)",
		Short: "Print the shell completion script for bash, zsh, fish or powershell",
		Long: `completion prints a script that makes the shell complete qmorch's commands, flags and arguments.
The RPM installs them for every user (bash: /usr/share/bash-completion/completions/qmorch,
zsh: /usr/share/zsh/site-functions/_qmorch, fish: /usr/share/fish/vendor_completions.d/qmorch.fish).

bash needs the bash-completion package; zsh needs "autoload -U compinit; compinit" in ~/.zshrc.`,
		Example: `  # this shell only
  source <(qmorch completion bash)

  # every new bash of this user
  qmorch completion bash > ~/.local/share/bash-completion/completions/qmorch

  # zsh and fish
  qmorch completion zsh > "${fpath[1]}/_qmorch"
  qmorch completion fish > ~/.config/fish/completions/qmorch.fish`,
		ValidArgs:             []string{"bash", "zsh", "fish", "powershell"},
		Args:                  cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, out := cmd.Root(), cmd.OutOrStdout()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(out, true)
			case "zsh":
				return root.GenZshCompletion(out)
			case "fish":
				return root.GenFishCompletion(out, true)
			default:
				return root.GenPowerShellCompletionWithDesc(out)
			}
		},
	}
	return cmd
}
