"""Draw a :class:`~jupyter_smstep.panel.layout.Layout` as inline SVG.

Nodes show the step name, its instance type and its state (colour, icon,
duration); edges carry the names of the variables they pass, placed where they
do not overlap other labels or nodes. Every node is a ``<g data-step=NAME>`` and
every edge a ``<g data-source data-target data-vars>``, so the panel can
highlight a selection with a few CSS rules instead of redrawing, and tests (and
screen readers, through ``<title>``) can read the graph back.

Pure string building: a 50-step graph draws in about a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from collections.abc import Sequence

from jupyter_smstep.core.states import GLYPHS
from jupyter_smstep.panel.layout import Box, Layout

#: state -> (fill, stroke, glyph) as CSS colours; a pending node shows no glyph. Each state's colour is
#: JupyterLab's own variable for it (light or dark theme alike), with GitHub's light palette where there is no
#: JupyterLab (VS Code, a plain HTML page); a fill is that colour over the theme's background, so the name
#: stays legible in a dark theme as in a light one. Used in SVG (through style=, where var() works) and in HTML.
_STATES = {
    "pending": ("--jp-ui-font-color3", "#8c959f", 6),
    "running": ("--jp-brand-color1", "#0969da", 16),
    "succeeded": ("--jp-success-color1", "#1a7f37", 16),
    "failed": ("--jp-error-color1", "#cf222e", 16),
    "skipped": ("--jp-warn-color1", "#9a6700", 16),
    "stopped": ("--jp-ui-font-color2", "#57606a", 10),
}
BACKGROUND = "var(--jp-layout-color1, #fff)"
STATE_STYLE = {
    state: (
        f"color-mix(in srgb, var({var}, {colour}) {tint}%, {BACKGROUND})",
        f"var({var}, {colour})",
        GLYPHS.get(state, "") if state != "pending" else "",
    )
    for state, (var, colour, tint) in _STATES.items()
}
NAME_FONT, SMALL_FONT, LABEL_FONT = 13, 11, 11
NAME_CHAR, SMALL_CHAR, LABEL_CHAR = 7.4, 6.3, 6.7  # average advance per character, px
TEXT = "var(--jp-ui-font-color0, #1f2328)"
MUTED = "var(--jp-ui-font-color2, #57606a)"
EDGE = "var(--jp-ui-font-color3, #8c959f)"


def _paint(fill: str, stroke: str = "") -> str:
    """A style attribute: CSS variables work in style, not in SVG's presentation attributes."""
    return f'style="fill:{fill}' + (f';stroke:{stroke}"' if stroke else '"')


@dataclass
class NodeView:
    name: str
    subtitle: str = ""  # e.g. the instance type
    state: str = "pending"
    status: str = ""  # e.g. "2.1s" or "Executing"
    errors: int = 0
    warnings: int = 0
    tooltip: str = ""
    shape: str = "step"  # "condition" (a --when: dashed), "fail" (its FailStep), "stack" (a --foreach's iterations)


@dataclass
class EdgeView:
    source: str
    target: str
    variables: Sequence[str]


def node_width(name: str, subtitle: str = "", minimum: float = 132, maximum: float = 236) -> float:
    """Wide enough for the name (or the subtitle plus a status), within bounds."""
    want = max(len(name) * NAME_CHAR, len(subtitle) * SMALL_CHAR + 56) + 24
    return max(minimum, min(maximum, want))


