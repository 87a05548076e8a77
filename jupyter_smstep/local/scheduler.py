"""Executing a parsed definition: the service's scheduler, in one thread.

:class:`Execution` starts each step when its dependencies have succeeded,
bounded by the cores; runs each attempt through the warm worker; enforces
``StoppingCondition.MaxRuntimeInSeconds``; skips the dependents of a failure;
and records every attempt. It asks :mod:`.plan` which steps are ready and which can no longer run, and
delegates what a container gets to
:mod:`.container`, the service's retry rules to :mod:`.retries`, and the
explanation of a failure in the user's terms to :mod:`.diagnostics`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import queue
import signal
import threading
import time
import types
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_smstep.core import code
from jupyter_smstep.core.keys import StepKey, file_sha256
from jupyter_smstep.core.states import EventKind, StepState
from jupyter_smstep.errors import SmstepError
from jupyter_smstep.local import cache as cache_mod, container as containers, diagnostics, retries
from jupyter_smstep.local import reads as reads_mod
from jupyter_smstep.local.container import Container
from jupyter_smstep.local.attempt import Attempt
from jupyter_smstep.local.plan import Plan
from jupyter_smstep.local.reuse import Reuse
from jupyter_smstep.local.definition import Resolver, decide, StepSpec, container_option, to_text
from jupyter_smstep.local.results import StepEvent, StepResult, write_json
from jupyter_smstep.local.s3 import LOCAL_ACCOUNT, LocalS3
from jupyter_smstep.local.s3.store import S3Error
from jupyter_smstep.local.worker import WarmWorker, worker_args, worker_log_path

_log = logging.getLogger(__name__)

TERMINATION_GRACE_SECONDS = 5.0  # SageMaker waits 120 s between SIGTERM and SIGKILL
RETRYABLE_FAILURES = retries.RETRYABLE_FAILURES


# ======================================================================================
# Executing the definition
# ======================================================================================
class Emitter:
    """Tells the caller of each event and keeps the run's record on disk (``events.jsonl``, ``step.json``,
    ``run.json``). A record that cannot be written (a full or read-only disk) does not stop the run: the
    first such failure is kept in :attr:`lost` for the runner to report once the steps have ended."""

    def __init__(self, run_id: str, run_dir: Path, on_event: Callable[[StepEvent], None] | None) -> None:
        self.run_id = run_id
        self.on_event = on_event
        self.path = run_dir / "events.jsonl"
        self.lost: tuple[Path, OSError] | None = None

    def record(self, path: Path, data: Any) -> None:
        try:
            write_json(path, data)
        except OSError as exc:
            self.lost = self.lost or (path, exc)

    def __call__(self, event: StepEvent) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(event.__dict__, default=str) + "\n")
        except OSError as exc:
            self.lost = self.lost or (self.path, exc)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a broken renderer must not break the run
                _log.exception("on_event callback failed")

    def run_event(self, state: StepState, **kwargs: Any) -> None:
        self(StepEvent(run_id=self.run_id, step=None, state=state, kind="run", **kwargs))


@dataclass
class StepRun:
    """A step as the execution follows it: its spec, its result so far, its current attempt and retries."""

    spec: StepSpec
    result: StepResult
    order: int
    attempt: Attempt | None = None
    retry: retries.RetryState = field(default_factory=retries.RetryState)
    not_before: float | None = None  # a retry waits until then
    checked_environment: bool = False
    properties: dict | None = None
    prepared: Future | None = None  # of (template workspace, warnings)


class Execution:
    """One execution of a parsed definition: the service's scheduler, in one thread."""

    def __init__(
        self,
        *,
        run_id: str,
        run_dir: Path,
        pipeline_name: str,
        steps: dict[str, StepSpec],
        parameters: dict,
        s3: LocalS3,
        worker: WarmWorker,
        emit: Emitter,
        max_workers: int,
        faults: dict[str, list[str]],
        started: float,
        functions: dict[str, Any] | None = None,
        keys: dict[str, StepKey] | None = None,
        cache: cache_mod.StepCache | None = None,
        force: set[str] | None = None,
        root: Path | None = None,
        stop: threading.Event | None = None,
        saves: dict[str, list[dict]] | None = None,
        taken: dict[str, tuple[Path, str]] | None = None,
        host_env: Mapping[str, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.taken = taken or {}  # step -> (a folder with its results files, where they came from)
        self.saves = saves or {}  # step -> its --save values ({"name", "uri", "format"}): re-put when it is reused
        self.stop = stop  # set by the panel's Stop: running steps are killed, the rest skipped
        self.stopped = False
        self.root = root  # the notebook's folder: a staged file the step reads is recorded as the original
        self.run_dir = run_dir
        self.s3 = s3
        self.worker = worker
        self.emit = emit
        self.max_workers = max(1, int(max_workers))
        self.faults = {k: list(v) for k, v in faults.items()}
        self.functions = functions or {}
        self.keys = keys or {}
        self.cache = cache
        self.force = force or set()
        region = s3.region
        pipeline_arn = f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT}:pipeline/{pipeline_name.lower()}"
        self.execution = {
            "PipelineExecutionId": run_id,
            "PipelineExecutionArn": f"{pipeline_arn}/execution/{run_id}",
            "PipelineName": pipeline_name,
            "PipelineArn": pipeline_arn,
            "StartDateTime": _dt.datetime.fromtimestamp(started, _dt.timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
        self.resolver = Resolver(self.execution, parameters, read_s3=lambda uri: s3.path(uri).read_bytes())
        self.container = Container(run_dir, s3, self.resolver, host_env)
        self.plan = Plan(steps)
        order = self.plan.order
        self.states = {
            name: StepRun(
                spec=steps[name],
                order=order.index(name),
                result=StepResult(
                    name=name,
                    state="pending",
                    run_dir=str(run_dir),
                    key=self.keys[name].key if name in self.keys else None,
                    key_parts=dict(self.keys[name].parts) if name in self.keys else {},
                ),
            )
            for name in order
        }
        self.results = {name: st.result for name, st in self.states.items()}
        #: steps skipped because a condition sent the run down the other branch (not a failure)
        self.not_taken: set[str] = set()
        self.reuse = Reuse(self)
        self._prep_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smstep-prepare")

    # -- public --------------------------------------------------------------------
    def succeeded(self) -> bool:
        return all(st.result.state == "succeeded" or name in self.not_taken for name, st in self.states.items())

    def busy(self) -> bool:
        return any(st.attempt is not None for st in self.states.values())

    def run(self) -> None:
        self.emit.run_event("running", info={"steps": list(self.states), "run_dir": str(self.run_dir)})
        for st in self.states.values():
            self.event(st, "pending")
        for st in self.states.values():  # in dependency order: the first steps' channels come first
            if st.spec.is_function_step:
                st.prepared = self._prep_pool.submit(self.container.prepare_channels, st.spec)
        try:
            while True:
                if self.stop is not None and self.stop.is_set():
                    self.stopped = True
                    self._abort("stopped before it ended (Stop)", state="stopped")
                    break
                self._skip_blocked()
                if self._launch_ready():
                    continue  # a step was reused from the cache: its dependents may be ready now
                if not self._active():
                    break
                timeout = max(0.0, min(1.0, self._next_deadline() - time.time()))
                try:
                    message = self.worker.messages.get(timeout=timeout)
                except queue.Empty:
                    message = None
                self._stream_logs()
                while message is not None:
                    self._on_message(message)
                    try:
                        message = self.worker.messages.get_nowait()
                    except queue.Empty:
                        message = None
                self._enforce_runtime_limits()
        except BaseException as exc:
            self._abort(f"the run was interrupted ({type(exc).__name__})")
            raise
        finally:
            self._prep_pool.shutdown(wait=True, cancel_futures=True)

    # -- scheduling --------------------------------------------------------------------
    def _active(self) -> bool:
        return any(
            st.result.state in ("running", "pending") and (st.attempt is not None or st.not_before is not None)
            for st in self.states.values()
        ) or any(self._ready(st) for st in self.states.values())

    def _ready(self, st: StepRun) -> bool:
        return st.attempt is None and self.plan.ready(st.spec.name, self.results)

    def _running_count(self) -> int:
        return sum(1 for st in self.states.values() if st.attempt is not None)

    def _skip_blocked(self) -> None:
        def idle(name: str) -> bool:
            st = self.states[name]
            return st.not_before is None and st.attempt is None

        for skip in self.plan.skips(self.results, idle, self.not_taken):
            st = self.states[skip.step]
            st.result.state = "skipped"
            st.result.skipped_because = skip.because
            st.result.summary = skip.summary
            if skip.not_taken:
                self.not_taken.add(skip.step)
            self.event(st, "skipped", message=skip.summary, info=skip.info)

    def _launch_ready(self) -> bool:
        """Start (or reuse from the cache) the steps that are ready; True when one was reused."""
        now = time.time()
        candidates = sorted(
            (
                st
                for st in self.states.values()
                if self._ready(st) or (st.not_before is not None and st.attempt is None)
            ),
            key=lambda s: s.order,
        )
        reused = False
        for st in candidates:
            if not st.spec.is_function_step:
                self._decide(st)  # a condition or a fail step: the service's own, no process
                reused = True
                continue
            if st.not_before is None and (self.reuse.taken(st) or self.reuse.cached(st)):
                reused = True
                continue
            if self._running_count() >= self.max_workers:
                continue
            if st.not_before is not None and st.not_before > now:
                continue
            st.not_before = None
            self._launch(st)
        return reused

    def _next_deadline(self) -> float:
        deadlines = [time.time() + 1.0]
        for st in self.states.values():
            if st.not_before is not None:
                deadlines.append(st.not_before)
            a = st.attempt
            if a is not None and a.started is not None and a.max_runtime:
                deadlines.append(a.term_sent + TERMINATION_GRACE_SECONDS if a.term_sent else a.started + a.max_runtime)
        return min(deadlines)

    # -- conditions and fail steps ------------------------------------------------------
    def _decide(self, st: StepRun) -> None:
        """Evaluate a ConditionStep on its upstream results, or stop the run at a FailStep."""
        result = st.result
        result.started = result.ended = time.time()
        result.duration = 0.0
        decision = decide(st.spec, self.resolver)
        if decision.failure is not None:
            self._finish_failure(st, None, *decision.failure)
            return
        outcome, when = decision.outcome, decision.when
        result.state = "succeeded"
        result.condition = {"outcome": outcome, "when": when}
        result.summary = f"{when or 'the condition'} is {'true' if outcome else 'false'}"
        self.resolver.step_properties[st.spec.name] = {"Outcome": outcome}
        self.event(st, "succeeded", duration=0.0, message=result.summary, info={"condition": result.condition})

    # -- one attempt -------------------------------------------------------------------
    def _launch(self, st: StepRun) -> None:
        self.worker.wait_ready()  # started with the run; a run whose every step is cached never waits
        name = st.spec.name
        result = st.result
        number = result.attempts + 1
        result.attempts = number
        result.state = "running"
        if result.started is None:
            result.started = time.time()
        folder = self.run_dir / "steps" / name / str(number)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            args = self.resolver.evaluate(st.spec.arguments)
            argv = [to_text(v) for v in args["AlgorithmSpecification"]["ContainerArguments"]]
            output_uri = to_text(args["OutputDataConfig"]["S3OutputPath"])
            s3_base_uri = container_option(argv, "s3_base_uri") or ""
            job_name = containers.job_name(self.run_id, name, number)
            attempt = Attempt(
                number=number,
                command_id=f"{self.run_id}/{name}/{number}",
                folder=folder,
                log_path=folder / "log.txt",
                failure_path=folder / "failure",
                diag_path=folder / "error.json",
                job_name=job_name,
                output_uri=output_uri,
                exception_uri=f"{s3_base_uri.rstrip('/')}/{self.run_id}/{name}/exception",
                max_runtime=_positive(args.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")),
            )
            workspace = self._workspace(st, folder)
            env = self.container.environment(args, folder, job_name, attempt.failure_path)
            host = {k for k in self.container.host_env if not k.startswith("AWS_")}
            attempt.container_env = frozenset(k for k in env if k not in host or k in (args.get("Environment") or {}))
            attempt.caller = env.get("AWS_ACCESS_KEY_ID", "")
        except Exception as exc:  # noqa: BLE001 - the runner's own failure, reported on the step
            text = str(exc) if isinstance(exc, SmstepError) else f"{type(exc).__name__}: {exc}"
            self._finish_failure(st, None, "RunnerError", f"could not prepare the step: {text}", text)
            return
        result.job_name = job_name
        result.output_uri = output_uri
        result.log_path = str(attempt.log_path)
        st.properties = containers.job_properties(args, job_name, output_uri, self.s3.region)
        st.attempt = attempt
        self.event(st, "running", attempt=number)
        pending_faults = self.faults.get(name)
        if pending_faults:
            kind = pending_faults.pop(0)
            attempt.started = time.time()
            attempt.log_path.write_text(f"smstep: attempt {number} failed with a simulated {kind}\n")
            self._attempt_failed(st, kind, f"{kind} (simulated by the local runner)", None, time.time())
            return
        try:
            self.worker.send(
                {
                    "op": "run",
                    "id": attempt.command_id,
                    "argv": argv,
                    "env": env,
                    "cwd": str(workspace),
                    "log_path": str(attempt.log_path),
                    "failure_path": str(attempt.failure_path),
                    "diag_path": str(attempt.diag_path),
                    "reads_path": str(attempt.folder / "reads.json"),
                    "ignore": [str(self.run_dir)],
                    "root": str(self.root) if self.root else None,
                }
            )
        except OSError as exc:  # the worker is gone; its "worker-died" message restarts it
            self._attempt_failed(
                st,
                "SageMaker.JOB_INTERNAL_ERROR",
                f"the local runner's worker process is gone ({exc})",
                None,
                time.time(),
            )

    def _workspace(self, st: StepRun, folder: Path) -> Path:
        """This attempt's working directory: a fresh copy of the step's staged channels."""
        if st.prepared is None:
            st.prepared = self._prep_pool.submit(self.container.prepare_channels, st.spec)
        template, warnings = st.prepared.result()
        if not st.checked_environment:
            st.checked_environment = True
            for warning in warnings:
                self.warn(st, warning)
        return Container.attempt_workspace(template, folder)

    def _on_message(self, message: dict) -> None:
        op = message.get("op")
        if op == "worker-died":
            self._worker_died()
            return
        st = self._state_for(message.get("id"))
        if st is None or st.attempt is None:
            return
        attempt = st.attempt
        if op == "started":
            attempt.pid = message["pid"]
            attempt.started = message["time"]
        elif op == "failed":  # fork() failed: the machine is out of processes or memory
            self._attempt_failed(
                st,
                "SageMaker.CAPACITY_ERROR",
                f"could not start the step's process: {message.get('error')}",
                None,
                time.time(),
            )
        elif op == "exited":
            self._stream_log(st, attempt)  # the last lines it printed, before its end is said
            attempt.rusage = message.get("rusage") or {}
            if message.get("escaped"):
                self.warn(
                    st,
                    f"{message['escaped']} process(es) the step started (in a new session) were still "
                    "running when it ended: stopped, as SageMaker stops everything when a job's container "
                    "ends",
                )
            self._attempt_exited(st, message["returncode"], message["time"])

    def _stream_logs(self) -> None:
        for st in self.states.values():
            if st.attempt is not None and st.attempt.started is not None:
                self._stream_log(st, st.attempt)

    def _stream_log(self, st: StepRun, attempt: Attempt) -> None:
        """The lines the step's own code printed since the last look, each as a ``log`` event."""
        for line in attempt.new_lines():
            self.emit(
                StepEvent(
                    run_id=self.run_id,
                    step=st.spec.name,
                    state="running",
                    kind="log",
                    attempt=attempt.number,
                    message=line,
                )
            )

    def _state_for(self, command_id: str | None) -> StepRun | None:
        for st in self.states.values():
            if st.attempt is not None and st.attempt.command_id == command_id:
                return st
        return None

    def _attempt_exited(self, st: StepRun, returncode: int, ended: float) -> None:
        attempt = st.attempt
        assert attempt is not None
        name = st.spec.name
        if attempt.timed_out:
            limit = attempt.max_runtime
            self._attempt_failed(
                st,
                "MaxRuntimeExceeded",
                f"stopped after exceeding max_runtime_in_seconds={limit:g} (SageMaker: MaxRuntimeExceeded)",
                f"step '{name}' ran longer than its max_runtime_in_seconds ({limit:g} s) and was stopped, "
                f"as SageMaker stops the training job (log: {attempt.log_path})",
                ended,
            )
            return
        diag = diagnostics.read_json(attempt.diag_path)
        has_results = self.container.exists(attempt.output_uri.rstrip("/") + "/payload.pkl")
        if returncode == 0 and diag is None and has_results:
            self._succeeded(st, ended)
            return
        summary, error = diagnostics.explain_failure(name, returncode, diag, attempt.log_path)
        error = diagnostics.point_at_sources(error, self.functions.get(name)) or error
        self._attempt_failed(st, "AlgorithmError", summary, error, ended)

    def _succeeded(self, st: StepRun, ended: float) -> None:
        attempt = st.attempt
        assert attempt is not None
        result = st.result
        self._record_attempt(st, "succeeded", ended)
        st.attempt = None
        result.state = "succeeded"
        result.ended = ended
        result.duration = ended - (result.started or ended)
        result.error = None
        result.summary = None
        result.failure_type = None
        self.resolver.step_properties[st.spec.name] = st.properties or {}
        result.resources = attempt.measured(
            st.spec, ended, self.s3, [self.states[d].result.output_uri or "" for d in st.spec.depends_on]
        )
        result.payload_sha256 = self.payload_hash(attempt.output_uri)
        recorded = reads_mod.load(attempt.folder / "reads.json")
        if recorded is not None:
            recorded = reads_mod.keep_env(recorded, set(attempt.container_env))
            function = self.functions.get(st.spec.name)
            if isinstance(function, types.FunctionType):  # what the recorder cannot wrap: datetime.now() and kin
                clock = [f"the clock ({call})" for call in code.clock_reads(function)]
                recorded["unpinned"] = list(dict.fromkeys([*recorded.get("unpinned", []), *clock]))
            unordered = self.reuse.unordered_saves(st, attempt)
            if unordered:  # its result depends on when another step happened to write: never reused
                recorded["unpinned"] = [*recorded.get("unpinned", []), *unordered]
            result.reads = reads_mod.summary(recorded, self.root)
        self.reuse.remember(st, recorded)
        self.event(
            st, "succeeded", attempt=attempt.number, duration=result.duration, info={"resources": result.resources}
        )

    def payload_hash(self, uri: str) -> str | None:
        """SHA-256 of ``<uri>/payload.pkl`` as the step left it (None if it wrote none): results are
        loaded later only if they still match (:func:`~.results.load_payload`)."""
        try:
            return file_sha256(self.s3.path(uri.rstrip("/") + "/payload.pkl"))
        except (OSError, ValueError, S3Error):
            return None

    def _record_attempt(
        self, st: StepRun, outcome: str, ended: float, failure_type: str | None = None, summary: str | None = None
    ) -> None:
        attempt = st.attempt
        if attempt is None:
            return
        st.result.attempt_log.append(
            {
                "attempt": attempt.number,
                "outcome": outcome,
                "failure_type": failure_type,
                "summary": summary,
                "started": attempt.started,
                "ended": ended,
                "log": str(attempt.log_path),
                "job_name": attempt.job_name,
            }
        )

    def _attempt_failed(self, st: StepRun, failure_type: str, summary: str, error: str | None, ended: float) -> None:
        """Apply the service's retry rules to a failed attempt; fail the step when they are spent."""
        attempt = st.attempt
        self._record_attempt(st, "failed", ended, failure_type, summary)
        st.attempt = None
        if attempt is not None and attempt.pid is not None and attempt.timed_out:
            _kill_group(attempt.pid, signal.SIGKILL)
        now = time.time()
        args = self.resolver.evaluate(st.spec.arguments.get("RetryStrategy", {}))
        job_budget = int(args.get("MaximumRetryAttempts", 0) or 0) if isinstance(args, dict) else 0
        retry = retries.next_retry(st.retry, failure_type, job_budget, st.spec.retry_policies, now)
        if retry is not None:
            st.not_before = now + retry.delay
            number = attempt.number if attempt else 0
            self.event(
                st,
                "running",
                kind="retry",
                attempt=number,
                message=f"attempt {number or '?'} failed ({summary}); retrying in {retry.delay:g} s by {retry.how}",
            )
            return
        summary += retries.not_retried_note(failure_type, st.spec.retry_policies)
        self._finish_failure(st, attempt, failure_type, summary, error, ended)

    def _finish_failure(
        self,
        st: StepRun,
        attempt: Attempt | None,
        failure_type: str,
        summary: str,
        error: str | None,
        ended: float | None = None,
    ) -> None:
        result = st.result
        st.attempt = None
        st.not_before = None
        ended = ended or time.time()
        result.state = "failed"
        result.ended = ended
        result.duration = ended - (result.started or ended)
        result.failure_type = failure_type
        result.summary = summary
        result.error = error or summary
        if attempt is not None:
            result.exception_sha256 = self.payload_hash(attempt.exception_uri)
            result.exception_uri = attempt.exception_uri if result.exception_sha256 else None
        self.event(st, "failed", attempt=result.attempts, duration=result.duration, message=summary, error=result.error)

    def _enforce_runtime_limits(self) -> None:
        now = time.time()
        for st in self.states.values():
            a = st.attempt
            if a is None or a.pid is None or a.started is None or not a.max_runtime:
                continue
            if a.term_sent is None and now - a.started > a.max_runtime:
                a.timed_out = True
                a.term_sent = now
                _kill_group(a.pid, signal.SIGTERM)
            elif a.term_sent is not None and now - a.term_sent > TERMINATION_GRACE_SECONDS:
                _kill_group(a.pid, signal.SIGKILL)

    def _worker_died(self) -> None:
        """The warm worker is gone: running attempts failed like a lost instance; start a new one."""
        running = [st for st in self.states.values() if st.attempt is not None]
        for st in running:
            if st.attempt and st.attempt.pid:
                _kill_group(st.attempt.pid, signal.SIGKILL)
        self.worker.close(timeout=1)
        self.worker = WarmWorker(*worker_args(), worker_log_path())
        for st in running:
            self._attempt_failed(
                st, "SageMaker.JOB_INTERNAL_ERROR", "the local runner's worker process died", None, time.time()
            )
        self.worker.wait_ready()

    def _abort(self, reason: str, state: StepState = "failed") -> None:
        """End the run now: running steps killed (``failed``, or ``stopped`` when the user stopped it), the
        pending ones skipped."""
        for st in self.states.values():
            if st.attempt is not None:
                if st.attempt.pid:
                    _kill_group(st.attempt.pid, signal.SIGKILL)
                if state == "stopped":
                    st.attempt, st.not_before = None, None
                    result, ended = st.result, time.time()
                    result.state, result.ended, result.failure_type = "stopped", ended, "Stopped"
                    result.duration = ended - (result.started or ended)
                    result.summary = result.error = reason
                    self.event(st, "stopped", duration=result.duration, message=reason)
                    continue
                self._finish_failure(st, None, "Stopped", reason, reason)
            elif st.result.state == "pending":
                st.result.state = "skipped"
                st.result.summary = reason
                self.event(st, "skipped", message=reason)

    # -- events, S3 ----------------------------------------------------------------------
    def event(
        self,
        st: StepRun,
        state: StepState,
        *,
        kind: EventKind = "state",
        attempt: int = 0,
        duration: float | None = None,
        message: str | None = None,
        error: str | None = None,
        info: dict | None = None,
    ) -> None:
        if kind == "state" and state in ("succeeded", "failed", "skipped", "stopped"):
            # recorded as the step ends: a run killed later (SIGKILL) keeps what it finished
            self.emit.record(self.run_dir / "steps" / st.spec.name / "step.json", st.result.to_json())
        self.emit(
            StepEvent(
                run_id=self.run_id,
                step=st.spec.name,
                state=state,
                kind=kind,
                attempt=attempt,
                duration=duration,
                message=message,
                error=error,
                info=info or {},
            )
        )

    def warn(self, st: StepRun, message: str) -> None:
        st.result.warnings.append(message)
        self.event(st, st.result.state, kind="warning", message=message)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
