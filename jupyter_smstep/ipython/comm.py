"""Kernel side of the JupyterLab extension: a comm that tells the notebook what the pipeline looks like.

The lab extension (``labextension/``) marks ``%%step`` cells with their step name as
soon as they are typed; what only the kernel knows (each input's producer, the
outputs, which ordinary cells the steps depend on, the problems found) comes
from here. The frontend opens a comm with target :data:`COMM_TARGET` when a
notebook's kernel is ready, or after a cell that mentions jupyter_smstep ran,
and sends ``{"type": "request_state"}``; we answer ``{"type": "state", ...summary}``
and, after every cell execution, push the summary again if it changed.

If the extension is not loaded in the kernel, ipykernel closes the comm at once
(no such target) and the frontend knows to say "run %load_ext jupyter_smstep".

Why a comm and not, say, a kernel variable read over ``user_expressions``: it is
pushed by the kernel right after each cell, so the badges follow the notebook
without the frontend polling a busy kernel, and one kernel can serve several
open views of the same notebook.

This module must stay cheap to import: it never imports sagemaker.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Literal, Union
from collections.abc import Callable

from jupyter_smstep.core.states import Severity

COMM_TARGET = "jupyter_smstep"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the payload
# Defined here once; ``labextension/src/summary.ts`` declares the same fields
# (``tests/ipython/test_comm.py`` checks that it declares and reads every one).
@dataclass(frozen=True)
class StepCell:
    """A ``%%step`` cell: its step, each input's origin (``{"step": ...}``, ``{"parameter": ...}``,
    ``{"value": TYPE}``) and its outputs."""

    cell_id: str | None
    step: str
    inputs: dict[str, dict[str, str]]
    outputs: list[str]
    role: Literal["step"] = "step"
    when: str | None = None  # the condition it runs under (its own --when, or an upstream step's)
    after: list[str] = dataclasses.field(default_factory=list)  # --after: steps it runs after, no data between


@dataclass(frozen=True)
class DependencyCell:
    """An ordinary cell whose values (helpers, constants) steps capture."""

    cell_id: str | None
    provides: list[str]
    used_by: list[str]
    role: Literal["dependency"] = "dependency"


@dataclass(frozen=True)
class ProblemInfo:
    step: str | None
    line: int | None
    severity: Severity
    message: str
    fix: str


@dataclass(frozen=True)
class PipelineState:
    """The ``{"type": "state", ...}`` message: what the badges show."""

    pipeline: str | None
    cells: list[Union[StepCell, DependencyCell]]
    problems: list[ProblemInfo]
    type: Literal["state"] = "state"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def summary(workspace: Any) -> PipelineState:
    """The pipeline as the badges show it: per-cell roles, inputs' origins, outputs and problems."""
    graph = workspace.graph()
    nodes = {node.name: node for node in graph.steps}
    users: dict[str, set[str]] = {}
    for node in graph.steps:
        for inp in node.captured:  # a --foreach iteration is its cell's step to the badges
            users.setdefault(inp.name, set()).add(node.fanout.step if node.fanout is not None else node.name)
    cells: list[Union[StepCell, DependencyCell]] = []
    for cell in workspace.registry.cells:
        if cell.step is not None:
            node = nodes.get(cell.step.name)
            reads = node  # a --foreach cell reads what its first iteration reads (the gather reads the iterations)
            if node is not None and node.fanout is not None and node.fanout.iterations:
                reads = nodes.get(node.fanout.iterations[0], node)
            inputs = {i.name: i.to_json() for i in reads.inputs.values() if i.kind != "import"} if reads else {}
            when = graph.condition(node.guard).expression if node is not None and node.guard else None
            cells.append(
                StepCell(
                    cell.cell_id,
                    cell.step.name,
                    inputs,
                    list(node.outputs) if node else [],
                    when=when,
                    after=list(node.order_only) if node else [],
                )
            )
        elif cell.analysis is not None:
            provides = sorted(v for v in cell.analysis.outputs if v in users)
            if provides:
                used_by = sorted(set().union(*(users[v] for v in provides)))
                cells.append(DependencyCell(cell.cell_id, provides, used_by))
    problems = [ProblemInfo(p.step, p.line, p.severity, p.message, p.fix) for p in graph.report.problems]
    return PipelineState(graph.name, cells, problems)


Summary = Callable[[], Union[PipelineState, dict]]

# One bridge per shell, so that %reload_ext replaces the previous one instead of stacking them.
_bridges: weakref.WeakKeyDictionary[Any, Bridge] = weakref.WeakKeyDictionary()


