"""``smstep``: build, run, export or submit a notebook's pipeline headless (for CI).

The commands are :mod:`jupyter_smstep.ipython.cmd`, the same parsers and
functions as ``%pipeline`` in a notebook; this module only builds the notebook
headless and maps errors to exit codes. ``smstep -h`` lists the commands,
``smstep COMMAND -h`` their options.

AWS settings come from the standard environment (AWS_ENDPOINT_URL, AWS_PROFILE,
AWS_REGION, ...). Ctrl-C exits 130 and SIGTERM 143, both after a local run has
stopped its steps and recorded how it ended. Exit status: 0 success; 1 a step or the pipeline failed; 2 the
notebook or the arguments are wrong; 3 AWS or the environment refused
(unreachable, no credentials, access denied, throttled, SDK missing). Every
error says what is wrong and how to fix it, without a traceback.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence

from jupyter_smstep import __version__
from jupyter_smstep.errors import SmstepError
from jupyter_smstep.ipython import cmd
from jupyter_smstep.ipython.cmd import CommandParser, HelpShown


def parser() -> CommandParser:
    top = CommandParser(
        prog="smstep",
        description="Notebook %%step cells as a SageMaker Pipeline.",
        epilog="Exit status: 0 success, 1 a step or the pipeline failed, 2 bad notebook or "
        "arguments, 3 AWS or the environment refused.\n\n" + cmd.overview(cli=True),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"smstep {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for command in cmd.COMMANDS.values():
        if command.where == "both":
            cmd.parser_for(command, cli=True, parent=sub)
    return top


#: What the machine refused, not a bug: a full disk or quota, a read-only folder, a folder that is not yours.
_REFUSED_BY_THE_MACHINE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class Terminated(BaseException):
    """SIGTERM: unwound like Ctrl-C, so a run records its end and stops its steps before exiting."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    # botocore's INFO lines ("Found credentials in environment variables") are noise on a terminal.
    logging.getLogger("botocore").setLevel(logging.WARNING)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        args = parser().parse_args(argv)
        return _dispatch(args)
    except HelpShown:
        return 0
    except SmstepError as exc:
        text = str(exc)
        print(f"error: {text}" if text.startswith("smstep") else f"smstep: error: {text}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if exc.errno not in _REFUSED_BY_THE_MACHINE:
            raise  # a bug of ours: its traceback is what a report needs
        folder = os.path.dirname(os.path.abspath(exc.filename)) if isinstance(exc.filename, str) else "."
        fix = (
            f"free space on the disk that holds {folder} (df -h {folder})"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else f"make {folder} writable (ls -ld {folder})"
        )
        print(
            f"smstep: error: {exc.strerror}"
            + (f": {exc.filename}" if exc.filename else "")
            + f"\n  fix: {fix}, or write somewhere else (--runs-dir DIR for runs, -o FILE for files)",
            file=sys.stderr,
        )
        return 3
    except KeyboardInterrupt:
        print("smstep: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("smstep: terminated", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    command = cmd.COMMANDS[args.command]
    workspace = None
    if command.needs_notebook:
        from jupyter_smstep.ipython.notebook import load_workspace

        workspace = load_workspace(args.notebook)
    return command.run(cmd.Context(workspace, cli=True), args)


if __name__ == "__main__":
    sys.exit(main())
