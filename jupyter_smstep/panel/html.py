"""The panel's HTML: every fragment it shows, as functions of the state (no widgets).

Colours follow GitHub's Primer palette (legible on JupyterLab's light and dark
themes' widget backgrounds); states are drawn with the one glyph table
(:data:`jupyter_smstep.core.states.GLYPHS`, through :data:`.svg.STATE_STYLE`).
"""

from __future__ import annotations

import html
from typing import Any
from collections.abc import Mapping, Sequence

from jupyter_smstep.core.guards import condition_operands

from jupyter_smstep.core.model import Input, PipelineGraph, StepNode
from jupyter_smstep.core.settings import shown, shown_line
from jupyter_smstep.errors import Problem
from jupyter_smstep.panel import svg as dag_svg
from jupyter_smstep.panel.state import PanelState, fmt_seconds
from jupyter_smstep.remote.monitor import LOG_GROUP
from jupyter_smstep.sdk import capture
from jupyter_smstep.text import failure_lead, fmt_bytes, resources_line

SOURCE_COLOURS = {
    "cell": "#0969da",
    "notebook": "#8250df",
    "config.yaml": "#bf3989",
    "kernel image": "#1a7f37",
    "default": "#57606a",
}
#: the status line's colours: the step states' (one palette, JupyterLab's theme variables)
STATUS_COLOURS = {
    kind: dag_svg.STATE_STYLE[state][1]
    for kind, state in (("error", "failed"), ("ok", "succeeded"), ("busy", "running"), ("info", "stopped"))
}


def esc(value: Any) -> str:
    return html.escape(str(value))


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


# --------------------------------------------------------------------------- the header and the status line
def header(state: PanelState) -> str:
    graph = state.graph
    if graph is None:
        return "<b>Pipeline</b>: cannot build the graph"
    problems = state.problems()
    n_err = sum(1 for p in problems if p.severity == "error")
    n_warn = len(problems) - n_err
    parts = [
        f"<span style='font-size:1.15em'><b>{esc(graph.name)}</b></span>",
        plural(len(graph.steps), "step"),
        plural(len(graph.parameters), "parameter"),
    ]
    if n_err:
        parts.append(f"<span style='color:#cf222e'>✗ {plural(n_err, 'error')}</span>")
    if n_warn:
        parts.append(f"<span style='color:#9a6700'>⚠ {plural(n_warn, 'warning')}</span>")
    if not n_err and graph.steps:
        parts.append("<span style='color:#1a7f37'>✓ valid</span>")
    note = graph.kernel_image_note or ""
    if note and not note.lower().startswith("no kernel image"):
        note = f"kernel image: {note}"
    note = f"<div style='color:var(--jp-ui-font-color2,#57606a);font-size:0.9em'>{esc(note)}</div>" if note else ""
    return f"<div class='smstep-header'>{' · '.join(parts)}{note}</div>"


def status(message: str, kind: str = "info") -> str:
    """The status line next to the buttons; ``message`` is HTML already."""
    colour = STATUS_COLOURS.get(kind, STATUS_COLOURS["info"])
    return f"<span class='smstep-status' data-kind='{kind}' style='color:{colour}'>{message}</span>"


def validation_status(state: PanelState) -> tuple[str, str]:
    """The status line after Validate, and its kind."""
    problems = state.problems()
    errors = [p for p in problems if p.severity == "error"]
    if state.graph is not None and not state.graph.steps and not errors:
        return "no %%step cells yet", "info"
    if errors:
        return f"✗ {plural(len(errors), 'error')}: see Problems below", "error"
    warn = len(problems)
    return "✓ valid" + (f" ({plural(warn, 'warning')})" if warn else "") + ": ready to run or submit", "ok"


# --------------------------------------------------------------------------- the DAG
def stacked(graph: PipelineGraph) -> dict[str, str]:
    """Each ``--foreach`` iteration -> its cell's step: the DAG draws them as one stack, under the gather's name."""
    return {n.name: n.fanout.step for n in graph.steps if n.fanout is not None and n.fanout.index is not None}


