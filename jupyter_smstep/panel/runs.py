"""The panel's runs as HTML: a local run (its steps, warnings and estimate), a SageMaker execution (status, steps,
log tails), the last executions, and what a run did in one step's details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.panel import svg as dag_svg
from jupyter_smstep.panel.pieces import esc, section, tail_lines
from jupyter_smstep.panel.state import PanelState, fmt_seconds
from jupyter_smstep.remote.monitor import LOG_GROUP
from jupyter_smstep.text import failure_lead, resources_line


def _led(error: str) -> str:
    """A local step's error for the panel: the exception and the user's line first, then the traceback's end."""
    lead = failure_lead(error)
    return ("\n".join(lead) + "\n\n" if lead else "") + tail_lines(error, 60)


def run_details(state: PanelState, name: str) -> str:
    out = []
    result = state.local_result.steps.get(name) if state.local_result is not None else None
    used = None
    if state.run_kind == "local" and result is not None and (result.resources or result.cached_from):
        used = (
            f"cached: the result of run {result.cached_from}"
            if result.cached_from
            else f"measured: {resources_line(result.resources)}, {result.resources.get('wall_s', 0):.1f} s wall"
        )
    message = state.local_messages.get(name)
    if state.run_kind == "local" and message and name not in state.local_errors and message != used:
        out.append(f"<div class='smstep-local-message' style='color:#57606a'>{esc(message)}</div>")
    if used is not None:
        out.append(f"<div class='smstep-resources' style='color:#57606a'>{esc(used)}</div>")
    if state.run_kind == "local" and state.local_printed.get(name):
        lines = state.local_printed[name]
        out.append(
            f"<details class='smstep-printed'><summary>printed {len(lines)} line"
            f"{'s' if len(lines) != 1 else ''}</summary><pre style='white-space:pre-wrap;max-height:240px;"
            f"overflow:auto;font-size:0.85em'>{esc(chr(10).join(lines))}</pre></details>"
        )
    if state.run_kind == "local" and name in state.local_errors:
        out.append(
            section("Local run error")
            + f"<pre class='smstep-error' style='white-space:pre-wrap;max-height:260px;overflow:auto;"
            f"color:#cf222e;font-size:0.85em'>{esc(_led(state.local_errors[name]))}</pre>"
        )
    snap = state.snapshot
    if state.run_kind == "remote" and snap is not None and name in snap.steps:
        st = snap.steps[name]
        rows = [
            f"<div>SageMaker status: <b>{esc(st.status)}</b>"
            + (f" (attempt {st.attempt})" if st.attempt > 1 else "")
            + "</div>"
        ]
        if st.job_name:
            rows.append(f"<div>training job: <code>{esc(st.job_name)}</code></div>")
        if st.failure_reason:
            rows.append(f"<div class='smstep-failure' style='color:#cf222e'>failure: {esc(st.failure_reason)}</div>")
        tail = state.log_tails.get(name)
        if tail:
            rows.append(
                f"<div>last {len(tail)} log lines (CloudWatch <code>{LOG_GROUP}</code>):</div>"
                f"<pre class='smstep-log' style='white-space:pre-wrap;max-height:260px;overflow:auto;"
                f"font-size:0.85em'>{esc(chr(10).join(tail))}</pre>"
            )
        out.append(section("SageMaker") + "".join(rows))
    return "".join(out)


def execution(state: PanelState, console_url: str | None, arn: str | None) -> str:
    if state.run_kind == "remote" and arn is not None:
        return remote_execution(state, console_url or "", arn)
    if state.run_kind == "local":
        return local_run(state)
    return ""


def history(rows: list[Any], estimates: Mapping[str, float]) -> str:
    """The pipeline's last SageMaker executions (``remote.history``): one row each, its steps' billed seconds
    beside the local estimate."""
    if not rows:
        return (
            "<div class='smstep-history'><b>Executions</b> <span style='color:#57606a'>none on SageMaker yet "
            "(Submit starts one)</span></div>"
        )
    out = [
        "<div class='smstep-history'><b>Executions</b> <span style='color:#57606a'>(newest first; billed: "
        "DescribeTrainingJob's BillableTimeInSeconds; estimate: the last local run)</span>"
        "<table style='border-collapse:collapse'><tr><th>execution</th><th>status</th><th>started</th>"
        "<th>took</th><th>by</th><th>billed per step (estimate)</th></tr>"
    ]
    for row in rows:
        steps = ", ".join(
            f"{esc(s.step)} {s.billable_s if s.billable_s is not None else '–'} s"
            + (f" ({estimates[s.step]:.0f} s)" if s.step in estimates else "")
            for s in row.steps
        )
        started = row.started.strftime("%Y-%m-%d %H:%M") if row.started else ""
        out.append(
            f"<tr data-execution='{esc(row.id)}' data-status='{esc(row.status)}'><td><code>{esc(row.id)}"
            f"</code></td><td>{esc(row.status)}</td><td>{esc(started)}</td><td>{fmt_seconds(row.duration_s)}"
            f"</td><td>{esc(row.started_by)}</td><td>{steps}</td></tr>"
        )
    return "".join(out) + "</table></div>"


