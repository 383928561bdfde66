package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh or fish)",
		ArgsUsage: "SHELL",
		Description: `Prints a script that completes dalle2's commands and flags in SHELL (bash, zsh or
fish). The bash and zsh scripts ask dalle2 itself (urfave/cli's
--generate-bash-completion), so they follow the installed version; where nothing
matches they fall back to file names.

Examples:
   source <(dalle2 completion bash)                      # this shell only
   dalle2 completion bash > ~/.local/share/bash-completion/completions/dalle2
   dalle2 completion zsh > "${fpath[1]}/_dalle2"
   dalle2 completion fish > ~/.config/fish/completions/dalle2.fish`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("want one SHELL (bash, zsh or fish), got %d arguments", c.NArg())
			}
			var script string
			switch sh := c.Args().First(); sh {
			case "bash":
				script = bashCompletion
			case "zsh":
				script = zshCompletion
			case "fish":
				s, err := c.App.ToFishCompletion()
				if err != nil {
					return err
				}
				script = s
			default:
				return usagef("unknown shell %q: want bash, zsh or fish", sh)
			}
			_, err := fmt.Fprint(c.App.Writer, strings.ReplaceAll(script, "PROG", c.App.Name))
			return err
		},
		BashComplete: func(c *cli.Context) {
			for _, s := range []string{"bash", "zsh", "fish"} {
				fmt.Fprintln(c.App.Writer, s)
			}
		},
	}
}

// bashCompletion is urfave/cli v2's autocomplete/bash_autocomplete with the
// program name filled in (PROG is replaced).
const bashCompletion = `# bash completion for PROG; load with: source <(PROG completion bash)
_PROG_init_completion() {
  COMPREPLY=()
  _get_comp_words_by_ref "$@" cur prev words cword
}

_PROG_bash_autocomplete() {
  if [[ "${COMP_WORDS[0]}" != "source" ]]; then
    local cur opts base words
    COMPREPLY=()
    cur="${COMP_WORDS[COMP_CWORD]}"
    if declare -F _init_completion >/dev/null 2>&1; then
      _init_completion -n "=:" || return
    else
      _PROG_init_completion -n "=:" || return
    fi
    words=("${words[@]:0:$cword}")
    if [[ "$cur" == "-"* ]]; then
      requestComp="${words[*]} ${cur} --generate-bash-completion"
    else
      requestComp="${words[*]} --generate-bash-completion"
    fi
    opts=$(eval "${requestComp}" 2>/dev/null)
    COMPREPLY=($(compgen -W "${opts}" -- ${cur}))
    return 0
  fi
}

complete -o bashdefault -o default -o nospace -F _PROG_bash_autocomplete PROG
`

// zshCompletion is urfave/cli v2's autocomplete/zsh_autocomplete with the
// program name filled in.
const zshCompletion = `#compdef PROG
# zsh completion for PROG; load with: source <(PROG completion zsh)

_PROG_zsh_autocomplete() {
  local -a opts
  local cur
  cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi

  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}

compdef _PROG_zsh_autocomplete PROG
`
