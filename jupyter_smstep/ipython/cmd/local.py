"""The commands that run the pipeline on this machine: ``run``, ``verify``, ``pull``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jupyter_smstep.core.compare import ATOL, RTOL
from jupyter_smstep.errors import SmstepError, did_you_mean
from jupyter_smstep.ipython.cmd.base import (
    Command,
    CommandParser,
    Context,
    param_arguments,
    parameter_overrides,
    say_warnings,
    short_repr,
)


def run_args(parser: CommandParser, cli: bool) -> None:
    param_arguments(parser, cli)
    parser.add_argument("--json", action="store_true", help="print each step's state, duration and outputs as JSON")
    parser.add_argument("--runs-dir", default=None, metavar="DIR", help="where runs are kept (default .smstep/runs)")
    parser.add_argument(
        "--no-cache", action="store_true", help="run every step, even one whose result an earlier run already has"
    )
    parser.add_argument(
        "--from", dest="from_step", default=None, metavar="STEP", help="run STEP and the steps after it, cached or not"
    )
    parser.add_argument(
        "--upstream",
        default=None,
        metavar="ARN",
        help="with --from: every other step's results come from this SageMaker execution (its ARN, "
        "or latest), and its parameter values are the run's",
    )
    parser.add_argument(
        "--changed-ok",
        action="store_true",
        help="with --upstream: take a step's results even when the notebook builds it differently now",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show what each step prints, as it prints it (in a notebook it is always kept, folded)",
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    overrides = parameter_overrides(args)
    say_warnings(ctx)
    if ctx.cli:
        from jupyter_smstep.text import TerminalProgress

        result = ctx.workspace.run_local(
            overrides,
            on_event=TerminalProgress(ctx.err, verbose=args.verbose),
            runs_dir=args.runs_dir,
            cache=not args.no_cache,
            from_step=args.from_step,
            upstream=args.upstream,
            changed_ok=args.changed_ok,
        )
    else:
        from jupyter_smstep.panel.progress import notebook_progress

        with notebook_progress() as on_event:
            result = ctx.workspace.run_local(
                overrides,
                on_event=on_event,
                runs_dir=args.runs_dir,
                cache=not args.no_cache,
                from_step=args.from_step,
                upstream=args.upstream,
                changed_ok=args.changed_ok,
            )
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


def verify_args(parser: CommandParser, cli: bool) -> None:
    param_arguments(parser, cli)
    parser.add_argument("--rtol", type=float, default=RTOL, help="relative tolerance for floats (default 1e-9)")
    parser.add_argument("--atol", type=float, default=ATOL, help="absolute tolerance for floats (default 0)")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    parser.add_argument("--runs-dir", default=None, metavar="DIR", help="where runs are kept (default .smstep/runs)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        metavar="S",
        help="seconds each cell may take in the fresh kernel smstep verify starts (default 600; "
        "%%pipeline verify uses the values this kernel already has)",
    )
    parser.add_argument(
        "--execution",
        default=None,
        metavar="ARN",
        help="compare with a SageMaker execution's outputs (its ARN, or latest) instead of a local "
        "run; the fresh kernel runs with the execution's parameter values",
    )
    parser.add_argument(
        "--changed-ok",
        action="store_true",
        help="with --execution: compare a step even when the notebook builds it differently now",
    )


def verify(ctx: Context, args: argparse.Namespace) -> int:
    from jupyter_smstep import verify

    problem = verify.bad_tolerance(args.rtol, args.atol)
    if problem is not None:
        raise SmstepError(problem)
    overrides = parameter_overrides(args)
    if args.execution and overrides:
        raise SmstepError(
            "-p does not apply with --execution: the kernel runs with the execution's parameter values",
            fix="drop the -p values",
        )
    if args.changed_ok and not args.execution:
        raise SmstepError("--changed-ok applies to --execution only", fix="add --execution ARN (or latest)")
    say_warnings(ctx)
    if args.execution:
        if ctx.cli:
            print(f"verify: running {Path(args.notebook).name} top to bottom in a fresh kernel...", file=ctx.err)
        done = verify.verify_execution(
            ctx.workspace,
            args.execution,
            args.rtol,
            args.atol,
            Path(args.notebook) if ctx.cli else None,
            args.timeout,
            args.changed_ok,
        )
    elif ctx.cli:
        from jupyter_smstep.text import TerminalProgress

        print(f"verify: running {Path(args.notebook).name} top to bottom in a fresh kernel...", file=ctx.err)
        done = verify.verify_notebook(
            Path(args.notebook),
            ctx.workspace,
            overrides,
            args.rtol,
            args.atol,
            args.runs_dir,
            args.timeout,
            on_event=TerminalProgress(ctx.err),
        )
    else:
        from jupyter_smstep.panel.progress import notebook_progress

        with notebook_progress() as on_event:
            done = verify.verify_live(ctx.workspace, overrides, args.rtol, args.atol, args.runs_dir, on_event)
    if args.json:
        print(json.dumps(done.to_json(), indent=2, default=str), file=ctx.out)
    else:
        print("\n".join(done.lines()), file=ctx.out)
    return done.exit_code


def pull_args(parser: CommandParser, cli: bool) -> None:
    parser.add_argument("steps", nargs="*", metavar="STEP", help="default: every step")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--run", default=None, metavar="DIR", help="a local run folder (default: the last run)")
    source.add_argument(
        "--execution",
        default=None,
        metavar="ARN",
        help="a SageMaker execution of the pipeline (its ARN, or latest) instead of a local run",
    )
    parser.add_argument(
        "--changed-ok",
        action="store_true",
        help="with --execution: pull a step even when the notebook builds it differently now",
    )
    parser.add_argument(
        "--json", action="store_true", help="print each step's outputs as JSON (repr when a value is not JSON)"
    )


def pull(ctx: Context, args: argparse.Namespace) -> int:
    if args.changed_ok and not args.execution:
        raise SmstepError("--changed-ok applies to --execution only", fix="add --execution ARN (or latest)")
    values = pull_execution(ctx, args) if args.execution else pull_local(ctx, args)
    if args.json:
        print(json.dumps(values, indent=2, default=repr), file=ctx.out)
    elif ctx.cli:
        for step, outputs in values.items():
            for name, value in outputs.items():
                print(f"{step}.{name} = {short_repr(value)}", file=ctx.out)
    if ctx.cli:
        return 0
    for outputs in values.values():
        ctx.workspace.namespace.update(outputs)
    names = [n for outputs in values.values() for n in outputs]
    print(f"pulled {', '.join(names) or 'nothing'}", file=ctx.out)
    return 0


def pull_execution(ctx: Context, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    pulled = ctx.workspace.pull_execution(args.execution, args.steps or None, changed_ok=args.changed_ok)
    for line in pulled.lines():
        print(line, file=ctx.err if ctx.cli else ctx.out)
    return pulled.values


def pull_local(ctx: Context, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    from jupyter_smstep import local

    name = ctx.workspace.graph().name
    # this session's last run, else the newest of this pipeline beside the notebook (`smstep run`'s too)
    run = local.load_run(args.run) if args.run else ctx.workspace.last_run or ctx.workspace.latest_run(name)
    if run is None:
        raise SmstepError(
            f"no local run of {name!r} to pull from (looked in {ctx.workspace.runs_folder})",
            fix="run the pipeline first (%pipeline run, or smstep run NB), name a run folder "
            "with --run DIR, or pull a SageMaker execution with --execution latest",
        )
    out: dict[str, dict[str, Any]] = {}
    for name in args.steps or list(run.steps):
        if name not in run.steps:
            raise SmstepError(
                f"the run has no step {name!r} (steps: {', '.join(run.steps)})",
                fix=did_you_mean(name, run.steps, "the run's steps"),
            )
        step = run.steps[name]
        if step.condition is not None:
            continue  # a condition has no outputs
        if step.state != "succeeded":
            why = f" ({step.summary})" if step.state == "skipped" and step.skipped_because and step.summary else ""
            print(f"step '{name}' {step.state}: nothing to pull{why}", file=ctx.err)
            continue
        out[name] = run.outputs(name) or {}
    return out


COMMANDS = (
    Command("run", "run the pipeline locally, step by step (no AWS account needed)", run_args, run),
    Command(
        "verify",
        "run the notebook top to bottom and the pipeline locally: is every step's value the "
        "kernel's? (exit 0 all equal, 1 a difference)",
        verify_args,
        verify,
    ),
    Command(
        "pull",
        "load step outputs of the last (or a given) local run, or of a SageMaker execution, into the "
        "kernel (smstep: print them)",
        pull_args,
        pull,
    ),
)
