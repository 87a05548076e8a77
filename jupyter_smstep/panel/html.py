"""The panel's HTML: every fragment it shows, as functions of the state (no widgets).

Colours follow GitHub's Primer palette (legible on JupyterLab's light and dark
themes' widget backgrounds); states are drawn with the one glyph table
(:data:`jupyter_smstep.core.states.GLYPHS`, through :data:`.svg.STATE_STYLE`).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Mapping, Sequence

from jupyter_smstep.core.guards import condition_operands

from jupyter_smstep.core.model import Input, PipelineGraph
from jupyter_smstep.core.secrets import shown
from jupyter_smstep.errors import Problem
from jupyter_smstep.panel import highlight, runs, svg as dag_svg
from jupyter_smstep.panel.pieces import esc, plural, section
from jupyter_smstep.panel.state import PanelState
from jupyter_smstep.sdk import capture
from jupyter_smstep.text import fmt_bytes

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
    h.append(runs.run_details(state, name))
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
    h.append(highlight.source_cell(node))
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


# --------------------------------------------------------------------------- small pieces
def source_badge(source: str) -> str:
    colour = SOURCE_COLOURS.get(source, "#57606a")
    return (
        f"<span class='smstep-source' data-source='{esc(source)}' style='color:{colour};border:1px solid {colour};"
        f"border-radius:8px;padding:0 6px;font-size:0.85em;white-space:nowrap'>{esc(source)}</span>"
    )


def short_repr(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
