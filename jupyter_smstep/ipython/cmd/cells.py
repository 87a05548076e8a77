"""The cell magics' lines: ``%%step`` and ``%%remote``, parsed and checked at once, before the cell runs.

What the names in a line refer to (inputs, conditions' operands, the items of a ``--foreach``) is the graph's to
check; here only the syntax is, so a typo stops the cell with its fix before anything runs.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from jupyter_smstep.core.registry import StepSpec
from jupyter_smstep.errors import SmstepError
from jupyter_smstep.ipython import options as options_mod
from jupyter_smstep.ipython.cmd.base import CommandParser


@dataclass(frozen=True)
class StepLine:
    """A ``%%step`` line, parsed: the step's name if given, and every option checked."""

    args: argparse.Namespace
    options: dict[str, Any]
    saves: tuple[tuple[str, str | None], ...]
    foreach: tuple[str, str] | None
    select: tuple[str, str] | None

    @property
    def name(self) -> str | None:
        return self.args.name

    @property
    def defer(self) -> bool:
        return bool(self.args.defer)

    def spec(self, name: str, header: str) -> StepSpec:
        args = self.args
        return StepSpec(
            name=name,
            options=self.options,
            inputs=name_list(args.inputs),
            outputs=name_list(args.outputs),
            header=header,
            after=tuple(dict.fromkeys(n for item in args.after for n in name_list(item) or ())),
            when=args.when,
            else_fail=args.else_fail,
            saves=self.saves,
            foreach=self.foreach,
            max_concurrency=args.max_concurrency,
            select=self.select,
        )


def parse_step(line: str, parameters: Any) -> StepLine:
    """``%%step``'s line; raises :class:`SmstepError` (with its fix) or ``HelpShown`` (``-h``)."""
    args = STEP_PARSER.parse_line(line)
    options = options_mod.convert(args, "%%step", parameters)
    check_condition(args)
    saves = saves_of(args.save)
    foreach, select = fan_out(args)
    return StepLine(args, options, saves, foreach, select)


def parse_remote(line: str, parameters: Any) -> tuple[argparse.Namespace, dict[str, Any]]:
    """``%%remote``'s line and its options; the pipeline-only options refused with the way out."""
    args = REMOTE_PARSER.parse_line(line)
    for flag in PIPELINE_ONLY:
        if getattr(args, flag[2:].replace("-", "_")) is not None:
            raise SmstepError(
                f"%%remote: {flag} is a pipeline option; %%remote runs this one cell now",
                fix=f"drop {flag}, or make the cell a %%step in the pipeline",
            )
    return args, options_mod.convert(args, "%%remote", parameters)


def step_parser() -> CommandParser:
    """``%%step``'s parser: the step's name, the inference overrides, and every ``@step`` option."""
    parser = CommandParser(prog="%%step", description=STEP_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "name", nargs="?", default=None, help="Step name (default: the first variable the cell assigns)."
    )
    parser.add_argument("--inputs", default=None, metavar="A,B", help="Comma-separated inputs, overriding inference.")
    parser.add_argument("--outputs", default=None, metavar="A,B", help="Comma-separated outputs, overriding inference.")
    parser.add_argument(
        "--defer", action="store_true", help="Register the step without running the cell in the kernel."
    )
    parser.add_argument(
        "--after",
        action="append",
        default=[],
        metavar="STEP",
        help="Run after STEP although no data passes between them (repeatable).",
    )
    parser.add_argument(
        "--when",
        default=None,
        metavar="EXPR",
        help="Run only when EXPR holds, e.g. \"evaluation['rmse'] < 5\" (outputs of earlier "
        "steps, parameters, constants; < <= > >= == != in, not in, and, or, not).",
    )
    parser.add_argument(
        "--save",
        action="append",
        default=[],
        metavar="NAME[=S3URI]",
        help="At the end of the step, write NAME's value to S3URI in the format its suffix names "
        "(.parquet .csv .json .npy .joblib .pkl .txt; {execution_id} {pipeline} {step}); "
        "NAME alone: under %%pipeline config --save-root (repeatable).",
    )
    parser.add_argument(
        "--else-fail",
        default=None,
        metavar="MESSAGE",
        help="With --when: otherwise stop the execution with MESSAGE ({name} shows a value).",
    )
    parser.add_argument(
        "--foreach",
        action="append",
        default=[],
        metavar="VAR=ITEMS",
        help="Run the cell once per item of the list ITEMS, with VAR bound to the item (one job "
        "each, in parallel); later cells get each name it assigns as a list in item order.",
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        metavar="N",
        help="With --foreach: at most N iterations at once (1-50; default: all).",
    )
    parser.add_argument(
        "--select",
        default=None,
        metavar="max:NAME",
        help="With --foreach: later cells get the values of the iteration whose NAME is largest "
        "(max:NAME) or smallest (min:NAME), not lists.",
    )
    options_mod.add_option_arguments(parser, per_step=True)
    return parser