def local_run(state: PanelState) -> str:
    res = state.local_result
    head = "<b>Local run</b>"
    if res is None:
        head += " <span style='color:#0969da'>running…</span>"
    else:
        head += f" {res.run_id}: " + _run_outcome(res)
        head += f" <span style='color:#57606a'>— results in <code>{esc(res.run_dir)}</code></span>"
    warnings = "".join(f"<div style='color:#9a6700'>⚠ {esc(w)}</div>" for w in state.local_warnings)
    cost = (
        "<div class='smstep-estimate' style='color:#57606a;white-space:pre-wrap'>"
        f"{esc(chr(10).join(state.estimate_lines))}</div>"
        if state.estimate_lines and res is not None
        else ""
    )
    return f"<div class='smstep-local'>{head}{state_table(state.graph, state.states)}{warnings}{cost}</div>"


def _run_outcome(res: Any) -> str:
    """succeeded, failed, or stopped when a step was stopped (Stop, Kernel → Interrupt) and none failed."""
    states = {step.state for step in res.steps.values()}
    outcome = (
        "succeeded" if res.succeeded else "stopped" if "stopped" in states and "failed" not in states else "failed"
    )
    _, colour, icon = dag_svg.STATE_STYLE[outcome]
    return f"<span style='color:{colour}'>{icon} {outcome}</span>"


def remote_execution(state: PanelState, console_url: str, arn: str) -> str:
    snap = state.snapshot
    status_text = snap.status if snap is not None else "Starting"
    shown_as = status_text.lower() if status_text in ("Succeeded", "Failed", "Stopped") else "running"
    colour = dag_svg.STATE_STYLE[shown_as][1]
    h = [
        f"<div class='smstep-remote' data-status='{esc(status_text)}'><b>SageMaker execution</b> "
        f"<span class='smstep-exec-status' style='color:{colour};font-weight:600'>{esc(status_text)}</span> · "
        f"<a href='{esc(console_url)}' target='_blank' rel='noopener' "
        f"style='color:var(--jp-content-link-color,#0969da);text-decoration:underline'>"
        f"open in the SageMaker console ↗</a>"
        f"<div style='color:#57606a;font-size:0.85em'><code>{esc(arn)}</code></div>"
    ]
    if snap is not None and snap.mlflow_line:
        h.append(f"<div class='smstep-mlflow' style='color:#57606a'>{esc(snap.mlflow_line)}</div>")
    if snap is not None and snap.throttled:
        h.append("<div style='color:#9a6700'>SageMaker is throttling requests: polling less often</div>")
    if snap is not None and snap.error:
        h.append(f"<div style='color:#9a6700'>could not reach SageMaker ({esc(snap.error)}); retrying</div>")
    if snap is not None and snap.failure_reason:
        h.append(f"<div style='color:#cf222e'>failure: {esc(snap.failure_reason)}</div>")
    if snap is not None and snap.steps:
        rows = []
        for st in snap.steps.values():
            fill, stroke, icon = dag_svg.STATE_STYLE.get(st.state, dag_svg.STATE_STYLE["pending"])
            why = f"<span style='color:#cf222e'>{esc(st.failure_reason)}</span>" if st.failure_reason else ""
            rows.append(
                f"<tr data-step='{esc(st.name)}' data-status='{esc(st.status)}'>"
                f"<td style='color:{stroke}'>{icon}</td><td><code>{esc(st.name)}</code></td>"
                f"<td>{esc(st.status)}</td><td>{fmt_seconds(st.duration)}</td><td>{why}</td></tr>"
            )
        h.append(f"<table class='smstep-remote-steps'>{''.join(rows)}</table>")
    for name, tail in state.log_tails.items():
        h.append(
            f"<details open><summary>log tail of <b>{esc(name)}</b> "
            f"(CloudWatch <code>{LOG_GROUP}</code>)</summary>"
            f"<pre class='smstep-log' style='white-space:pre-wrap;max-height:240px;overflow:auto;"
            f"font-size:0.85em'>{esc(chr(10).join(tail)) or '(no log lines)'}</pre></details>"
        )
    h.append("</div>")
    return "".join(h)


def state_table(graph: PipelineGraph | None, states: Mapping[str, tuple[str, str]]) -> str:
    if graph is None:
        return ""
    cells = []
    for node in graph.steps:
        state, status = states.get(node.name, ("pending", ""))
        fill, stroke, icon = dag_svg.STATE_STYLE.get(state, dag_svg.STATE_STYLE["pending"])
        cells.append(
            f"<span class='smstep-run-step' data-step='{esc(node.name)}' data-state='{esc(state)}' "
            f"style='display:inline-block;margin:2px 4px;padding:0 6px;border:1px solid {stroke};"
            f"background:{fill};color:{stroke};border-radius:4px'>{icon or '·'} {esc(node.name)} "
            f"{esc(status)}</span>"
        )
    return f"<div>{''.join(cells)}</div>"
