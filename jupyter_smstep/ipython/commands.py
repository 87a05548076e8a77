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

import argparse
import json
from pathlib import Path
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO
from collections.abc import Callable, Iterable

from jupyter_smstep.core.parameters import parse_assignments
from jupyter_smstep.core.compare import ATOL, RTOL
from jupyter_smstep.errors import SmstepError, did_you_mean
from jupyter_smstep.ipython import options as options_mod


class HelpShown(Exception):
    """``-h`` printed a parser's help; the caller stops there (exit 0)."""


class CommandParser(argparse.ArgumentParser):
    """argparse that raises :class:`SmstepError` (with "did you mean") instead of exiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # `--out` must not silently mean `--outputs`
        super().__init__(*args, **kwargs)

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        if message:
            raise SmstepError(f"{self.prog}: {message.strip()}", fix=f"see {self.prog} -h")
        raise HelpShown()

    def error(self, message: str) -> Any:  # type: ignore[override]
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

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
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


# =========================================================================== context
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


# =========================================================================== arguments
def _no_arguments(parser: CommandParser, cli: bool) -> None:
    pass


def _param_arguments(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="override a pipeline parameter (repeatable)")
    parser.add_argument("assignments", nargs="*", metavar="NAME=VALUE", help="the same, without -p")


def _execution_argument(parser: CommandParser, cli: bool) -> None:
    if cli:
        parser.add_argument("execution_arn", metavar="EXECUTION_ARN")
    else:
        parser.add_argument("execution_arn", nargs="?", default=None, metavar="EXECUTION_ARN",
                            help="default: the execution the last %%pipeline submit started")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``-p`` values as written; the workspace checks and coerces them against the parameters."""
    return parse_assignments(list(args.param) + list(args.assignments))


def _names(values: Iterable[str]) -> list[str]:
    return [n for v in values for n in v.replace(",", " ").split()]


