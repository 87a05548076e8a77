"""The panel's view state and its reducers, without widgets or a kernel."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.errors import Problem, Report, SmstepError
from jupyter_smstep.local.results import RunResult, StepEvent, StepResult
from jupyter_smstep.panel.state import PanelState
from jupyter_smstep.remote.monitor import Snapshot, StepStatus


class Node:
    def __init__(self, name):
        self.name = name


def state(*names: str, problems=()) -> PanelState:
    graph = PipelineGraph("p", [Node(n) for n in names], {}, Report(list(problems)))  # type: ignore[list-item]
    s = PanelState()
    s.set_graph(graph, None, 1)
    return s


def ev(step, state_, kind="state", **kw):
    return StepEvent("r", step, state_, kind=kind, **kw)


def test_nothing_is_drawn_as_run_before_a_run():
    s = state("a", "b")
    s.states["a"] = ("failed", "x")
    assert s.step_state("a") == ("pending", "")


def test_local_events_fold_into_states_messages_errors_and_warnings():
    s = state("a", "b", "c")
    s.start_local()
    assert s.states == {"a": ("pending", ""), "b": ("pending", ""), "c": ("pending", "")}
    assert s.on_local_event(ev("a", "running"))
    assert s.on_local_event(ev("a", "succeeded", duration=1.25))
    assert s.on_local_event(ev("b", "running", kind="retry", attempt=1, message="capacity"))
    assert s.states["b"] == ("running", "retry #2")
    assert s.on_local_event(ev("b", "failed", attempt=2, duration=130.0, error="Traceback...", message="boom"))
    assert not s.on_local_event(ev("c", "pending", kind="warning", message="numpy<1 not installed"))
    assert not s.on_local_event(ev(None, "running", kind="run"))
    assert s.states["a"] == ("succeeded", "1.2s") and s.states["b"] == ("failed", "2m10s #2")
    assert s.local_errors == {"b": "Traceback..."} and s.local_messages["b"] == "boom"
    assert s.local_warnings == ["c: numpy<1 not installed"]


def test_finish_local_takes_the_run_folders_word_and_names_the_failures():
    s = state("a", "b")
    s.start_local()
    steps = {
        "a": StepResult("a", "failed", duration=0.5, error="E", summary="ValueError: x"),
        "b": StepResult("b", "skipped", skipped_because="a"),
    }
    failed = s.finish_local(RunResult("r", Path("."), steps, False, {}))
    assert failed == ["a"]
    assert s.states["b"] == ("skipped", "") and s.local_messages == {"a": "ValueError: x", "b": "a"}


def snap(status, **steps) -> Snapshot:
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return Snapshot(
        "arn",
        status,
        steps={
            n: StepStatus(n, st, start=t0, end=t0 + timedelta(seconds=3) if st != "Executing" else None)
            for n, st in steps.items()
        },
    )


def test_snapshots_map_the_service_statuses_and_skip_what_never_started():
    s = state("a", "b", "c")
    s.start_remote(same_execution=False)
    s.on_snapshot(snap("Executing", a="Executing"))
    assert s.states["a"] == ("running", "Executing") and s.remote_running() and not s.remote_retryable()
    s.on_snapshot(snap("Failed", a="Succeeded", b="Failed"))
    assert s.states == {"a": ("succeeded", "3.0s"), "b": ("failed", "3.0s"), "c": ("skipped", "")}
    assert s.remote_retryable() and not s.remote_running()


def test_a_throttled_poll_keeps_the_last_data_and_says_so():
    s = state("a")
    s.start_remote(same_execution=False)
    s.on_snapshot(snap("Executing", a="Executing"))
    s.on_snapshot(Snapshot("arn", "Unknown", throttled=True))
    assert s.snapshot is not None and s.snapshot.status == "Executing" and s.snapshot.throttled


def test_retry_makes_the_failed_and_skipped_steps_pending_again():
    s = state("a", "b", "c")
    s.start_remote(same_execution=False)
    s.on_snapshot(snap("Failed", a="Succeeded", b="Failed"))
    s.log_tails["b"] = ["boom"]
    s.retried(Snapshot("arn", "Executing"))
    assert s.states == {"a": ("succeeded", "3.0s"), "b": ("pending", ""), "c": ("pending", "")}
    assert s.log_tails == {} and s.remote_running()
    s.start_remote(same_execution=True)  # following the same execution again keeps what is known
    assert s.states["a"] == ("succeeded", "3.0s")


def test_problems_come_from_the_graph_or_from_why_it_could_not_be_built():
    s = state("a", problems=[Problem("bad", step="a"), Problem("meh", step="a", severity="warning")])
    assert s.problem_counts() == {"a": (1, 1)} and [p.message for p in s.errors()] == ["bad"]
    s.set_graph(None, SmstepError("no graph"), 2)
    assert [p.message for p in s.problems()] == ["no graph"] and s.step_names == []