def render(
    layout: Layout, nodes: dict[str, NodeView], edges: Sequence[EdgeView], dom_id: str, legend: bool = True
) -> str:
    """The ``<svg>`` element for the graph."""
    parts: list[str] = []
    w, h = layout.width, layout.height + (26 if legend else 0)
    if legend:
        w = max(w, _legend_width())
    parts.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="smstep-dag" id="{dom_id}" width="{w:.0f}" '
        f'height="{h:.0f}" viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="pipeline graph" '
        f'font-family="var(--jp-ui-font-family, system-ui, sans-serif)">'
        '<defs><marker id="' + dom_id + '-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
        'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" {_paint(EDGE)}/></marker></defs>'
    )
    by_pair = {(e.source, e.target): e for e in edges}
    labels: list[str] = []
    placed = _Grid()
    for b in layout.boxes.values():
        placed.add((b.left - 2, b.y - 2, b.width + 4, b.height + 4))
    for route in layout.routes:
        edge = by_pair.get((route.source, route.target))
        variables = list(edge.variables) if edge else []
        path = _path(route.points)
        full = ", ".join(variables)
        title = escape(f"{route.source} → {route.target}: {full}" if full else f"{route.source} → {route.target}")
        parts.append(
            f'<g class="smstep-edge" data-source="{escape(route.source)}" data-target="{escape(route.target)}" '
            f'data-vars="{escape(full)}"><title>{title}</title>'
            f'<path d="{path}" {_paint("none", EDGE)} stroke-width="1.4" marker-end="url(#{dom_id}-arrow)"/>'
        )
        if variables:
            labels.append(_label(route.points, _short(full, 30), placed))
        parts.append("</g>")
    # Labels after every edge so no line is drawn over a label.
    parts.extend(labels)
    for name, box in layout.boxes.items():
        parts.append(_node(box, nodes.get(name) or NodeView(name)))
    if legend:
        parts.append(_legend(layout.height, w))
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- pieces
def _node(box: Box, view: NodeView) -> str:
    fill, stroke, icon = STATE_STYLE.get(view.state, STATE_STYLE["pending"])
    x, y, w, h = box.left, box.y, box.width, box.height
    max_name = max(4, int((w - 20) / NAME_CHAR))
    status = " ".join(p for p in (icon, view.status) if p)
    max_sub = max(4, int((w - 20 - len(status) * SMALL_CHAR - 8) / SMALL_CHAR))
    tip = view.tooltip or view.name
    behind = (
        "".join(  # a stack: two cards behind the node
            f'<rect x="{x + d:.1f}" y="{y - d:.1f}" width="{w:.1f}" height="{h:.1f}" rx="7" {_paint(fill, stroke)} '
            'stroke-width="1.2"/>'
            for d in (6, 3)
        )
        if view.shape == "stack"
        else ""
    )
    out = [
        f'<g class="smstep-node s-{escape(view.state)}" data-step="{escape(view.name)}" '
        f'data-shape="{escape(view.shape)}" '
        f'data-state="{escape(view.state)}" '
        f'style="cursor:pointer"><title>{escape(tip)}</title>{behind}'
        f'<rect class="box" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
        f'rx="{h / 2 if view.shape == "condition" else 7:.1f}" {_paint(fill, stroke)} stroke-width="1.6"'
        + (' stroke-dasharray="5 3"' if view.shape in ("condition", "fail") else "")
        + "/>"
        f'<text x="{x + 10:.1f}" y="{y + 19:.1f}" font-size="{NAME_FONT}" font-weight="600" {_paint(TEXT)}>'
        f"{escape(_short(view.name, max_name))}</text>"
        f'<text x="{x + 10:.1f}" y="{y + h - 11:.1f}" font-size="{SMALL_FONT}" {_paint(MUTED)}>'
        f"{escape(_short(view.subtitle, max_sub))}</text>"
    ]
    if status:
        out.append(
            f'<text class="status" x="{x + w - 9:.1f}" y="{y + h - 11:.1f}" font-size="{SMALL_FONT}" '
            f'text-anchor="end" {_paint(stroke)} font-weight="600">{escape(status)}</text>'
        )
    if view.errors or view.warnings:
        colour = "#cf222e" if view.errors else "#9a6700"
        count = view.errors or view.warnings
        out.append(
            f'<g class="badge"><circle cx="{x + w - 4:.1f}" cy="{y + 4:.1f}" r="8" fill="{colour}"/>'
            f'<text x="{x + w - 4:.1f}" y="{y + 8:.1f}" font-size="10" text-anchor="middle" fill="#fff" '
            f'font-weight="700">{count}</text></g>'
        )
    out.append("</g>")
    return "".join(out)