# =========================================================================== commands
def _config_arguments(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--name", default=None, help="the pipeline's name")
    parser.add_argument("--save-root", default=None, metavar="S3URI",
                        help="where %%step --save NAME writes: S3URI/<pipeline>/<step>/NAME.<format>")
    parser.add_argument("--mlflow-arn", default=None, metavar="ARN",
                        help="follow executions in this SageMaker managed MLflow tracking server (SDK v3)")
    parser.add_argument("--mlflow-experiment", default=None, metavar="NAME",
                        help="with --mlflow-arn: the MLflow experiment (default: the pipeline's name)")
    options_mod.add_option_arguments(parser, per_step=False)


def _config(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep.core import saves

    options = options_mod.convert(args, "%pipeline config", ctx.workspace.registry.parameters)
    try:
        root = saves.check_root(args.save_root) if args.save_root else None
    except saves.SaveError as exc:
        raise SmstepError(f"%pipeline config: {exc.message}", fix=exc.fix) from None
    if args.mlflow_experiment and not (args.mlflow_arn or ctx.workspace.registry.mlflow):
        raise SmstepError("%pipeline config: --mlflow-experiment needs --mlflow-arn (the tracking server)",
                          fix="add --mlflow-arn arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME")
    ctx.workspace.registry.set_defaults(options, name=args.name, save_root=root)
    if args.mlflow_arn or args.mlflow_experiment:
        ctx.workspace.registry.mlflow.update({k: v for k, v in (("arn", args.mlflow_arn),
                                                                ("experiment", args.mlflow_experiment)) if v})
    return 0


def _param_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("assignments", nargs="+", metavar="NAME=VALUE")


def _param(ctx: Context, args: argparse.Namespace) -> int:
    for name, value in parse_assignments(args.assignments).items():
        ctx.workspace.registry.set_parameter(name, value)
        ctx.workspace.namespace[name] = value
    return 0


def _outputs_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("names", nargs="+", metavar="NAME", help="names every producing step must return")


def _outputs(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workspace.registry.export(_names(args.names))
    return 0


def _show_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--text", action="store_true", help="plain text instead of the panel")


def _show(ctx: Context, args: argparse.Namespace) -> int:
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


def _graph_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _graph(ctx: Context, args: argparse.Namespace) -> int:
    graph = ctx.workspace.graph(keys=args.json)
    if args.json:
        print(json.dumps(graph.to_json(), indent=2), file=ctx.out)
    else:
        from jupyter_smstep.text import text_summary

        print(text_summary(graph), file=ctx.out)
    return 2 if graph.report.errors else 0


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


def _definition(ctx: Context, args: argparse.Namespace) -> int:
    say_warnings(ctx, service=True)
    print(json.dumps(ctx.workspace.definition(), indent=2), file=ctx.out)
    return 0


def _export_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("file", nargs="?", default=None, metavar="FILE.py", help="default: pipeline.py")
    parser.add_argument("-o", "--output", default=None, metavar="FILE.py", help="the same as FILE.py")


def _export(ctx: Context, args: argparse.Namespace) -> int:
    if args.file and args.output and args.file != args.output:
        raise SmstepError(f"export: two output files given ({args.file}, {args.output})", fix="give one")
    path = args.output or args.file or "pipeline.py"
    say_warnings(ctx, service=True)
    ctx.workspace.export(path)
    print(f"wrote {path}", file=ctx.err if ctx.cli else ctx.out)
    return 0


def _run_args(parser: CommandParser, cli: bool) -> None:
    _param_arguments(parser, cli)
    parser.add_argument("--json", action="store_true", help="print each step's state, duration and outputs as JSON")
    parser.add_argument("--runs-dir", default=None, metavar="DIR", help="where runs are kept (default .smstep/runs)")
    parser.add_argument("--no-cache", action="store_true",
                        help="run every step, even one whose result an earlier run already has")
    parser.add_argument("--from", dest="from_step", default=None, metavar="STEP",
                        help="run STEP and the steps after it, cached or not")
    parser.add_argument("--upstream", default=None, metavar="ARN",
                        help="with --from: every other step's results come from this SageMaker execution (its ARN, "
                             "or latest), and its parameter values are the run's")
    parser.add_argument("--changed-ok", action="store_true",
                        help="with --upstream: take a step's results even when the notebook builds it differently "
                             "now")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show what each step prints, as it prints it (in a notebook it is always kept, folded)")


def _run(ctx: Context, args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    say_warnings(ctx)
    if ctx.cli:
        from jupyter_smstep.text import TerminalProgress

        result = ctx.workspace.run_local(overrides, on_event=TerminalProgress(ctx.err, verbose=args.verbose),
                                         runs_dir=args.runs_dir, cache=not args.no_cache, from_step=args.from_step,
                                         upstream=args.upstream, changed_ok=args.changed_ok)
    else:
        from jupyter_smstep.panel.progress import notebook_progress

        with notebook_progress() as on_event:
            result = ctx.workspace.run_local(overrides, on_event=on_event, runs_dir=args.runs_dir,
                                             cache=not args.no_cache, from_step=args.from_step,
                                             upstream=args.upstream, changed_ok=args.changed_ok)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, default=str), file=ctx.out)
    else:
        from jupyter_smstep.text import failure_lead, results_table, saved_lines

        for step in result.steps.values():
            if step.error:
                lead = "\n".join(failure_lead(step.error))
                print(f"\nstep '{step.name}' failed:\n" + (f"{lead}\n\n" if lead else "") + step.error, file=ctx.err)
        if ctx.cli:
            print(results_table(result.to_json()), file=ctx.out)
        elif result.saved:  # the progress display showed the steps; where their --save values went
            print("\n".join(saved_lines(result.to_json())), file=ctx.out)
        from jupyter_smstep.core.instances import summary_lines

        for line in summary_lines(result.suggestions().values()):
            print(line, file=ctx.out)
        verdict = "succeeded" if result.succeeded else "FAILED"
        print(f"run {result.run_id}: {verdict} ({result.run_dir})", file=ctx.out)
    return 0 if result.succeeded else 1


def _verify_args(parser: CommandParser, cli: bool) -> None:
    _param_arguments(parser, cli)
    parser.add_argument("--rtol", type=float, default=RTOL, help="relative tolerance for floats (default 1e-9)")
    parser.add_argument("--atol", type=float, default=ATOL, help="absolute tolerance for floats (default 0)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    parser.add_argument("--runs-dir", default=None, metavar="DIR", help="where runs are kept (default .smstep/runs)")
    parser.add_argument("--timeout", type=float, default=600, metavar="S",
                        help="seconds each cell may take in the fresh kernel smstep verify starts (default 600; "
                             "%%pipeline verify uses the values this kernel already has)")
    parser.add_argument("--execution", default=None, metavar="ARN",
                        help="compare with a SageMaker execution's outputs (its ARN, or latest) instead of a local "
                             "run; the fresh kernel runs with the execution's parameter values")
    parser.add_argument("--changed-ok", action="store_true",
                        help="with --execution: compare a step even when the notebook builds it differently now")


def _verify(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep import verify

    problem = verify.bad_tolerance(args.rtol, args.atol)
    if problem is not None:
        raise SmstepError(problem)
    overrides = _overrides(args)
    if args.execution and overrides:
        raise SmstepError("-p does not apply with --execution: the kernel runs with the execution's parameter values",
                          fix="drop the -p values")
    if args.changed_ok and not args.execution:
        raise SmstepError("--changed-ok applies to --execution only", fix="add --execution ARN (or latest)")
    say_warnings(ctx)
    if args.execution:
        if ctx.cli:
            print(f"verify: running {Path(args.notebook).name} top to bottom in a fresh kernel...", file=ctx.err)
        done = verify.verify_execution(ctx.workspace, args.execution, args.rtol, args.atol,
                                       Path(args.notebook) if ctx.cli else None, args.timeout, args.changed_ok)
    elif ctx.cli:
        from jupyter_smstep.text import TerminalProgress

        print(f"verify: running {Path(args.notebook).name} top to bottom in a fresh kernel...", file=ctx.err)
        done = verify.verify_notebook(Path(args.notebook), ctx.workspace, overrides, args.rtol, args.atol,
                                      args.runs_dir, args.timeout, on_event=TerminalProgress(ctx.err))
    else:
        from jupyter_smstep.panel.progress import notebook_progress

        with notebook_progress() as on_event:
            done = verify.verify_live(ctx.workspace, overrides, args.rtol, args.atol, args.runs_dir, on_event)
    if args.json:
        print(json.dumps(done.to_json(), indent=2, default=str), file=ctx.out)
    else:
        print("\n".join(done.lines()), file=ctx.out)
    return done.exit_code


def _pull_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("steps", nargs="*", metavar="STEP", help="default: every step")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", default=None, metavar="DIR", help="a local run folder (default: the last run)")
    source.add_argument("--execution", default=None, metavar="ARN",
                        help="a SageMaker execution of the pipeline (its ARN, or latest) instead of a local run")
    parser.add_argument("--changed-ok", action="store_true",
                        help="with --execution: pull a step even when the notebook builds it differently now")
    parser.add_argument("--json", action="store_true", help="print each step's outputs as JSON (repr when a "
                        "value is not JSON)")


def _pull(ctx: Context, args: argparse.Namespace) -> int:
    if args.changed_ok and not args.execution:
        raise SmstepError("--changed-ok applies to --execution only", fix="add --execution ARN (or latest)")
    values = _pull_execution(ctx, args) if args.execution else _pull_local(ctx, args)
    if args.json:
        print(json.dumps(values, indent=2, default=repr), file=ctx.out)
    elif ctx.cli:
        for step, outputs in values.items():
            for name, value in outputs.items():
                print(f"{step}.{name} = {_short_repr(value)}", file=ctx.out)
    if ctx.cli:
        return 0
    for outputs in values.values():
        ctx.workspace.namespace.update(outputs)
    names = [n for outputs in values.values() for n in outputs]
    print(f"pulled {', '.join(names) or 'nothing'}", file=ctx.out)
    return 0


def _short_repr(value: Any, width: int = 100) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= width else text[:width - 3] + "..."


def _pull_execution(ctx: Context, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    pulled = ctx.workspace.pull_execution(args.execution, args.steps or None, changed_ok=args.changed_ok)
    for line in pulled.lines():
        print(line, file=ctx.err if ctx.cli else ctx.out)
    return pulled.values


def _pull_local(ctx: Context, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from jupyter_smstep import local

    name = ctx.workspace.graph().name
    # this session's last run, else the newest of this pipeline beside the notebook (`smstep run`'s too)
    run = local.load_run(args.run) if args.run else ctx.workspace.last_run or ctx.workspace.latest_run(name)
    if run is None:
        raise SmstepError(f"no local run of {name!r} to pull from (looked in {ctx.workspace.runs_folder})",
                          fix="run the pipeline first (%pipeline run, or smstep run NB), name a run folder "
                              "with --run DIR, or pull a SageMaker execution with --execution latest")
    out: dict[str, dict[str, Any]] = {}
    for name in args.steps or list(run.steps):
        if name not in run.steps:
            raise SmstepError(f"the run has no step {name!r} (steps: {', '.join(run.steps)})",
                              fix=did_you_mean(name, run.steps, "the run's steps"))
        step = run.steps[name]
        if step.condition is not None:
            continue  # a condition has no outputs
        if step.state != "succeeded":
            why = f" ({step.summary})" if step.state == "skipped" and step.skipped_because and step.summary else ""
            print(f"step '{name}' {step.state}: nothing to pull{why}", file=ctx.err)
            continue
        out[name] = run.outputs(name) or {}
    return out


def _history_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("-n", "--last", type=int, default=5, metavar="N", help="how many executions (default 5)")
    parser.add_argument("--json", action="store_true", help="print them as JSON")


def _history(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep.remote import history

    if not 1 <= args.last <= 100:
        raise SmstepError(f"--last {args.last}: between 1 and 100 executions", fix="e.g. --last 5")
    rows, estimates = ctx.workspace.history(args.last)
    if args.json:
        print(json.dumps([row.to_json(estimates) for row in rows], indent=2), file=ctx.out)
    else:
        print("\n".join(history.lines(rows, estimates)), file=ctx.out)
    return 0

def _submit_args(parser: CommandParser, cli: bool) -> None:
    _param_arguments(parser, cli)
    parser.add_argument("--wait", action="store_true", help="follow the execution until it ends")
    parser.add_argument("--changed", action="store_true",
                        help="run only the steps changed since the last succeeded execution (and those after them)")
    parser.add_argument("--force", action="store_true", help="with --changed: start even when nothing changed")


def _submit(ctx: Context, args: argparse.Namespace) -> int:
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
    submission = ctx.workspace.submit(_overrides(args), changed=args.changed, force=args.force)
    for note in submission.notes:
        print(f"note: {note}", file=ctx.err)
    selection = submission.selection
    if selection is not None:
        print(selection.note + ("" if submission.started else ": nothing started (--force starts it anyway)"),
              file=ctx.err if ctx.cli else ctx.out)
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


def _execution_arn(ctx: Context, args: argparse.Namespace) -> str:
    arn = args.execution_arn
    if not arn and ctx.workspace is not None and ctx.workspace.last_execution is not None:
        arn = ctx.workspace.last_execution.execution_arn
    if not arn:
        raise SmstepError("no execution given", fix="%pipeline submit first, or pass an execution ARN")
    from jupyter_smstep.remote.executions import owner_of

    owner_of(arn)  # its form, before anything reaches AWS
    return arn


def _status(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep import text

    return 0 if text.print_status(_execution_arn(ctx, args), stream=ctx.out) else 1


def _stop(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep.remote import monitor

    arn = _execution_arn(ctx, args)
    monitor.stop(arn)
    print(f"stopping {arn}", file=ctx.err if ctx.cli else ctx.out)
    return 0


def _retry_args(parser: CommandParser, cli: bool) -> None:
    _execution_argument(parser, cli)
    parser.add_argument("--wait", action="store_true", help="follow the execution until it ends")


def _retry(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep import text
    from jupyter_smstep.remote import monitor

    arn = _execution_arn(ctx, args)
    monitor.retry(arn)
    print(f"retrying {arn}", file=ctx.err if ctx.cli else ctx.out)
    if args.wait:
        return 0 if text.follow(arn, stream=ctx.err if ctx.cli else ctx.out) else 1
    return 0


def _remove_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("step", metavar="STEP", help="the step to forget")


def _remove(ctx: Context, args: argparse.Namespace) -> int:
    registry = ctx.workspace.registry
    if not registry.remove_step(args.step):
        names = [c.step.name for c in registry.steps if c.step is not None]
        raise SmstepError(f"no step named {args.step!r} (steps: {', '.join(names) or 'none'})",
                          fix=did_you_mean(args.step, names, "%pipeline show"))
    return 0


def _cost_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--prices", default=None, metavar="FILE",
                        help='hourly prices to use instead of the AWS Price List API: {"region": "us-east-1", '
                        '"currency": "USD", "hourly": {"ml.m5.large": 0.115}}')
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _cost(ctx: Context, args: argparse.Namespace) -> int:
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


def _schedule_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("name", metavar="NAME", help="the schedule's name (EventBridge Scheduler, default group)")
    when = parser.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='six fields, e.g. "cron(0 6 * * ? *)" (06:00 UTC daily)')
    when.add_argument("--rate", metavar="EXPR", help='e.g. "rate(1 day)", "rate(6 hours)"')
    when.add_argument("--at", metavar="EXPR", help='once, e.g. "at(2027-01-01T06:00:00)" (UTC)')
    parser.add_argument("--start", metavar="ISO", help="first possible run (default: now)")
    parser.add_argument("--end", metavar="ISO", help="no run after this")
    parser.add_argument("--disabled", action="store_true", help="create it paused")
    parser.add_argument("--role", metavar="ARN", help="the role EventBridge Scheduler assumes to start the "
                        "pipeline (trusts scheduler.amazonaws.com; default: SageMaker.Pipeline.RoleArn)")
    _param_arguments(parser, cli)


def _schedule(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep.core import schedules

    expression = schedules.parse(cron=args.cron, rate=args.rate, at=args.at)
    start = schedules.parse_date(args.start, "--start") if args.start else None
    end = schedules.parse_date(args.end, "--end") if args.end else None
    say_warnings(ctx, service=True)
    found = ctx.workspace.schedule(args.name, expression, role=args.role, parameters=_overrides(args),
                                   start=start, end=end, enabled=not args.disabled)
    for note in found.notes:
        print(f"note: {note}", file=ctx.err)
    if ctx.cli:
        print(json.dumps(found.to_json(), indent=2), file=ctx.out)
    else:
        print(f"scheduled {found.name}: {found.expression}, {found.state.lower()} (the pipeline: {found.upserted})",
              file=ctx.out)
        print(_schedule_line(found), file=ctx.out)
    return 0


def _schedule_line(found: Any) -> str:
    times = ", ".join(t.strftime("%Y-%m-%d %H:%M UTC") for t in found.next_times) or "none"
    params = " ".join(f"{k}={v}" for k, v in found.parameters.items())
    return (f"  {found.name:<20} {found.state:<9} {found.expression}" + (f"  -p {params}" if params else "")
            + f"\n    next: {times}" + (f"\n    role: {found.role}" if found.role else ""))


def _schedules_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("--json", action="store_true", help="as JSON")


def _schedules(ctx: Context, args: argparse.Namespace) -> int:
    found = ctx.workspace.schedules()
    if args.json:
        print(json.dumps([s.to_json() for s in found], indent=2), file=ctx.out)
    elif not found:
        print(f"pipeline {ctx.workspace.graph().name!r} has no schedules", file=ctx.out)
    else:
        print("\n".join(_schedule_line(s) for s in found), file=ctx.out)
    return 0


def _unschedule_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("name", metavar="NAME")


def _unschedule(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workspace.unschedule(args.name)
    print(f"deleted schedule {args.name}", file=ctx.out)
    return 0


def _reset(ctx: Context, args: argparse.Namespace) -> int:
    ctx.workspace.registry.clear_cells()
    return 0


COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("config", "notebook-wide step defaults (the same options as %%step) and the pipeline's --name",
            _config_arguments, _config, where="notebook", headless=True),
    Command("param", "declare pipeline parameters NAME=VALUE (also set in the kernel)",
            _param_args, _param, where="notebook", headless=True),
    Command("outputs", "names every producing step must return", _outputs_args, _outputs, where="notebook",
            headless=True),
    Command("show", "the panel: the DAG and every resolved setting with its source (--text: as text)",
            _show_args, _show, where="notebook"),
    Command("graph", "the DAG, inputs, outputs and resolved settings (no AWS needed)", _graph_args, _graph),
    Command("definition", "the pipeline definition JSON (uploads the step code to S3)", _no_arguments, _definition),
    Command("export", "write a standalone Python module with @step functions", _export_args, _export),
    Command("run", "run the pipeline locally, step by step (no AWS account needed)", _run_args, _run),
    Command("verify", "run the notebook top to bottom and the pipeline locally: is every step's value the "
            "kernel's? (exit 0 all equal, 1 a difference)", _verify_args, _verify),
    Command("pull", "load step outputs of the last (or a given) local run, or of a SageMaker execution, into the "
            "kernel (smstep: print them)", _pull_args, _pull),
    Command("cost", "the estimated cost of a submit, from the last local run's measurements and AWS prices",
            _cost_args, _cost),
    Command("submit", "upsert the pipeline on SageMaker and start an execution", _submit_args, _submit),
    Command("schedule", "create or update a schedule that starts the pipeline (EventBridge Scheduler)",
            _schedule_args, _schedule),
    Command("schedules", "the pipeline's schedules, each with its state and next three runs", _schedules_args,
            _schedules),
    Command("unschedule", "delete one of the pipeline's schedules", _unschedule_args, _unschedule),
    Command("history", "the pipeline's last executions on SageMaker: status, duration, who started them, and each "
            "step's billed seconds beside the local estimate", _history_args, _history),
    Command("status", "per-step status of an execution", _execution_argument, _status, needs_notebook=False),
    Command("stop", "stop a running execution", _execution_argument, _stop, needs_notebook=False),
    Command("retry", "retry a failed or stopped execution from its failed steps", _retry_args, _retry,
            needs_notebook=False),
    Command("remove", "forget a step (e.g. after deleting its cell)", _remove_args, _remove, where="notebook",
            headless=True),
    Command("reset", "forget every recorded cell", _no_arguments, _reset, where="notebook", headless=True),
)}


def overview(cli: bool) -> str:
    """The list of commands, for ``%pipeline`` / ``%pipeline?`` and ``smstep -h``."""
    lines = []
    for c in COMMANDS.values():
        if cli and c.where != "both":
            continue
        lines.append(f"  {c.name:<11} {c.help}")
    if cli:
        lines.append("\nIn a notebook, %pipeline also has: "
                     + ", ".join(c.name for c in COMMANDS.values() if c.where != "both") + ".")
        return "\n".join(lines)
    return "%pipeline COMMAND [options]   (%pipeline COMMAND -h for its options)\n\n" + "\n".join(lines)
