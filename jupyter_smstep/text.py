"""Every plain-text view, for the terminal and for ``%pipeline`` in a notebook.

- :func:`text_summary`: the graph (``smstep graph``, ``%pipeline show --text``);
- :class:`TerminalProgress`: a local run's progress, one line per change;
- :func:`results_table`: a finished run's steps and outputs;
- :func:`print_status` / :func:`follow`: an execution on SageMaker.

They all draw states with :data:`jupyter_smstep.core.states.GLYPHS`.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, TextIO
from collections.abc import Callable

from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.core.secrets import shown
from jupyter_smstep.core.states import ASCII_GLYPHS, GLYPHS
from jupyter_smstep.errors import ServiceError, SmstepError
from jupyter_smstep.local.results import StepEvent
from jupyter_smstep.remote.monitor import LOG_GROUP, Backoff, ExecutionMonitor, Snapshot, StepStatus


def text_summary(graph: PipelineGraph) -> str:
    lines = [f"pipeline {graph.name!r}: {len(graph.steps)} step(s)"]
    if graph.parameters:
        lines.append("parameters: " + ", ".join(f"{k}={v!r}" for k, v in graph.parameters.items()))
    if graph.kernel_image_note:
        lines.append(f"kernel image: {graph.kernel_image_note}")
    if graph.ships:
        files = graph.ships["files"]
        shown_files = ", ".join(files[:6]) + (f" and {len(files) - 6} more" if len(files) > 6 else "")
        lines.append(f"ships with every step (IncludeLocalWorkDir): {shown_files} ({fmt_bytes(graph.ships['bytes'])})")
    for node in graph.steps:
        after = f" (after {', '.join(node.depends_on)})" if node.depends_on else ""
        lines += ["", f"step {node.name}{after}"]
        if node.guard is not None:
            condition = graph.condition(node.guard)
            lines.append(
                f"  when {condition.expression}  [{condition.name}"
                + (
                    f"; else {condition.fail_name} fails: {condition.else_fail.text!r}]"
                    if condition.else_fail is not None
                    else "; else skipped]"
                )
            )
        fan = node.fanout
        if fan is not None:
            lines.append("  " + fanout_line(fan))
        for inp in sorted(node.inputs.values(), key=lambda i: i.line):
            where = {
                "step": f"output of step '{inp.step}'",
                "parameter": "pipeline parameter",
                "value": (
                    f"item {fan.index}: {fan.items[fan.index]!r}"
                    if inp.type_name == "item" and fan and fan.index is not None
                    else f"captured {inp.type_name}" + (f" from {inp.via}" if inp.via else "")
                ),
                "import": inp.statement,
            }[inp.kind]
            lines.append(f"  in   {inp.name:<16} {where}  (line {inp.line + 1})")
        for out in node.outputs:
            lines.append(f"  out  {out}")
        if node.unchecked:  # a headless build or --defer: the kernel's values were not there to check
            lines.append(
                "       (not built from a run: the step leaves out, when it runs, any of these that is "
                "not data: files, locks, clients)"
            )
        for save in node.saves:
            lines.append(f"  save {save.name} → {save.uri}" + ("" if save.format else "  (format by type)"))
        width = max((len(k) for k in node.settings), default=0)
        for key, r in node.settings.items():
            lines.append(f"  set  {key:<{width}}  {shown(key, r.value)!r}  [{r.source}]")
        if node.name in graph.keys:
            lines.append(f"  key  {graph.keys[node.name].short}")
        for since, steps in graph.changes.items():
            reasons = steps.get(node.name)
            if reasons is not None:
                lines.append(
                    f"  {'changed' if reasons else 'same'} since {since}"
                    + (f": {'; '.join(reasons)}" if reasons else "")
                )
    if graph.report.problems:
        lines += ["", "problems:"]
        lines += [f"  {p.severity}: {p}".replace("\n", "\n  ") for p in graph.report.problems]
    return "\n".join(lines)


# ======================================================================================
# A local run
# ======================================================================================
class TerminalProgress:
    """Prints a run's progress, one line per change, e.g. ``TerminalProgress(sys.stderr)``.

    Use it as ``on_event``. Colours and symbols when the stream is a terminal
    that can show them; plain ASCII otherwise (CI logs, pipes).
    """

    _COLORS = {"running": "36", "succeeded": "32", "failed": "31", "skipped": "33", "warning": "33", "retry": "35"}

    def __init__(
        self, stream: Any = None, *, color: bool | None = None, show_pending: bool = False, verbose: bool = False
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.verbose = verbose  # show what the steps print (``log`` events)
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.color = isatty if color is None else color
        encoding = (getattr(self.stream, "encoding", None) or "").lower()
        self.unicode = "utf" in encoding
        self.show_pending = show_pending
        self.width = 12

    def _symbol(self, key: str) -> str:
        return (GLYPHS if self.unicode else ASCII_GLYPHS).get(key, "?")

    def _paint(self, key: str, text: str) -> str:
        code = self._COLORS.get(key)
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and code else text

    def __call__(self, event: StepEvent) -> None:
        line = self.format(event)
        if line is not None:
            print(line, file=self.stream, flush=True)

    def format(self, event: StepEvent) -> str | None:
        if event.kind == "run":
            if event.state == "running":
                steps = event.info.get("steps", [])
                self.width = max([self.width] + [len(s) for s in steps])
                return f"run {event.run_id}: {len(steps)} step(s), local  ({event.info.get('run_dir', '')})"
            took = f" in {event.duration:.1f}s" if event.duration is not None else ""
            verdict = self._paint(event.state, f"run {event.state}{took}")
            return f"{verdict}: {event.message or ''}".rstrip(": ")
        name = (event.step or "").ljust(self.width)
        if event.kind == "log":
            return f"    {name}  | {event.message}" if self.verbose else None
        key = event.kind if event.kind in ("warning", "retry") else event.state
        if event.state == "pending" and event.kind == "state" and not self.show_pending:
            return None
        symbol = self._paint(key, self._symbol(key))
        if event.kind == "warning":
            return f"  {symbol} {name}  warning: {event.message}"
        if event.kind == "retry":
            return f"  {symbol} {name}  {event.message}"
        if event.state == "running":
            again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
            return f"  {symbol} {name}  running{again}"
        took = f"{event.duration:6.2f}s" if event.duration is not None else "       "
        cached = event.state == "succeeded" and "cached_from" in event.info
        taken = event.state == "succeeded" and "taken_from" in event.info
        label = self._paint(key, ("cached" if cached else "taken" if taken else event.state).ljust(9))
        text = f"  {symbol} {name}  {label} {took}"
        if cached:
            text = f"  {symbol} {name}  {label}          from run {event.info['cached_from']}"
        elif taken:
            text = f"  {symbol} {name}  {label}          from {event.info['taken_from']}"
        elif event.state == "succeeded" and event.info.get("resources"):
            text += f"  {resources_line(event.info['resources'])}"
        elif event.state == "succeeded" and event.info.get("condition"):
            text += f"  {event.message}"  # "accuracy >= 0.7 is true"
        if event.state == "failed":
            text += f"  {event.message or ''}"
            if event.error:  # the lead here; the whole traceback once, after the run
                shown_lines = failure_lead(event.error)[1:] or event.error.rstrip().splitlines()
                text += "\n" + "\n".join("      " + line for line in shown_lines)
        elif event.state == "skipped" and event.message:
            text = f"  {symbol} {name}  {label}          {event.message}"
        return text


def fmt_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB``, ``612.3 MiB``, ``1.3 GiB``."""
    if n < 1024:
        return f"{n:.0f} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


