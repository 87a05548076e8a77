"""The notebook as jupyter_smstep sees it: cells in order, pipeline defaults, parameters.

One :class:`Registry` lives per kernel (the magics own it) or per notebook file
(the ``smstep`` command builds one). Re-running a cell replaces its entry in
place, so a step is never duplicated and keeps its position. Cells are keyed by
Jupyter's cell id when the frontend sends one (JupyterLab 4 does), else a step
by its name and an ordinary cell by its source.

Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Iterable, Mapping

from jupyter_smstep.core.analysis import CellAnalysis, analyze
from jupyter_smstep.errors import Problem


@dataclass(frozen=True)
class StepSpec:
    """What the ``%%step`` line says."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)  # SDK keywords given on the cell
    inputs: tuple[str, ...] | None = None  # --inputs override
    outputs: tuple[str, ...] | None = None  # --outputs override
    header: str = ""  # the %%step line as written
    after: tuple[str, ...] = ()  # --after: steps this one runs after, with no data between them
    when: str | None = None  # --when EXPR: run only when it holds (core.conditions)
    else_fail: str | None = None  # --else-fail MESSAGE: otherwise fail the execution with it
    saves: tuple[tuple[str, str | None], ...] = ()  # --save NAME[=S3URI] (core.saves)
    foreach: tuple[str, str] | None = None  # --foreach VAR=ITEMS: once per item (core.foreach)
    max_concurrency: int | None = None  # --max-concurrency N: at most N iterations at once
    select: tuple[str, str] | None = None  # --select max:NAME / min:NAME: later cells get that iteration's values


@dataclass
class Cell:
    key: str
    source: str  # Python source; for a step, the body below the %%step line
    analysis: CellAnalysis | None
    problem: Problem | None = None  # why it could not be analysed
    step: StepSpec | None = None  # None for an ordinary cell
    cell_id: str | None = None
    label: str = ""  # how to name the cell in messages ("cell 3", "step 'train'")
    # Inputs seen changing in place when the step cell ran in the kernel (the run-time check).
    changed_in_kernel: tuple[str, ...] = ()
    # A step's values as its cell saw them when recorded (in a kernel, just before it ran; headless, when
    # the build reached it): the step gets these, not what a later cell rebinds (sdk.snapshot.Snapshot).
    seen: Mapping[str, Any] | None = None
    # Names the step cell read that were bound nowhere yet when it was recorded (top to bottom: NameError).
    unbound: frozenset[str] = frozenset()
    # In a kernel: the values the step cell left when it last ran (what `%pipeline verify` compares).
    after: Mapping[str, Any] | None = None

    @property
    def is_step(self) -> bool:
        return self.step is not None


def analyse_source(source: str, step: str | None = None) -> tuple[CellAnalysis | None, Problem | None]:
    """Analyse a cell; a syntax error becomes a :class:`Problem` with its line."""
    try:
        return analyze(source), None
    except SyntaxError as exc:
        return None, Problem(
            f"syntax error: {exc.msg}",
            fix="fix the cell's Python syntax (IPython magics and !shell lines cannot run inside a step)",
            step=step,
            line=(exc.lineno or 0) + (1 if step else 0),
        )


