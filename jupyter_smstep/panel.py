"""The pipeline panel: the DAG, every setting, validation, local runs, submit and monitoring.

Plain ipywidgets, so it works wherever widgets do (JupyterLab 4, Notebook 7,
SageMaker Studio, VS Code) with no frontend extension of its own:

- the DAG is inline SVG in an ``HTML`` widget (layout: :mod:`dag_layout`,
  drawing: :mod:`dag_svg`);
- nodes are clickable: one ``ToggleButtons`` widget has a button per step, and
  a scoped ``<style>`` lays each button, transparent, exactly over its node
  (ipywidgets cannot hear clicks inside raw SVG without a custom frontend, and
  one widget costs one comm where a ``Button`` per node would cost 50). Should a
  frontend drop the style, the buttons fall back to a row of toggle buttons
  named after the steps; a ``Dropdown`` step selector does the same job and the
  two stay in sync;
- selection and run states are restyled without rebuilding widgets, and the
  layout is recomputed only when the graph's shape changes.

The panel follows the notebook: a ``post_run_cell`` hook refreshes it when the
registry's revision changed (re-run or new step cells, new parameters). Run
and Submit work in background threads so the kernel stays usable; a submitted
execution is polled by :class:`~jupyter_smstep.monitor.ExecutionMonitor` with
backoff until it ends or the panel is closed.
"""

from __future__ import annotations

import html
import re
import sys
import threading
import time
import traceback
import uuid
from typing import Any, Callable

import ipywidgets as widgets

from . import dag_layout, dag_svg
from .errors import Problem, SmstepError
from .graph import LARGE_CAPTURE_BYTES, PipelineGraph, StepNode

SOURCE_COLOURS = {"cell": "#0969da", "notebook": "#8250df", "config.yaml": "#bf3989", "kernel image": "#1a7f37",
                  "default": "#57606a"}
_live: list["PipelinePanel"] = []  # panels following the notebook (closed ones leave)
MAX_FOLLOWING = 3  # panels per notebook refreshed after every cell; older ones refresh when clicked


def show(workspace: Any) -> "PipelinePanel":
    """Display the panel for ``workspace`` and return it.

    It is displayed once even when also returned as the cell's value (which is
    how ``%pipeline show`` and ``jupyter_smstep.panel()`` hand it back).
    Re-running the cell that showed a panel replaces that panel (its output is
    gone); beyond :data:`MAX_FOLLOWING` panels, the oldest stop following the
    notebook after every cell (they still refresh when one of their buttons is
    used), so re-running ``%pipeline show`` all day costs nothing.
    """
    panel = PipelinePanel(workspace)
    for old in [p for p in _live if p is not panel and p.workspace is workspace]:
        if panel.cell_id and old.cell_id == panel.cell_id:
            old.close()
    following = [p for p in _live if p.workspace is workspace and p.following]
    for old in following[:-MAX_FOLLOWING]:
        old.unfollow()
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython is a dependency
        return panel
    shell = get_ipython()
    if shell is not None:
        display(panel)
        panel._displayed_in = getattr(shell, "execution_count", None)
    return panel


# --------------------------------------------------------------------------- extra checks
_PY_IN_IMAGE = re.compile(r"(?:^|[^a-z])py(?:thon)?-?(3)\.?(\d{1,2})(?!\d)", re.IGNORECASE)


def image_python(uri: str) -> str | None:
    """The Python version an image's tag or name advertises (``py310``, ``python3.11``), if any."""
    tail = uri.rsplit("/", 1)[-1]
    m = _PY_IN_IMAGE.search(tail)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def extra_problems(graph: PipelineGraph, sizes: dict[str, dict[str, int]], in_studio: bool,
                   unpicklable: dict[str, dict[str, str]] | None = None) -> list[Problem]:
    """Warnings the graph itself does not give, all checked without uploading anything."""
    out: list[Problem] = []
    kernel_py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    existing = {(p.step, p.message) for p in graph.report.problems}
    no_role: list[str] = []
    by_image: dict[tuple[str, str, str], list[str]] = {}
    for node in graph.steps:
        for var, size in sizes.get(node.name, {}).items():
            if size > LARGE_CAPTURE_BYTES:
                line = node.inputs[var].line + 1 if var in node.inputs else None
                out.append(Problem(f"captures {var!r}, {size / 2**20:.1f} MiB pickled, into the step's code upload",
                                   f"load {var!r} from S3 inside the step, or make it a step output",
                                   node.name, line, "warning"))
        for var, why in (unpicklable or {}).get(node.name, {}).items():
            line = node.inputs[var].line + 1 if var in node.inputs else None
            out.append(Problem(f"captures {var!r} from the kernel, but it cannot be pickled ({why})",
                               f"create {var!r} inside the step (open files, clients, locks and sockets do not travel)",
                               node.name, line, "error"))
        if "role" not in node.settings and in_studio:
            no_role.append(node.name)
        image = node.settings.get("image_uri")
        if image is not None and image.source != "kernel image" and isinstance(image.value, str):
            py = image_python(image.value)
            if py and py != kernel_py:
                by_image.setdefault((image.value, image.source, py), []).append(node.name)
    if no_role:
        out.append(Problem(f"no IAM role set{_for_steps(no_role, graph)}: submitting uses the Studio execution role",
                           "set one with %pipeline config --role arn:aws:iam::ACCOUNT:role/NAME to be explicit",
                           no_role[0] if len(no_role) == 1 else None, None, "warning"))
    for (uri, source, py), steps in by_image.items():
        out.append(Problem(
            f"image {uri!r} (from {source}){_for_steps(steps, graph)} is for Python {py} but the kernel runs "
            f"Python {kernel_py}: the job's bootstrap refuses a different minor version",
            f"use an image with Python {kernel_py}, or run the notebook on a Python {py} kernel",
            steps[0] if len(steps) == 1 else None, None, "warning"))
    return [p for p in out if (p.step, p.message) not in existing]


def _for_steps(steps: list[str], graph: PipelineGraph) -> str:
    if len(steps) == 1:
        return ""
    if len(steps) == len(graph.steps):
        return " for every step"
    shown = ", ".join(steps[:4]) + (f" and {len(steps) - 4} more" if len(steps) > 4 else "")
    return f" for steps {shown}"