def resources_line(resources: dict) -> str:
    """``peak 612.3 MiB, cpu 1.0 s, in 2.1 KiB, out 600.0 MiB`` (what was measured)."""
    parts = []
    if "peak_rss_bytes" in resources:
        parts.append(f"peak {fmt_bytes(resources['peak_rss_bytes'])}")
    if "cpu_s" in resources:
        parts.append(f"cpu {resources['cpu_s']:.1f} s")
    parts.append(f"in {fmt_bytes(resources.get('payload_in_bytes', 0))}")
    parts.append(f"out {fmt_bytes(resources.get('payload_out_bytes', 0))}")
    return ", ".join(parts)


def results_table(doc: dict) -> str:
    """One line per step: state, duration and a short repr of each output."""
    lines = []
    steps = doc.get("steps", {})
    width = max((len(n) for n in steps), default=0)
    for name, step in steps.items():
        outputs = step.get("outputs") or {}
        shown = ", ".join(f"{k}={_one_line(v)}" for k, v in outputs.items())
        if step.get("condition"):
            decided = step["condition"]
            shown = f"{decided.get('when') or 'the condition'} is {'true' if decided.get('outcome') else 'false'}"
        elif step.get("state") in ("skipped", "failed") and step.get("summary"):
            shown = _one_line(step["summary"], 100)
        duration = step.get("duration")
        took = f"{duration:6.1f}s" if isinstance(duration, (int, float)) else "      -"
        state = "cached" if step.get("cached") else "taken" if step.get("taken_from") else step.get("state", "?")
        if step.get("taken_from"):
            shown = f"{shown}  (from {step['taken_from']})".lstrip()
        used = f"  [{resources_line(step['resources'])}]" if step.get("resources") else ""
        lines.append(f"{name:<{width}}  {state:<9} {took}  {shown}{used}".rstrip())
    return "\n".join(lines + saved_lines(doc))


