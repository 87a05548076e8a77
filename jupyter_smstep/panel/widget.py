"""The pipeline panel: the ipywidgets tree, its buttons, and the threads behind them.

Plain ipywidgets, so it works wherever widgets do (JupyterLab 4, Notebook 7,
SageMaker Studio, VS Code) with no frontend extension of its own:

- the DAG is inline SVG in an ``HTML`` widget (layout: :mod:`.layout`,
  drawing: :mod:`.svg`);
- nodes are clickable: one ``ToggleButtons`` widget has a button per step, and
  a scoped ``<style>`` lays each button, transparent, exactly over its node
  (ipywidgets cannot hear clicks inside raw SVG without a custom frontend, and
  one widget costs one comm where a ``Button`` per node would cost 50). Should a
  frontend drop the style, the buttons fall back to a row of toggle buttons
  named after the steps; a ``Dropdown`` step selector does the same job and the
  two stay in sync;
- selection and run states are restyled without rebuilding widgets, and the
  layout is recomputed only when the graph's shape changes.

What is shown lives in a :class:`~.state.PanelState` (updated by its
reducers); the HTML comes from :mod:`.html`. This module only creates widgets,
assigns their values, and runs Run, Submit and the monitoring in background
threads so the kernel stays usable. The panel follows the notebook: a
``post_run_cell`` hook refreshes it when the registry's revision changed.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any
from collections.abc import Callable

import ipywidgets as widgets

from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.errors import Problem, SmstepError
from jupyter_smstep.local.results import StepEvent
from jupyter_smstep.panel import html, layout as dag_layout, runs, svg as dag_svg
from jupyter_smstep.panel.state import PanelState
from jupyter_smstep.panel.jobs import Jobs
from jupyter_smstep.remote.monitor import Snapshot

_live: list[PipelinePanel] = []  # panels following the notebook (closed ones leave)
MAX_FOLLOWING = 3  # panels per notebook refreshed after every cell; older ones refresh when clicked


def show(workspace: Any) -> PipelinePanel:
    """Display the panel for ``workspace`` and return it.

    It is displayed once even when also returned as the cell's value (which is
    how ``%pipeline show`` and ``jupyter_smstep.show_panel()`` hand it back).
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


