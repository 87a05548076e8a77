"""What every ``%pipeline`` / ``smstep`` command shares: the parser, the context, the command record, and
the arguments and helpers more than one group uses."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from jupyter_smstep.core.parameters import parse_assignments
from jupyter_smstep.errors import SmstepError, did_you_mean


class HelpShown(Exception):
    """``-h`` printed a parser's help; the caller stops there (exit 0)."""


class CommandParser(argparse.ArgumentParser):
    """argparse that raises :class:`SmstepError` (with "did you mean") instead of exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--out` must not silently mean `--outputs`
        super().__init__(*args, **kwargs)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            raise SmstepError(f"{self.prog}: {message.strip()}", fix=f"see {self.prog} -h")
        raise HelpShown()

    def error(self, message: str) -> Any:
        bad = re.search(r"unrecognized arguments: (\S+)", message)
        if bad:
            word = bad.group(1)
            what = f"unknown option {word}" if word.startswith("-") else f"unexpected argument {word!r}"
            raise SmstepError(f"{self.prog}: {what}", fix=self._fix(message))
        raise SmstepError(f"{self.prog}: {message}", fix=self._fix(message))

    def _fix(self, message: str) -> str:
        choice = re.search(r"invalid choice: '([^']*)'", message)
        if choice:
            names = [a for act in self._actions if act.choices for a in act.choices]
            return did_you_mean(choice.group(1), names, f"{self.prog} -h")
        bad = re.search(r"unrecognized arguments: (\S+)", message)
        if bad:
            word = bad.group(1)
            if not word.startswith("-"):
                return f"{self.prog} takes no argument {word!r}; see {self.prog} -h"
            flags = [s for act in self._actions for s in act.option_strings]
            return did_you_mean(word.split("=")[0], flags, f"{self.prog} -h")
        return f"see {self.prog} -h"

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # said by the sub-command's parser, which knows the flags that were meant
            (self._subparser(parsed) or self).error("unrecognized arguments: " + " ".join(extras))
        return parsed

    def _subparser(self, parsed: argparse.Namespace) -> CommandParser | None:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                return chosen if isinstance(chosen, CommandParser) else None
        return None

    def parse_line(self, line: str) -> argparse.Namespace:
        """Parse a magic's line (shell quoting: JSON and commands keep their quotes' content)."""
        try:
            words = shlex.split(line)
        except ValueError as exc:  # unbalanced quotes
            raise SmstepError(f"{self.prog}: {exc}", fix="balance the quotes on the line") from None
        return self.parse_args(words)


@dataclass
class Context:
    """What a command works on: the workspace and the streams it writes to."""

    workspace: Any  # jupyter_smstep.workspace.Workspace, or None for commands that need no notebook
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    cli: bool = False  # smstep (terminal) rather than %pipeline (notebook)
    display: Any = None  # what the magic returns for display (the panel)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    arguments: Callable[[CommandParser, bool], None]
    run: Callable[[Context, argparse.Namespace], int]
    where: Literal["both", "notebook"] = "both"
    needs_notebook: bool = True  # in the CLI: takes the NOTEBOOK path first
    headless: bool = False  # runs while the CLI builds a notebook (config cells), unlike run/submit/show


def parser_for(command: Command, *, cli: bool, parent: argparse._SubParsersAction | None = None) -> CommandParser:
    """The command's parser: on its own (the magic), or as a sub-command of ``smstep``'s."""
    prog = f"smstep {command.name}" if cli else f"%pipeline {command.name}"
    if parent is not None:
        parser = parent.add_parser(command.name, help=command.help, description=command.help, prog=prog)
    else:
        parser = CommandParser(prog=prog, description=command.help)
    if cli and command.needs_notebook:
        parser.add_argument("notebook", help="the .ipynb file")
    command.arguments(parser, cli)
    return parser


def no_arguments(parser: CommandParser, cli: bool) -> None:
    pass


def param_arguments(parser: CommandParser, cli: bool) -> None:
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a pipeline parameter (repeatable)",
    )
    parser.add_argument("assignments", nargs="*", metavar="NAME=VALUE", help="the same, without -p")


def execution_argument(parser: CommandParser, cli: bool) -> None:
    if cli:
        parser.add_argument("execution_arn", metavar="EXECUTION_ARN")
    else:
        parser.add_argument(
            "execution_arn",
            nargs="?",
            default=None,
            metavar="EXECUTION_ARN",
            help="default: the execution the last %%pipeline submit started",
        )


def parameter_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``-p`` values as written; the workspace checks and coerces them against the parameters."""
    return parse_assignments(list(args.param) + list(args.assignments))


def split_names(values: Iterable[str]) -> list[str]:
    return [n for v in values for n in v.replace(",", " ").split()]


#: At most this many warnings before a command acts; the rest are counted (``graph`` lists them all).
SHOWN_WARNINGS = 8


def say_warnings(ctx: Context, service: bool = False) -> None:
    """Before a command builds, runs or submits the pipeline: the warnings of its graph, with cell, line
    and fix (what the tool could not know, said where the user looks, not only in ``graph``). ``service``: a
    definition SageMaker will run, which refuses (once) what it cannot do without, as a missing image."""
    graph = ctx.workspace.graph()
    if service:
        from jupyter_smstep.core.model import check_buildable

        check_buildable(graph)
    warnings = graph.report.warnings
    warnings.sort(key=lambda p: p.step is None)  # a step's own first: they are about what the jobs do
    for problem in warnings[:SHOWN_WARNINGS]:
        print(f"warning: {problem}", file=ctx.err)
    if len(warnings) > SHOWN_WARNINGS:
        command = "smstep graph NOTEBOOK" if ctx.cli else "%pipeline graph"
        print(f"... and {len(warnings) - SHOWN_WARNINGS} more warnings ({command} lists them all)", file=ctx.err)


def short_repr(value: Any, width: int = 100) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def execution_arn(ctx: Context, args: argparse.Namespace) -> str:
    arn = args.execution_arn
    if not arn and ctx.workspace is not None and ctx.workspace.last_execution is not None:
        arn = ctx.workspace.last_execution.execution_arn
    if not arn:
        raise SmstepError("no execution given", fix="%pipeline submit first, or pass an execution ARN")
    from jupyter_smstep.remote.executions import owner_of

    owner_of(arn)  # its form, before anything reaches AWS
    return arn
