"""What the panel shows, and how events change it: no widgets, no threads, no HTML.

:class:`PanelState` holds the graph (or why it could not be built) and the run
shown on the DAG: a local run fed by the runner's :class:`~jupyter_smstep.local.results.StepEvent`\\ s,
or a SageMaker execution fed by the monitor's :class:`~jupyter_smstep.remote.monitor.Snapshot`\\ s.
Its methods are the reducers: each takes one event and updates the per-step
``(state, status text)`` the DAG and the tables draw. The widget
(:mod:`.widget`) owns one, calls the reducers from its threads under its lock,
and renders with :mod:`.html` and :mod:`.svg`; the reducers are unit-tested
without a kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.core.states import StepState
from jupyter_smstep.errors import Problem, SmstepError
from jupyter_smstep.local.results import RunResult, StepEvent
from jupyter_smstep.remote.monitor import Snapshot

RunKind = Literal["", "local", "remote"]


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.1f}s" if s < 120 else f"{s // 60:.0f}m{s % 60:02.0f}s"


@dataclass
class PanelState:
    graph: PipelineGraph | None = None
    graph_error: SmstepError | None = None
    revision: int | None = None
    run_kind: RunKind = ""
    states: dict[str, tuple[StepState, str]] = field(default_factory=dict)  # step -> (state, status text)
    # a local run
    local_result: RunResult | None = None
    local_errors: dict[str, str] = field(default_factory=dict)  # step -> its exception and traceback
    local_messages: dict[str, str] = field(default_factory=dict)  # step -> one line (summary, why skipped)
    local_warnings: list[str] = field(default_factory=list)
    local_printed: dict[str, list[str]] = field(default_factory=dict)  # step -> what its code printed (last 200)
    estimate_lines: list[str] = field(default_factory=list)  # core.cost.Estimate.lines() of the last run
    # a SageMaker execution
    snapshot: Snapshot | None = None
    log_tails: dict[str, list[str]] = field(default_factory=dict)
    #: the last verify: step -> (mark, what to say), ``= kernel`` / ``≠ kernel`` / ``? kernel``
    #: (``verify.Verification.by_step``), and the Verification they came from
    kernel_marks: dict[str, tuple[str, str]] = field(default_factory=dict)
    verification: object | None = None
    busy: bool = False  # a run or a submit is under way
    selection_note: str = ""  # "Submit changed": which steps the execution re-runs, and why

    # ------------------------------------------------------------------ the graph
    def set_graph(self, graph: PipelineGraph | None, error: SmstepError | None, revision: int) -> None:
        self.graph, self.graph_error, self.revision = graph, error, revision

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.graph.steps] if self.graph else []

    def problems(self) -> list[Problem]:
        if self.graph_error is not None:
            return list(self.graph_error.problems)
        return list(self.graph.report.problems) if self.graph is not None else []

    def errors(self) -> list[Problem]:
        return [p for p in self.problems() if p.severity == "error"]

    def problem_counts(self) -> dict[str, tuple[int, int]]:
        """step -> (errors, warnings)."""
        counts: dict[str, list[int]] = {}
        for p in self.problems():
            if p.step:
                c = counts.setdefault(p.step, [0, 0])
                c[0 if p.severity == "error" else 1] += 1
        return {k: (v[0], v[1]) for k, v in counts.items()}

    def step_state(self, name: str) -> tuple[StepState, str]:
        """What the DAG draws for a step: pending until a run is shown."""
        if not self.run_kind:
            return "pending", ""
        return self.states.get(name, ("pending", ""))

    def set_verification(self, verification: object | None) -> None:
        """Mark each step with the last verify's verdict (``verify.Verification``; None: no marks)."""
        self.verification = verification
        by_step = getattr(verification, "by_step", None)
        self.kernel_marks = by_step() if by_step is not None else {}

    # ------------------------------------------------------------------ a local run
    def start_local(self) -> None:
        self.run_kind = "local"
        self.set_verification(None)  # the marks said how the last run compared; a new run is not compared yet
        self.local_result, self.local_errors, self.local_messages, self.local_warnings = None, {}, {}, []
        self.local_printed = {}
        self.estimate_lines = []
        self.states = {name: ("pending", "") for name in self.step_names}

    def on_local_event(self, event: StepEvent) -> bool:
        """Apply one runner event; True if the DAG needs redrawing (a warning only changes the table)."""
        name = event.step
        if event.kind == "log":  # what the step printed: kept for its details
            if name:
                lines = self.local_printed.setdefault(name, [])
                lines.append(event.message or "")
                del lines[:-200]
            return False
        if event.kind == "warning":
            self.local_warnings.append(f"{name}: {event.message}" if name else str(event.message))
            return False
        if not name:
            return False
        attempt = event.attempt or 1
        state: StepState
        if event.kind == "retry":
            state, status = "running", f"retry #{attempt + 1}"
        else:
            state = event.state
            status = fmt_seconds(event.duration) if state in ("succeeded", "failed") else ""
            if event.info.get("condition"):
                status = "true" if event.info["condition"].get("outcome") else "false"
            if attempt > 1 and state in ("running", "succeeded", "failed"):
                status = f"{status} #{attempt}".strip()
        self.states[name] = (state, status)
        if event.message:
            self.local_messages[name] = event.message
        if event.error:
            self.local_errors[name] = str(event.error)
        return True

    def finish_local(self, result: RunResult) -> list[str]:
        """Take the run's final states (what the run folder says); returns the failed steps."""
        self.local_result = result
        for name, step in result.steps.items():
            decided = step.condition.get("outcome") if step.condition else None
            self.states[name] = (
                step.state,
                fmt_seconds(step.duration) if decided is None else "true" if decided else "false",
            )
            if step.error:
                self.local_errors[name] = str(step.error)
            note = step.summary or step.skipped_because
            if note:
                self.local_messages[name] = str(note)
        return [n for n, (state, _) in self.states.items() if state == "failed"]

    # ------------------------------------------------------------------ a SageMaker execution
    def start_remote(self, same_execution: bool) -> None:
        """Follow an execution; the same one keeps what is known, a new one starts from a clean slate."""
        self.run_kind = "remote"
        if not same_execution:
            self.snapshot, self.log_tails = None, {}
            self.states = {name: ("pending", "") for name in self.step_names}

    def on_snapshot(self, snap: Snapshot) -> None:
        if snap.throttled or snap.error:
            # keep the last real data, but say why nothing moves
            if self.snapshot is not None:
                self.snapshot.throttled, self.snapshot.error = snap.throttled, snap.error
            else:
                self.snapshot = snap
            return
        self.snapshot = snap
        for name, st in snap.steps.items():
            text = st.status if st.state == "running" else fmt_seconds(st.duration)
            if st.attempt > 1:
                text = f"{text} #{st.attempt}".strip()
            self.states[name] = (st.state, text)
        if snap.status in ("Failed", "Stopped"):
            for name, (state, _) in list(self.states.items()):
                if state == "pending" and name not in snap.steps:
                    self.states[name] = ("skipped", "")

    def retried(self, snapshot: Snapshot) -> None:
        """A retry was requested: the failed, stopped and skipped steps are pending again."""
        for name, (state, _) in list(self.states.items()):
            if state in ("failed", "stopped", "skipped"):
                self.states[name] = ("pending", "")
                self.log_tails.pop(name, None)
        self.snapshot = snapshot

    def remote_running(self) -> bool:
        return self.run_kind == "remote" and (self.snapshot is None or not self.snapshot.done)

    def remote_retryable(self) -> bool:
        return self.run_kind == "remote" and self.snapshot is not None and self.snapshot.status in ("Failed", "Stopped")