class _Sizes:
    """Pickled sizes of captured values, cached by object identity (Validate recomputes)."""

    def __init__(self) -> None:
        self.cache: dict[tuple[int, type], tuple[int | None, str]] = {}

    def clear(self) -> None:
        self.cache.clear()

    def measure(self, graph: PipelineGraph, namespace: Any) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, str]]]:
        sizes: dict[str, dict[str, int]] = {}
        bad: dict[str, dict[str, str]] = {}
        for node in graph.steps:
            for inp in node.captured:
                if inp.name not in namespace:
                    continue
                value = namespace[inp.name]
                key = (id(value), type(value))
                if key not in self.cache:
                    self.cache[key] = _pickled_size(value)
                size, why = self.cache[key]
                if size is None:
                    bad.setdefault(node.name, {})[inp.name] = why
                else:
                    sizes.setdefault(node.name, {})[inp.name] = size
        return sizes, bad


def _pickled_size(value: Any) -> tuple[int | None, str]:
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - cloudpickle comes with the SDK
        import pickle as cloudpickle  # type: ignore[no-redef]
    try:
        return len(cloudpickle.dumps(value)), ""
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the user's to fix
        return None, f"{type(exc).__name__}: {exc}"


def _fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


def _fmt_seconds(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s:.1f}s" if s < 120 else f"{s // 60:.0f}m{s % 60:02.0f}s"


def _esc(value: Any) -> str:
    return html.escape(str(value))


# --------------------------------------------------------------------------- the widget
class PipelinePanel(widgets.VBox):
    """See the module docstring. ``show(workspace)`` builds and displays one."""

    poll_initial = 2.0  # seconds between the first execution polls (then backing off)
    poll_max = 30.0
    render_interval = 0.2  # at most ~5 redraws a second while a run reports progress

    def __init__(self, workspace: Any, shell: Any = None) -> None:
        self.workspace = workspace
        self.uid = f"smstep-{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._graph: PipelineGraph | None = None
        self._graph_error: SmstepError | None = None
        self._revision: int | None = None
        self._layout: dag_layout.Layout | None = None
        self._shape: tuple | None = None
        self._extra: list[Problem] = []
        self._sizes = _Sizes()
        self._captured: dict[str, dict[str, int]] = {}
        self._states: dict[str, tuple[str, str]] = {}  # step -> (state, status text) of the run shown
        self._run_kind = ""  # "local" | "remote" | ""
        self._local_result: Any = None
        self._local_errors: dict[str, str] = {}
        self._local_messages: dict[str, str] = {}
        self._local_warnings: list[str] = []
        self._monitor: Any = None
        self._snapshot: Any = None
        self._log_tails: dict[str, list[str]] = {}
        self._stop_polling: threading.Event | None = None
        self._threads: list[threading.Thread] = []
        self._busy = False
        self._displayed_in: int | None = None
        self._hit_names: list[str] = []
        self._syncing = False
        self._last_svg = ""
        self._render_timer: threading.Timer | None = None
        self._last_render = 0.0

        # Every widget opens a comm, and so do its Layout and Style unless shared: the
        # plain HTML parts and the buttons share theirs (a third of the panel's
        # render time in a kernel is opening comms).
        self._html_layout, self._html_style = widgets.Layout(), _html_style()
        self._button_style = widgets.ButtonStyle()
        shared = {"layout": self._html_layout, **({"style": self._html_style} if self._html_style else {})}
        html = lambda: widgets.HTML(**shared)  # noqa: E731
        self.header = html()
        self.validate_button = self._button("Validate", "check", "", "check the pipeline; uploads nothing")
        self.run_button = self._button("Run locally", "play", "info",
                                       "run every step on this machine (no AWS account needed)")
        self.submit_button = self._button("Submit", "cloud-upload", "primary",
                                          "upsert the pipeline on SageMaker and start an execution")
        self.stop_button = self._button("Stop", "stop", "danger", "stop the SageMaker execution", disabled=True)
        self.retry_button = self._button("Retry", "repeat", "warning", "retry the failed steps of the SageMaker execution",
                                         disabled=True)
        self.status = html()
        self.toolbar = widgets.HBox([self.validate_button, self.run_button, self.submit_button, self.stop_button,
                                     self.retry_button, self.status],
                                    layout=widgets.Layout(flex_flow="row wrap", align_items="center"))
        self.param_widgets: dict[str, widgets.ValueWidget] = {}
        self.params_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.svg = html()
        self.svg.add_class(f"{self.uid}-svg")
        self.dag_style = html()
        self.select_style = html()
        # One ToggleButtons (one widget, one button per step) whose buttons the
        # scoped <style> lays, transparent, over the nodes: clicking a node selects it.
        self.hits = widgets.ToggleButtons(options=[], value=None)
        self.hits.add_class(f"{self.uid}-hits")
        self.dag_box = widgets.Box([self.svg, self.hits], layout=widgets.Layout(overflow="auto", max_height="640px",
                                                                      flex="0 1 auto", max_width="66%", min_width="0",
                                                                      border="1px solid var(--jp-border-color2, #d0d7de)"))
        self.dag_box.add_class(f"{self.uid}-dag")
        self.selector = widgets.Dropdown(description="Step", options=[], layout=widgets.Layout(width="auto", max_width="100%"))
        self.details = html()
        self.details.add_class("smstep-details")
        self.side = widgets.VBox([self.selector, self.details],
                                 layout=widgets.Layout(flex="1 1 340px", min_width="300px", max_height="640px",
                                                       overflow="auto", padding="0 0 0 8px"))
        self.main = widgets.HBox([self.dag_box, self.side], layout=widgets.Layout(flex_flow="row wrap", width="100%",
                                                                                  align_items="flex-start"))
        self.problems = html()
        self.execution = html()
        super().__init__([self.header, self.toolbar, self.params_box, self.main, self.problems, self.execution,
                          self.dag_style, self.select_style])
        self.add_class("smstep-panel")
        self.add_class(self.uid)

        self.validate_button.on_click(lambda _: self._guard(self.validate))
        self.run_button.on_click(lambda _: self._guard(self.run_locally))
        self.submit_button.on_click(lambda _: self._guard(self.submit))
        self.stop_button.on_click(lambda _: self._guard(self.stop_execution))
        self.retry_button.on_click(lambda _: self._guard(self.retry_execution))
        self.selector.observe(self._on_select, names="value")
        self.hits.observe(self._on_hit, names="value")

        self.refresh(force=True)
        self._shell = shell if shell is not None else _current_shell()
        self.cell_id = _cell_id(self._shell)
        if self._shell is not None:
            self._shell.events.register("post_run_cell", self._on_post_run_cell)
        _live.append(self)

    def _button(self, text: str, icon: str, kind: str, tooltip: str, disabled: bool = False) -> widgets.Button:
        return widgets.Button(description=text, icon=icon, button_style=kind, tooltip=tooltip, disabled=disabled,
                              style=self._button_style)

    # ------------------------------------------------------------------ display & lifetime
    def _ipython_display_(self) -> None:
        shell = _current_shell()
        if self._displayed_in is not None and shell is not None and shell.execution_count == self._displayed_in:
            self._displayed_in = None  # show() already displayed it in this cell
            return
        from IPython.display import display

        display(self._repr_mimebundle_(), raw=True)

    @property
    def following(self) -> bool:
        """Whether the panel refreshes itself after every cell."""
        return self._shell is not None

    def unfollow(self) -> None:
        """Stop refreshing after every cell (buttons still refresh before they act)."""
        if self._shell is not None:
            try:
                self._shell.events.unregister("post_run_cell", self._on_post_run_cell)
            except ValueError:
                pass
            self._shell = None

    def close(self) -> None:
        """Stop following the notebook and the execution, and close the widgets."""
        self.unfollow()
        if self._stop_polling is not None:
            self._stop_polling.set()
        if self in _live:
            _live.remove(self)
        for child in self._all_widgets():
            child.close()
        super().close()

    def _all_widgets(self) -> list[widgets.Widget]:
        return [self.header, self.validate_button, self.run_button, self.submit_button, self.stop_button,
                self.retry_button, self.status, self.toolbar, self.params_box, *self.param_widgets.values(),
                self.svg, self.dag_style, self.select_style, self.hits, self.dag_box, self.selector,
                self.details, self.side, self.main, self.problems, self.execution, self._html_layout,
                *([self._html_style] if self._html_style else []), self._button_style]

    def _on_post_run_cell(self, result: Any = None) -> None:
        try:
            self.refresh()
        except Exception as exc:  # noqa: BLE001 - a panel must never break the user's cells
            self._set_status(f"could not refresh: {_esc(exc)}", "error")

    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a button's action; a problem is shown on the panel, never raised into the void."""
        try:
            self.refresh()
            action()
        except SmstepError as exc:
            self._set_status(_esc(exc).replace("\n", "<br>"), "error")
        except Exception as exc:  # noqa: BLE001
            self._set_status(f"{type(exc).__name__}: {_esc(exc)}", "error")

    # ------------------------------------------------------------------ data
    @property
    def graph(self) -> PipelineGraph | None:
        return self._graph

    def parameters(self) -> dict[str, Any]:
        """The parameter values as edited on the panel (used by Run and Submit)."""
        return {name: w.value for name, w in self.param_widgets.items()}

    def refresh(self, force: bool = False) -> bool:
        """Rebuild from the workspace if the notebook changed (or ``force``). True if it did."""
        revision = self.workspace.registry.revision
        if not force and revision == self._revision:
            return False
        with self._lock:
            self._revision = revision
            try:
                self._graph = self.workspace.graph()
                self._graph_error = None
            except SmstepError as exc:
                self._graph, self._graph_error = None, exc
            self._measure()
            self._render_all()
        return True

    def _measure(self) -> None:
        graph = self._graph
        if graph is None:
            self._captured, self._extra = {}, []
            return
        from . import studio

        sizes, bad = self._sizes.measure(graph, self.workspace.namespace)
        self._captured = sizes
        self._extra = extra_problems(graph, sizes, studio.in_studio(), bad)

    def all_problems(self) -> list[Problem]:
        if self._graph_error is not None:
            return list(self._graph_error.problems)
        if self._graph is None:
            return []
        return list(self._graph.report.problems) + self._extra

    # ------------------------------------------------------------------ rendering
    def _render_all(self) -> None:
        graph = self._graph
        self._render_header()
        self._render_params()
        names = [s.name for s in graph.steps] if graph else []
        current = self.selector.value
        self.selector.unobserve(self._on_select, names="value")
        self.selector.options = names
        self.selector.value = current if current in names else (names[0] if names else None)
        self.selector.observe(self._on_select, names="value")
        self._render_dag()
        self._render_selection()
        self._render_problems()
        self._render_execution()

    def _render_header(self) -> None:
        graph = self._graph
        if graph is None:
            self.header.value = f"<b>Pipeline</b>: cannot build the graph"
            return
        n_err = sum(1 for p in self.all_problems() if p.severity == "error")
        n_warn = sum(1 for p in self.all_problems() if p.severity == "warning")
        parts = [f"<span style='font-size:1.15em'><b>{_esc(graph.name)}</b></span>",
                 f"{len(graph.steps)} step{'s' if len(graph.steps) != 1 else ''}",
                 f"{len(graph.parameters)} parameter{'s' if len(graph.parameters) != 1 else ''}"]
        if n_err:
            parts.append(f"<span style='color:#cf222e'>✗ {n_err} error{'s' if n_err > 1 else ''}</span>")
        if n_warn:
            parts.append(f"<span style='color:#9a6700'>⚠ {n_warn} warning{'s' if n_warn > 1 else ''}</span>")
        if not n_err and graph.steps:
            parts.append("<span style='color:#1a7f37'>✓ valid</span>")
        note = graph.kernel_image_note or ""
        if note and not note.lower().startswith("no kernel image"):
            note = f"kernel image: {note}"
        note = f"<div style='color:var(--jp-ui-font-color2,#57606a);font-size:0.9em'>{_esc(note)}</div>" if note else ""
        self.header.value = f"<div class='smstep-header'>{' · '.join(parts)}{note}</div>"

    def _render_params(self) -> None:
        graph = self._graph
        params = dict(graph.parameters) if graph else {}
        changed = False
        for name in list(self.param_widgets):
            if name not in params or type(self.param_widgets[name]) is not _param_widget_type(params[name]):
                self.param_widgets.pop(name).close()
                changed = True
        for name, default in params.items():
            if name not in self.param_widgets:
                self.param_widgets[name] = _param_widget(name, default)
                changed = True
        if changed or len(self.params_box.children) != len(self.param_widgets) + (1 if params else 0):
            label = [widgets.HTML("<b>Parameters</b>&nbsp;")] if params else []
            for old in self.params_box.children:
                if isinstance(old, widgets.HTML):
                    old.close()
            self.params_box.children = label + [self.param_widgets[n] for n in params]

    def node_views(self) -> dict[str, dag_svg.NodeView]:
        graph = self._graph
        if graph is None:
            return {}
        counts: dict[str, list[int]] = {}
        for p in self.all_problems():
            if p.step:
                c = counts.setdefault(p.step, [0, 0])
                c[0 if p.severity == "error" else 1] += 1
        views = {}
        for node in graph.steps:
            itype = node.settings.get("instance_type")
            state, status = self._states.get(node.name, ("pending", ""))
            if not self._run_kind:
                state, status = "pending", ""
            err, warn = counts.get(node.name, [0, 0])
            tip = f"{node.name}: {len(node.links)} input link(s), outputs {', '.join(node.outputs) or 'none'}"
            views[node.name] = dag_svg.NodeView(node.name, str(itype.value) if itype else "no instance type",
                                                state, status, err, warn, tip)
        return views

    def _render_dag(self) -> None:
        graph = self._graph
        with self._lock:
            if graph is None or not graph.steps:
                msg = "No <code>%%step</code> cells yet: mark a cell with <code>%%step NAME</code> and run it."
                self.svg.value = f"<div style='padding:12px;line-height:1.4'>{msg}</div>"
                self._set_hits([], None)
                return
            views = self.node_views()
            edges = _edges(graph)
            widths = {n: dag_svg.node_width(n, v.subtitle) for n, v in views.items()}
            shape = (tuple(views), tuple((e.source, e.target) for e in edges), tuple(widths.values()))
            if shape != self._shape or self._layout is None:
                self._layout = dag_layout.layered_layout(list(views), [(e.source, e.target) for e in edges],
                                                         widths=widths)
                self._shape = shape
                self._set_hits(list(views), self._layout)
            svg = dag_svg.render(self._layout, views, edges, f"{self.uid}-graph")
            if svg != self._last_svg:
                self._last_svg = svg
                self.svg.value = svg

    def _set_hits(self, names: list[str], layout: dag_layout.Layout | None) -> None:
        """Lay one transparent toggle button over each node: clicking the node selects the step."""
        self._hit_names = names
        self._syncing = True
        try:
            self.hits.options = names
            self.hits.tooltips = [f"step {n}: click to see its settings, inputs, outputs and source" for n in names]
            self.hits.value = self.selector.value if self.selector.value in names else None
        finally:
            self._syncing = False
        u = self.uid
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
                rules.append(f".{u}-dag>.{u}-hits button[value=\"{i}\"]{{left:{box.left:.0f}px;top:{box.y:.0f}px;"
                             f"width:{box.width:.0f}px!important;height:{box.height:.0f}px!important}}")
        self.dag_style.value = "<style>" + "".join(rules) + "</style>"

    def _on_hit(self, change: Any = None) -> None:
        if self._syncing:
            return
        name = self.hits.value
        if name is not None and name in self.selector.options and name != self.selector.value:
            self.selector.value = name

    def _on_select(self, change: Any = None) -> None:
        if not self._syncing and self.hits.value != self.selector.value and self.selector.value in self.hits.options:
            self._syncing = True
            try:
                self.hits.value = self.selector.value
            finally:
                self._syncing = False
        self._render_selection()

    def _render_selection(self) -> None:
        name = self.selector.value
        u = self.uid
        if name:
            q = name.replace("\\", "\\\\").replace('"', '\\"')
            self.select_style.value = (
                f"<style>.{u} g.smstep-node[data-step=\"{q}\"] rect.box{{stroke:#0550ae;stroke-width:3.5}}"
                f".{u} g.smstep-edge[data-source=\"{q}\"] path,.{u} g.smstep-edge[data-target=\"{q}\"] path"
                "{stroke:#0550ae;stroke-width:2.4}</style>")
        else:
            self.select_style.value = ""
        self.details.value = self.step_details(name) if name else ""

    # ------------------------------------------------------------------ step details
    def step_details(self, name: str) -> str:
        graph = self._graph
        if graph is None or name not in {s.name for s in graph.steps}:
            return ""
        node = graph.step(name)
        consumers = _consumers(graph)
        h: list[str] = [f"<div class='smstep-step' data-step='{_esc(name)}' style='line-height:1.45'>"]
        state, status = self._states.get(name, ("", "")) if self._run_kind else ("", "")
        title = f"<b style='font-size:1.1em'>{_esc(name)}</b>"
        if node.depends_on:
            title += f" <span style='color:#57606a'>after {', '.join(_esc(d) for d in node.depends_on)}</span>"
        if state:
            fill, stroke, icon = dag_svg.STATE_STYLE.get(state, dag_svg.STATE_STYLE["pending"])
            title += (f" <span style='background:{fill};color:{stroke};border:1px solid {stroke};border-radius:4px;"
                      f"padding:0 5px'>{icon} {_esc(state)} {_esc(status)}</span>")
        h.append(f"<div>{title}</div>")
        problems = [p for p in self.all_problems() if p.step == name]
        if problems:
            h.append("<div class='smstep-step-problems'>" + "".join(_problem_html(p) for p in problems) + "</div>")
        h.append(self._run_details(name))

        h.append(_section("Inputs"))
        if node.inputs:
            rows = []
            for inp in sorted(node.inputs.values(), key=lambda i: (i.line, i.name)):
                rows.append(f"<tr data-input='{_esc(inp.name)}' data-kind='{inp.kind}'><td><code>{_esc(inp.name)}</code></td>"
                            f"<td>{self._input_origin(inp)}</td><td style='color:#57606a'>line {inp.line + 1}</td></tr>")
            h.append(f"<table class='smstep-inputs'>{''.join(rows)}</table>")
        else:
            h.append("<div style='color:#57606a'>none</div>")

        h.append(_section("Outputs"))
        if node.outputs:
            rows = []
            for var in node.outputs:
                readers = consumers.get((name, var), [])
                to = ("read by " + ", ".join(f"<b>{_esc(r)}</b>" for r in readers)) if readers else \
                     "<span style='color:#57606a'>returned (nothing downstream reads it)</span>"
                rows.append(f"<tr data-output='{_esc(var)}'><td><code>{_esc(var)}</code></td><td>{to}</td></tr>")
            h.append(f"<table class='smstep-outputs'>{''.join(rows)}</table>")
        else:
            h.append("<div style='color:#57606a'>none</div>")

        h.append(_section("Source cell"))
        h.append(_source_html(node))
        h.append(_section("Settings"))
        rows = "".join(
            f"<tr data-setting='{_esc(k)}'><td style='white-space:nowrap;padding-right:8px'><code>{_esc(k)}</code></td>"
            f"<td style='word-break:break-all;width:100%'>"
            f"<code>{_esc(_short_repr(r.value))}</code></td><td>{_source_badge(r.source)}</td></tr>"
            for k, r in node.settings.items())
        h.append(f"<table class='smstep-settings' style='border-collapse:collapse;width:100%'>{rows}</table>")

        h.append("</div>")
        return "".join(h)

    def _input_origin(self, inp: Any) -> str:
        if inp.kind == "step":
            return f"output of step <b>{_esc(inp.step)}</b>"
        if inp.kind == "parameter":
            w = self.param_widgets.get(inp.name)
            value = w.value if w is not None else (self._graph.parameters.get(inp.name) if self._graph else None)
            return f"pipeline parameter (now <code>{_esc(repr(value))}</code>)"
        if inp.kind == "import":
            return f"imported in the step: <code>{_esc(inp.statement)}</code>"
        step = None
        for s, vals in self._captured.items():
            if inp.name in vals:
                step = s
                break
        size = self._captured.get(step or "", {}).get(inp.name)
        size_text = f", {_fmt_bytes(size)} pickled" if size is not None else ""
        big = " <span style='color:#9a6700'>⚠ large</span>" if size and size > LARGE_CAPTURE_BYTES else ""
        via = f" from {_esc(inp.via)}" if inp.via else " from the kernel"
        return f"captured value <code>{_esc(inp.type_name)}</code>{size_text}{via}{big}"

    def _run_details(self, name: str) -> str:
        out = []
        if self._run_kind == "local" and name in self._local_messages and name not in self._local_errors:
            out.append(f"<div class='smstep-local-message' style='color:#57606a'>{_esc(self._local_messages[name])}</div>")
        if self._run_kind == "local" and name in self._local_errors:
            out.append(_section("Local run error") +
                       f"<pre class='smstep-error' style='white-space:pre-wrap;max-height:260px;overflow:auto;"
                       f"color:#cf222e;font-size:0.85em'>{_esc(_tail_lines(self._local_errors[name], 60))}</pre>")
        snap = self._snapshot
        if self._run_kind == "remote" and snap is not None and name in snap.steps:
            st = snap.steps[name]
            rows = [f"<div>SageMaker status: <b>{_esc(st.status)}</b>"
                    + (f" (attempt {st.attempt})" if st.attempt > 1 else "") + "</div>"]
            if st.job_name:
                rows.append(f"<div>training job: <code>{_esc(st.job_name)}</code></div>")
            if st.failure_reason:
                rows.append(f"<div class='smstep-failure' style='color:#cf222e'>failure: {_esc(st.failure_reason)}</div>")
            tail = self._log_tails.get(name)
            if tail:
                rows.append(f"<div>last {len(tail)} log lines (CloudWatch <code>/aws/sagemaker/TrainingJobs</code>):</div>"
                            f"<pre class='smstep-log' style='white-space:pre-wrap;max-height:260px;overflow:auto;"
                            f"font-size:0.85em'>{_esc(chr(10).join(tail))}</pre>")
            out.append(_section("SageMaker") + "".join(rows))
        return "".join(out)

    # ------------------------------------------------------------------ problems & execution
    def _render_problems(self) -> None:
        problems = self.all_problems()
        if not problems:
            self.problems.value = ("<div class='smstep-problems' style='color:#1a7f37;margin:4px 0'>✓ no problems "
                                   "found (nothing has been uploaded)</div>") if self._graph and self._graph.steps else ""
            return
        ordered = sorted(problems, key=lambda p: (p.severity != "error",))
        self.problems.value = (
            "<div class='smstep-problems' style='margin:4px 0'>"
            f"<b>Problems</b> <span style='color:#57606a'>(found before anything is uploaded)</span>"
            + "".join(_problem_html(p) for p in ordered) + "</div>")

    def _render_execution(self) -> None:
        if self._run_kind == "remote" and self._monitor is not None:
            self.execution.value = self._remote_html()
        elif self._run_kind == "local":
            self.execution.value = self._local_html()
        else:
            self.execution.value = ""

    def _local_html(self) -> str:
        res = self._local_result
        head = "<b>Local run</b>"
        if res is None:
            head += " <span style='color:#0969da'>running…</span>"
        else:
            ok = getattr(res, "succeeded", False)
            head += (f" {getattr(res, 'run_id', '')}: " + ("<span style='color:#1a7f37'>✓ succeeded</span>" if ok
                     else "<span style='color:#cf222e'>✗ failed</span>"))
            if getattr(res, "run_dir", None):
                head += f" <span style='color:#57606a'>— results in <code>{_esc(res.run_dir)}</code></span>"
        warnings = "".join(f"<div style='color:#9a6700'>⚠ {_esc(w)}</div>" for w in self._local_warnings)
        return f"<div class='smstep-local'>{head}{_state_table(self._graph, self._states)}{warnings}</div>"

    def _remote_html(self) -> str:
        mon, snap = self._monitor, self._snapshot
        status = snap.status if snap is not None else "Starting"
        colour = {"Succeeded": "#1a7f37", "Failed": "#cf222e", "Stopped": "#57606a"}.get(status, "#0969da")
        h = [f"<div class='smstep-remote' data-status='{_esc(status)}'><b>SageMaker execution</b> "
             f"<span class='smstep-exec-status' style='color:{colour};font-weight:600'>{_esc(status)}</span> · "
             f"<a href='{_esc(mon.console_url)}' target='_blank' rel='noopener' "
             f"style='color:var(--jp-content-link-color,#0969da);text-decoration:underline'>"
             f"open in the SageMaker console ↗</a>"
             f"<div style='color:#57606a;font-size:0.85em'><code>{_esc(mon.arn)}</code></div>"]
        if snap is not None and snap.throttled:
            h.append("<div style='color:#9a6700'>SageMaker is throttling requests: polling less often</div>")
        if snap is not None and snap.error:
            h.append(f"<div style='color:#9a6700'>could not reach SageMaker ({_esc(snap.error)}); retrying</div>")
        if snap is not None and snap.failure_reason:
            h.append(f"<div style='color:#cf222e'>failure: {_esc(snap.failure_reason)}</div>")
        if snap is not None and snap.steps:
            rows = []
            for st in snap.steps.values():
                fill, stroke, icon = dag_svg.STATE_STYLE.get(st.state, dag_svg.STATE_STYLE["pending"])
                why = f"<span style='color:#cf222e'>{_esc(st.failure_reason)}</span>" if st.failure_reason else ""
                rows.append(f"<tr data-step='{_esc(st.name)}' data-status='{_esc(st.status)}'>"
                            f"<td style='color:{stroke}'>{icon}</td><td><code>{_esc(st.name)}</code></td>"
                            f"<td>{_esc(st.status)}</td><td>{_fmt_seconds(st.duration)}</td><td>{why}</td></tr>")
            h.append(f"<table class='smstep-remote-steps'>{''.join(rows)}</table>")
        for name, tail in self._log_tails.items():
            h.append(f"<details open><summary>log tail of <b>{_esc(name)}</b> "
                     f"(CloudWatch <code>/aws/sagemaker/TrainingJobs</code>)</summary>"
                     f"<pre class='smstep-log' style='white-space:pre-wrap;max-height:240px;overflow:auto;"
                     f"font-size:0.85em'>{_esc(chr(10).join(tail)) or '(no log lines)'}</pre></details>")
        h.append("</div>")
        return "".join(h)

    def _set_status(self, message: str, kind: str = "info") -> None:
        colour = {"error": "#cf222e", "ok": "#1a7f37", "busy": "#0969da", "info": "#57606a"}.get(kind, "#57606a")
        self.status.value = f"<span class='smstep-status' data-kind='{kind}' style='color:{colour}'>{message}</span>"

    # ------------------------------------------------------------------ actions
    def validate(self) -> list[Problem]:
        """Re-check everything (captured values re-pickled, step code generated); uploads nothing."""
        self._sizes.clear()
        self.refresh(force=True)
        graph = self._graph
        if graph is not None and graph.steps and not graph.report.errors:
            from . import compile as compile_mod

            try:
                _, _, report = compile_mod.make_functions(graph, self.workspace.namespace)
            except SmstepError as exc:
                report = None
                self._extra += exc.problems
            if report is not None:
                seen = {(p.step, p.message) for p in self.all_problems()}
                self._extra += [p for p in report.problems
                                if (p.step, p.message) not in seen and "pickled, into the step" not in p.message]
            self._render_header()
            self._render_dag()
            self._render_problems()
            self._render_selection()
        problems = self.all_problems()
        errors = [p for p in problems if p.severity == "error"]
        if graph is not None and not graph.steps and not errors:
            self._set_status("no %%step cells yet", "info")
        elif errors:
            self._set_status(f"✗ {len(errors)} error{'s' if len(errors) > 1 else ''}: see Problems below", "error")
        else:
            warn = len(problems)
            self._set_status("✓ valid" + (f" ({warn} warning{'s' if warn > 1 else ''})" if warn else "")
                             + ": ready to run or submit", "ok")
        return problems

    def _check_ready(self, what: str) -> None:
        if self._busy:
            raise SmstepError(f"busy with another run or submit; {what} when it is done")
        errors = [p for p in self.all_problems() if p.severity == "error"]
        if errors:
            self._render_problems()
            raise SmstepError(errors)

    def run_locally(self, wait: bool = False) -> threading.Thread:
        """Run the pipeline with the local runner in a thread, colouring the DAG as steps progress."""
        self._check_ready("run")
        graph = self._graph
        assert graph is not None
        params = self.parameters()
        self._stop_following()
        self._run_kind = "local"
        self._local_result, self._local_errors, self._local_messages, self._local_warnings = None, {}, {}, []
        self._states = {s.name: ("pending", "") for s in graph.steps}
        self._busy = True
        self._set_buttons()
        self._set_status("running locally…", "busy")
        self._render_dag()
        self._render_execution()

        def work() -> None:
            try:
                result = self.workspace.run_local(params, on_event=self._on_local_event)
            except SmstepError as exc:
                self._set_status("local run refused: " + _esc(exc).replace("\n", "<br>"), "error")
            except Exception as exc:  # noqa: BLE001
                self._set_status(f"local run crashed: {type(exc).__name__}: {_esc(exc)}", "error")
                self._local_errors["(runner)"] = traceback.format_exc()
            else:
                self._local_result = result
                for name, step in getattr(result, "steps", {}).items():
                    state = getattr(step, "state", "pending")
                    self._states[name] = (state, _fmt_seconds(getattr(step, "duration", None)))
                    if getattr(step, "error", None):
                        self._local_errors[name] = str(step.error)
                    note = getattr(step, "summary", None) or getattr(step, "skipped_because", None)
                    if note:
                        self._local_messages[name] = str(note)
                ok = getattr(result, "succeeded", False)
                failed = [n for n, s in self._states.items() if s[0] == "failed"]
                self._set_status("✓ local run succeeded" if ok else
                                 f"✗ local run failed ({', '.join(failed) or 'see below'})", "ok" if ok else "error")
                if failed and self.selector.value not in failed:
                    self.selector.value = failed[0]
            finally:
                self._busy = False
                self._set_buttons()
                self._render_dag()
                self._render_execution()
                self._render_selection()

        return self._start(work, wait)

    def _on_local_event(self, event: Any) -> None:
        """The local runner's events (``kind`` state / retry / warning / run) drive the DAG colours."""
        kind = getattr(event, "kind", "state")
        name = getattr(event, "step", None) or getattr(event, "name", None)
        message = getattr(event, "message", None)
        if kind == "warning":
            self._local_warnings.append(f"{name}: {message}" if name else str(message))
            self._render_execution()
            return
        if not name:
            return
        with self._lock:
            state = getattr(event, "state", "pending")
            duration = getattr(event, "duration", None)
            attempt = getattr(event, "attempt", 1) or 1
            if kind == "retry":
                state, status = "running", f"retry #{attempt + 1}"
            else:
                status = _fmt_seconds(duration) if state in ("succeeded", "failed") else ""
                if attempt > 1 and state in ("running", "succeeded", "failed"):
                    status = f"{status} #{attempt}".strip()
            self._states[name] = (state, status)
            if message:
                self._local_messages[name] = message
            if getattr(event, "error", None):
                self._local_errors[name] = str(event.error)
        self._render_soon()

    def _render_soon(self) -> None:
        """Redraw the run's progress now, or within ``render_interval`` if it was just redrawn.

        A 50-step run sends ~150 events; coalescing them keeps the SVG updates
        sent to the browser to a few a second.
        """
        with self._lock:
            if self._render_timer is not None:
                return  # a redraw is already due
            wait = self._last_render + self.render_interval - time.monotonic()
            if wait > 0:
                self._render_timer = threading.Timer(wait, self._render_progress)
                self._render_timer.daemon = True
                self._render_timer.start()
                return
        self._render_progress()

    def _render_progress(self) -> None:
        with self._lock:
            self._render_timer = None
            self._last_render = time.monotonic()
            self._render_dag()
            self._render_execution()
            self._render_selection()

    def submit(self, wait: bool = False) -> threading.Thread:
        """Upsert + start on SageMaker (in a thread), then follow the execution."""
        self._check_ready("submit")
        params = self.parameters()
        self._stop_following()
        self._busy = True
        self._set_buttons()
        self._set_status("submitting to SageMaker (building and uploading the step code)…", "busy")

        def work() -> None:
            try:
                submission = self.workspace.submit(params)
            except SmstepError as exc:
                self._set_status("submit failed: " + _esc(exc).replace("\n", "<br>"), "error")
                return
            except Exception as exc:  # noqa: BLE001
                self._set_status(f"submit failed: {type(exc).__name__}: {_esc(exc)}", "error")
                return
            finally:
                self._busy = False
                self._set_buttons()
            self._set_status(f"started <a href='{_esc(submission.console_url)}' target='_blank' rel='noopener' "
                             "style='color:var(--jp-content-link-color,#0969da);text-decoration:underline'>"
                             f"{_esc(submission.execution_arn.rsplit('/', 1)[-1])}</a>", "ok")
            self.follow(submission.execution_arn, wait=True)

        return self._start(work, wait)

    def follow(self, arn: str, client: Any = None, wait: bool = False, settle: int = 0) -> threading.Thread:
        """Show a SageMaker execution's per-step progress on the DAG until it ends (or the panel closes).

        ``settle``: polls during which an ended status does not end the
        following (after a retry, the service may still say Failed for a moment).
        """
        from . import monitor as monitor_mod

        same = self._monitor is not None and self._monitor.arn == arn
        if same and client is None:
            client = self._monitor._client
        self._stop_following()
        mon = monitor_mod.ExecutionMonitor(arn, client=client)
        stop = threading.Event()
        self._monitor, self._stop_polling = mon, stop
        self._run_kind = "remote"
        if not same:  # a new execution: start from a clean slate; the same one keeps what is known
            self._snapshot, self._log_tails = None, {}
            graph = self._graph
            self._states = {s.name: ("pending", "") for s in graph.steps} if graph else {}
        self._set_buttons()
        self._render_dag()
        self._render_execution()

        def work() -> None:
            delays = monitor_mod.Backoff(self.poll_initial, maximum=self.poll_max)
            try:
                for snap in mon.watch(delays=delays, stop=stop, settle=settle):
                    if stop.is_set():
                        return
                    self._on_snapshot(snap)
                if stop.is_set() or self._snapshot is None:
                    return
                snap = self._snapshot
                for st in snap.failed_steps:
                    if st.job_name:
                        try:
                            self._log_tails[st.name] = mon.log_tail(st.job_name, 50)
                        except SmstepError as exc:
                            self._log_tails[st.name] = [f"(could not read the log: {exc})"]
                if snap.failed_steps and self.selector.value not in {s.name for s in snap.failed_steps}:
                    self.selector.value = snap.failed_steps[0].name
                self._render_execution()
                self._render_selection()
                self._set_buttons()
            except SmstepError as exc:
                self._set_status("monitoring stopped: " + _esc(exc).replace("\n", "<br>"), "error")
            except Exception as exc:  # noqa: BLE001
                self._set_status(f"monitoring crashed: {type(exc).__name__}: {_esc(exc)}", "error")

        return self._start(work, wait)

    def _on_snapshot(self, snap: Any) -> None:
        with self._lock:
            if not (snap.throttled or snap.error):
                self._snapshot = snap
                for name, st in snap.steps.items():
                    text = st.status if st.state == "running" else _fmt_seconds(st.duration)
                    if st.attempt > 1:
                        text = f"{text} #{st.attempt}".strip()
                    self._states[name] = (st.state, text)
                if snap.status in ("Failed", "Stopped"):
                    for name, (state, text) in list(self._states.items()):
                        if state == "pending" and name not in snap.steps:
                            self._states[name] = ("skipped", "")
            else:
                # keep the last real data, but say why nothing moves
                shown = self._snapshot
                if shown is not None:
                    shown.throttled, shown.error = snap.throttled, snap.error
                else:
                    self._snapshot = snap
            self._render_dag()
            self._render_execution()
            self._set_buttons()
            if self.selector.value in snap.steps:
                self._render_selection()
            if snap.done:
                kind = "ok" if snap.succeeded else "error"
                self._set_status(f"execution {_esc(snap.status)}", kind)

    def stop_execution(self) -> None:
        if self._monitor is None:
            raise SmstepError("no SageMaker execution to stop", fix="submit the pipeline first")
        self._monitor.stop()
        self._set_status("stop requested", "busy")
        self.follow(self._monitor.arn)  # poll again now, not after the current backoff delay

    def retry_execution(self) -> None:
        if self._monitor is None:
            raise SmstepError("no SageMaker execution to retry", fix="submit the pipeline first")
        mon = self._monitor
        mon.retry()
        retried = {n for n, (state, _) in self._states.items() if state in ("failed", "stopped", "skipped")}
        for name in retried:
            self._states[name] = ("pending", "")
            self._log_tails.pop(name, None)
        self._snapshot = mon.last  # Executing, until the service says otherwise
        self._set_status("retry requested: the failed steps run again", "busy")
        self.follow(mon.arn, settle=3)

    def _stop_following(self) -> None:
        if self._stop_polling is not None:
            self._stop_polling.set()
            self._stop_polling = None

    def _set_buttons(self) -> None:
        busy = self._busy
        self.run_button.disabled = busy
        self.submit_button.disabled = busy
        snap = self._snapshot
        remote = self._run_kind == "remote" and self._monitor is not None
        running = remote and (snap is None or not snap.done)
        self.stop_button.disabled = not running
        self.retry_button.disabled = not (remote and snap is not None and snap.status in ("Failed", "Stopped"))

    def _start(self, work: Callable[[], None], wait: bool) -> threading.Thread:
        thread = threading.Thread(target=work, name=f"{self.uid}-worker", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        if wait:
            thread.join()
        return thread

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the panel's background work (a run, a submit, the monitoring) to finish."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            alive[0].join(left)


# --------------------------------------------------------------------------- helpers
def _html_style() -> widgets.Widget | None:
    """One HTMLStyle to share (ipywidgets 8 gives every HTML widget its own, each with a comm)."""
    try:
        from ipywidgets.widgets.widget_string import HTMLStyle
    except ImportError:  # pragma: no cover - older ipywidgets: HTML has no style of its own
        return None
    return HTMLStyle()


def _cell_id(shell: Any) -> str | None:
    """The id of the notebook cell being run (JupyterLab and Notebook 7 send it), if any."""
    header = getattr(shell, "parent_header", None) or {}
    return (header.get("metadata") or {}).get("cellId") if isinstance(header, dict) else None


def _current_shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    return get_ipython()


def _edges(graph: PipelineGraph) -> list[dag_svg.EdgeView]:
    carried: dict[tuple[str, str], list[str]] = {}
    for node in graph.steps:
        for dep in node.depends_on:
            carried.setdefault((dep, node.name), [])
        for inp in sorted(node.inputs.values(), key=lambda i: (i.line, i.name)):
            if inp.kind == "step" and inp.step:
                carried.setdefault((inp.step, node.name), []).append(inp.name)
    return [dag_svg.EdgeView(u, v, vs) for (u, v), vs in carried.items()]


def _consumers(graph: PipelineGraph) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for node in graph.steps:
        for inp in node.inputs.values():
            if inp.kind == "step" and inp.step:
                out.setdefault((inp.step, inp.name), []).append(node.name)
    return out


def _param_widget_type(default: Any) -> type:
    if isinstance(default, bool):
        return widgets.Checkbox
    if isinstance(default, int):
        return widgets.IntText
    if isinstance(default, float):
        return widgets.FloatText
    return widgets.Text


def _param_widget(name: str, default: Any) -> widgets.ValueWidget:
    cls = _param_widget_type(default)
    style = {"description_width": "initial"}
    if cls is widgets.Checkbox:
        w = widgets.Checkbox(value=default, description=name, indent=False, style=style,
                             layout=widgets.Layout(width="auto", margin="2px 12px 2px 0"))
    elif cls is widgets.Text:
        w = widgets.Text(value=str(default), description=name, style=style,
                         layout=widgets.Layout(width="auto", min_width="240px", margin="2px 12px 2px 0"))
    else:
        w = cls(value=default, description=name, style=style, layout=widgets.Layout(width="200px", margin="2px 12px 2px 0"))
    w.add_class("smstep-param")
    w.add_class(f"smstep-param-{re.sub(r'[^A-Za-z0-9_-]', '-', name)}")
    return w


def _section(title: str) -> str:
    return (f"<div style='margin-top:8px;font-weight:600;border-bottom:1px solid var(--jp-border-color2,#d0d7de)'>"
            f"{_esc(title)}</div>")


def _source_badge(source: str) -> str:
    colour = SOURCE_COLOURS.get(source, "#57606a")
    return (f"<span class='smstep-source' data-source='{_esc(source)}' style='color:{colour};border:1px solid {colour};"
            f"border-radius:8px;padding:0 6px;font-size:0.85em;white-space:nowrap'>{_esc(source)}</span>")


def _short_repr(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tail_lines(text: str, n: int) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:]) if len(lines) > n else text


def _problem_html(p: Problem) -> str:
    icon, colour = ("✗", "#cf222e") if p.severity == "error" else ("⚠", "#9a6700")
    where = ", ".join(x for x in (f"step <b>{_esc(p.step)}</b>" if p.step else "",
                                   f"line {p.line}" if p.line else "") if x)
    fix = f"<div style='margin-left:1.4em;color:var(--jp-ui-font-color2,#57606a)'>fix: {_esc(p.fix)}</div>" if p.fix else ""
    return (f"<div class='smstep-problem' data-severity='{p.severity}' data-step='{_esc(p.step or '')}' "
            f"style='margin:3px 0'><span style='color:{colour}'>{icon} {p.severity}</span>"
            f"{' · ' + where if where else ''}: {_esc(p.message)}{fix}</div>")


def _source_html(node: StepNode) -> str:
    spec = node.cell.step
    header = spec.header if spec and spec.header else f"%%step {node.name}"
    body = highlight_python(node.cell.source.rstrip("\n"))
    lines = [f"<span style='color:#8250df'>{_esc(header)}</span>"] + body.split("\n")
    numbered = "\n".join(f"<span style='color:#8c959f;user-select:none'>{i:>3} </span>{line}"
                         for i, line in enumerate(lines, 1))
    return (f"<pre class='smstep-source-cell' style='font-size:0.85em;line-height:1.35;max-height:320px;overflow:auto;"
            f"background:var(--jp-cell-editor-background,#f6f8fa);padding:6px;margin:2px 0'>{numbered}</pre>")


_TOKEN_COLOURS = {"keyword": "#cf222e", "string": "#0a3069", "comment": "#6e7781", "number": "#0550ae",
                  "builtin": "#8250df", "definition": "#8250df"}


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
        return _esc(source)
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
        out.append(_esc(source[pos:begin]))
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
        text = _esc(source[begin:end])
        out.append(f"<span style='color:{_TOKEN_COLOURS[kind]}'>{text}</span>" if kind else text)
        previous = tok.string if tok.type == tokenize.NAME else ""
        pos = end
    out.append(_esc(source[pos:]))
    return "".join(out)


_FSTRING_TYPES = {getattr(__import__("tokenize"), n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
                  if hasattr(__import__("tokenize"), n)}


def _state_table(graph: PipelineGraph | None, states: dict[str, tuple[str, str]]) -> str:
    if graph is None:
        return ""
    cells = []
    for node in graph.steps:
        state, status = states.get(node.name, ("pending", ""))
        fill, stroke, icon = dag_svg.STATE_STYLE.get(state, dag_svg.STATE_STYLE["pending"])
        cells.append(f"<span class='smstep-run-step' data-step='{_esc(node.name)}' data-state='{_esc(state)}' "
                     f"style='display:inline-block;margin:2px 4px;padding:0 6px;border:1px solid {stroke};"
                     f"background:{fill};color:{stroke};border-radius:4px'>{icon or '·'} {_esc(node.name)} "
                     f"{_esc(status)}</span>")
    return f"<div>{''.join(cells)}</div>"


# --------------------------------------------------------------------------- `jupyter_smstep.panel()`
class _CallableModule(type(sys)):
    """Importing this module replaces the package's ``panel`` attribute with it; keep that callable."""

    def __call__(self, workspace: Any = None) -> PipelinePanel:
        if workspace is None:
            from . import get_workspace

            workspace = get_workspace()
        return show(workspace)


sys.modules[__name__].__class__ = _CallableModule