def edges(graph: PipelineGraph) -> list[dag_svg.EdgeView]:
    carried: dict[tuple[str, str], list[str]] = {}
    stack = stacked(graph)
    for node in graph.steps:
        target = stack.get(node.name, node.name)
        for dep in node.depends_on:
            if stack.get(dep, dep) != target:
                carried.setdefault((stack.get(dep, dep), target), [])
        for inp in sorted(node.inputs.values(), key=lambda i: (i.line, i.name)):
            if inp.kind == "step" and inp.step and stack.get(inp.step, inp.step) != target:
                carried.setdefault((stack.get(inp.step, inp.step), target), []).append(inp.name)
    for condition in graph.conditions:  # a condition is its own node: inputs -> condition -> its branches
        for source in condition.inputs:
            carried.setdefault(
                (source, condition.name),
                [o.name for o in condition_operands(condition) if o.kind == "output" and o.step == source],
            )
        branch = set(condition.steps)
        for name in condition.steps:
            if not branch & set(graph.step(name).depends_on):
                carried.setdefault((condition.name, name), [])
        if condition.fail_name:
            carried.setdefault((condition.name, condition.fail_name), [])
    return [dag_svg.EdgeView(u, v, list(dict.fromkeys(vs))) for (u, v), vs in carried.items()]


def consumers(graph: PipelineGraph) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for node in graph.steps:
        for inp in node.inputs.values():
            if inp.kind == "step" and inp.step:
                out.setdefault((inp.step, inp.name), []).append(node.name)
    return out


def node_views(state: PanelState) -> dict[str, dag_svg.NodeView]:
    graph = state.graph
    if graph is None:
        return {}
    counts = state.problem_counts()
    views = {}
    stack = stacked(graph)
    for node in graph.steps:
        if node.name in stack:
            continue  # drawn in its fan-out's stack
        itype = node.settings.get("instance_type")
        step_state: str
        step_state, text = state.step_state(node.name)
        err, warn = counts.get(node.name, (0, 0))
        tip = f"{node.name}: {len(node.links)} input link(s), outputs {', '.join(node.outputs) or 'none'}"
        subtitle, shape = str(itype.value) if itype else "no instance type", "step"
        if node.fanout is not None:
            fan, shape = node.fanout, "stack"
            iterations = [state.step_state(name)[0] for name in fan.iterations]
            step_state, text = fan_out_state(iterations, step_state, text)
            first = graph.step(fan.iterations[0]).settings.get("instance_type") if fan.iterations else None
            subtitle = f"{len(fan.iterations)} × {first.value if first else 'no instance type'}"
            tip = (
                f"{node.name}: --foreach {fan.var} in {fan.source}, {len(fan.iterations)} iterations ("
                + ", ".join(f"{name} {s}" for name, s in zip(fan.iterations, iterations))
                + ")"
            )
        if node.name in state.kernel_marks:  # the last verify: is the pipeline's value the kernel's?
            mark, said = state.kernel_marks[node.name]
            text, tip = f"{text} {mark}".strip(), f"{tip}\n{mark}: {said}"
        views[node.name] = dag_svg.NodeView(node.name, subtitle, step_state, text, err, warn, tip, shape)
    for condition in graph.conditions:
        step_state, text = state.step_state(condition.name)
        views[condition.name] = dag_svg.NodeView(
            condition.name,
            f"when {condition.expression}",
            step_state,
            text,
            tooltip=f"{condition.name}: runs {', '.join(condition.steps)} when {condition.expression}",
            shape="condition",
        )
        if condition.fail_name and condition.else_fail is not None:
            step_state, text = state.step_state(condition.fail_name)
            views[condition.fail_name] = dag_svg.NodeView(
                condition.fail_name,
                f"fails: {condition.else_fail.text}",
                step_state,
                text,
                tooltip=f"{condition.fail_name}: stops the execution with {condition.else_fail.text!r} when "
                f"{condition.expression} does not hold",
                shape="fail",
            )
    return views


def fan_out_state(iterations: Sequence[str], gather: str, text: str) -> tuple[str, str]:
    """One state for a fan-out's stack: a failed or running iteration shows; else the gather's, with i/N done."""
    done = sum(1 for s in iterations if s == "succeeded")
    progress = f"{done}/{len(iterations)}"
    for worst in ("failed", "stopped", "running"):
        if worst in iterations:
            return worst, progress
    if gather != "pending" or done == 0:
        return gather, text if gather != "pending" else ""
    return "running", progress


NO_STEPS = (
    "<div style='padding:12px;line-height:1.4'>No <code>%%step</code> cells yet: mark a cell with "
    "<code>%%step NAME</code> and run it.</div>"
)


