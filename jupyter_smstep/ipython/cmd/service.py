"""The commands that talk to SageMaker about executions: ``submit``, ``status``, ``stop``, ``retry``,
``history``."""

from __future__ import annotations

import argparse
import json

from jupyter_smstep.errors import SmstepError
from jupyter_smstep.ipython.cmd.base import (
    Command,
    CommandParser,
    Context,
    execution_argument,
    execution_arn,
    param_arguments,
    parameter_overrides,
    say_warnings,
)


def history_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("-n", "--last", type=int, default=5, metavar="N", help="how many executions (default 5)")
    parser.add_argument("--json", action="store_true", help="print them as JSON")


def history(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep.remote import history

    if not 1 <= args.last <= 100:
        raise SmstepError(f"--last {args.last}: between 1 and 100 executions", fix="e.g. --last 5")
    rows, estimates = ctx.workspace.history(args.last)
    if args.json:
        print(json.dumps([row.to_json(estimates) for row in rows], indent=2), file=ctx.out)
    else:
        print("\n".join(history.lines(rows, estimates)), file=ctx.out)
    return 0


def submit_args(parser: CommandParser, cli: bool) -> None:
    param_arguments(parser, cli)
    parser.add_argument("--wait", action="store_true", help="follow the execution until it ends")
    parser.add_argument(
        "--changed",
        action="store_true",
        help="run only the steps changed since the last succeeded execution (and those after them)",
    )
    parser.add_argument("--force", action="store_true", help="with --changed: start even when nothing changed")


def submit(ctx: Context, args: argparse.Namespace) -> int:
    if args.force and not args.changed:
        raise SmstepError("--force only applies with --changed", fix="add --changed, or drop --force")
    say_warnings(ctx, service=True)
    run = ctx.workspace.latest_run(ctx.workspace.graph().name)  # this session's, or the runs folder's
    if run is not None:  # before paying: a step the last local run measured above its instance's memory
        for suggestion in run.suggestions().values():
            if suggestion.too_small:
                print(f"warning: {suggestion.note}", file=ctx.err)
        try:  # and what it will cost, as one line (never a prompt)
            print(ctx.workspace.estimate(run=run).lines()[0], file=ctx.err)
        except SmstepError:
            pass  # nothing measured: nothing to estimate
    submission = ctx.workspace.submit(parameter_overrides(args), changed=args.changed, force=args.force)
    for note in submission.notes:
        print(f"note: {note}", file=ctx.err)
    selection = submission.selection
    if selection is not None:
        print(
            selection.note + ("" if submission.started else ": nothing started (--force starts it anyway)"),
            file=ctx.err if ctx.cli else ctx.out,
        )
    if ctx.cli:
        print(json.dumps(submission.to_json(), indent=2), file=ctx.out)
    elif submission.started:
        print(f"started {submission.execution_arn}\n{submission.console_url}", file=ctx.out)
    if not submission.started:
        return 0
    if args.wait:
        from jupyter_smstep import text

        return 0 if text.follow(submission.execution_arn, stream=ctx.err if ctx.cli else ctx.out) else 1
    return 0


def status(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep import text

    return 0 if text.print_status(execution_arn(ctx, args), stream=ctx.out) else 1


def stop(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep.remote import monitor

    arn = execution_arn(ctx, args)
    monitor.stop(arn)
    print(f"stopping {arn}", file=ctx.err if ctx.cli else ctx.out)
    return 0


def retry_args(parser: CommandParser, cli: bool) -> None:
    execution_argument(parser, cli)
    parser.add_argument("--wait", action="store_true", help="follow the execution until it ends")


def retry(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep import text
    from jupyter_smstep.remote import monitor

    arn = execution_arn(ctx, args)
    monitor.retry(arn)
    print(f"retrying {arn}", file=ctx.err if ctx.cli else ctx.out)
    if args.wait:
        return 0 if text.follow(arn, stream=ctx.err if ctx.cli else ctx.out) else 1
    return 0


COMMANDS = (
    Command("submit", "upsert the pipeline on SageMaker and start an execution", submit_args, submit),
    Command(
        "history",
        "the pipeline's last executions on SageMaker: status, duration, who started them, and each "
        "step's billed seconds beside the local estimate",
        history_args,
        history,
    ),
    Command("status", "per-step status of an execution", execution_argument, status, needs_notebook=False),
    Command("stop", "stop a running execution", execution_argument, stop, needs_notebook=False),
    Command(
        "retry", "retry a failed or stopped execution from its failed steps", retry_args, retry, needs_notebook=False
    ),
)
