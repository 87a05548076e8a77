"""``smstep``: build, run, export or submit a notebook's pipeline headless (for CI).

    smstep graph NOTEBOOK [--json]
    smstep definition NOTEBOOK
    smstep export NOTEBOOK -o FILE
    smstep run NOTEBOOK [-p NAME=VALUE ...] [--json]
    smstep submit NOTEBOOK [-p NAME=VALUE ...] [--wait]
    smstep status EXECUTION_ARN
    smstep stop EXECUTION_ARN
    smstep retry EXECUTION_ARN [--wait]

AWS settings come from the standard environment (AWS_ENDPOINT_URL, AWS_PROFILE,
AWS_REGION, ...). Exit status: 0 success, 1 the pipeline or a step failed,
2 bad input (the message says what and how to fix it).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from .errors import SmstepError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smstep", description="Notebook %%step cells as a SageMaker Pipeline.")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("graph", help="the DAG and resolved settings (no AWS needed)")
    g.add_argument("notebook")
    g.add_argument("--json", action="store_true", help="machine-readable output")

    d = sub.add_parser("definition", help="print the pipeline definition JSON (uploads step code to S3)")
    d.add_argument("notebook")

    e = sub.add_parser("export", help="write a standalone Python module")
    e.add_argument("notebook")
    e.add_argument("-o", "--output", required=True)

    r = sub.add_parser("run", help="run the pipeline locally (no AWS account needed)")
    r.add_argument("notebook")
    r.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--json", action="store_true", help="print each step's state, duration and outputs as JSON")
    r.add_argument("--runs-dir", default=None, help="where runs are kept (default .smstep/runs)")

    s = sub.add_parser("submit", help="upsert the pipeline on SageMaker and start an execution")
    s.add_argument("notebook")
    s.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    s.add_argument("--wait", action="store_true", help="follow the execution until it ends")

    st = sub.add_parser("status", help="per-step status of an execution")
    st.add_argument("execution_arn")

    sp = sub.add_parser("stop", help="stop a running execution")
    sp.add_argument("execution_arn")

    rt = sub.add_parser("retry", help="retry a failed or stopped execution from its failed steps")
    rt.add_argument("execution_arn")
    rt.add_argument("--wait", action="store_true", help="follow the execution until it ends")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except SmstepError as exc:
        print(f"smstep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("smstep: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("status", "stop", "retry"):
        from . import monitor

        if args.command == "stop":
            monitor.stop(args.execution_arn)
            print(f"stopping {args.execution_arn}", file=sys.stderr)
            return 0
        if args.command == "retry":
            monitor.retry(args.execution_arn)
            print(f"retrying {args.execution_arn}", file=sys.stderr)
            if args.wait:
                return 0 if monitor.follow(args.execution_arn, stream=sys.stderr) else 1
            return 0
        return 0 if monitor.print_status(args.execution_arn, stream=sys.stdout) else 1

    from .notebook import load_workspace
    from .workspace import coerce_overrides, parse_assignments

    ws = load_workspace(args.notebook)
    if args.command == "graph":
        graph = ws.graph()
        if args.json:
            print(json.dumps(graph.to_json(), indent=2))
        else:
            from .report import text_summary

            print(text_summary(graph))
        return 1 if graph.report.errors else 0
    if args.command == "definition":
        print(json.dumps(ws.definition(), indent=2))
        return 0
    if args.command == "export":
        ws.export(args.output)
        print(f"wrote {args.output}", file=sys.stderr)
        return 0
    overrides = coerce_overrides(ws.graph(), parse_assignments(args.param))
    if args.command == "run":
        from .progress import terminal_progress

        result = ws.run_local(overrides, on_event=terminal_progress(sys.stderr), runs_dir=args.runs_dir)
        if args.json:
            print(json.dumps(result.to_json(), indent=2, default=str))
        else:
            for step in result.steps.values():
                if step.error:
                    print(f"\nstep '{step.name}' failed:\n{step.error}", file=sys.stderr)
            print(results_table(result.to_json()))
            print(f"run {result.run_id}: {'succeeded' if result.succeeded else 'FAILED'} ({result.run_dir})")
        return 0 if result.succeeded else 1
    if args.command == "submit":
        submission = ws.submit(overrides)
        print(json.dumps(submission.to_json(), indent=2))
        if args.wait:
            from . import monitor

            return 0 if monitor.follow(submission.execution_arn, stream=sys.stderr) else 1
        return 0
    raise AssertionError(args.command)


def results_table(doc: dict) -> str:
    """One line per step: state, duration and a short repr of each output."""
    lines = []
    steps = doc.get("steps", {})
    width = max((len(n) for n in steps), default=0)
    for name, step in steps.items():
        outputs = step.get("outputs") or {}
        shown = ", ".join(f"{k}={_one_line(v)}" for k, v in outputs.items())
        duration = step.get("duration")
        took = f"{duration:6.1f}s" if isinstance(duration, (int, float)) else "      -"
        lines.append(f"{name:<{width}}  {step.get('state', '?'):<9} {took}  {shown}".rstrip())
    return "\n".join(lines)


def _one_line(value: object, limit: int = 60) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