# --------------------------------------------------------------------------- the widget
class PipelinePanel(widgets.VBox):
    """See the module docstring. ``show(workspace)`` builds and displays one."""

    poll_initial = 2.0  # seconds between the first execution polls (then backing off)
    poll_max = 30.0
    render_interval = 0.2  # at most ~5 redraws a second while a run reports progress

    def __init__(self, workspace: Any, shell: Any = None) -> None:
        self.workspace = workspace
        self.uid = f"smstep-{uuid.uuid4().hex[:8]}"
        self.state = PanelState()
        self._lock = threading.RLock()
        self.jobs = Jobs(self)
        self._layout: dag_layout.Layout | None = None
        self._shape: tuple | None = None
        self._displayed_in: int | None = None
        self._syncing = False
        self._last_svg = ""
        self._render_timer: threading.Timer | None = None
        self._last_render = 0.0
        self._build_widgets()
        self.refresh(force=True)
        self._shell = shell if shell is not None else _current_shell()
        self.cell_id = _cell_id(self._shell)
        if self._shell is not None:
            self._shell.events.register("post_run_cell", self._on_post_run_cell)
        _live.append(self)

    def _build_widgets(self) -> None:
        # Every widget opens a comm, and so do its Layout and Style unless shared: the
        # plain HTML parts and the buttons share theirs (a third of the panel's
        # render time in a kernel is opening comms).
        self._html_layout, self._html_style = widgets.Layout(), _html_style()
        self._button_style = widgets.ButtonStyle()
        shared = {"layout": self._html_layout, **({"style": self._html_style} if self._html_style else {})}
        make_html = lambda: widgets.HTML(**shared)  # noqa: E731
        self.header = make_html()
        self.validate_button = self._button("Validate", "check", "", "check the pipeline; uploads nothing")
        self.run_button = self._button(
            "Run locally", "play", "info", "run every step on this machine (no AWS account needed)"
        )
        self.submit_button = self._button(
            "Submit", "cloud-upload", "primary", "upsert the pipeline on SageMaker and start an execution"
        )
        self.changed_button = self._button(
            "Submit changed",
            "forward",
            "primary",
            "re-run on SageMaker only the steps changed since the last succeeded execution (and the steps after them)",
        )
        self.verify_button = self._button(
            "Verify",
            "balance-scale",
            "",
            "run locally, then compare each step's values with the ones its cell "
            "left in this kernel: = kernel or ≠ kernel on each step",
        )
        self.stop_button = self._button(
            "Stop", "stop", "danger", "stop the local run or the SageMaker execution", disabled=True
        )
        self.retry_button = self._button(
            "Retry", "repeat", "warning", "retry the failed steps of the SageMaker execution", disabled=True
        )
        self.history_button = self._button(
            "History",
            "history",
            "",
            "the pipeline's last executions on SageMaker: status, who started them, billed seconds per step",
        )
        self.status = make_html()
        self.toolbar = widgets.HBox(
            [
                self.validate_button,
                self.run_button,
                self.verify_button,
                self.submit_button,
                self.changed_button,
                self.stop_button,
                self.retry_button,
                self.history_button,
                self.status,
            ],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        self.param_widgets: dict[str, widgets.ValueWidget] = {}
        self.params_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.svg = make_html()
        self.svg.add_class(f"{self.uid}-svg")
        self.dag_style = make_html()
        self.select_style = make_html()
        # One ToggleButtons (one widget, one button per step) whose buttons the
        # scoped <style> lays, transparent, over the nodes: clicking a node selects it.
        self.hits = widgets.ToggleButtons(options=[], value=None)
        self.hits.add_class(f"{self.uid}-hits")
        self.dag_box = widgets.Box(
            [self.svg, self.hits],
            layout=widgets.Layout(
                overflow="auto",
                max_height="640px",
                flex="0 1 auto",
                max_width="66%",
                min_width="0",
                border="1px solid var(--jp-border-color2, #d0d7de)",
            ),
        )
        self.dag_box.add_class(f"{self.uid}-dag")
        self.selector = widgets.Dropdown(
            description="Step", options=[], layout=widgets.Layout(width="auto", max_width="100%")
        )
        self.details = make_html()
        self.details.add_class("smstep-details")
        self.side = widgets.VBox(
            [self.selector, self.details],
            layout=widgets.Layout(
                flex="1 1 340px", min_width="300px", max_height="640px", overflow="auto", padding="0 0 0 8px"
            ),
        )
        self.main = widgets.HBox(
            [self.dag_box, self.side],
            layout=widgets.Layout(flex_flow="row wrap", width="100%", align_items="flex-start"),
        )
        self.problems = make_html()
        self.execution = make_html()
        self.history = make_html()
        super().__init__(
            [
                self.header,
                self.toolbar,
                self.params_box,
                self.main,
                self.problems,
                self.execution,
                self.history,
                self.dag_style,
                self.select_style,
            ]
        )
        self.add_class("smstep-panel")
        self.add_class(self.uid)

        self.validate_button.on_click(lambda _: self._guard(self.validate))
        self.run_button.on_click(lambda _: self._guard(self.run_locally))
        self.verify_button.on_click(lambda _: self._guard(self.verify))
        self.submit_button.on_click(lambda _: self._guard(self.submit))
        self.changed_button.on_click(lambda _: self._guard(lambda: self.submit(changed=True)))
        self.stop_button.on_click(lambda _: self._guard(self.stop_execution))
        self.retry_button.on_click(lambda _: self._guard(self.retry_execution))
        self.history_button.on_click(lambda _: self._guard(self.jobs.history))
        self.selector.observe(self._on_select, names="value")
        self.hits.observe(self._on_hit, names="value")

    def _button(self, text: str, icon: str, kind: str, tooltip: str, disabled: bool = False) -> widgets.Button:
        return widgets.Button(
            description=text, icon=icon, button_style=kind, tooltip=tooltip, disabled=disabled, style=self._button_style
        )

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
        self.jobs.stop_following()
        if self in _live:
            _live.remove(self)
        for child in self._all_widgets():
            child.close()
        super().close()

    def _all_widgets(self) -> list[widgets.Widget]:
        return [
            self.header,
            *self.toolbar.children,  # the buttons and the status line
            self.toolbar,
            self.params_box,
            *self.param_widgets.values(),
            self.svg,
            self.dag_style,
            self.select_style,
            self.hits,
            self.dag_box,
            self.selector,
            self.details,
            self.side,
            self.main,
            self.problems,
            self.execution,
            self.history,
            self._html_layout,
            *([self._html_style] if self._html_style else []),
            self._button_style,
        ]

    def _on_post_run_cell(self, result: Any = None) -> None:
        try:
            self.refresh()
            verification = self.workspace.last_verification  # a %pipeline verify in a cell: mark the steps
            last_run = self.workspace.last_run
            if verification is not None and getattr(last_run, "run_id", None) != verification.run_id:
                verification = None  # a run since compared nothing: its marks would be the older run's
            if verification is not self.state.verification and not self.state.busy:
                with self._lock:
                    self.state.set_verification(verification)
                self.render_dag()
                self.render_selection()
        except Exception as exc:  # noqa: BLE001 - a panel must never break the user's cells
            self.set_status(f"could not refresh: {html.esc(exc)}", "error")

    def _guard(self, action: Callable[[], Any]) -> None:
        """Run a button's action; a problem is shown on the panel, never raised into the void."""
        try:
            self.refresh()
            action()
        except SmstepError as exc:
            self.set_status(html.esc(exc).replace("\n", "<br>"), "error")
        except Exception as exc:  # noqa: BLE001
            self.set_status(f"{type(exc).__name__}: {html.esc(exc)}", "error")

    # ------------------------------------------------------------------ data
    @property
    def graph(self) -> PipelineGraph | None:
        return self.state.graph

    def parameters(self) -> dict[str, Any]:
        """The parameter values as edited on the panel (used by Run and Submit)."""
        return {name: w.value for name, w in self.param_widgets.items()}

    def all_problems(self) -> list[Problem]:
        return self.state.problems()

    def refresh(self, force: bool = False) -> bool:
        """Rebuild from the workspace if the notebook changed (or ``force``). True if it did."""
        revision = self.workspace.registry.revision
        if not force and revision == self.state.revision:
            return False
        with self._lock:
            try:
                # keys (every captured value hashed) only once there is a run or execution to compare with
                since = self.workspace.last_run is not None or self.workspace.last_execution is not None
                self.state.set_graph(self.workspace.graph(keys=since), None, revision)
            except SmstepError as exc:
                self.state.set_graph(None, exc, revision)
            self._render_all()
        return True

    # ------------------------------------------------------------------ rendering
    def _render_all(self) -> None:
        self.header.value = html.header(self.state)
        self._render_params()
        names = self.state.step_names
        current = self.selector.value
        self.selector.unobserve(self._on_select, names="value")
        self.selector.options = names
        self.selector.value = current if current in names else (names[0] if names else None)
        self.selector.observe(self._on_select, names="value")
        self.render_dag()
        self.render_selection()
        self.problems.value = html.problems(self.state)
        self.render_execution()

    def _render_params(self) -> None:
        graph = self.state.graph
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
        return html.node_views(self.state)

    def render_dag(self) -> None:
        graph = self.state.graph
        with self._lock:
            if graph is None or not graph.steps:
                self.svg.value = html.NO_STEPS
                self._set_hits([], None)
                return
            views = self.node_views()
            edges = html.edges(graph)
            widths = {n: dag_svg.node_width(n, v.subtitle) for n, v in views.items()}
            shape = (tuple(views), tuple((e.source, e.target) for e in edges), tuple(widths.values()))
            if shape != self._shape or self._layout is None:
                self._layout = dag_layout.layered_layout(
                    list(views), [(e.source, e.target) for e in edges], widths=widths
                )
                self._shape = shape
                self._set_hits(list(views), self._layout)
            svg = dag_svg.render(self._layout, views, edges, f"{self.uid}-graph")
            if svg != self._last_svg:
                self._last_svg = svg
                self.svg.value = svg

    def _set_hits(self, names: list[str], layout: dag_layout.Layout | None) -> None:
        """Lay one transparent toggle button over each node: clicking the node selects the step."""
        self._syncing = True
        try:
            self.hits.options = names
            self.hits.tooltips = [f"step {n}: click to see its settings, inputs, outputs and source" for n in names]
            self.hits.value = self.selector.value if self.selector.value in names else None
        finally:
            self._syncing = False
        self.dag_style.value = html.hit_style(self.uid, names, layout)

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
        self.render_selection()

    def render_selection(self) -> None:
        name = self.selector.value
        self.select_style.value = html.selection_style(self.uid, name)
        self.details.value = self.step_details(name) if name else ""

    def step_details(self, name: str) -> str:
        graph = self.state.graph
        sizes = self.workspace.captures.sizes(graph, self.workspace.namespace).get(name, {}) if graph else {}
        return html.step_details(self.state, name, self.parameters(), sizes)

    def render_execution(self) -> None:
        mon = self.jobs.monitor
        self.execution.value = runs.execution(self.state, mon.console_url if mon else None, mon.arn if mon else None)

    def set_status(self, message: str, kind: str = "info") -> None:
        self.status.value = html.status(message, kind)

    # ------------------------------------------------------------------ actions
    def validate(self) -> list[Problem]:
        """Re-check everything (captured values re-pickled, step code generated); uploads nothing."""
        self.workspace.captures.clear()
        self.refresh(force=True)
        graph = self.state.graph
        if graph is not None and graph.steps and not graph.report.errors:
            from jupyter_smstep.sdk import build

            try:
                build.step_functions(graph, self.workspace.namespace, self.workspace.captures)
            except SmstepError as exc:
                graph.report.problems.extend(p for p in exc.problems if p not in graph.report.problems)
            self.header.value = html.header(self.state)
            self.render_dag()
            self.problems.value = html.problems(self.state)
            self.render_selection()
        self.set_status(*html.validation_status(self.state))
        return self.state.problems()

    def on_local_event(self, event: StepEvent) -> None:
        """The local runner's events drive the DAG colours (the run's thread calls this)."""
        with self._lock:
            redraw = self.state.on_local_event(event)
        if redraw:
            self._render_soon()
        else:
            self.render_execution()

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
            self.render_dag()
            self.render_execution()
            self.render_selection()

    def on_snapshot(self, snap: Snapshot) -> None:
        """A poll of the execution (the monitoring thread calls this)."""
        with self._lock:
            self.state.on_snapshot(snap)
            self.render_dag()
            self.render_execution()
            self.set_buttons()
            if self.selector.value in snap.steps:
                self.render_selection()
            if snap.done:
                note = self.state.selection_note
                self.set_status(
                    f"execution {html.esc(snap.status)}" + (f" — {html.esc(note)}" if note else ""),
                    "ok" if snap.succeeded else "error",
                )

    def set_buttons(self) -> None:
        busy = self.state.busy
        self.run_button.disabled = busy
        self.verify_button.disabled = busy
        self.submit_button.disabled = busy
        self.changed_button.disabled = busy
        following = self.jobs.monitor is not None
        stoppable = self.jobs.local_stop is not None or (following and self.state.remote_running())
        self.stop_button.disabled = not stoppable
        self.retry_button.disabled = not (following and self.state.remote_retryable())

    # ------------------------------------------------------------------ actions (done by .jobs, in threads)
    def run_locally(self, wait: bool = False) -> threading.Thread:
        """Run the pipeline with the local runner in a thread, colouring the DAG as steps progress."""
        return self.jobs.run_locally(wait)

    def verify(self, wait: bool = False) -> threading.Thread:
        """Run locally, then mark each step ``= kernel`` or ``≠ kernel`` (its values against its cell's)."""
        return self.jobs.run_locally(wait, verify=True)

    def submit(self, wait: bool = False, changed: bool = False) -> threading.Thread:
        """Upsert + start on SageMaker (in a thread), then follow the execution; with ``changed``, only
        the steps changed since the last succeeded execution."""
        return self.jobs.submit(wait, changed)

    def follow(self, arn: str, client: Any = None, wait: bool = False, settle: int = 0) -> threading.Thread:
        """Show a SageMaker execution's progress on the DAG until it ends (or the panel closes)."""
        return self.jobs.follow(arn, client, wait, settle)

    def stop_execution(self) -> None:
        """Stop: the local run in progress, else the SageMaker execution followed."""
        if self.jobs.local_stop is not None:
            self.jobs.stop_local()
        else:
            self.jobs.stop_execution()

    def retry_execution(self) -> None:
        self.jobs.retry_execution()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the panel's background work (a run, a submit, the monitoring) to finish."""
        self.jobs.wait(timeout)

    def _check_ready(self, what: str) -> None:
        self.jobs.check_ready(what)


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
        w = widgets.Checkbox(
            value=default,
            description=name,
            indent=False,
            style=style,
            layout=widgets.Layout(width="auto", margin="2px 12px 2px 0"),
        )
    elif cls is widgets.Text:
        w = widgets.Text(
            value=str(default),
            description=name,
            style=style,
            layout=widgets.Layout(width="auto", min_width="240px", margin="2px 12px 2px 0"),
        )
    else:
        w = cls(
            value=default, description=name, style=style, layout=widgets.Layout(width="200px", margin="2px 12px 2px 0")
        )
    w.add_class("smstep-param")
    w.add_class(f"smstep-param-{re.sub(r'[^A-Za-z0-9_-]', '-', name)}")
    return w