class Bridge:
    """Answers the frontend's requests and pushes the pipeline summary when it changes.

    It keeps the open comms by id and the JSON text of the last state pushed:
    a cell that does not change the pipeline (most cells) sends nothing.
    """

    def __init__(self, summary: Summary, sync_cells: Callable[[list, list | None], bool] | None = None) -> None:
        self._summary = summary
        self._sync_cells = sync_cells
        self._comms: dict[str, Any] = {}
        self._last: str | None = None
        self._comm_manager: Any = None

    # -- state -----------------------------------------------------------------

    def state(self) -> tuple[dict, str]:
        """The state message and its canonical JSON text (for change detection).

        A summary that raises, or holds something JSON cannot carry, still gives
        a state: the frontend shows the problem instead of going silent.
        """
        try:
            state = self._summary() or {}
            payload = state.to_json() if isinstance(state, PipelineState) else dict(state)
            message = json.loads(json.dumps({**payload, "type": "state"}, default=str))
        except Exception as exc:  # the kernel must never fail a cell because of the badges
            log.warning("jupyter_smstep: could not summarise the pipeline", exc_info=True)
            message = {
                "type": "state",
                "pipeline": None,
                "cells": [],
                "problems": [
                    {
                        "step": None,
                        "line": None,
                        "severity": "error",
                        "message": f"jupyter_smstep could not summarise the pipeline: {exc}",
                        "fix": "run %pipeline show to see the full error",
                    }
                ],
            }
        return message, json.dumps(message, sort_keys=True)

    # -- comm plumbing ---------------------------------------------------------

    @property
    def comms(self) -> list:
        """The comms currently open with a frontend."""
        return list(self._comms.values())

    def open(self, comm: Any, msg: dict) -> None:
        """Comm target callback: a frontend opened a comm to this kernel."""
        self._comms[comm.comm_id] = comm
        comm.on_msg(self._on_msg)
        comm.on_close(lambda _msg, comm_id=comm.comm_id: self._comms.pop(comm_id, None))
        self._handle(comm, (msg.get("content") or {}).get("data") or {})

    def _on_msg(self, msg: dict) -> None:
        content = msg.get("content") or {}
        comm = self._comms.get(str(content.get("comm_id")))
        if comm is not None:
            self._handle(comm, content.get("data") or {})

    def _handle(self, comm: Any, data: dict) -> None:
        cell_ids = data.get("cell_ids")
        tagged = data.get("parameter_cells")  # absent from an older frontend: tags unknown, left as they are
        if isinstance(cell_ids, list) and self._sync_cells is not None:
            try:
                self._sync_cells(
                    [str(c) for c in cell_ids], [str(c) for c in tagged] if isinstance(tagged, list) else None
                )
            except Exception:  # never fail the kernel because of the frontend's view
                log.warning("jupyter_smstep: could not sync the notebook's cells", exc_info=True)
        if data.get("type") == "request_state":
            message, text = self.state()
            self._last = text
            comm.send(message)
        elif data.get("type") == "notebook_cells":
            self.post_run_cell()  # push the new state if deleting/moving cells changed it

    def post_run_cell(self, *_result: Any) -> None:
        """IPython ``post_run_cell`` hook: push the summary to every open comm if it changed."""
        if not self._comms:
            return
        message, text = self.state()
        if text == self._last:
            return
        self._last = text
        for comm in self.comms:
            try:
                comm.send(message)
            except Exception:  # a comm whose frontend went away must not break the others
                log.debug("jupyter_smstep: dropping comm %s", comm.comm_id, exc_info=True)
                self._comms.pop(comm.comm_id, None)

    def close(self) -> None:
        """Unregister the comm target and close the open comms."""
        if self._comm_manager is not None:
            self._comm_manager.unregister_target(COMM_TARGET, self.open)
            self._comm_manager = None
        for comm in self.comms:
            try:
                comm.close()
            except Exception:
                log.debug("jupyter_smstep: could not close comm", exc_info=True)
        self._comms.clear()


def install(
    shell: Any, summary: Summary, sync_cells: Callable[[list, list | None], bool] | None = None
) -> Bridge | None:
    """Connect the kernel to the lab extension; called by ``%load_ext jupyter_smstep``.

    ``summary`` is a zero-argument callable returning the :class:`PipelineState`;
    ``sync_cells`` receives the notebook's cell ids in order whenever the frontend
    sends them (so deleted step cells are forgotten and steps follow the notebook's order), and the ids of
    the cells tagged ``parameters`` (None from a frontend that does not send them).
    Without a kernel (terminal IPython, tests with a bare shell) there is nobody
    to talk to, so this does nothing and returns None. Calling it again (for
    ``%reload_ext``) replaces the previous bridge.
    """
    uninstall(shell)
    kernel = getattr(shell, "kernel", None)
    comm_manager = getattr(kernel, "comm_manager", None) if kernel is not None else None
    if comm_manager is None:
        return None
    bridge = Bridge(summary, sync_cells)
    comm_manager.register_target(COMM_TARGET, bridge.open)
    bridge._comm_manager = comm_manager
    shell.events.register("post_run_cell", bridge.post_run_cell)
    _bridges[shell] = bridge
    return bridge


def uninstall(shell: Any) -> None:
    """Undo :func:`install` (for ``%unload_ext``); the frontend then shows the "not loaded" message."""
    bridge = _bridges.pop(shell, None)
    if bridge is None:
        return
    try:
        shell.events.unregister("post_run_cell", bridge.post_run_cell)
    except ValueError:
        pass
    bridge.close()