@dataclass
class Registry:
    cells: list[Cell] = field(default_factory=list)
    name: str | None = None  # pipeline name (%pipeline config --name)
    save_root: str | None = None  # %pipeline config --save-root: where `--save NAME` writes
    defaults: dict[str, Any] = field(default_factory=dict)  # %pipeline config options
    parameters: dict[str, Any] = field(default_factory=dict)  # name -> default value
    exports: set[str] = field(default_factory=set)  # names every producing step must return
    mlflow: dict[str, str] = field(default_factory=dict)  # %pipeline config --mlflow-arn / --mlflow-experiment
    foreach_as: str = "foreach"  # %pipeline config --foreach-as: a --foreach cell under SDK v3 (core.foreach)
    # Names computed by step cells that no longer exist (deleted, removed): their values may
    # linger in the kernel, but capturing them would silently freeze a step's output.
    retired: dict[str, str] = field(default_factory=dict)
    revision: int = 0  # bumped on every change; lets the panel and frontend refresh cheaply
    #: What reading the notebook found that the graph should say (shared cell ids, a parameters cell's
    #: value that cannot be a parameter): added to every graph's report.
    notices: list[Problem] = field(default_factory=list)

    # ---------------------------------------------------------------- recording
    def record_step(
        self,
        spec: StepSpec,
        source: str,
        cell_id: str | None = None,
        seen: Mapping[str, Any] | None = None,
        unbound: frozenset[str] = frozenset(),
    ) -> Cell:
        """Record a step cell; ``seen``: its values now (see :attr:`Cell.seen`), ``unbound``: the names it
        reads that nothing has bound yet."""
        analysis, problem = analyse_source(source, spec.name)
        key = f"id:{cell_id}" if cell_id else f"step:{spec.name}"
        cell = Cell(key, source, analysis, problem, spec, cell_id, f"step '{spec.name}'", seen=seen, unbound=unbound)
        self._put(cell)
        return cell

    def record_plain(
        self, source: str, cell_id: str | None = None, analysis: CellAnalysis | None = None
    ) -> Cell | None:
        """Record an ordinary cell that ran in the kernel. Unparsable cells are kept for order only."""
        if not source.strip():
            return None
        if analysis is None:
            analysis, _ = analyse_source(source)
        digest = hashlib.sha1(source.encode()).hexdigest()[:12]
        key = f"id:{cell_id}" if cell_id else f"src:{digest}"
        cell = Cell(key, source, analysis, None, None, cell_id, "")
        self._put(cell)
        return cell

    def _put(self, cell: Cell) -> None:
        if cell.analysis is not None:
            for name in cell.analysis.outputs:
                self.retired.pop(name, None)
        for i, old in enumerate(self.cells):
            if old.key == cell.key:
                self.cells[i] = cell
                break
        else:
            # A step re-run from a cell now known by id replaces its name-keyed twin.
            if cell.step is not None:
                self.cells = [c for c in self.cells if c.key != f"step:{cell.step.name}"]
            self.cells.append(cell)
        self._relabel()
        self.revision += 1

    def _relabel(self) -> None:
        n = 0
        for c in self.cells:
            n += 1
            if c.step is None:
                c.label = f"ordinary cell #{n}"

    def remove_step(self, name: str) -> bool:
        gone = [c for c in self.cells if c.step and c.step.name == name]
        if not gone:
            return False
        self.cells = [c for c in self.cells if c not in gone]
        self._retire(gone)
        self.revision += 1
        return True

    def _retire(self, gone: list[Cell]) -> None:
        for cell in gone:
            if cell.step is not None and cell.analysis is not None:
                for name in cell.analysis.outputs:
                    self.retired[name] = cell.step.name

    def sync_cells(self, cell_ids: list[str]) -> bool:
        """Follow the notebook as the frontend sees it: forget cells it no longer has, take its order.

        Only cells recorded with a cell id are affected; the others keep their
        place. Returns whether anything changed.
        """
        if not cell_ids:
            return False
        order = {cid: i for i, cid in enumerate(cell_ids)}
        kept = [c for c in self.cells if c.cell_id is None or c.cell_id in order]
        known = iter(sorted((c for c in kept if c.cell_id is not None), key=lambda c: order[c.cell_id or ""]))
        synced = [next(known) if c.cell_id is not None else c for c in kept]
        if [c.key for c in synced] == [c.key for c in self.cells]:
            return False
        self._retire([c for c in self.cells if c not in kept])
        self.cells = synced
        self._relabel()
        self.revision += 1
        return True

    def clear_cells(self) -> None:
        self.cells.clear()
        self.revision += 1

    # ---------------------------------------------------------------- queries
    @property
    def steps(self) -> list[Cell]:
        return [c for c in self.cells if c.step is not None]

    def step(self, name: str) -> Cell | None:
        return next((c for c in self.steps if c.step and c.step.name == name), None)

    def ran(self, cell: Cell, values: Mapping[str, Any]) -> None:
        """The step cell ran in the kernel and left ``values`` (kept for ``%pipeline verify``)."""
        cell.after = values

    def changed_in_kernel(self, cell: Cell, names: list[str]) -> None:
        """The run-time check saw the step cell change these inputs in place."""
        if names and tuple(names) != cell.changed_in_kernel:
            cell.changed_in_kernel = tuple(names)
            self.revision += 1

    def note(self, problem: Problem) -> None:
        self.notices.append(problem)
        self.revision += 1

    def export(self, names: Iterable[str]) -> None:
        """``%pipeline outputs NAME…``: every step that produces one of ``names`` returns it."""
        self.exports |= set(names)
        self.revision += 1

    def set_parameter(self, name: str, value: Any) -> None:
        self.parameters[name] = value
        self.revision += 1

    def drop_parameters(self, names: Iterable[str]) -> None:
        for name in names:
            self.parameters.pop(name, None)
        self.revision += 1

    def set_defaults(self, options: dict[str, Any], name: str | None = None, save_root: str | None = None) -> None:
        self.defaults.update(options)
        if name:
            self.name = name
        if save_root:
            self.save_root = save_root
        self.revision += 1