def _path(points: list[tuple[float, float]]) -> str:
    """Vertical-tangent cubic segments between consecutive points (straight inside dummy lanes)."""
    (x0, y0) = points[0]
    d = [f"M{x0:.1f},{y0:.1f}"]
    for (xa, ya), (xb, yb) in zip(points, points[1:]):
        if abs(xa - xb) < 0.5:
            d.append(f"L{xb:.1f},{yb:.1f}")
        else:
            dy = (yb - ya) / 2
            d.append(f"C{xa:.1f},{ya + dy:.1f} {xb:.1f},{yb - dy:.1f} {xb:.1f},{yb:.1f}")
    return "".join(d)


def _bezier(p0: tuple[float, float], p1: tuple[float, float], t: float) -> tuple[float, float]:
    (x0, y0), (x1, y1) = p0, p1
    dy = (y1 - y0) / 2
    c0, c1 = (x0, y0 + dy), (x1, y1 - dy)
    u = 1 - t
    x = u**3 * x0 + 3 * u * u * t * c0[0] + 3 * u * t * t * c1[0] + t**3 * x1
    y = u**3 * y0 + 3 * u * u * t * c0[1] + 3 * u * t * t * c1[1] + t**3 * y1
    return x, y


class _Grid:
    """Rectangles bucketed by 32 px rows, so overlap tests stay local."""

    ROW = 32.0

    def __init__(self) -> None:
        self.rows: dict[int, list[tuple[float, float, float, float]]] = {}

    def _keys(self, rect: tuple[float, float, float, float]) -> range:
        return range(int(rect[1] // self.ROW), int((rect[1] + rect[3]) // self.ROW) + 1)

    def add(self, rect: tuple[float, float, float, float]) -> None:
        for k in self._keys(rect):
            self.rows.setdefault(k, []).append(rect)

    def hits(self, rect: tuple[float, float, float, float]) -> bool:
        return any(_overlap(rect, r) for k in self._keys(rect) for r in self.rows.get(k, ()))


def _label(points: list[tuple[float, float]], text: str, placed: _Grid) -> str:
    """A label on the edge's first segment, at the first spot that overlaps nothing placed so far."""
    w, h = len(text) * LABEL_CHAR + 8, LABEL_FONT + 5
    p0, p1 = points[0], points[1]
    choice = None
    for t in (0.5, 0.32, 0.68, 0.2, 0.8):
        cx, cy = _bezier(p0, p1, t)
        rect = (cx - w / 2, cy - h / 2, w, h)
        if not placed.hits(rect):
            choice = rect
            break
    if choice is None:
        cx, cy = _bezier(p0, p1, 0.5)
        choice = (cx - w / 2, cy - h / 2, w, h)
    placed.add(choice)
    x, y, _, _ = choice
    return (
        f'<g class="smstep-label"><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="3" '
        f'{_paint(BACKGROUND, "var(--jp-border-color2, #d0d7de)")} fill-opacity="0.92" stroke-width="0.6"/>'
        f'<text x="{x + w / 2:.1f}" y="{y + h - 4.5:.1f}" font-size="{LABEL_FONT}" text-anchor="middle" '
        f'font-family="var(--jp-code-font-family, monospace)" {_paint("var(--jp-ui-font-color1, #1f2328)")}>'
        f"{escape(text)}</text></g>"
    )


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _legend_width() -> float:
    return 16 + sum(30 + len(state) * SMALL_CHAR for state in STATE_STYLE) + 8


def _legend(top: float, width: float) -> str:
    x = 16.0
    out = [f'<g class="smstep-legend" font-size="{SMALL_FONT}">']
    for state, (fill, stroke, _) in STATE_STYLE.items():
        out.append(
            f'<rect x="{x:.0f}" y="{top + 4:.0f}" width="12" height="12" rx="3" {_paint(fill, stroke)}/>'
            f'<text x="{x + 16:.0f}" y="{top + 14:.0f}" {_paint(MUTED)}>{state}</text>'
        )
        x += 30 + len(state) * SMALL_CHAR
    out.append("</g>")
    return "".join(out)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"