def hit_style(uid: str, names: list[str], layout: Any) -> str:
    """The scoped ``<style>`` laying one transparent toggle button over each node."""
    u = uid
    rules = [
        f".{u}-dag{{position:relative}}",
        f".{u}-dag>.{u}-svg{{margin:0;padding:0}}",
        f".{u}-dag>.{u}-svg>.widget-html-content{{line-height:0}}",
        f".{u}-dag svg.smstep-dag{{display:block}}",
        # The ToggleButtons box itself takes no room; its buttons are placed from the box's corner.
        f".{u}-dag>.{u}-hits{{position:absolute;left:0;top:0;width:0;height:0;margin:0;padding:0;"
        "overflow:visible;z-index:1}",
        f".{u}-dag>.{u}-hits>div{{position:static}}",
        f".{u}-dag>.{u}-hits button{{position:absolute;margin:0;padding:0;opacity:0;min-width:0;border:0;"
        "box-shadow:none;cursor:pointer}",
        f".{u}-dag>.{u}-hits button:focus-visible{{opacity:1;background:transparent;color:transparent;"
        "outline:2px solid #0550ae}",
    ]
    if layout is not None:
        for i, name in enumerate(names):
            box = layout.boxes[name]
            rules.append(
                f'.{u}-dag>.{u}-hits button[value="{i}"]{{left:{box.left:.0f}px;top:{box.y:.0f}px;'
                f"width:{box.width:.0f}px!important;height:{box.height:.0f}px!important}}"
            )
    return "<style>" + "".join(rules) + "</style>"


def selection_style(uid: str, name: str | None) -> str:
    if not name:
        return ""
    q = name.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'<style>.{uid} g.smstep-node[data-step="{q}"] rect.box{{stroke:#0550ae;stroke-width:3.5}}'
        f'.{uid} g.smstep-edge[data-source="{q}"] path,.{uid} g.smstep-edge[data-target="{q}"] path'
        "{stroke:#0550ae;stroke-width:2.4}</style>"
    )


