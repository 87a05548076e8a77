"""The commands that show the pipeline without running it: ``show``, ``graph``, ``definition``, ``export``,
``cost``."""

from __future__ import annotations

import argparse
import json

from jupyter_smstep.errors import SmstepError
from jupyter_smstep.ipython.cmd.base import Command, CommandParser, Context, no_arguments, say_warnings


def show_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--text", action="store_true", help="plain text instead of the panel")


def show(ctx: Context, args: argparse.Namespace) -> int:
    if args.text:
        from jupyter_smstep.text import text_summary

        graph = ctx.workspace.graph(keys=True)
        print(text_summary(graph), file=ctx.out)
        if not graph.report.errors:
            try:
                print("\n" + "\n".join(ctx.workspace.estimate().lines()), file=ctx.out)
            except SmstepError:
                pass  # no measured local run yet: nothing to estimate from
        return 0
    from jupyter_smstep.panel import show

    ctx.display = show(ctx.workspace)
    return 0


def graph_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def graph(ctx: Context, args: argparse.Namespace) -> int:
    graph = ctx.workspace.graph(keys=args.json)
    if args.json:
        print(json.dumps(graph.to_json(), indent=2), file=ctx.out)
    else:
        from jupyter_smstep.text import text_summary

        print(text_summary(graph), file=ctx.out)
    return 2 if graph.report.errors else 0


def definition(ctx: Context, args: argparse.Namespace) -> int:
    say_warnings(ctx, service=True)
    print(json.dumps(ctx.workspace.definition(), indent=2), file=ctx.out)
    return 0


def export_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("file", nargs="?", default=None, metavar="FILE.py", help="default: pipeline.py")
    parser.add_argument("-o", "--output", default=None, metavar="FILE.py", help="the same as FILE.py")


def export(ctx: Context, args: argparse.Namespace) -> int:
    if args.file and args.output and args.file != args.output:
        raise SmstepError(f"export: two output files given ({args.file}, {args.output})", fix="give one")
    path = args.output or args.file or "pipeline.py"
    say_warnings(ctx, service=True)
    ctx.workspace.export(path)
    print(f"wrote {path}", file=ctx.err if ctx.cli else ctx.out)
    return 0


def cost_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument(
        "--prices",
        default=None,
        metavar="FILE",
        help='hourly prices to use instead of the AWS Price List API: {"region": "us-east-1", '
        '"currency": "USD", "hourly": {"ml.m5.large": 0.115}}',
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def cost(ctx: Context, args: argparse.Namespace) -> int:
    run = ctx.workspace.latest_run(ctx.workspace.graph().name)  # read once, for the estimate and the suggestions
    estimate = ctx.workspace.estimate(args.prices, run=run)
    suggestions, specs_note = ctx.workspace.suggestions(run)
    if args.json:
        doc = estimate.to_json()
        doc["suggestions"] = {name: s.to_json() for name, s in suggestions.items()}
        doc["specs_note"] = specs_note or None
        print(json.dumps(doc, indent=2), file=ctx.out)
    else:
        print("\n".join(estimate.lines()), file=ctx.out)
        for suggestion in suggestions.values():
            print(("warning: " if suggestion.too_small else "") + suggestion.note, file=ctx.out)
        if specs_note:
            print(f"(instance specs from the shipped table: {specs_note})", file=ctx.out)
    return 0


COMMANDS = (
    Command(
        "show",
        "the panel: the DAG and every resolved setting with its source (--text: as text)",
        show_args,
        show,
        where="notebook",
    ),
    Command("graph", "the DAG, inputs, outputs and resolved settings (no AWS needed)", graph_args, graph),
    Command("definition", "the pipeline definition JSON (uploads the step code to S3)", no_arguments, definition),
    Command("export", "write a standalone Python module with @step functions", export_args, export),
    Command(
        "cost", "the estimated cost of a submit, from the last local run's measurements and AWS prices", cost_args, cost
    ),
)
