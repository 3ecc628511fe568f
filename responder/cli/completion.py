"""Shell completion for bash and zsh: `eval "$(responder completion bash)"`.

The script is generated from the parser, so commands and options never drift from it. Names that
change (playbooks, incident IDs, an incident's step IDs) are asked of `responder __complete`,
which reads the playbook directories and the timeline and prints one name per line; it prints
nothing, rather than an error, when it cannot read them (completion must never spoil a prompt).
"""

from __future__ import annotations

import argparse
import sys

# Which positional argument of which command takes which dynamic value.
_INCIDENT_FIRST = ("show", "approve", "deny", "export", "resume", "release")

_BASH = r"""# responder completion for bash (and zsh, through bashcompinit)
_responder() {
  local cur=${COMP_WORDS[COMP_CWORD]} cword=$COMP_CWORD cmd=${COMP_WORDS[1]} i positional=0
  COMPREPLY=()
  if [ "$cword" -eq 1 ]; then
    COMPREPLY=($(compgen -W "__COMMANDS__" -- "$cur")); return 0
  fi
  if [[ $cur == -* ]]; then
    case "$cmd" in
__OPTIONS__
    esac
    return 0
  fi
  for ((i = 2; i < cword; i++)); do [[ ${COMP_WORDS[i]} != -* ]] && positional=$((positional + 1)); done
  case "$cmd:$positional" in
    run:0) COMPREPLY=($(compgen -W "$(responder __complete playbooks 2>/dev/null)" -- "$cur")) ;;
    validate:*) COMPREPLY=($(compgen -f -- "$cur")) ;;
    show:0|approve:0|deny:0|export:0|resume:0|release:0)
      COMPREPLY=($(compgen -W "$(responder __complete incidents 2>/dev/null)" -- "$cur")) ;;
    approve:1) COMPREPLY=($(compgen -W "$(responder __complete steps "${COMP_WORDS[2]}" 2>/dev/null)" -- "$cur")) ;;
    evidence:0) COMPREPLY=($(compgen -W "verify" -- "$cur")) ;;
    evidence:1) COMPREPLY=($(compgen -W "$(responder __complete incidents 2>/dev/null)" -- "$cur")) ;;
    completion:0) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
  esac
  return 0
}
complete -F _responder responder
"""

_ZSH_PRELUDE = "autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n"


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` (bash or zsh), from the parser's commands and options."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = sorted(name for name in subparsers.choices if not name.startswith("_"))
    cases = []
    for name in commands:
        sub = subparsers.choices[name]
        flags = sorted({opt for action in sub._actions for opt in action.option_strings})
        cases.append(f'      {name}) COMPREPLY=($(compgen -W "{" ".join(flags)}" -- "$cur")) ;;')
    body = _BASH.replace("__COMMANDS__", " ".join(commands)).replace("__OPTIONS__", "\n".join(cases))
    return (_ZSH_PRELUDE if shell == "zsh" else "") + body


def complete(args: argparse.Namespace) -> int:
    """`responder __complete playbooks|incidents|steps ID`: one name per line, or nothing."""
    from responder.cli.common import settings_from, timeline_for

    try:
        settings = settings_from(args)
        if args.what == "playbooks":
            from responder.cli.common import playbook_files

            names = sorted({path.stem for path in playbook_files(settings)})
        elif args.what == "incidents":
            names = [inc.id for inc in timeline_for(settings).incidents(200)]
        else:  # the incident's waiting step first, then its playbook's steps
            from pathlib import Path

            from responder.cli.common import catalog_for
            from responder.playbook.parse import load_playbook

            incident = timeline_for(settings).incident(args.incident or "")
            names = [incident.next_step] if incident.next_step else []
            playbook = load_playbook(Path(incident.playbook_path), catalog_for(settings))
            names += [s.id for s in playbook.steps if s.id not in names]
    except Exception:  # completion prints nothing rather than an error at a prompt
        return 0
    sys.stdout.write("".join(f"{n}\n" for n in names))
    return 0


def cmd_completion(args: argparse.Namespace) -> int:
    """`responder completion bash|zsh`: the script to eval in the shell's startup file."""
    from responder.cli.parser import build_parser

    sys.stdout.write(script(build_parser(), args.shell))
    return 0
