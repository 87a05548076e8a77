"""``%%step`` and ``%pipeline``: parse options, record cells, delegate.

Thin by design: analysis, graph, settings and compilation live in their own
modules; this file only talks to IPython.
"""

from __future__ import annotations

import re
import shlex
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments

from . import options as options_mod
from .errors import SmstepError
from .registry import Registry, StepSpec
from .workspace import Workspace, coerce_overrides, parse_assignments, pipeline_name_from_path


def _apply(decorators, func):
    for deco in reversed(decorators):
        func = deco(func)
    return func


def _step_signature():
    """Holder whose docstring and argparse spec is ``%%step``'s help."""


_step_signature.__name__ = "%step"  # argparse's prog: the usage line reads "%%step ..."
_step_signature.__doc__ = """Mark this cell as a SageMaker pipeline step.

    %%step [NAME] [options]

Inputs are the variables the cell reads: an earlier step's output becomes a
link, a %pipeline param a pipeline parameter, other kernel values are captured.
Outputs are the variables later steps read. The cell still runs in the kernel
unless --defer is given. Every option of the SDK's @step decorator is available.
"""
_step_signature = _apply(
    [magic_arguments(),
     argument("name", nargs="?", default=None, help="Step name (default: the first variable the cell assigns)."),
     argument("--inputs", default=None, metavar="A,B", help="Comma-separated inputs, overriding inference."),
     argument("--outputs", default=None, metavar="A,B", help="Comma-separated outputs, overriding inference."),
     argument("--defer", action="store_true", help="Register the step without running the cell in the kernel.")]
    + options_mod.option_decorators(per_step=True),
    _step_signature,
)


def _config_signature():
    """Notebook-wide defaults for every step: %pipeline config [--name NAME] [step options]."""


_config_signature.__name__ = "pipeline config"


_config_signature = _apply(
    [magic_arguments(), argument("--name", default=None, help="Pipeline name.")]
    + options_mod.option_decorators(per_step=False),
    _config_signature,
)

PIPELINE_HELP = """%pipeline SUBCOMMAND ...

  config [--name NAME] [options]   notebook-wide step defaults (same options as %%step)
  param NAME=VALUE ...             declare pipeline parameters (also set in the kernel)
  outputs NAME ...                 names every producing step must return
  show [--text]                    the DAG and every resolved setting with its source
  definition                       the pipeline definition JSON (uploads step code to S3)
  export FILE.py                   write a standalone Python module with @step functions
  run [-p NAME=VALUE ...]          run the pipeline locally, step by step, no AWS needed
  pull [STEP]                      load step outputs of the last local run into the kernel
  submit [-p NAME=VALUE ...] [--wait]  upsert the pipeline on SageMaker and start it
  status [EXECUTION_ARN]           per-step status of the latest (or given) execution
  stop [EXECUTION_ARN] · retry [EXECUTION_ARN]   stop / retry the latest (or given) execution
  remove STEP                      forget a step (e.g. after deleting its cell)
  reset                            forget every recorded cell
"""