# --------------------------------------------------------------------------- a step's details
def step_details(
    state: PanelState, name: str, parameter_values: Mapping[str, Any], sizes: Mapping[str, int | None]
) -> str:
    """Everything about one step: run state, problems, inputs (and why), outputs, source, settings.

    ``parameter_values`` are the values edited on the panel; ``sizes`` the pickled
    size of each captured value (None: cannot be pickled).
    """
    graph = state.graph
    if graph is None or name not in {s.name for s in graph.steps}:
        return ""
    node = graph.step(name)
    readers_of = consumers(graph)
    h: list[str] = [f"<div class='smstep-step' data-step='{esc(name)}' style='line-height:1.45'>"]
    step_state, text = state.states.get(name, ("pending", "")) if state.run_kind else ("", "")
    title = f"<b style='font-size:1.1em'>{esc(name)}</b>"
    if node.depends_on:
        title += f" <span style='color:#57606a'>after {', '.join(esc(d) for d in node.depends_on)}</span>"
    if step_state:
        fill, stroke, icon = dag_svg.STATE_STYLE.get(step_state, dag_svg.STATE_STYLE["pending"])
        title += (
            f" <span style='background:{fill};color:{stroke};border:1px solid {stroke};border-radius:4px;"
            f"padding:0 5px'>{icon} {esc(step_state)} {esc(text)}</span>"
        )
    h.append(f"<div>{title}</div>")
    if name in state.kernel_marks:
        mark, said = state.kernel_marks[name]
        h.append(f"<div class='smstep-kernel-mark' data-mark='{esc(mark)}'><b>{esc(mark)}</b> {esc(said)}</div>")
    problems = [p for p in state.problems() if p.step == name]
    if problems:
        h.append("<div class='smstep-step-problems'>" + "".join(problem(p) for p in problems) + "</div>")
    h.append(run_details(state, name))
    since_rows = [(since, steps[name]) for since, steps in graph.changes.items() if name in steps]
    if since_rows:
        h.append(section("Changes"))
        h.append(
            "<table class='smstep-changes'>"
            + "".join(
                f"<tr data-since='{esc(since)}'><td style='white-space:nowrap;padding-right:8px'>"
                f"since {esc(since)}</td>"
                f"<td>{esc('; '.join(reasons)) if reasons else 'unchanged (its result can be reused)'}</td></tr>"
                for since, reasons in since_rows
            )
            + "</table>"
        )

    reads = graph.reads.get(name)
    if reads:
        h.append(section("Read when it ran"))
        parts = [
            (what, reads.get(key) or [])
            for what, key in (
                ("files", "files"),
                ("folders", "folders"),
                ("modules", "modules"),
                ("environment", "env"),
                ("cannot be pinned", "unpinned"),
            )
        ]
        packages = [f"{d}=={v}" for d, v in (reads.get("packages") or {}).items()]
        read_rows = [(what, items) for what, items in [*parts, ("packages", packages)] if items]
        h.append(
            "<table class='smstep-reads'>"
            + "".join(
                f"<tr data-read='{esc(what)}'><td style='white-space:nowrap;padding-right:8px'>{esc(what)}</td>"
                f"<td>{esc(', '.join(map(str, items)))}</td></tr>"
                for what, items in read_rows
            )
            + f"</table><div style='color:#57606a'>in local run {esc(str(reads.get('run', '')))}: its result is "
            "reused only while all of this holds</div>"
        )

    h.append(section("Inputs"))
    if node.inputs:
        rows = []
        for inp in sorted(node.inputs.values(), key=lambda i: (i.line, i.name)):
            origin = input_origin(
                inp, parameter_values.get(inp.name, graph.parameters.get(inp.name)), sizes.get(inp.name)
            )
            rows.append(
                f"<tr data-input='{esc(inp.name)}' data-kind='{inp.kind}'><td><code>{esc(inp.name)}</code></td>"
                f"<td>{origin}</td><td style='color:#57606a'>line {inp.line + 1}</td></tr>"
            )
        h.append(f"<table class='smstep-inputs'>{''.join(rows)}</table>")
    else:
        h.append("<div style='color:#57606a'>none</div>")

    h.append(section("Outputs"))
    if node.outputs:
        rows = []
        for var in node.outputs:
            readers = readers_of.get((name, var), [])
            to = (
                ("read by " + ", ".join(f"<b>{esc(r)}</b>" for r in readers))
                if readers
                else "<span style='color:#57606a'>returned (nothing downstream reads it)</span>"
            )
            rows.append(f"<tr data-output='{esc(var)}'><td><code>{esc(var)}</code></td><td>{to}</td></tr>")
        h.append(f"<table class='smstep-outputs'>{''.join(rows)}</table>")
    else:
        h.append("<div style='color:#57606a'>none</div>")

    if node.saves:
        h.append(section("Saved to S3 (at the end of the step; nothing is written when the cell runs in the kernel)"))
        h.append(
            "<table class='smstep-saves'>"
            + "".join(
                f"<tr data-save='{esc(s.name)}'><td><code>{esc(s.name)}</code></td><td><code>{esc(s.uri)}</code></td>"
                f"<td style='color:#57606a'>{esc(s.format or 'format by type')}</td></tr>"
                for s in node.saves
            )
            + "</table>"
        )

    if name in graph.dependencies:
        h.append(section("Dependencies (pinned from the kernel)"))
        pins = graph.dependencies[name]
        h.append(
            "<div class='smstep-dependencies'>"
            + (", ".join(f"<code>{esc(p)}</code>" for p in pins) if pins else "<span style='color:#57606a'>none</span>")
            + "</div>"
        )

    h.append(section("Source cell"))
    h.append(source_cell(node))
    h.append(section("Settings"))
    rows_html = "".join(
        f"<tr data-setting='{esc(k)}'><td style='white-space:nowrap;padding-right:8px'><code>{esc(k)}</code></td>"
        f"<td style='word-break:break-all;width:100%'>"
        f"<code>{esc(short_repr(shown(k, r.value)))}</code></td><td>{source_badge(r.source)}</td></tr>"
        for k, r in node.settings.items()
    )
    h.append(f"<table class='smstep-settings' style='border-collapse:collapse;width:100%'>{rows_html}</table>")
    h.append("</div>")
    return "".join(h)


def input_origin(inp: Input, parameter_value: Any, size: int | None) -> str:
    if inp.kind == "step":
        return f"output of step <b>{esc(inp.step)}</b>"
    if inp.kind == "parameter":
        return f"pipeline parameter (now <code>{esc(repr(parameter_value))}</code>)"
    if inp.kind == "import":
        return f"imported in the step: <code>{esc(inp.statement)}</code>"
    size_text = f", {fmt_bytes(size)} pickled" if size is not None else ""
    big = " <span style='color:#9a6700'>⚠ large</span>" if size and size > capture.LARGE_CAPTURE_BYTES else ""
    via = f" from {esc(inp.via)}" if inp.via else " from the kernel"
    return f"captured value <code>{esc(inp.type_name)}</code>{size_text}{via}{big}"


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


# --------------------------------------------------------------------------- problems and the execution
def problems(state: PanelState) -> str:
    found = state.problems()
    if not found:
        if state.graph and state.graph.steps:
            return (
                "<div class='smstep-problems' style='color:#1a7f37;margin:4px 0'>✓ no problems "
                "found (nothing has been uploaded)</div>"
            )
        return ""
    ordered = sorted(found, key=lambda p: (p.severity != "error",))
    return (
        "<div class='smstep-problems' style='margin:4px 0'>"
        "<b>Problems</b> <span style='color:#57606a'>(found before anything is uploaded)</span>"
        + "".join(problem(p) for p in ordered)
        + "</div>"
    )


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