def saved_lines(doc: dict) -> list[str]:
    """One line per object a run's ``--save`` values wrote: its URI and its file in the run's S3."""
    return [
        f"saved {step}.{item['name']} → {item['uri']}  ({item['path']})"
        for step, saved in (doc.get("saved") or {}).items()
        for item in saved
    ]


def _one_line(value: object, limit: int = 60) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ======================================================================================
# An execution on SageMaker
# ======================================================================================
def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"


def _step_line(step: StepStatus) -> str:
    attempt = f" (attempt {step.attempt})" if step.attempt > 1 else ""
    dur = _fmt_duration(step.duration)
    return f"{GLYPHS.get(step.state, '?')} {step.name:<24} {step.status:<10} {dur}{attempt}".rstrip()


def _print_failures(monitor: ExecutionMonitor, snap: Snapshot, stream: TextIO, lines: int) -> None:
    if snap.failure_reason:
        print(f"execution failure: {snap.failure_reason}", file=stream)
    for step in snap.failed_steps:
        print(f"\nstep '{step.name}' failed: {step.failure_reason or '(no reason given)'}", file=stream)
        if not step.job_name:
            continue
        try:
            tail = monitor.log_tail(step.job_name, lines)
        except SmstepError as exc:
            print(f"  (could not read its log: {exc})", file=stream)
            continue
        if tail:
            print(f"  last {len(tail)} log lines of {step.job_name} ({LOG_GROUP}):", file=stream)
            for line in tail:
                print(f"  | {line}", file=stream)
        else:
            print(f"  (no log lines for {step.job_name} in {LOG_GROUP})", file=stream)


def print_status(
    arn: str, stream: TextIO | None = None, client: Any = None, logs_client: Any = None, log_lines: int = 20
) -> bool:
    """Print the execution's status, one line per step; False if it failed or was stopped."""
    stream = stream or sys.stdout
    monitor = ExecutionMonitor(arn, client=client, logs_client=logs_client)
    delays = Backoff(initial=1.0, maximum=8.0)
    snap = monitor.poll()
    for _ in range(6):  # a throttled first look is retried a few times
        if not (snap.throttled or snap.error):
            break
        time.sleep(delays.throttled() if snap.throttled else delays.next())
        snap = monitor.poll()
    if snap.status == "Unknown":
        raise ServiceError(
            f"no answer from SageMaker about {arn} ({snap.error or 'throttled'})",
            fix="try again shortly; check the network, the region and AWS_ENDPOINT_URL",
        )
    name = f" ({snap.display_name})" if snap.display_name else ""
    print(f"execution {arn}{name}: {snap.status}", file=stream)
    print(monitor.console_url, file=stream)
    if snap.mlflow_line:
        print(snap.mlflow_line, file=stream)
    for step in snap.steps.values():
        print(_step_line(step), file=stream)
    if snap.status in ("Failed", "Stopped"):
        _print_failures(monitor, snap, stream, log_lines)
        return False
    return True