@magics_class
class StepMagics(Magics):
    def __init__(self, shell, registry: Registry | None = None, headless: bool = False) -> None:
        super().__init__(shell)
        self.registry = registry or Registry()
        self.headless = headless  # the smstep command: register step cells, never run them
        self._nested = 0
        ns = shell.user_ns
        default = pipeline_name_from_path(ns.get("__session__") or ns.get("__vsc_ipynb_file__"))
        self.workspace = Workspace(self.registry, ns, default_name=default)

    # ------------------------------------------------------------------ %%step
    @cell_magic
    def step(self, line: str, cell: str) -> None:
        # (the docstring is set below from the option table: `%%step?` shows every option)
        try:
            args = self._parse(_step_signature, line, "%%step", per_step=True)
            options = options_mod.convert(args, "%%step")
        except SmstepError as exc:
            raise UsageError(str(exc)) from None
        name = args.name or self._default_name(cell)
        spec = StepSpec(
            name=name,
            options=options,
            inputs=_names(args.inputs),
            outputs=_names(args.outputs),
            header=f"%%step {line}".strip(),
        )
        recorded = self.registry.record_step(spec, cell, cell_id=self._cell_id())
        if recorded.problem is not None:
            print(f"jupyter_smstep: {recorded.problem}", file=sys.stderr)
        if self.headless or args.defer:
            return
        self._nested += 1
        try:
            result = self.shell.run_cell(cell, store_history=False)
        finally:
            self._nested -= 1
        if not result.success:
            # The traceback is already shown; fail the cell too, so "Run All" stops here.
            error = result.error_in_exec or result.error_before_exec
            raise UsageError(f"step '{name}' is registered, but running it in the kernel raised "
                             f"{type(error).__name__} (traceback above)")

    step.__doc__ = _step_signature.__doc__

    def _default_name(self, cell: str) -> str:
        """A stable, readable name: the first variable the cell assigns (or step-N)."""
        from .registry import analyse_source

        analysis, _ = analyse_source(cell)
        taken = {c.step.name for c in self.registry.steps}  # type: ignore[union-attr]
        base = None
        if analysis is not None and analysis.writes:
            base = min(analysis.writes.items(), key=lambda kv: kv[1])[0]
        if not base:
            base = f"step-{len(self.registry.steps) + 1}"
        base = re.sub(r"[^A-Za-z0-9_-]", "-", base)[:60]
        existing = {c.step.name for c in self.registry.steps if c.source == cell}  # type: ignore[union-attr]
        if base in existing:
            return base
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        return name

    # ------------------------------------------------------------------ %pipeline
    @line_magic
    def pipeline(self, line: str) -> Any:
        # (docstring set below)
        parts = line.strip().split(None, 1)
        if not parts or parts[0] in ("help", "-h", "--help"):
            print(PIPELINE_HELP)
            return None
        command, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        handler = getattr(self, f"_cmd_{command.replace('-', '_')}", None)
        if handler is None:
            raise UsageError(f"%pipeline: unknown subcommand {command!r}\n{PIPELINE_HELP}")
        if self.headless and command not in ("config", "param", "outputs", "remove", "reset"):
            return None  # building a notebook headless: its own run/submit/show cells must not fire
        try:
            return handler(rest)
        except SmstepError as exc:
            raise UsageError(str(exc)) from None

    pipeline.__doc__ = PIPELINE_HELP + "\n" + (_config_signature.__doc__ or "")

    def _cmd_config(self, rest: str) -> None:
        args = self._parse(_config_signature, rest, "%pipeline config", per_step=False)
        options = options_mod.convert(args, "%pipeline config")
        self.registry.set_defaults(options, name=args.name)

    def _cmd_param(self, rest: str) -> None:
        values = parse_assignments(shlex.split(rest))
        if not values:
            raise SmstepError("%pipeline param needs NAME=VALUE", fix="e.g. %pipeline param epochs=10")
        for name, value in values.items():
            self.registry.set_parameter(name, value)
            self.shell.user_ns[name] = value

    def _cmd_outputs(self, rest: str) -> None:
        self.registry.exports |= set(_names(rest.replace(" ", ",")) or ())
        self.registry.revision += 1

    def _cmd_show(self, rest: str) -> Any:
        if "--text" not in rest.split():
            import importlib

            return importlib.import_module("jupyter_smstep.panel").show(self.workspace)
        from .report import text_summary

        print(text_summary(self.workspace.graph()))
        return None

    def _cmd_definition(self, rest: str) -> None:
        import json

        print(json.dumps(self.workspace.definition(), indent=2))

    def _cmd_export(self, rest: str) -> None:
        path = rest.strip() or "pipeline.py"
        self.workspace.export(path)
        print(f"wrote {path}")

    def _cmd_run(self, rest: str) -> Any:
        items = _param_items(rest)
        graph = self.workspace.graph()
        overrides = coerce_overrides(graph, parse_assignments(items))
        from .progress import notebook_progress

        with notebook_progress() as on_event:
            result = self.workspace.run_local(overrides, on_event=on_event)
        print(f"run {result.run_id}: {'succeeded' if result.succeeded else 'FAILED'} — results in {result.run_dir}")
        if not result.succeeded:
            for step in result.steps.values():
                if step.error:
                    print(f"\nstep '{step.name}' failed:\n{step.error}", file=sys.stderr)
        return None

    def _cmd_pull(self, rest: str) -> None:
        from . import local

        tokens = rest.split()
        run = self.workspace.last_run
        if "--run" in tokens:
            i = tokens.index("--run")
            run = local.load_run(tokens[i + 1])
            tokens = tokens[:i] + tokens[i + 2:]
        if run is None:
            raise SmstepError("no local run to pull from", fix="run the pipeline first with %pipeline run")
        names = tokens or [s for s in run.steps]
        loaded = []
        for name in names:
            if name not in run.steps:
                raise SmstepError(f"the run has no step {name!r} (steps: {', '.join(run.steps)})")
            if run.steps[name].state != "succeeded":
                print(f"step '{name}' {run.steps[name].state}: nothing to pull", file=sys.stderr)
                continue
            values = run.outputs(name) or {}
            self.shell.user_ns.update(values)
            loaded += list(values)
        print(f"pulled {', '.join(loaded) or 'nothing'}")

    def _cmd_submit(self, rest: str) -> Any:
        tokens = shlex.split(rest)
        wait = "--wait" in tokens
        graph = self.workspace.graph()
        overrides = coerce_overrides(graph, parse_assignments(_param_items(" ".join(t for t in tokens if t != "--wait"))))
        submission = self.workspace.submit(overrides)
        print(f"started {submission.execution_arn}\n{submission.console_url}")
        if wait:
            from . import monitor

            monitor.follow(submission.execution_arn, stream=sys.stdout)
        return None

    def _cmd_status(self, rest: str) -> None:
        from . import monitor

        monitor.print_status(self._execution_arn(rest), stream=sys.stdout)

    def _cmd_stop(self, rest: str) -> None:
        from . import monitor

        arn = self._execution_arn(rest)
        monitor.stop(arn)
        print(f"stopping {arn}")

    def _cmd_retry(self, rest: str) -> None:
        from . import monitor

        arn = self._execution_arn(rest)
        monitor.retry(arn)
        print(f"retrying {arn}")

    def _execution_arn(self, rest: str) -> str:
        arn = rest.strip() or (self.workspace.last_execution.execution_arn if self.workspace.last_execution else "")
        if not arn:
            raise SmstepError("no execution given", fix="%pipeline submit first, or pass an execution ARN")
        return arn

    def _cmd_remove(self, rest: str) -> None:
        name = rest.strip()
        if not self.registry.remove_step(name):
            raise SmstepError(f"no step named {name!r}", fix=f"steps: {', '.join(c.step.name for c in self.registry.steps)}")  # type: ignore[union-attr]

    def _cmd_reset(self, rest: str) -> None:
        self.registry.clear_cells()

    # ------------------------------------------------------------------ helpers
    def _parse(self, func, line: str, where: str, per_step: bool):
        try:
            # shlex, not IPython's arg_split: quoted values (JSON, shell commands) lose their quotes.
            return func.parser.parse_args(shlex.split(line))
        except ValueError as exc:  # unbalanced quotes
            raise SmstepError(f"{where}: {exc}", fix="balance the quotes on the line") from None
        except UsageError as exc:
            text = str(exc)
            bad = re.search(r"unrecognized arguments: (\S+)", text)
            if bad:
                raise SmstepError(f"{where}: unknown option {bad.group(1)}",
                                  fix=options_mod.suggest_flag(bad.group(1), per_step)) from None
            raise SmstepError(f"{where}: {text}", fix=f"see {where.split()[0]}? for the options") from None

    def _cell_id(self) -> str | None:
        header = getattr(self.shell, "parent_header", None) or {}
        return (header.get("metadata") or {}).get("cellId")

    def record_plain_cell(self, result) -> None:
        """post_run_cell hook: remember ordinary cells (helpers, constants, imports)."""
        if self._nested or self.headless:
            return
        info = result.info
        raw = getattr(info, "raw_cell", "") or ""
        if raw.lstrip().startswith("%%step") or not raw.strip():
            return
        try:
            source = self.shell.transform_cell(raw)
        except Exception:  # noqa: BLE001 - an untransformable cell is simply not recorded
            return
        self.registry.record_plain(source, cell_id=getattr(info, "cell_id", None))


_names = lambda text: tuple(n.strip() for n in text.split(",") if n.strip()) if text else None  # noqa: E731


def _param_items(rest: str) -> list[str]:
    tokens = shlex.split(rest)
    items = []
    i = 0
    while i < len(tokens):
        if tokens[i] in ("-p", "--param"):
            if i + 1 >= len(tokens):
                raise SmstepError("-p needs NAME=VALUE", fix="e.g. %pipeline run -p epochs=5")
            items.append(tokens[i + 1])
            i += 2
        elif "=" in tokens[i]:
            items.append(tokens[i])
            i += 1
        else:
            raise SmstepError(f"unexpected argument {tokens[i]!r}", fix="pass parameters as -p NAME=VALUE")
    return items