# --------------------------------------------------------------------------- small pieces
def section(title: str) -> str:
    return (
        f"<div style='margin-top:8px;font-weight:600;border-bottom:1px solid var(--jp-border-color2,#d0d7de)'>"
        f"{esc(title)}</div>"
    )


def source_badge(source: str) -> str:
    colour = SOURCE_COLOURS.get(source, "#57606a")
    return (
        f"<span class='smstep-source' data-source='{esc(source)}' style='color:{colour};border:1px solid {colour};"
        f"border-radius:8px;padding:0 6px;font-size:0.85em;white-space:nowrap'>{esc(source)}</span>"
    )


def short_repr(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tail_lines(text: str, n: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:]) if len(lines) > n else text


def problem(p: Problem) -> str:
    icon, colour = ("✗", "#cf222e") if p.severity == "error" else ("⚠", "#9a6700")
    where = ", ".join(
        x for x in (f"step <b>{esc(p.step)}</b>" if p.step else "", f"line {p.line}" if p.line else "") if x
    )
    fix = (
        f"<div style='margin-left:1.4em;color:var(--jp-ui-font-color2,#57606a)'>fix: {esc(p.fix)}</div>"
        if p.fix
        else ""
    )
    return (
        f"<div class='smstep-problem' data-severity='{p.severity}' data-step='{esc(p.step or '')}' "
        f"style='margin:3px 0'><span style='color:{colour}'>{icon} {p.severity}</span>"
        f"{' · ' + where if where else ''}: {esc(p.message)}{fix}</div>"
    )


def source_cell(node: StepNode) -> str:
    spec = node.cell.step
    header = shown_line(spec.header) if spec and spec.header else f"%%step {node.name}"
    body = highlight_python(node.cell.source.rstrip("\n"))
    lines = [f"<span style='color:#8250df'>{esc(header)}</span>"] + body.split("\n")
    numbered = "\n".join(
        f"<span style='color:#8c959f;user-select:none'>{i:>3} </span>{line}" for i, line in enumerate(lines, 1)
    )
    return (
        f"<pre class='smstep-source-cell' style='font-size:0.85em;line-height:1.35;max-height:320px;overflow:auto;"
        f"background:var(--jp-cell-editor-background,#f6f8fa);padding:6px;margin:2px 0'>{numbered}</pre>"
    )


_TOKEN_COLOURS = {
    "keyword": "#cf222e",
    "string": "#0a3069",
    "comment": "#6e7781",
    "number": "#0550ae",
    "builtin": "#8250df",
    "definition": "#8250df",
}


def highlight_python(source: str) -> str:
    """Source as HTML with keywords, strings, comments, numbers and builtins coloured.

    Python's own tokenizer, not a highlighting library: no regex tables to
    compile (pygments spends ~0.2 s on its first Python lexer), and exactly
    Python's idea of a token. Untokenizable source is shown plain.
    """
    import builtins
    import io
    import keyword
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return esc(source)
    starts = [0]
    for line in source.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(row: int, col: int) -> int:
        return starts[row - 1] + col if row - 1 < len(starts) else len(source)

    out: list[str] = []
    pos = 0
    previous = ""
    for tok in tokens:
        if tok.type in (tokenize.ENDMARKER, tokenize.DEDENT, tokenize.INDENT, tokenize.NEWLINE, tokenize.NL):
            continue
        begin, end = offset(*tok.start), offset(*tok.end)
        if begin < pos:
            continue
        out.append(esc(source[pos:begin]))
        kind = None
        if tok.type == tokenize.NAME:
            if keyword.iskeyword(tok.string) or keyword.issoftkeyword(tok.string):
                kind = "keyword"
            elif previous in ("def", "class"):
                kind = "definition"
            elif hasattr(builtins, tok.string):
                kind = "builtin"
        elif tok.type == tokenize.STRING or tok.type in _FSTRING_TYPES:
            kind = "string"
        elif tok.type == tokenize.COMMENT:
            kind = "comment"
        elif tok.type == tokenize.NUMBER:
            kind = "number"
        text = esc(source[begin:end])
        out.append(f"<span style='color:{_TOKEN_COLOURS[kind]}'>{text}</span>" if kind else text)
        previous = tok.string if tok.type == tokenize.NAME else ""
        pos = end
    out.append(esc(source[pos:]))
    return "".join(out)


_FSTRING_TYPES = {
    getattr(__import__("tokenize"), n)
    for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
    if hasattr(__import__("tokenize"), n)
}


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
