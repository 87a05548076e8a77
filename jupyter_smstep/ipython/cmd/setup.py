"""The commands that set the notebook up: ``config``, ``param``, ``outputs``, ``remove``, ``reset``."""

from __future__ import annotations

import argparse

from jupyter_smstep.core.parameters import parse_assignments
from jupyter_smstep.errors import SmstepError, did_you_mean
from jupyter_smstep.ipython import options as options_mod
from jupyter_smstep.ipython.cmd.base import Command, CommandParser, Context, no_arguments, split_names


def config_arguments(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--name", default=None, help="the pipeline's name")
    parser.add_argument(
        "--save-root",
        default=None,
        metavar="S3URI",
        help="where %%step --save NAME writes: S3URI/<pipeline>/<step>/NAME.<format>",
    )
    parser.add_argument(
        "--mlflow-arn",
        default=None,
        metavar="ARN",
        help="follow executions in this SageMaker managed MLflow tracking server (SDK v3)",
    )
    parser.add_argument(
        "--mlflow-experiment",
        default=None,
        metavar="NAME",
        help="with --mlflow-arn: the MLflow experiment (default: the pipeline's name)",
    )
    parser.add_argument(
        "--foreach-as",
        default=None,
        choices=("foreach", "steps"),
        help="a --foreach cell under SDK v3: SageMaker's ForEach step (the default), or one step per item "
        "and a gather, as under SDK v2",
    )
    options_mod.add_option_arguments(parser, per_step=False)


def config(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep.core import saves

    options = options_mod.convert(args, "%pipeline config", ctx.workspace.registry.parameters)
    try:
        root = saves.check_root(args.save_root) if args.save_root else None
    except saves.SaveError as exc:
        raise SmstepError(f"%pipeline config: {exc.message}", fix=exc.fix) from None
    if args.mlflow_experiment and not (args.mlflow_arn or ctx.workspace.registry.mlflow):
        raise SmstepError(
            "%pipeline config: --mlflow-experiment needs --mlflow-arn (the tracking server)",
            fix="add --mlflow-arn arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME",
        )
    ctx.workspace.registry.set_defaults(options, name=args.name, save_root=root)
    if args.foreach_as:
        ctx.workspace.registry.foreach_as = args.foreach_as
    if args.mlflow_arn or args.mlflow_experiment:
        ctx.workspace.registry.mlflow.update(
            {k: v for k, v in (("arn", args.mlflow_arn), ("experiment", args.mlflow_experiment)) if v}
        )
    return 0


def param_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("assignments", nargs="+", metavar="NAME=VALUE")


def param(ctx: Context, args: argparse.Namespace) -> int:
    for name, value in parse_assignments(args.assignments).items():
        ctx.workspace.registry.set_parameter(name, value)
        ctx.workspace.namespace[name] = value
    return 0


def outputs_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help="names every producing step must return")


def outputs(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workspace.registry.export(split_names(args.names))
    return 0


def remove_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("step", metavar="STEP", help="the step to forget")


def remove(ctx: Context, args: argparse.Namespace) -> int:
    registry = ctx.workspace.registry
    if not registry.remove_step(args.step):
        names = [c.step.name for c in registry.steps if c.step is not None]
        raise SmstepError(
            f"no step named {args.step!r} (steps: {', '.join(names) or 'none'})",
            fix=did_you_mean(args.step, names, "%pipeline show"),
        )
    return 0


def reset(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workspace.registry.clear_cells()
    return 0


COMMANDS = (
    Command(
        "config",
        "notebook-wide step defaults (the same options as %%step) and the pipeline's --name",
        config_arguments,
        config,
        where="notebook",
        headless=True,
    ),
    Command(
        "param",
        "declare pipeline parameters NAME=VALUE (also set in the kernel)",
        param_args,
        param,
        where="notebook",
        headless=True,
    ),
    Command(
        "outputs", "names every producing step must return", outputs_args, outputs, where="notebook", headless=True
    ),
    Command(
        "remove", "forget a step (e.g. after deleting its cell)", remove_args, remove, where="notebook", headless=True
    ),
    Command("reset", "forget every recorded cell", no_arguments, reset, where="notebook", headless=True),
)