def follow(
    arn: str,
    stream: TextIO | None = None,
    client: Any = None,
    logs_client: Any = None,
    delays: Backoff | None = None,
    sleep: Callable[[float], Any] | None = None,
    log_lines: int = 50,
) -> bool:
    """Follow the execution until it ends, printing each step's changes; True if it succeeded.

    Ctrl-C stops following (not the execution) and returns False.
    """
    stream = stream or sys.stdout
    monitor = ExecutionMonitor(arn, client=client, logs_client=logs_client)
    print(f"following {arn}\n{monitor.console_url}", file=stream, flush=True)
    shown: dict[str, tuple[str, int]] = {}
    status = ""
    warned_throttle = False
    try:
        for snap in monitor.watch(delays=delays, sleep=sleep):
            if snap.throttled:
                if not warned_throttle:
                    print("(SageMaker is throttling requests: polling less often)", file=stream, flush=True)
                    warned_throttle = True
                continue
            if snap.error:
                print(f"(could not reach SageMaker: {snap.error}; retrying)", file=stream, flush=True)
                continue
            for step in snap.steps.values():
                key = (step.status, step.attempt)
                if shown.get(step.name) != key:
                    shown[step.name] = key
                    print(_step_line(step), file=stream, flush=True)
            if snap.status != status:
                status = snap.status
                if not snap.done:
                    print(f"execution: {status}", file=stream, flush=True)
            if snap.done:
                print(f"execution {snap.status}", file=stream, flush=True)
                if not snap.succeeded:
                    _print_failures(monitor, snap, stream, log_lines)
                return snap.succeeded
    except KeyboardInterrupt:
        print(
            f"stopped following; the execution goes on. Check it later with: smstep status {arn}",
            file=stream,
            flush=True,
        )
        return False
    return False


def fanout_line(fan: Any) -> str:
    """What a ``--foreach`` node is, in one line."""
    limit = f", at most {fan.max_concurrency} at once" if fan.max_concurrency else ""
    if fan.index is not None:
        return f"foreach {fan.var} = {fan.source}[{fan.index}]: iteration {fan.index + 1} of {len(fan.items)}{limit}"
    chosen = (
        f"the values of the iteration with the {'largest' if fan.select[0] == 'max' else 'smallest'} {fan.select[1]}"
        if fan.select
        else "each output as a list in item order"
    )
    return f"foreach {fan.var} in {fan.source} ({len(fan.items)} items{limit}): gathers {chosen}"


_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+)$')


def failure_lead(error: str) -> list[str]:
    """A step's traceback led by what the user needs first: the exception, then the user's own frame (the step
    cell's line, or a module of theirs), then how many library frames lie beneath. [] when ``error`` is no
    traceback."""
    lines = error.rstrip().splitlines()
    if not lines or not any(line.startswith("Traceback") for line in lines):
        return []
    exception = next((line for line in reversed(lines) if line and not line.startswith(" ")), lines[-1])
    frames: list[tuple[str, str, str]] = []  # (file, line, the source line shown under it)
    for i, line in enumerate(lines):
        match = _FRAME.match(line)
        if match:
            source = lines[i + 1].strip() if i + 1 < len(lines) and not _FRAME.match(lines[i + 1]) else ""
            frames.append((match["file"], match["line"], source))
    mine = [f for f in frames if _users(f[0])]
    out = [exception]
    if mine:
        file, line, source = mine[-1]
        where = f"step '{file[8:-1]}', cell line {line}" if file.startswith("<%%step ") else f"{file}, line {line}"
        out.append(f"  at {where}: {source}" if source else f"  at {where}")
        below = len(frames) - frames.index(mine[-1]) - 1
        if below:
            libraries = sorted({_library(f[0]) for f in frames[frames.index(mine[-1]) + 1 :]})
            out.append(f"  (then {below} frame{'s' if below != 1 else ''} inside {', '.join(libraries)})")
    return out


def _users(file: str) -> bool:
    """Whether a frame is the user's: a step cell, or a file outside Python and its installed packages."""
    if file.startswith("<%%step "):
        return True
    if file.startswith("<") or "site-packages" in file or "dist-packages" in file:
        return False
    return not file.startswith(sys.base_prefix) and not file.startswith(sys.prefix)


def _library(file: str) -> str:
    for marker in ("site-packages/", "dist-packages/"):
        if marker in file:
            return file.split(marker, 1)[1].split("/", 1)[0].removesuffix(".py")
    return "Python" if not file.startswith("<") else file
