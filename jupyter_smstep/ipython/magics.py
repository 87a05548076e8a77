"""``%%step`` and ``%pipeline``: parse options, record cells, delegate.

Thin by design: analysis, graph, settings and compilation live in their own
modules; this file only talks to IPython.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any
from collections.abc import Mapping

from IPython.core.error import UsageError
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand

from jupyter_smstep.core.registry import Registry, StepSpec
from jupyter_smstep.errors import Problem, SmstepError, did_you_mean
from jupyter_smstep.core import fingerprint
from jupyter_smstep.ipython import cmd
from jupyter_smstep.ipython.cmd import HelpShown, cells
from jupyter_smstep.verify import VERIFY_ENV
from jupyter_smstep.workspace import Workspace, pipeline_name_from_path


_UNSET = object()


@magics_class
class StepMagics(Magics):
    shell: InteractiveShell  # never None here: the magics are made with the shell they serve

    def __init__(self, shell: InteractiveShell, registry: Registry | None = None, headless: bool = False) -> None:
        super().__init__(shell)
        self.registry = registry or Registry()
        self.headless = headless  # the smstep command: register step cells, never run them
        self._nested = 0
        # The step the current cell recorded (also when %%step follows another cell magic, e.g.
        # %%time): the cell is then not an ordinary cell, whatever its first line says.
        self.recorded_in_cell: str | None = None
        ns = shell.user_ns
        default = pipeline_name_from_path(ns.get("__session__") or ns.get("__vsc_ipynb_file__"))
        self.workspace = Workspace(self.registry, ns, default_name=default)
        # Cells tagged `parameters` (papermill's convention), as the lab extension reports them: a kernel never
        # sees cell tags otherwise. What each recorded cell would give as parameters, and what each gave.
        self.parameter_cells: set[str] = set()
        self._would_give: dict[str, tuple[dict[str, Any], list[Problem]]] = {}
        self._gave: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ %%step
    @cell_magic
    @no_var_expand  # the line as written: a headless build, which has no kernel values, reads the same
    def step(self, line: str, cell: str) -> None:
        # (the docstring is set below from the option table: `%%step?` shows every option)
        try:
            parsed = cells.parse_step(line, self.registry.parameters)
        except HelpShown:
            return
        except SmstepError as exc:
            raise UsageError(str(exc)) from None
        cell_id = self._cell_id()
        name = parsed.name or self._default_name(cell, cell_id)
        spec = parsed.spec(name, header=f"%%step {line}".strip())
        seen = self._seen(spec, cell, cell_id)
        recorded = self.registry.record_step(spec, cell, cell_id=cell_id, seen=seen, unbound=seen.unbound)
        self.recorded_in_cell = name
        if recorded.problem is not None:
            print(f"jupyter_smstep: {recorded.problem}", file=sys.stderr)
        if self.headless or parsed.defer:
            return
        reads = recorded.analysis.reads if recorded.analysis is not None else {}
        before = {n: fp for n, fp in seen.fingerprints.items() if n in reads}
        before.update(fingerprint.fingerprints([n for n in reads if n not in seen], self.shell.user_ns))
        self._nested += 1
        try:
            if spec.foreach is not None:
                result = self._run_foreach(spec, recorded, seen)
            else:
                result = self.shell.run_cell(cell, store_history=False)
        finally:
            self._nested -= 1
            self.recorded_in_cell = name
        outputs = recorded.analysis.outputs if recorded.analysis is not None else set()
        if result.success:  # what the cell left, as it left it (a later cell may change it): %pipeline verify
            from jupyter_smstep.sdk import snapshot

            self.registry.ran(recorded, snapshot.take(sorted(set(outputs) | set(reads)), self.shell.user_ns))
        changed = [n for n in fingerprint.changed(before, self.shell.user_ns) if n not in outputs]
        if changed:  # what the build sees by itself (a notebook helper that changes its argument) needs no word
            changed = [n for n in changed if n not in self._seen_changing(name)]
        if changed:
            self.registry.changed_in_kernel(recorded, changed)
            shown = ", ".join(changed)
            print(
                f"jupyter_smstep: step '{name}' changed {shown} in place when it ran (its code does not show "
                f"it): now an output. For a headless build (smstep) to agree, add a cell: "
                f"%pipeline outputs {' '.join(changed)}",
                file=sys.stderr,
            )
        if spec.saves and result.success:
            print(
                f"jupyter_smstep: step '{name}' --save writes when the pipeline runs, not in the kernel: "
                "%pipeline run writes into the run's S3 (listed after the run), a submit to S3",
                file=sys.stderr,
            )
        if not result.success:
            # The traceback is already shown; fail the cell too, so "Run All" stops here.
            error = result.error_in_exec or result.error_before_exec
            raise UsageError(
                f"step '{name}' is registered, but running it in the kernel raised "
                f"{type(error).__name__} (traceback above)"
            )

    step.__doc__ = cells.STEP_PARSER.format_help()

    # ------------------------------------------------------------------ %%remote
    @cell_magic
    @no_var_expand
    def remote(self, line: str, cell: str) -> None:
        try:
            args, options = cells.parse_remote(line, self.registry.parameters)
        except HelpShown:
            return
        except SmstepError as exc:
            raise UsageError(str(exc)) from None
        if self.headless:
            return  # a saved notebook's build runs no job; steps reading the cell's values then say so
        self.recorded_in_cell = "%%remote"
        self.registry.record_plain(cell, cell_id=self._cell_id())  # what it assigns is the kernel's, as after a cell
        progress = None
        if args.local:
            from jupyter_smstep.text import TerminalProgress

            progress = TerminalProgress(sys.stderr)
        try:
            done = self.workspace.remote_cell(cell, options, local=args.local, on_event=progress)
        except SmstepError as exc:
            raise UsageError(str(exc)) from None
        print(done.line(), file=sys.stderr)

    def _run_foreach(self, spec: StepSpec, recorded: Any, seen: Any) -> Any:
        """Run a ``--foreach`` cell once per item, as each iteration's job does: the item bound to the loop's
        name, and every value the cell reads as its cell saw it (an iteration never sees what an earlier one
        rebound or changed in place). Then each name the cell assigns becomes the list of the iterations'
        values, or with ``--select`` the chosen iteration's (``core.foreach``). Returns the last result."""
        import copy

        from jupyter_smstep.core import foreach

        assert spec.foreach is not None
        var, source = spec.foreach
        ns = self.shell.user_ns
        items, why = foreach.items_of(ns[source]) if source in ns else (None, "is not defined")
        if items is None:
            raise UsageError(f"step '{spec.name}': --foreach {var}={source}: {source!r} {why}")
        analysis = recorded.analysis
        reads = set(analysis.reads) if analysis is not None else set()
        changes = (set(analysis.writes) | set(analysis.mutates)) if analysis is not None else set()
        restore = {n: seen[n] for n in sorted(reads & changes) if n in seen and n != var}
        assigned = [
            n
            for n in (analysis.outputs if analysis is not None else ())
            if n != var and n not in analysis.imports and n not in analysis.defines
        ]
        before = ns.get(var, _UNSET)
        runs: list[dict[str, Any]] = []
        result = None
        try:
            for index, item in enumerate(items):
                for name, value in restore.items():
                    ns[name] = copy.deepcopy(value)
                ns[var] = item
                print(f"jupyter_smstep: step '{spec.name}' {index + 1}/{len(items)}: {var} = {item!r}", file=sys.stderr)
                result = self.shell.run_cell(recorded.source, store_history=False)
                if not result.success:
                    print(
                        f"jupyter_smstep: step '{spec.name}' failed at item {index} ({var} = {item!r})", file=sys.stderr
                    )
                    return result
                runs.append({n: ns[n] for n in assigned if n in ns})
        finally:
            if before is _UNSET:
                ns.pop(var, None)
            else:
                ns[var] = before
        if spec.select is not None:
            how, key = spec.select
            best = foreach.pick(how, [run[key] for run in runs])
            ns.update(runs[best])
            print(
                f"jupyter_smstep: step '{spec.name}' --select {how}:{key}: item {best} ({var} = {items[best]!r})",
                file=sys.stderr,
            )
        else:
            ns.update({n: [run[n] for run in runs] for n in assigned if all(n in run for run in runs)})
        return result

    def _seen_changing(self, name: str) -> set[str]:
        """The inputs the graph already knows step ``name`` changes in place (through the notebook's own
        functions, or declared with ``%pipeline outputs``): a headless build sees these too."""
        try:
            graph = self.workspace.graph()
        except Exception:  # noqa: BLE001 - no graph, no knowledge: say every change
            return set()
        node = next((n for n in graph.steps if n.name == name or (n.fanout and n.fanout.step == name)), None)
        return set(node.hidden_changes) if node is not None else set()

    def _seen(self, spec: StepSpec, cell: str, cell_id: str | None) -> Any:
        """The values the step cell reads, as they are now (``sdk.snapshot``): what the step gets, whatever
        a later cell rebinds. Parameters come from the pipeline and are not kept."""
        from jupyter_smstep.core import conditions
        from jupyter_smstep.core.registry import analyse_source
        from jupyter_smstep.sdk import snapshot

        analysis, _ = analyse_source(cell)
        names = list(analysis.reads) if analysis is not None else []
        names += list(spec.inputs or ())
        if spec.when is not None:
            try:
                names += [op.name for op in conditions.operands(conditions.parse(spec.when)) if op.name]
            except conditions.ConditionError:
                pass  # refused on the %%step line already
        changes = list(analysis.mutates) if analysis is not None else []
        if spec.foreach is not None:  # the item is bound per iteration; the list is read by the %%step line
            names = [n for n in names if n != spec.foreach[0]] + [spec.foreach[1]]
        return snapshot.take(names, self.shell.user_ns, skip=self.registry.parameters, changes=changes)

    def _default_name(self, cell: str, cell_id: str | None) -> str:
        """A stable, readable name: the first variable the cell assigns (or step-N).

        A cell re-run keeps its name: known by its cell id when the frontend sends
        one, else by its source (two identical unnamed cells are then one step).
        """
        from jupyter_smstep.core.registry import analyse_source

        if cell_id is not None:
            same = next((c.step for c in self.registry.steps if c.cell_id == cell_id and c.step), None)
            if same is not None:
                return same.name
        analysis, _ = analyse_source(cell)
        taken = {c.step.name for c in self.registry.steps if c.step and (cell_id is None or c.cell_id != cell_id)}
        base = None
        if analysis is not None and analysis.writes:
            base = min(analysis.writes.items(), key=lambda kv: kv[1])[0]
        if not base:
            base = f"step-{len(self.registry.steps) + 1}"
        base = re.sub(r"[^A-Za-z0-9_-]", "-", base)[:60]
        if cell_id is None and base in {c.step.name for c in self.registry.steps if c.source == cell and c.step}:
            return base
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        return name

    # ------------------------------------------------------------------ %pipeline
    @line_magic
    def pipeline(self, line: str) -> Any:
        # (the docstring, set below, lists the commands)
        parts = line.strip().split(None, 1)
        if not parts or parts[0] in ("help", "-h", "--help"):
            print(cmd.overview(cli=False))
            return None
        name, rest = parts[0], (parts[1] if len(parts) > 1 else "")
        command = cmd.COMMANDS.get(name)
        if command is None:
            fix = did_you_mean(name, cmd.COMMANDS, "%pipeline")
            raise UsageError(f"%pipeline: unknown command {name!r}; {fix}\n\n{cmd.overview(cli=False)}")
        if self.headless and not command.headless:
            return None  # building a notebook headless: its own run/submit/show cells must not fire
        if not command.headless and os.environ.get(VERIFY_ENV) == "1":
            print(f"%pipeline {name}: skipped while smstep verify runs the notebook", file=sys.stderr)
            return None
        ctx = cmd.Context(self.workspace)
        try:
            args = cmd.parser_for(command, cli=False).parse_line(rest)
            command.run(ctx, args)
        except HelpShown:
            return None
        except SmstepError as exc:
            raise UsageError(str(exc)) from None
        return ctx.display

    pipeline.__doc__ = cmd.overview(cli=False)

    # ------------------------------------------------------------------ helpers
    def _cell_id(self) -> str | None:
        header = getattr(self.shell, "parent_header", None) or {}
        return (header.get("metadata") or {}).get("cellId")

    def environment_before(self, info: Any = None) -> None:
        """pre_run_cell hook: the environment as the cell finds it."""
        self._environment = None if self.headless else dict(os.environ)

    def environment_after(self, result: Any = None) -> None:
        """post_run_cell hook: what the cell did to ``os.environ`` is the kernel's alone; a SageMaker job (and
        so a local run) starts without it. Remembered, and said once per variable."""
        before, self._environment = getattr(self, "_environment", None), None
        if before is None:
            return
        changed = sorted(
            k
            for k in set(before) | set(os.environ)
            if before.get(k) != os.environ.get(k) and k not in self.workspace.cells_env and not k.startswith("AWS_")
        )  # a job has its own
        if not changed:
            return
        for name in changed:
            self.workspace.cells_env[name] = before.get(name)
        self.registry.note(cells_set_environment(changed))

    def record_plain_cell(self, result: ExecutionResult) -> None:
        """post_run_cell hook: remember ordinary cells (helpers, constants, imports)."""
        if self._nested or self.headless:
            return
        stepped, self.recorded_in_cell = self.recorded_in_cell, None
        info = result.info
        raw = getattr(info, "raw_cell", "") or ""
        if stepped is not None or looks_like_step(raw) or not raw.strip():
            return
        try:
            source = self.shell.transform_cell(raw)
        except Exception:  # noqa: BLE001 - an untransformable cell is simply not recorded
            return
        cell_id = getattr(info, "cell_id", None) or self._cell_id()
        cell = self.registry.record_plain(source, cell_id=cell_id)
        if cell_id and cell is not None and cell.analysis is not None:
            self._would_give[cell_id] = tagged_parameters(cell.analysis, self.shell.user_ns, cell.label or "a cell")
            if cell_id in self.parameter_cells:
                self._give(cell_id)

    def sync_notebook(self, cell_ids: list[str], parameter_cells: list[str] | None = None) -> bool:
        """The notebook as the frontend sees it: its cells' order, and which are tagged ``parameters``
        (their plain values become pipeline parameters, as in a headless build)."""
        changed = self.registry.sync_cells(cell_ids)
        if parameter_cells is None:
            return changed
        tagged = set(parameter_cells)
        for cell_id in sorted(self.parameter_cells - tagged):  # untagged: its values are ordinary again
            self.registry.drop_parameters(self._gave.pop(cell_id, set()))
        added = [c for c in cell_ids if c in tagged - self.parameter_cells]
        self.parameter_cells = tagged
        for cell_id in added:  # in notebook order, as a headless build meets them
            self._give(cell_id)
        return changed or bool(added)

    def _give(self, cell_id: str) -> None:
        if cell_id not in self._would_give:
            return  # not run yet: its values become parameters when it runs
        values, problems = self._would_give[cell_id]
        for name, value in values.items():
            self.registry.set_parameter(name, value)
        self._gave[cell_id] = set(values)
        for problem in problems:
            self.registry.note(problem)


