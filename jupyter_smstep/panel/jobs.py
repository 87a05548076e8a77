"""The panel's background work: a local run, a submit, following an execution, stop and retry.

Each action starts a daemon thread so the kernel stays usable; the thread feeds
the panel's reducers (:meth:`~.widget.PipelinePanel.on_local_event`,
:meth:`~.widget.PipelinePanel.on_snapshot`) and its status line. Following an
execution polls :class:`~jupyter_smstep.remote.monitor.ExecutionMonitor` with
backoff until the execution ends, another one is followed, or the panel closes.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jupyter_smstep.errors import SmstepError
from jupyter_smstep.panel import html, interrupts, runs
from jupyter_smstep.remote.monitor import Backoff, ExecutionMonitor

if TYPE_CHECKING:
    from jupyter_smstep.panel.widget import PipelinePanel


class Jobs:
    """The threads behind one panel's buttons."""

    def __init__(self, panel: PipelinePanel) -> None:
        self.panel = panel
        self.monitor: ExecutionMonitor | None = None
        self._stop_polling: threading.Event | None = None
        self.local_stop: threading.Event | None = None  # set: the local run in progress stops
        self._threads: list[threading.Thread] = []

    def check_ready(self, what: str) -> None:
        if self.panel.state.busy:
            raise SmstepError(f"busy with another run or submit; {what} when it is done")
        errors = self.panel.state.errors()
        if errors:
            self.panel.problems.value = html.problems(self.panel.state)
            raise SmstepError(errors)

    def run_locally(self, wait: bool = False, verify: bool = False) -> threading.Thread:
        """Run the pipeline with the local runner in a thread, colouring the DAG as steps progress; with
        ``verify``, then compare each step's values with the ones its cell left in this kernel and mark each
        step ``= kernel`` or ``≠ kernel`` (``%pipeline verify``)."""
        self.check_ready("verify" if verify else "run")
        params = self.panel.parameters()
        self.stop_following()
        self.panel.state.start_local()
        self.panel.state.busy = True
        stop = self.local_stop = threading.Event()  # before the buttons: Stop is enabled while it runs
        self.panel.set_buttons()
        self.panel.set_status("running locally…", "busy")
        self.panel.render_dag()
        self.panel.render_execution()

        interrupts.watch(stop)  # Kernel → Interrupt stops it, as Stop does

        def work() -> None:
            verification = None
            try:
                if verify:
                    from jupyter_smstep import verify as verify_mod
                    from jupyter_smstep.core.compare import ATOL, RTOL

                    verification = verify_mod.verify_live(
                        self.panel.workspace, params, RTOL, ATOL, on_event=self.panel.on_local_event, stop=stop
                    )
                    result = self.panel.workspace.last_run
                else:
                    result = self.panel.workspace.run_local(params, on_event=self.panel.on_local_event, stop=stop)
            except SmstepError as exc:
                self.panel.set_status(
                    ("verify" if verify else "local run") + " refused: " + html.esc(exc).replace("\n", "<br>"), "error"
                )
            except Exception as exc:  # noqa: BLE001
                self.panel.set_status(f"local run crashed: {type(exc).__name__}: {html.esc(exc)}", "error")
                self.panel.state.local_errors["(runner)"] = traceback.format_exc()
            else:
                with self.panel._lock:
                    failed = self.panel.state.finish_local(result)
                try:  # what submitting it would cost, from what this run measured (prices: the API or none)
                    self.panel.state.estimate_lines = self.panel.workspace.estimate().lines()
                except SmstepError:
                    self.panel.state.estimate_lines = []
                if verification is not None:
                    with self.panel._lock:
                        self.panel.state.set_verification(verification)
                    counts = verification.counts
                    self.panel.set_status(
                        "verify: "
                        + ", ".join(f"{n} {kind}" for kind, n in counts.items())
                        + ("" if result.succeeded else " (the run did not succeed)"),
                        "ok" if verification.exit_code == 0 else "error",
                    )
                else:
                    self.panel.set_status(
                        "✓ local run succeeded"
                        if result.succeeded
                        else "■ local run stopped"
                        if stop.is_set()
                        else f"✗ local run failed ({', '.join(failed) or 'see below'})",
                        "ok" if result.succeeded else "error",
                    )
                if failed and self.panel.selector.value not in failed:
                    self.panel.selector.value = failed[0]
            finally:
                interrupts.unwatch(stop)
                self.local_stop = None
                self.panel.state.busy = False
                self.panel.set_buttons()
                self.panel.render_dag()
                self.panel.render_execution()
                self.panel.render_selection()

        return self._start(work, wait)

    def submit(self, wait: bool = False, changed: bool = False) -> threading.Thread:
        """Upsert + start on SageMaker (in a thread), then follow the execution (``changed``: a selective
        execution of the steps changed since the last succeeded one)."""
        self.check_ready("submit")
        params = self.panel.parameters()
        self.stop_following()
        self.panel.state.busy = True
        self.panel.set_buttons()
        self.panel.set_status("submitting to SageMaker (building and uploading the step code)…", "busy")

        def work() -> None:
            try:
                submission = self.panel.workspace.submit(params, changed=changed)
            except SmstepError as exc:
                self.panel.set_status("submit failed: " + html.esc(exc).replace("\n", "<br>"), "error")
                return
            except Exception as exc:  # noqa: BLE001
                self.panel.set_status(f"submit failed: {type(exc).__name__}: {html.esc(exc)}", "error")
                return
            finally:
                self.panel.state.busy = False
                self.panel.set_buttons()
            self.panel.state.selection_note = submission.selection.note if submission.selection is not None else ""
            note = f" — {html.esc(submission.selection.note)}" if submission.selection is not None else ""
            if not submission.started:
                self.panel.set_status(f"nothing started{note}", "ok")
                return
            link = (
                f"<a href='{html.esc(submission.console_url)}' target='_blank' rel='noopener' "
                "style='color:var(--jp-content-link-color,#0969da);text-decoration:underline'>"
                f"{html.esc(submission.execution_arn.rsplit('/', 1)[-1])}</a>"
            )
            self.panel.set_status(f"started {link}{note}", "ok")
            self.follow(submission.execution_arn, wait=True)

        return self._start(work, wait)

    def follow(self, arn: str, client: Any = None, wait: bool = False, settle: int = 0) -> threading.Thread:
        """Show a SageMaker execution's per-step progress on the DAG until it ends (or the panel closes).

        ``settle``: polls during which an ended status does not end the
        following (after a retry, the service may still say Failed for a moment).
        """
        same = self.monitor is not None and self.monitor.arn == arn
        if same and client is None and self.monitor is not None:
            client = self.monitor.client
        self.stop_following()
        mon = ExecutionMonitor(arn, client=client)
        stop = threading.Event()
        self.monitor, self._stop_polling = mon, stop
        self.panel.state.start_remote(same)
        self.panel.set_buttons()
        self.panel.render_dag()
        self.panel.render_execution()

        def work() -> None:
            delays = Backoff(self.panel.poll_initial, maximum=self.panel.poll_max)
            try:
                for snap in mon.watch(delays=delays, stop=stop, settle=settle):
                    if stop.is_set():
                        return
                    self.panel.on_snapshot(snap)
                last = self.panel.state.snapshot
                if stop.is_set() or last is None:
                    return
                for st in last.failed_steps:
                    if st.job_name:
                        try:
                            self.panel.state.log_tails[st.name] = mon.log_tail(st.job_name, 50)
                        except SmstepError as exc:
                            self.panel.state.log_tails[st.name] = [f"(could not read the log: {exc})"]
                if last.failed_steps and self.panel.selector.value not in {s.name for s in last.failed_steps}:
                    self.panel.selector.value = last.failed_steps[0].name
                self.panel.render_execution()
                self.panel.render_selection()
                self.panel.set_buttons()
            except SmstepError as exc:
                self.panel.set_status("monitoring stopped: " + html.esc(exc).replace("\n", "<br>"), "error")
            except Exception as exc:  # noqa: BLE001
                self.panel.set_status(f"monitoring crashed: {type(exc).__name__}: {html.esc(exc)}", "error")

        return self._start(work, wait)

    def stop_local(self) -> None:
        """Stop the local run in progress: its running steps are killed within about a second."""
        if self.local_stop is not None:
            self.local_stop.set()
            self.panel.set_status("stopping the local run…", "busy")

    def stop_execution(self) -> None:
        if self.monitor is None:
            raise SmstepError("no SageMaker execution to stop", fix="submit the pipeline first")
        self.monitor.stop()
        self.panel.set_status("stop requested", "busy")
        self.follow(self.monitor.arn)  # poll again now, not after the current backoff delay

    def retry_execution(self) -> None:
        if self.monitor is None:
            raise SmstepError("no SageMaker execution to retry", fix="submit the pipeline first")
        mon = self.monitor
        mon.retry()
        self.panel.state.retried(mon.last)  # Executing, until the service says otherwise
        self.panel.set_status("retry requested: the failed steps run again", "busy")
        self.follow(mon.arn, settle=3)

    def history(self, wait: bool = False) -> threading.Thread:
        """List the pipeline's last SageMaker executions under the panel (read-only)."""
        self.panel.set_status("reading the executions…", "busy")

        def work() -> None:
            try:
                rows, estimates = self.panel.workspace.history(5)
                self.panel.history.value = runs.history(rows, estimates)
                self.panel.set_status(f"{len(rows)} execution(s) of the pipeline", "info")
            except SmstepError as exc:
                self.panel.set_status(html.esc(exc).replace("\n", "<br>"), "error")
            except Exception as exc:  # noqa: BLE001
                self.panel.set_status(f"{type(exc).__name__}: {html.esc(exc)}", "error")

        return self._start(work, wait)

    def stop_following(self) -> None:
        if self._stop_polling is not None:
            self._stop_polling.set()
            self._stop_polling = None

    def _start(self, work: Callable[[], None], wait: bool) -> threading.Thread:
        thread = threading.Thread(target=work, name=f"{self.panel.uid}-worker", daemon=True)
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
