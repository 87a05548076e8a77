"""The commands for schedules (EventBridge Scheduler): ``schedule``, ``schedules``, ``unschedule``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jupyter_smstep.ipython.cmd.base import (
    Command,
    CommandParser,
    Context,
    param_arguments,
    parameter_overrides,
    say_warnings,
)


def schedule_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("name", metavar="NAME", help="the schedule's name (EventBridge Scheduler, default group)")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='six fields, e.g. "cron(0 6 * * ? *)" (06:00 UTC daily)')
    when.add_argument("--rate", metavar="EXPR", help='e.g. "rate(1 day)", "rate(6 hours)"')
    when.add_argument("--at", metavar="EXPR", help='once, e.g. "at(2027-01-01T06:00:00)" (UTC)')
    parser.add_argument("--start", metavar="ISO", help="first possible run (default: now)")
    parser.add_argument("--end", metavar="ISO", help="no run after this")
    parser.add_argument("--disabled", action="store_true", help="create it paused")
    parser.add_argument(
        "--role",
        metavar="ARN",
        help="the role EventBridge Scheduler assumes to start the "
        "pipeline (trusts scheduler.amazonaws.com; default: SageMaker.Pipeline.RoleArn)",
    )
    param_arguments(parser, cli)


def schedule(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep.core import schedules

    expression = schedules.parse(cron=args.cron, rate=args.rate, at=args.at)
    start = schedules.parse_date(args.start, "--start") if args.start else None
    end = schedules.parse_date(args.end, "--end") if args.end else None
    say_warnings(ctx, service=True)
    found = ctx.workspace.schedule(
        args.name,
        expression,
        role=args.role,
        parameters=parameter_overrides(args),
        start=start,
        end=end,
        enabled=not args.disabled,
    )
    for note in found.notes:
        print(f"note: {note}", file=ctx.err)
    if ctx.cli:
        print(json.dumps(found.to_json(), indent=2), file=ctx.out)
    else:
        print(
            f"scheduled {found.name}: {found.expression}, {found.state.lower()} (the pipeline: {found.upserted})",
            file=ctx.out,
        )
        print(schedule_line(found), file=ctx.out)
    return 0


def schedule_line(found: Any) -> str:
    times = ", ".join(t.strftime("%Y-%m-%d %H:%M UTC") for t in found.next_times) or "none"
    params = " ".join(f"{k}={v}" for k, v in found.parameters.items())
    return (
        f"  {found.name:<20} {found.state:<9} {found.expression}"
        + (f"  -p {params}" if params else "")
        + f"\n    next: {times}"
        + (f"\n    role: {found.role}" if found.role else "")
    )


def schedules_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--json", action="store_true", help="as JSON")


def schedules(ctx: Context, args: argparse.Namespace) -> int:
    found = ctx.workspace.schedules()
    if args.json:
        print(json.dumps([s.to_json() for s in found], indent=2), file=ctx.out)
    elif not found:
        print(f"pipeline {ctx.workspace.graph().name!r} has no schedules", file=ctx.out)
    else:
        print("\n".join(schedule_line(s) for s in found), file=ctx.out)
    return 0


def unschedule_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("name", metavar="NAME")


def unschedule(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workspace.unschedule(args.name)
    print(f"deleted schedule {args.name}", file=ctx.out)
    return 0


COMMANDS = (
    Command(
        "schedule",
        "create or update a schedule that starts the pipeline (EventBridge Scheduler)",
        schedule_args,
        schedule,
    ),
    Command(
        "schedules", "the pipeline's schedules, each with its state and next three runs", schedules_args, schedules
    ),
    Command("unschedule", "delete one of the pipeline's schedules", unschedule_args, unschedule),
)