def tagged_parameters(analysis: Any, namespace: Mapping[str, Any], label: str) -> tuple[dict[str, Any], list[Problem]]:
    """papermill's convention, for a cell tagged ``parameters`` that just ran: the names it assigns a str,
    int, float or bool become pipeline parameters with those defaults; its imports and helpers stay ordinary
    values, and any other value is a warning (it stays a captured value). The same in a kernel and headless."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for name in analysis.writes:
        if name in analysis.imports or name in analysis.defines or name not in namespace:
            continue
        value = namespace[name]
        if type(value) in (str, int, float, bool):
            values[name] = value
        else:
            problems.append(
                Problem(
                    f"{label} is tagged parameters, but {name!r} is a {type(value).__name__}: a pipeline parameter "
                    "holds a string, an integer, a float or a boolean, so it is an ordinary value, captured by the "
                    "steps that read it",
                    fix=f"assign {name!r} in an untagged cell, or make it a str, int, float or bool (a path or URI to "
                    "the data, read inside the step)",
                    severity="warning",
                )
            )
    return values, problems


def cells_set_environment(changed: list[str]) -> Problem:
    """The warning for environment variables the notebook's cells set: a job never sees a kernel's changes."""
    names = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
    return Problem(
        f"the notebook's cells set the environment variable(s) {names}: only the kernel has them; a SageMaker job "
        "(and a local run) starts without them, so a step that reads them gets something else",
        fix=f"give them to the steps that read them: %%step --env {changed[0]}=VALUE (or %pipeline config --env), "
        "or make the value a parameter",
        severity="warning",
    )


#: Cell magics that run their body as a cell: a ``%%step`` line below them still makes a step.
PASSTHROUGH_MAGICS = frozenset({"%%time", "%%timeit", "%%capture", "%%prun", "%%memit", "%%debug"})


def looks_like_step(source: str) -> bool:
    """Whether a cell is a ``%%step`` cell, also behind cell magics that run their body (``%%time``)."""
    for line in source.splitlines():
        text = line.strip()
        if not text:
            continue
        word = text.split()[0]
        if word == "%%step":
            return True
        if word not in PASSTHROUGH_MAGICS:
            return False
    return False
