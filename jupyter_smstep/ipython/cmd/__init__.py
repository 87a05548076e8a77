"""One parser and one function per ``%pipeline`` sub-command, shared with the ``smstep`` CLI.

Each :class:`Command` declares its arguments once (``arguments(parser, cli)``)
and does its work once (``run(ctx, args)``); the magic (``%pipeline SUB ...``)
and the CLI (``smstep SUB NOTEBOOK ...``) only differ in where the workspace
comes from (the kernel, or the notebook file built headless) and in a few
arguments that only make sense on one side (the CLI's ``NOTEBOOK``, the
magic's optional ``EXECUTION_ARN`` that defaults to the last submission).
Parsing is argparse through :class:`CommandParser`, whose errors are
:class:`SmstepError` with a "did you mean" fix, never a ``SystemExit``.

A command returns its exit status (0 success, 1 a step or the pipeline
failed); errors are raised by cause (see :mod:`jupyter_smstep.errors`).
"""

from __future__ import annotations

from jupyter_smstep.ipython.cmd import local, scheduling, service, setup, views
from jupyter_smstep.ipython.cmd.base import (
    SHOWN_WARNINGS,
    Command,
    CommandParser,
    Context,
    HelpShown,
    parser_for,
    say_warnings,
)

__all__ = [
    "COMMANDS",
    "SHOWN_WARNINGS",
    "Command",
    "CommandParser",
    "Context",
    "HelpShown",
    "overview",
    "parser_for",
    "say_warnings",
]

#: Every command, by group: setting the notebook up, looking at the pipeline, running it here, on SageMaker, on a
#: schedule. ``%pipeline`` and ``smstep -h`` list them in this order.
COMMANDS: dict[str, Command] = {
    c.name: c for group in (setup, views, local, service, scheduling) for c in group.COMMANDS
}


def overview(cli: bool) -> str:
    """The list of commands, for ``%pipeline`` / ``%pipeline?`` and ``smstep -h``."""
    lines = []
    for c in COMMANDS.values():
        if cli and c.where != "both":
            continue
        lines.append(f"  {c.name:<11} {c.help}")
    if cli:
        lines.append(
            "\nIn a notebook, %pipeline also has: "
            + ", ".join(c.name for c in COMMANDS.values() if c.where != "both")
            + "."
        )
        return "\n".join(lines)
    return "%pipeline COMMAND [options]   (%pipeline COMMAND -h for its options)\n\n" + "\n".join(lines)