def remote_parser() -> CommandParser:
    """``%%remote``'s parser: every ``@step`` option, ``--local``, and the pipeline-only options refused."""
    parser = CommandParser(
        prog="%%remote", description=REMOTE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="Run it through the local runner (the SDK's entry point, an embedded S3; no AWS).",
    )
    for flag in PIPELINE_ONLY:
        parser.add_argument(flag, default=None, help=argparse.SUPPRESS)
    options_mod.add_option_arguments(parser, per_step=True)
    return parser


#: %%step options that mean something in a pipeline only
PIPELINE_ONLY = ("--when", "--else-fail", "--after", "--save", "--inputs", "--outputs")
REMOTE_HELP = """Run this cell as a SageMaker training job and put the variables it assigns back in the kernel.

The same options, settings and inputs as %%step (what the cell reads comes from the kernel);
the job's log lines stream while it runs, and the stop button stops the job. --local runs it
through the local runner instead.
"""
REMOTE_PARSER = remote_parser()


STEP_HELP = """Mark this cell as a SageMaker pipeline step.

Inputs are the variables the cell reads: an earlier step's output becomes a
link, a %pipeline param a pipeline parameter, other kernel values are captured.
Outputs are the variables later steps read. The cell still runs in the kernel
unless --defer is given. Every option of the SDK's @step decorator is available.
"""
STEP_PARSER = step_parser()


def name_list(text: str | None) -> tuple[str, ...] | None:
    """``--inputs a,b`` -> ``("a", "b")``; not given -> None (infer)."""
    return tuple(n.strip() for n in text.split(",") if n.strip()) if text else None


def check_condition(args: Any) -> None:
    """``--when`` / ``--else-fail`` syntax, at once (what the names are is the graph's to say)."""
    from jupyter_smstep.core import conditions

    try:
        if args.when is not None:
            conditions.parse(args.when)
        if args.else_fail is not None:
            if args.when is None:
                raise conditions.ConditionError(
                    "--else-fail needs --when: it is what happens when the condition does not hold",
                    fix='add --when "EXPR"',
                )
            conditions.parse_message(args.else_fail)
    except conditions.ConditionError as exc:
        raise SmstepError(f"%%step: {exc.message}", fix=exc.fix) from None


def fan_out(args: Any) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    """``--foreach`` / ``--select`` / ``--max-concurrency`` syntax, at once (the items are the graph's to check)."""
    from jupyter_smstep.core import foreach

    try:
        if len(args.foreach) > 1:
            raise foreach.ForEachError(
                "--foreach is given twice: one cell fans out over one list (nested --foreach is not supported)",
                fix="loop over the pairs: --foreach pair=pairs, with pairs = "
                "[(a, b) for a in A for b in B] in a cell above",
            )
        if not args.foreach and (args.select is not None or args.max_concurrency is not None):
            flag = "--select" if args.select is not None else "--max-concurrency"
            raise foreach.ForEachError(f"{flag} needs --foreach", fix="add --foreach VAR=ITEMS, or drop " + flag)
        return (
            foreach.parse_foreach(args.foreach[0]) if args.foreach else None,
            foreach.parse_select(args.select) if args.select is not None else None,
        )
    except foreach.ForEachError as exc:
        raise SmstepError(f"%%step: {exc.message}", fix=exc.fix) from None


def saves_of(values: list[str]) -> tuple[tuple[str, str | None], ...]:
    """``--save NAME[=S3URI]`` values (what each URI holds is the graph's to check)."""
    from jupyter_smstep.core import saves

    try:
        return tuple(saves.parse(v) for v in values)
    except saves.SaveError as exc:
        raise SmstepError(f"%%step: {exc.message}", fix=exc.fix) from None
