"""Run a pipeline on this machine, faithfully: no AWS account, no Docker.

``run_pipeline(build)`` does what SageMaker Pipelines does with the same
pipeline, with local stand-ins for the services:

1. It starts an embedded S3 endpoint (:class:`~jupyter_smstep.local_s3.LocalS3`)
   and builds the pipeline with the real SDK against it. ``definition()``
   uploads the pickled step functions and arguments there: the same bytes that
   ``submit`` uploads to the real bucket.
2. It reads the JSON definition like the service: parameters, dependencies
   (``DependsOn`` and property references), and the ``Get`` / ``Std:Join`` /
   ``Std:JsonGet`` expressions in each step's training-job request.
3. It runs each step as SageMaker would run its training job: a process that
   calls the SDK's container entry point (``invoke_function``) with the step's
   ``ContainerArguments`` and ``Environment``. Processes are forked from a warm
   worker (:mod:`jupyter_smstep._step_worker`) that has imported the SDK but no
   user code, so a step costs a fork, not a 3-7 s ``import sagemaker``.
   Independent steps run in parallel, bounded by ``max_workers`` (the cores).
4. It honours ``StoppingCondition.MaxRuntimeInSeconds`` (the process group is
   killed), ``RetryStrategy`` and ``RetryPolicies`` with the service's
   semantics, skips the dependents of a failed step and lets other branches
   finish.
5. It keeps everything under ``runs_dir/<run_id>/``: the definition, one log
   per step attempt, the results, and the S3 objects (mirrored on exit), so
   :func:`load_run` can reopen a finished run.

What differs from SageMaker, on purpose: steps run in the current Python
environment, not in the step's image; the container bootstrap (conda, ``pip
install`` of ``dependencies``, ``pre_execution_commands``) is not run, the
requirements are checked against the current environment and reported as
warnings instead. Retry policies retry what SageMaker retries (service faults,
throttling, internal/capacity/resource-limit errors), never an exception raised
by the step's own code, which SageMaker reports as ``AlgorithmError`` and does
not retry; ``faults=`` simulates the retryable kinds so a retry policy can be
exercised locally.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import sdk as _sdk
from .errors import Problem, SmstepError
from .local_definition import (
    Resolver,
    StepSpec,
    container_option,
    parse_steps,
    resolve_parameters,
    split_s3_uri,
    to_text,
)
from .local_env import check_dependencies_dir
from .local_s3 import DUMMY_CREDENTIALS, LocalS3

__all__ = [
    "LocalS3",
    "RunResult",
    "StepEvent",
    "StepResult",
    "TerminalProgress",
    "latest_run",
    "list_runs",
    "load_run",
    "prewarm",
    "run_pipeline",
]

_log = logging.getLogger(__name__)

STATES = ("pending", "running", "succeeded", "failed", "skipped")
DEFAULT_RUNS_DIR = ".smstep/runs"
LOCAL_ACCOUNT = "123456789012"  # moto's default account
TERMINATION_GRACE_SECONDS = 5.0  # SageMaker waits 120 s between SIGTERM and SIGKILL
# What SageMaker's own retry mechanisms can retry. An exception raised by the
# step's code is an "AlgorithmError" and is never retried by the service.
RETRYABLE_FAILURES = (
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "SageMaker.JOB_INTERNAL_ERROR",
    "SageMaker.CAPACITY_ERROR",
    "SageMaker.RESOURCE_LIMIT",
)


# ======================================================================================
# Results
# ======================================================================================
@dataclass
class StepEvent:
    """A change in a run, passed to ``on_event``.

    ``kind`` is ``"state"`` (the step's ``state`` changed; one of :data:`STATES`),
    ``"retry"`` (an attempt failed and the step will run again), ``"warning"``
    (e.g. a requirement the current environment does not satisfy) or ``"run"``
    (``step`` is None; ``state`` is ``"running"`` at the start and
    ``"succeeded"``/``"failed"`` at the end, ``info["steps"]`` lists the steps).
    """

    run_id: str
    step: str | None
    state: str
    kind: str = "state"
    attempt: int = 0
    time: float = field(default_factory=time.time)
    duration: float | None = None
    message: str | None = None  # one line: the failure summary, the warning, why skipped
    error: str | None = None  # failed: the step's own exception and traceback
    info: dict = field(default_factory=dict)


@dataclass
class StepResult:
    """What happened to one step. ``outputs`` loads the step's return value on first use."""

    name: str
    state: str
    duration: float | None = None
    error: str | None = None  # the step's own exception + traceback, with an explanation first
    attempts: int = 0
    log_path: str | None = None
    summary: str | None = None  # one line, for tables and the terminal
    failure_type: str | None = None  # AlgorithmError, MaxRuntimeExceeded, SageMaker.JOB_INTERNAL_ERROR, ...
    started: float | None = None
    ended: float | None = None
    skipped_because: str | None = None
    warnings: list[str] = field(default_factory=list)
    job_name: str | None = None
    output_uri: str | None = None  # S3OutputPath: results/{payload.pkl,metadata.json,results.json}
    exception_uri: str | None = None  # where the SDK pickled the step's exception
    attempt_log: list[dict] = field(default_factory=list)
    run_dir: str | None = field(default=None, repr=False)
    _value: Any = field(default=None, repr=False, compare=False)
    _loaded: bool = field(default=False, repr=False, compare=False)

    @property
    def value(self) -> Any:
        """The step function's return value (deserialised from the run's S3 mirror)."""
        if not self._loaded:
            if self.state != "succeeded" or not self.output_uri or not self.run_dir:
                raise SmstepError(Problem(f"has no outputs: it {self.state}", step=self.name))
            self._value = _load_payload(Path(self.run_dir), self.output_uri)
            self._loaded = True
        return self._value

    @property
    def outputs(self) -> dict:
        """The step's outputs by name (our steps return a dict); ``{"return": v}`` otherwise."""
        if self.state != "succeeded":
            return {}
        value = self.value
        return value if isinstance(value, dict) else {"return": value}

    def to_json(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_") and k != "run_dir"}
        return data


@dataclass
class RunResult:
    """A finished local run; also what :func:`load_run` returns for an old one."""

    run_id: str
    run_dir: Path
    steps: dict[str, StepResult]
    succeeded: bool
    definition: dict
    pipeline_name: str = ""
    parameters: dict = field(default_factory=dict)
    started: float | None = None
    ended: float | None = None
    sdk_version: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def outputs(self, step: str) -> dict:
        """The deserialised return value of a step (a dict of outputs for our steps)."""
        return self._step(step).outputs

    def exception(self, step: str) -> BaseException | None:
        """The exception the step raised, as the SDK pickled it (with its traceback)."""
        result = self._step(step)
        if not result.exception_uri:
            return None
        try:
            return _load_payload(self.run_dir, result.exception_uri)
        except (OSError, SmstepError):
            return None

    def failed_steps(self) -> list[str]:
        return [n for n, s in self.steps.items() if s.state == "failed"]

    def to_json(self) -> dict:
        """Per step: state, duration, attempts, a short repr of each output, the error."""
        steps = {}
        for name, step in self.steps.items():
            entry: dict[str, Any] = {
                "state": step.state,
                "duration": None if step.duration is None else round(step.duration, 3),
                "attempts": step.attempts,
            }
            if step.state == "succeeded":
                try:
                    entry["outputs"] = {k: _short_repr(v) for k, v in step.outputs.items()}
                except Exception as exc:  # noqa: BLE001 - a report must not fail on one value
                    entry["outputs_error"] = f"{type(exc).__name__}: {exc}"
            if step.summary and step.state != "succeeded":
                entry["summary"] = step.summary
            if step.error:
                entry["error"] = step.error
            if step.skipped_because:
                entry["skipped_because"] = step.skipped_because
            if step.warnings:
                entry["warnings"] = step.warnings
            if step.log_path:
                entry["log"] = step.log_path
            steps[name] = entry
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "pipeline": self.pipeline_name,
            "succeeded": self.succeeded,
            "duration": None if self.duration is None else round(self.duration, 3),
            "parameters": self.parameters,
            "steps": steps,
        }

    def _step(self, step: str) -> StepResult:
        if step not in self.steps:
            known = ", ".join(self.steps) or "none"
            raise SmstepError(Problem(f"run {self.run_id} has no step '{step}'", fix=f"steps: {known}"))
        return self.steps[step]

    def __repr__(self) -> str:
        states = ", ".join(f"{n}={s.state}" for n, s in self.steps.items())
        return f"RunResult({self.run_id!r}, succeeded={self.succeeded}, {states})"


def _short_repr(value: Any, limit: int = 80) -> str:
    import reprlib

    r = reprlib.Repr()
    r.maxstring = limit
    r.maxother = limit
    r.maxlist = r.maxdict = r.maxtuple = r.maxset = 6
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        return f"<{type(value).__name__} shape={tuple(shape)} dtype={value.dtype}>"
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _local_path(run_dir: Path, uri: str) -> Path:
    bucket, key = split_s3_uri(uri)
    return Path(run_dir, "s3", bucket, *[p for p in key.split("/") if p])


def _load_payload(run_dir: Path, uri: str) -> Any:
    """Read ``<uri>/payload.pkl`` from the run's S3 mirror, checking the SDK's sha256."""
    import hashlib

    import cloudpickle

    folder = _local_path(run_dir, uri)
    payload = folder / "payload.pkl"
    if not payload.is_file():
        raise SmstepError(Problem(f"no {payload} (was the run's S3 data deleted?)"))
    data = payload.read_bytes()
    meta_path = folder / "metadata.json"
    if meta_path.is_file():
        expected = json.loads(meta_path.read_text()).get("sha256_hash")
        if expected and hashlib.sha256(data).hexdigest() != expected:
            raise SmstepError(Problem(f"{payload} does not match the hash the SDK recorded; it was modified"))
    return cloudpickle.loads(data)


# ======================================================================================
# Reopening runs
# ======================================================================================
def load_run(run_dir: str | Path) -> RunResult:
    """Reopen a finished run from its folder (``runs_dir/<run_id>``)."""
    run_dir = Path(run_dir)
    info_path = run_dir / "run.json"
    if not info_path.is_file():
        raise SmstepError(Problem(f"{run_dir} is not a local run folder (no run.json)"))
    info = json.loads(info_path.read_text())
    definition_path = run_dir / "definition.json"
    definition = json.loads(definition_path.read_text()) if definition_path.is_file() else {}
    steps: dict[str, StepResult] = {}
    for name in info.get("steps", []):
        path = run_dir / "steps" / name / "step.json"
        if path.is_file():
            data = json.loads(path.read_text())
            known = {k: v for k, v in data.items() if k in StepResult.__dataclass_fields__ and not k.startswith("_")}
            steps[name] = StepResult(**known)
        else:
            steps[name] = StepResult(name=name, state="pending")
        steps[name].run_dir = str(run_dir)
    return RunResult(
        run_id=info["run_id"],
        run_dir=run_dir,
        steps=steps,
        succeeded=bool(info.get("succeeded")),
        definition=definition,
        pipeline_name=info.get("pipeline", ""),
        parameters=info.get("parameters", {}),
        started=info.get("started"),
        ended=info.get("ended"),
        sdk_version=info.get("sdk_version"),
    )


def list_runs(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> list[Path]:
    """Run folders under ``runs_dir``, oldest first (run ids sort by start time)."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "run.json").is_file())


def latest_run(runs_dir: str | Path = DEFAULT_RUNS_DIR) -> RunResult | None:
    runs = list_runs(runs_dir)
    return load_run(runs[-1]) if runs else None


# ======================================================================================
# The warm worker
# ======================================================================================
_WORKER_SCRIPT = Path(__file__).with_name("_step_worker.py")
_BOOT = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_smstep_step_worker', sys.argv[1])\n"
    "module = importlib.util.module_from_spec(spec)\n"
    "sys.modules[spec.name] = module\n"
    "spec.loader.exec_module(module)\n"
    "module.main(sys.argv[2:])\n"
)


def _entry_point_modules() -> tuple[str, str]:
    """The SDK's container entry point and its errors module, without importing the SDK."""
    version = _sdk.installed_version()
    if version is None:
        raise SmstepError("the SageMaker Python SDK is not installed", fix="pip install 'sagemaker>=2.245'")
    package = "sagemaker.core.remote_function" if int(version.split(".")[0]) >= 3 else "sagemaker.remote_function"
    return f"{package}.invoke_function", f"{package}.errors"


class _WarmWorker:
    """The parent's handle on one ``_step_worker`` process."""

    def __init__(self, python: str, invoke_module: str, errors_module: str, log_path: Path) -> None:
        self.key = (python, invoke_module)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if not (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
            env["AWS_DEFAULT_REGION"] = "us-east-1"  # v3's import builds a client and needs one
        env.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        read_fd, write_fd = os.pipe()
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [python, "-c", _BOOT, str(_WORKER_SCRIPT), "--reply-fd", str(write_fd),
                 "--invoke", invoke_module, "--errors", errors_module],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                pass_fds=(write_fd,),
                cwd=tempfile.gettempdir(),
                env=env,
            )
        os.close(write_fd)
        self._replies = os.fdopen(read_fd, "rb")
        self.messages: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.ready_info: dict = {}
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="smstep-worker-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for line in self._replies:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                if message.get("op") == "ready":
                    self.ready_info = message
                    self.ready.set()
                else:
                    self.messages.put(message)
        finally:
            self.dead.set()
            self.ready.set()
            self.messages.put({"op": "worker-died"})

    def alive(self) -> bool:
        return not self.dead.is_set() and self.process.poll() is None

    def wait_ready(self, timeout: float = 300.0) -> None:
        if not self.ready.wait(timeout) or not self.alive():
            tail = _tail(self.log_path, 30)
            raise SmstepError(
                Problem(
                    "the local runner's worker process could not import the SageMaker SDK",
                    fix=f"see {self.log_path}:\n{tail}",
                )
            )

    def send(self, command: dict) -> None:
        data = (json.dumps(command) + "\n").encode()
        with self._lock:
            assert self.process.stdin is not None
            self.process.stdin.write(data)
            self.process.stdin.flush()

    def drain(self) -> None:
        while True:
            try:
                self.messages.get_nowait()
            except queue.Empty:
                return

    def close(self, timeout: float = 5.0) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_idle_workers: dict[tuple, _WarmWorker] = {}
_idle_lock = threading.Lock()


def _worker_log_path() -> Path:
    return Path(tempfile.gettempdir(), f"smstep-worker-{os.getuid() if hasattr(os, 'getuid') else 0}.log")


def _take_worker() -> _WarmWorker:
    invoke_module, errors_module = _entry_point_modules()
    key = (sys.executable, invoke_module)
    with _idle_lock:
        worker = _idle_workers.pop(key, None)
    if worker is not None and worker.alive():
        worker.drain()
        return worker
    if worker is not None:
        worker.close()
    return _WarmWorker(sys.executable, invoke_module, errors_module, _worker_log_path())


def _return_worker(worker: _WarmWorker) -> None:
    if not worker.alive():
        worker.close()
        return
    with _idle_lock:
        previous = _idle_workers.get(worker.key)
        _idle_workers[worker.key] = worker
    if previous is not None and previous is not worker:
        previous.close()


def prewarm() -> None:
    """Start the warm worker in the background, so the first run does not wait for it.

    Cheap to call (it does not import the SDK in this process); the magics can
    call it when the first ``%%step`` cell is defined.
    """
    if os.name != "posix":
        return
    try:
        _return_worker(_take_worker())
    except SmstepError:
        pass


@atexit.register
def _close_idle_workers() -> None:
    with _idle_lock:
        workers = list(_idle_workers.values())
        _idle_workers.clear()
    for worker in workers:
        worker.close(timeout=2)


# ======================================================================================
# run_pipeline
# ======================================================================================
def run_pipeline(
    build: Callable[[Any], Any] | Any,
    *,
    parameters: dict | None = None,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    max_workers: int | None = None,
    on_event: Callable[[StepEvent], None] | None = None,
    faults: dict[str, list[str]] | None = None,
    region: str | None = None,
) -> RunResult:
    """Build the pipeline against an embedded S3 and run every step locally.

    ``build`` is ``build(session) -> Pipeline`` (called with a ``PipelineSession``
    bound to the local S3), or a ``Pipeline`` whose session is swapped for the
    local one while its definition is produced. ``parameters`` override the
    pipeline's parameter defaults (values are checked and coerced to the declared
    types). ``on_event`` receives a :class:`StepEvent` for every change.
    ``faults`` simulates service-side failures, e.g. ``{"train":
    ["SageMaker.JOB_INTERNAL_ERROR"]}`` fails the first attempt of ``train`` that
    way, to exercise retry policies. Returns a :class:`RunResult` (also when steps
    failed); raises :class:`SmstepError` when the pipeline cannot be run at all.
    """
    if os.name != "posix" or not hasattr(os, "fork"):
        raise SmstepError(Problem("the local runner needs a POSIX system with fork() (Linux, macOS)",
                                  fix="run the notebook in WSL or a Linux container"))
    for step, kinds in (faults or {}).items():
        for kind in kinds:
            if kind not in RETRYABLE_FAILURES:
                raise SmstepError(Problem(f"unknown fault '{kind}' for step '{step}'",
                                          fix="use one of: " + ", ".join(RETRYABLE_FAILURES)))
    worker = _take_worker()  # its SDK import overlaps the build below
    run_id = _new_run_id()
    run_dir = Path(runs_dir).absolute() / run_id
    run_dir.mkdir(parents=True)
    emit = _Emitter(run_id, run_dir, on_event)
    s3 = LocalS3(run_dir / "s3", region=region)  # objects are files there as soon as written
    started = time.time()
    sdk_version = _sdk.installed_version()
    info: dict[str, Any] = {"run_id": run_id, "started": started, "sdk_version": sdk_version,
                            "python": sys.version.split()[0], "steps": [], "succeeded": False}
    _write_json(run_dir / "run.json", info)
    executor: _Execution | None = None
    timings: dict[str, float] = {}
    info["timings"] = timings
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 3)
        mark = now

    try:
        s3.start()
        lap("start_s3")
        definition, pipeline_name, functions = _build_definition(build, s3)
        lap("build_definition")
        _write_json(run_dir / "definition.json", definition)
        steps = parse_steps(definition)
        values = resolve_parameters(definition, parameters)
        info.update(pipeline=pipeline_name, steps=list(steps), parameters=values,
                    endpoint_url=s3.endpoint_url, bucket=s3.bucket, region=s3.region)
        _write_json(run_dir / "run.json", info)
        worker.wait_ready()
        lap("wait_for_worker")
        executor = _Execution(
            run_id=run_id, run_dir=run_dir, pipeline_name=pipeline_name, steps=steps,
            parameters=values, s3=s3, worker=worker, emit=emit,
            max_workers=max_workers or _cores(), faults=faults or {}, started=started,
            functions=functions,
        )
        executor.run()
        lap("execute")
    except BaseException as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            mark = time.perf_counter()
            s3.stop()
            lap("stop_s3")
        finally:
            info["ended"] = time.time()
            if executor is not None:
                info["succeeded"] = executor.succeeded()
                for result in executor.results.values():
                    _write_json(run_dir / "steps" / result.name / "step.json", result.to_json())
            _write_json(run_dir / "run.json", info)
            if worker.alive() and (executor is None or not executor.busy()):
                _return_worker(worker)
            else:
                worker.close(timeout=2)
    assert executor is not None
    result = load_run(run_dir)
    emit.run_event("succeeded" if result.succeeded else "failed", duration=result.duration,
                   message=_run_summary(result))
    return result


def _cores() -> int:
    """The cores this process may use (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _tail(path: Path | str | None, lines: int = 20) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _run_summary(result: RunResult) -> str:
    counts: dict[str, int] = {}
    for step in result.steps.values():
        counts[step.state] = counts.get(step.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in counts.items())


# -- building the definition against the local S3 ---------------------------------------
@contextmanager
def _aws_pointed_at(s3: LocalS3) -> Iterator[None]:
    """While the SDK builds: every AWS call this process makes goes to the local endpoint.

    The session's S3 and SageMaker clients are bound to it already; this also
    catches the clients the SDK creates on its own (STS, IAM), so a local run
    never reaches AWS, and a machine without credentials or network works.
    """
    names = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_IAM",
             "AWS_ENDPOINT_URL_SAGEMAKER", "AWS_EC2_METADATA_DISABLED"]
    saved = {n: os.environ.get(n) for n in names}
    for n in names[:-1]:
        os.environ[n] = s3.endpoint_url
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    chatty = logging.getLogger("botocore.configprovider")  # "Found endpoint for s3 via: ..."
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        yield
    finally:
        chatty.setLevel(level)
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def _build_definition(build: Any, s3: LocalS3) -> tuple[dict, str, dict[str, Any]]:
    import boto3

    sdk = _sdk.load()
    boto_session = boto3.session.Session(region_name=s3.region, **DUMMY_CREDENTIALS)
    for _ in range(5):
        with _aws_pointed_at(s3):
            session = _sdk.make_session(
                region=s3.region, bucket=s3.bucket, endpoint_url=s3.endpoint_url, boto_session=boto_session
            )
            try:
                if hasattr(build, "definition"):
                    pipeline = build
                    previous = pipeline.sagemaker_session
                    pipeline.sagemaker_session = session
                    try:
                        text = pipeline.definition()
                    finally:
                        pipeline.sagemaker_session = previous
                else:
                    pipeline = build(session)
                    text = pipeline.definition()
            except Exception as exc:
                missing = _missing_bucket(exc)
                if missing and missing not in s3.buckets:
                    # The user's SageMaker config names another S3 root: give it a local twin.
                    s3.create_bucket(missing)
                    continue
                explained = _explain_build_error(exc, sdk)
                if explained is not None:
                    raise explained from exc
                raise
        return json.loads(text), pipeline.name, _step_functions(pipeline)
    raise SmstepError(Problem("could not build the pipeline against the local S3 (buckets keep missing)"))


def _step_functions(pipeline: Any) -> dict[str, Any]:
    """The Python function of every @step in the pipeline, by step name (best effort).

    Only used to point tracebacks back at the user's code: cloudpickle replaces
    a function's file name with ``<dynamic-code>`` (for reproducible payloads),
    so the step's process cannot show the user's lines; this process can.
    """
    found: dict[str, Any] = {}
    seen: set[int] = set()
    stack = list(getattr(pipeline, "steps", None) or [])
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(item))
        step = item if hasattr(item, "func") else getattr(item, "_step", None)
        if step is None:
            continue
        func, name = getattr(step, "func", None), getattr(step, "name", None)
        if callable(func) and isinstance(name, str):
            found[name] = func
        stack += list(getattr(step, "func_args", None) or ())
        stack += list((getattr(step, "func_kwargs", None) or {}).values())
        try:
            stack += list(getattr(step, "depends_on", None) or [])
        except Exception:  # noqa: BLE001
            pass
    return found


_DYNAMIC_FRAME = re.compile(r'^(\s*)File "<dynamic-code>", line (\d+), in (.+)$')


def _point_at_sources(text: str | None, func: Any) -> str | None:
    """Rewrite ``File "<dynamic-code>"`` frames of the step's own code to its file and line."""
    if not text or func is None or "<dynamic-code>" not in text:
        return text
    import linecache
    import types

    codes = []
    stack = [getattr(func, "__code__", None)]
    while stack:
        code = stack.pop()
        if not isinstance(code, types.CodeType):
            continue
        lines = [line for _, _, line in code.co_lines() if line is not None]
        if lines:
            codes.append((code.co_name, code.co_filename, min(lines + [code.co_firstlineno]), max(lines)))
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    out = []
    for line in text.splitlines():
        match = _DYNAMIC_FRAME.match(line)
        if match:
            indent, number, name = match.group(1), int(match.group(2)), match.group(3)
            hit = next((c for c in codes if c[0] == name and c[2] <= number <= c[3]), None)
            if hit is not None:
                out.append(f'{indent}File "{hit[1]}", line {number}, in {name}')
                source = linecache.getline(hit[1], number).strip()
                if source:
                    out.append(f"{indent}  {source}")
                continue
        out.append(line)
    return "\n".join(out)


def _missing_bucket(exc: BaseException) -> str | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket":
            return response["Error"].get("BucketName")
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return None


def _explain_build_error(exc: BaseException, sdk: Any) -> SmstepError | None:
    """A SerializationError while building, as the step and the value that cannot be pickled."""
    serialization_error = getattr(sdk.errors_module, "SerializationError", None)
    if serialization_error is None or not isinstance(exc, serialization_error):
        return None
    frame_locals = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "__init__" and type(frame.f_locals.get("self")).__name__ == "_FunctionStep":
            frame_locals = frame.f_locals
        tb = tb.tb_next
    if frame_locals is None:
        return SmstepError(Problem(f"a step cannot be pickled: {exc}"))
    step = frame_locals.get("name")
    func = frame_locals.get("func")
    culprits = _unpicklable_inputs(func, frame_locals.get("func_args") or (), frame_locals.get("func_kwargs") or {})
    if culprits:
        what = "; ".join(f"'{name}' ({kind}: {reason})" for name, kind, reason in culprits)
        message = f"cannot be sent to SageMaker: it uses {what}, which cannot be pickled"
    else:
        message = f"cannot be sent to SageMaker: {exc}"
    return SmstepError(
        Problem(
            message,
            fix="create such objects (open files, clients, locks, connections) inside the step instead of "
                "capturing them from the notebook, or pass the data they hold (a path, a name)",
            step=step,
        )
    )


def _unpicklable_inputs(func: Any, args: tuple, kwargs: dict) -> list[tuple[str, str, str]]:
    """Names (globals, closure variables, defaults, arguments) whose values cannot be pickled."""
    import types

    import cloudpickle

    candidates: list[tuple[str, Any]] = []
    code = getattr(func, "__code__", None)
    if code is not None:
        names: set[str] = set()
        stack = [code]
        while stack:
            c = stack.pop()
            names.update(c.co_names)
            stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        globals_ = getattr(func, "__globals__", {})
        candidates += [(n, globals_[n]) for n in sorted(names) if n in globals_]
        for n, cell in zip(code.co_freevars, func.__closure__ or ()):
            try:
                candidates.append((n, cell.cell_contents))
            except ValueError:
                pass
        params = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        for i, value in enumerate(args):
            candidates.append((params[i] if i < len(params) else f"argument {i + 1}", value))
    candidates += list(kwargs.items())
    bad = []
    for name, value in candidates:
        if isinstance(value, types.ModuleType):
            continue
        try:
            cloudpickle.dumps(value)
        except Exception as exc:  # noqa: BLE001
            bad.append((name, type(value).__name__, f"{type(exc).__name__}: {exc}"))
    return bad


# ======================================================================================
# Executing the definition
# ======================================================================================
class _Emitter:
    def __init__(self, run_id: str, run_dir: Path, on_event: Callable[[StepEvent], None] | None) -> None:
        self.run_id = run_id
        self.on_event = on_event
        self.path = run_dir / "events.jsonl"

    def __call__(self, event: StepEvent) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(event.__dict__, default=str) + "\n")
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # noqa: BLE001 - a broken renderer must not break the run
                _log.exception("on_event callback failed")

    def run_event(self, state: str, **kwargs: Any) -> None:
        self(StepEvent(run_id=self.run_id, step=None, state=state, kind="run", **kwargs))


@dataclass
class _Attempt:
    number: int
    command_id: str
    folder: Path
    log_path: Path
    failure_path: Path
    diag_path: Path
    job_name: str
    output_uri: str
    exception_uri: str
    max_runtime: float | None
    pid: int | None = None
    started: float | None = None
    term_sent: float | None = None
    timed_out: bool = False


@dataclass
class _StepState:
    spec: StepSpec
    result: StepResult
    order: int
    attempt: _Attempt | None = None
    job_retries: int = 0  # RetryStrategy retries used by the current job
    policy_retries: dict[int, int] = field(default_factory=dict)
    first_failure: float | None = None
    not_before: float | None = None  # a retry waits until then
    checked_environment: bool = False
    properties: dict | None = None
    prepared: Any = None  # Future of (template workspace, warnings)


class _Execution:
    """One execution of a parsed definition: the service's scheduler, in one thread."""

    def __init__(self, *, run_id: str, run_dir: Path, pipeline_name: str, steps: dict[str, StepSpec],
                 parameters: dict, s3: LocalS3, worker: _WarmWorker, emit: _Emitter, max_workers: int,
                 faults: dict[str, list[str]], started: float, functions: dict[str, Any] | None = None) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.s3 = s3
        self.worker = worker
        self.emit = emit
        self.max_workers = max(1, int(max_workers))
        self.faults = {k: list(v) for k, v in faults.items()}
        self.functions = functions or {}
        self._empty_config = run_dir / "container-sagemaker-config.yaml"
        self._empty_config.write_text("")
        region = s3.region
        pipeline_arn = f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT}:pipeline/{pipeline_name.lower()}"
        self.execution = {
            "PipelineExecutionId": run_id,
            "PipelineExecutionArn": f"{pipeline_arn}/execution/{run_id}",
            "PipelineName": pipeline_name,
            "PipelineArn": pipeline_arn,
            "StartDateTime": _dt.datetime.fromtimestamp(started, _dt.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        self.resolver = Resolver(self.execution, parameters, read_s3=self._read_s3)
        order = _topological_order(steps)
        self.states = {
            name: _StepState(spec=steps[name], order=order.index(name),
                             result=StepResult(name=name, state="pending", run_dir=str(run_dir)))
            for name in order
        }
        self.results = {name: st.result for name, st in self.states.items()}
        from concurrent.futures import ThreadPoolExecutor

        self._prep_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="smstep-prepare")

    # -- public --------------------------------------------------------------------
    def succeeded(self) -> bool:
        return all(st.result.state == "succeeded" for st in self.states.values())

    def busy(self) -> bool:
        return any(st.attempt is not None for st in self.states.values())

    def run(self) -> None:
        self.emit.run_event("running", info={"steps": list(self.states), "run_dir": str(self.run_dir)})
        for st in self.states.values():
            self._event(st, "pending")
        for st in self.states.values():  # in dependency order: the first steps' channels come first
            st.prepared = self._prep_pool.submit(self._prepare_channels, st)
        try:
            while True:
                self._skip_blocked()
                self._launch_ready()
                if not self._active():
                    break
                timeout = max(0.0, min(1.0, self._next_deadline() - time.time()))
                try:
                    message = self.worker.messages.get(timeout=timeout)
                except queue.Empty:
                    message = None
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
        return any(st.result.state in ("running", "pending") and (st.attempt is not None or st.not_before is not None)
                   for st in self.states.values()) or any(self._ready(st) for st in self.states.values())

    def _ready(self, st: _StepState) -> bool:
        if st.result.state != "pending" or st.attempt is not None:
            return False
        return all(self.states[d].result.state == "succeeded" for d in st.spec.depends_on)

    def _running_count(self) -> int:
        return sum(1 for st in self.states.values() if st.attempt is not None)

    def _skip_blocked(self) -> None:
        changed = True
        while changed:
            changed = False
            for st in self.states.values():
                if st.result.state != "pending" or st.not_before is not None or st.attempt is not None:
                    continue
                for dep in st.spec.depends_on:
                    dep_state = self.states[dep].result.state
                    if dep_state in ("failed", "skipped"):
                        st.result.state = "skipped"
                        st.result.skipped_because = dep
                        st.result.summary = f"skipped: step '{dep}' {dep_state}"
                        self._event(st, "skipped", message=st.result.summary)
                        changed = True
                        break

    def _launch_ready(self) -> None:
        now = time.time()
        candidates = sorted(
            (st for st in self.states.values() if self._ready(st) or
             (st.not_before is not None and st.attempt is None)),
            key=lambda s: s.order,
        )
        for st in candidates:
            if self._running_count() >= self.max_workers:
                return
            if st.not_before is not None and st.not_before > now:
                continue
            st.not_before = None
            self._launch(st)

    def _next_deadline(self) -> float:
        deadlines = [time.time() + 1.0]
        for st in self.states.values():
            if st.not_before is not None:
                deadlines.append(st.not_before)
            a = st.attempt
            if a is not None and a.started is not None and a.max_runtime:
                deadlines.append(a.term_sent + TERMINATION_GRACE_SECONDS if a.term_sent else a.started + a.max_runtime)
        return min(deadlines)

    # -- one attempt -------------------------------------------------------------------
    def _launch(self, st: _StepState) -> None:
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
            job_name = _job_name(self.run_id, name, number)
            attempt = _Attempt(
                number=number, command_id=f"{self.run_id}/{name}/{number}", folder=folder,
                log_path=folder / "log.txt", failure_path=folder / "failure", diag_path=folder / "error.json",
                job_name=job_name, output_uri=output_uri,
                exception_uri=f"{s3_base_uri.rstrip('/')}/{self.run_id}/{name}/exception",
                max_runtime=_positive(args.get("StoppingCondition", {}).get("MaxRuntimeInSeconds")),
            )
            workspace = self._workspace(st, folder)
            env = self._environment(args, attempt, folder)
        except Exception as exc:  # noqa: BLE001 - the runner's own failure, reported on the step
            text = str(exc) if isinstance(exc, SmstepError) else f"{type(exc).__name__}: {exc}"
            self._finish_failure(st, None, "RunnerError", f"could not prepare the step: {text}", text)
            return
        result.job_name = job_name
        result.output_uri = output_uri
        result.log_path = str(attempt.log_path)
        st.properties = _job_properties(args, attempt, self.s3.region)
        st.attempt = attempt
        self._event(st, "running", attempt=number)
        pending_faults = self.faults.get(name)
        if pending_faults:
            kind = pending_faults.pop(0)
            attempt.started = time.time()
            attempt.log_path.write_text(f"smstep: attempt {number} failed with a simulated {kind}\n")
            self._attempt_failed(st, kind, f"{kind} (simulated by the local runner)", None, time.time())
            return
        self.worker.send({
            "op": "run", "id": attempt.command_id, "argv": argv, "env": env, "cwd": str(workspace),
            "log_path": str(attempt.log_path), "failure_path": str(attempt.failure_path),
            "diag_path": str(attempt.diag_path),
        })

    def _prepare_channels(self, st: _StepState) -> tuple[Path, list[str]]:
        """Fetch the step's input channels once, and check its requirements (in a thread).

        The container bootstrap unpacks the user workspace (when the step ships
        one) and copies the ``pre_exec_script_and_dependencies`` channel into it;
        here that becomes a template folder copied into each attempt's working
        directory. Requirements are checked against this environment, never
        installed. Runs off the scheduler's critical path, while earlier steps run.
        """
        import zipfile

        spec = st.spec
        name = spec.name
        template = self.run_dir / "steps" / name / "channels"
        workspace = template / "sagemaker_remote_function_workspace"
        warnings: list[str] = []
        input_config = self.resolver.evaluate(spec.arguments.get("InputDataConfig", []))
        channels = {c["ChannelName"]: to_text(c["DataSource"]["S3DataSource"]["S3Uri"])
                    for c in input_config if "S3DataSource" in c.get("DataSource", {})}
        argv = [to_text(v) for v in spec.arguments["AlgorithmSpecification"]["ContainerArguments"]
                if not isinstance(v, (dict, list))]
        step_dir = container_option(argv, "func_step_s3_dir")
        if step_dir and step_dir in channels:
            archive = template / "workspace.zip"
            if self._download(channels[step_dir].rstrip("/") + "/workspace.zip", archive):
                with zipfile.ZipFile(archive) as z:
                    z.extractall(template)
                archive.unlink()
        workspace.mkdir(parents=True, exist_ok=True)
        deps_uri = channels.get("pre_exec_script_and_dependencies")
        if deps_uri:
            deps_dir = template / "pre_exec_script_and_dependencies"
            self._download_prefix(deps_uri, deps_dir)
            for item in deps_dir.iterdir():
                if item.is_file():
                    shutil.copy(item, workspace / item.name)
            settings = container_option(argv, "dependency_settings")
            dependency_file = None
            if settings:
                try:
                    dependency_file = json.loads(settings).get("dependency_file")
                except ValueError:
                    pass
            warnings += check_dependencies_dir(deps_dir, dependency_file)
        return workspace, warnings

    def _workspace(self, st: _StepState, folder: Path) -> Path:
        """This attempt's working directory: a fresh copy of the step's template."""
        if st.prepared is None:
            st.prepared = self._prep_pool.submit(self._prepare_channels, st)
        template, warnings = st.prepared.result()
        if not st.checked_environment:
            st.checked_environment = True
            for warning in warnings:
                self._warn(st, warning)
        workspace = folder / template.name
        shutil.copytree(template, workspace, dirs_exist_ok=True)
        return workspace

    def _environment(self, args: dict, attempt: _Attempt, folder: Path) -> dict[str, str]:
        """The training container's environment, pointed at the local S3 and this run's folders."""
        region = self.s3.region
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        opt_ml = folder / "opt_ml"
        for sub in ("model", "output/data", "input/data", "input/config"):
            (opt_ml / sub).mkdir(parents=True, exist_ok=True)
        instance_type = to_text(args.get("ResourceConfig", {}).get("InstanceType", ""))
        env.update({
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
            "AWS_ENDPOINT_URL": self.s3.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.s3.endpoint_url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "TRAINING_JOB_NAME": attempt.job_name,
            "TRAINING_JOB_ARN": f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT}:training-job/{attempt.job_name}",
            "SM_CURRENT_HOST": "algo-1",
            "SM_HOSTS": '["algo-1"]',
            "SM_HOST_COUNT": "1",
            "SM_CURRENT_HOST_RANK": "0",
            "SM_CURRENT_INSTANCE_TYPE": instance_type,
            "SM_NUM_CPUS": str(_cores()),
            "SM_NUM_GPUS": "0",
            "SM_MODEL_DIR": str(opt_ml / "model"),
            "SM_INPUT_DIR": str(opt_ml / "input"),
            "SM_INPUT_DATA_DIR": str(opt_ml / "input" / "data"),
            "SM_INPUT_CONFIG_DIR": str(opt_ml / "input" / "config"),
            "SM_OUTPUT_DIR": str(opt_ml / "output"),
            "SM_OUTPUT_DATA_DIR": str(opt_ml / "output" / "data"),
            "SM_OUTPUT_FAILURE": str(attempt.failure_path),
            # The job's container does not see this machine's SageMaker config files
            # (~/.config/sagemaker, /etc/xdg/sagemaker); an empty file stands for them.
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(self._empty_config),
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(self._empty_config),
        })
        for key, value in (args.get("Environment") or {}).items():
            env[key] = to_text(value)
        return env

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
            self._attempt_failed(st, "SageMaker.CAPACITY_ERROR",
                                 f"could not start the step's process: {message.get('error')}", None, time.time())
        elif op == "exited":
            self._attempt_exited(st, message["returncode"], message["time"])

    def _state_for(self, command_id: str | None) -> _StepState | None:
        for st in self.states.values():
            if st.attempt is not None and st.attempt.command_id == command_id:
                return st
        return None

    def _attempt_exited(self, st: _StepState, returncode: int, ended: float) -> None:
        attempt = st.attempt
        assert attempt is not None
        name = st.spec.name
        if attempt.timed_out:
            limit = attempt.max_runtime
            self._attempt_failed(
                st, "MaxRuntimeExceeded",
                f"stopped after exceeding max_runtime_in_seconds={limit:g} (SageMaker: MaxRuntimeExceeded)",
                f"step '{name}' ran longer than its max_runtime_in_seconds ({limit:g} s) and was stopped, "
                "as SageMaker stops the training job.\n" + _tail(attempt.log_path, 15),
                ended,
            )
            return
        diag = _read_json(attempt.diag_path)
        has_results = self._exists(attempt.output_uri.rstrip("/") + "/payload.pkl")
        if returncode == 0 and diag is None and has_results:
            self._succeeded(st, ended)
            return
        summary, error = _explain_failure(name, returncode, diag, attempt)
        error = _point_at_sources(error, self.functions.get(name))
        self._attempt_failed(st, "AlgorithmError", summary, error, ended)

    def _succeeded(self, st: _StepState, ended: float) -> None:
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
        self._event(st, "succeeded", attempt=attempt.number, duration=result.duration)

    def _record_attempt(self, st: _StepState, outcome: str, ended: float, failure_type: str | None = None,
                        summary: str | None = None) -> None:
        attempt = st.attempt
        if attempt is None:
            return
        st.result.attempt_log.append({
            "attempt": attempt.number, "outcome": outcome, "failure_type": failure_type, "summary": summary,
            "started": attempt.started, "ended": ended, "log": str(attempt.log_path), "job_name": attempt.job_name,
        })

    def _attempt_failed(self, st: _StepState, failure_type: str, summary: str, error: str | None,
                        ended: float) -> None:
        """Apply the service's retry rules to a failed attempt; fail the step when they are spent."""
        attempt = st.attempt
        self._record_attempt(st, "failed", ended, failure_type, summary)
        st.attempt = None
        if attempt is not None and attempt.pid is not None and attempt.timed_out:
            _kill_group(attempt.pid, signal.SIGKILL)
        now = time.time()
        if st.first_failure is None:
            st.first_failure = now
        args = self.resolver.evaluate(st.spec.arguments.get("RetryStrategy", {}))
        job_budget = int(args.get("MaximumRetryAttempts", 0) or 0) if isinstance(args, dict) else 0
        delay: float | None = None
        how = ""
        # 1. The training job's own RetryStrategy: internal errors, same job, at once.
        if failure_type == "SageMaker.JOB_INTERNAL_ERROR" and st.job_retries < job_budget:
            st.job_retries += 1
            delay, how = 0.0, f"RetryStrategy (retry {st.job_retries} of {job_budget})"
        else:
            # 2. The pipeline's RetryPolicies: a new job for a matching failure type.
            for index, policy in enumerate(st.spec.retry_policies):
                if failure_type not in policy.get("ExceptionType", []):
                    continue
                used = st.policy_retries.get(index, 0)
                max_attempts = policy.get("MaxAttempts")
                expire = policy.get("ExpireAfterMin")
                if max_attempts is not None and used >= int(max_attempts):
                    break
                if expire is not None and now - st.first_failure > float(expire) * 60:
                    break
                st.policy_retries[index] = used + 1
                st.job_retries = 0
                delay = float(policy.get("IntervalSeconds", 1)) * float(policy.get("BackoffRate", 2.0)) ** used
                how = f"retry policy {policy.get('ExceptionType')} (retry {used + 1}" + (
                    f" of {max_attempts})" if max_attempts is not None else ")")
                break
        if delay is not None:
            st.not_before = now + delay
            self._event(st, "running", kind="retry", attempt=attempt.number if attempt else 0,
                        message=f"attempt {attempt.number if attempt else '?'} failed ({summary}); "
                                f"retrying in {delay:g} s by {how}")
            return
        if failure_type == "AlgorithmError" and st.spec.retry_policies:
            summary += " (not retried: SageMaker's retry policies cover service, capacity and internal " \
                       "errors, never an exception raised by the step's code)"
        self._finish_failure(st, attempt, failure_type, summary, error, ended)

    def _finish_failure(self, st: _StepState, attempt: _Attempt | None, failure_type: str, summary: str,
                        error: str | None, ended: float | None = None) -> None:
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
            result.exception_uri = attempt.exception_uri if self._exists(
                attempt.exception_uri + "/payload.pkl") else None
        self._event(st, "failed", attempt=result.attempts, duration=result.duration,
                    message=summary, error=result.error)

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
        self.worker = _WarmWorker(*_worker_args(), _worker_log_path())
        for st in running:
            self._attempt_failed(st, "SageMaker.JOB_INTERNAL_ERROR",
                                 "the local runner's worker process died", None, time.time())
        self.worker.wait_ready()

    def _abort(self, reason: str) -> None:
        for st in self.states.values():
            if st.attempt is not None:
                if st.attempt.pid:
                    _kill_group(st.attempt.pid, signal.SIGKILL)
                self._finish_failure(st, None, "Stopped", reason, reason)
            elif st.result.state == "pending":
                st.result.state = "skipped"
                st.result.summary = reason
                self._event(st, "skipped", message=reason)

    # -- events, S3 ----------------------------------------------------------------------
    def _event(self, st: _StepState, state: str, *, kind: str = "state", attempt: int = 0,
               duration: float | None = None, message: str | None = None, error: str | None = None) -> None:
        self.emit(StepEvent(run_id=self.run_id, step=st.spec.name, state=state, kind=kind,
                            attempt=attempt, duration=duration, message=message, error=error))

    def _warn(self, st: _StepState, message: str) -> None:
        st.result.warnings.append(message)
        self._event(st, st.result.state, kind="warning", message=message)

    # The runner reads the local S3's files directly: it is the server's own storage.
    def _read_s3(self, uri: str) -> bytes:
        return self.s3.path(uri).read_bytes()

    def _exists(self, uri: str) -> bool:
        return self.s3.exists(uri)

    def _download(self, uri: str, dest: Path) -> bool:
        if not self._exists(uri):
            return False
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.s3.path(uri), dest)
        return True

    def _download_prefix(self, uri: str, dest: Path) -> None:
        bucket, prefix = split_s3_uri(uri)
        prefix = prefix.rstrip("/") + "/"
        dest.mkdir(parents=True, exist_ok=True)
        for key in self.s3.keys(bucket, prefix):
            rel = key[len(prefix):]
            if rel and not rel.endswith("/"):
                target = dest.joinpath(*rel.split("/"))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.s3.path(f"s3://{bucket}/{key}"), target)


def _worker_args() -> tuple[str, str, str]:
    invoke_module, errors_module = _entry_point_modules()
    return sys.executable, invoke_module, errors_module


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


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _job_name(run_id: str, step: str, attempt: int) -> str:
    """A training job name as the service makes them: ``pipelines-<execution>-<step>-<suffix>``."""
    clean = re.sub(r"[^A-Za-z0-9-]", "-", step)
    suffix = secrets.token_hex(3) + f"-{attempt}"
    base = f"pipelines-{run_id}-{clean}"
    return f"{base[: 63 - len(suffix) - 1]}-{suffix}"


def _job_properties(args: dict, attempt: _Attempt, region: str) -> dict:
    """What ``Steps.<name>.*`` reads after the step: a DescribeTrainingJob-like view."""
    properties = dict(args)
    properties.update({
        "TrainingJobName": attempt.job_name,
        "TrainingJobArn": f"arn:aws:sagemaker:{region}:{LOCAL_ACCOUNT}:training-job/{attempt.job_name}",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": f"{attempt.output_uri.rstrip('/')}/{attempt.job_name}/output/model.tar.gz"},
    })
    return properties


def _topological_order(steps: dict[str, StepSpec]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dep in steps[name].depends_on:
            visit(dep)
        order.append(name)

    for name in steps:
        visit(name)
    return order


def _explain_failure(step: str, returncode: int, diag: dict | None, attempt: _Attempt) -> tuple[str, str]:
    """(one-line summary, full error text) for a failed attempt, in the user's terms."""
    log_hint = f"(log: {attempt.log_path})"
    if diag is None:
        tail = _tail(attempt.log_path, 20)
        if returncode < 0:
            sig = -returncode
            try:
                sig_name = signal.Signals(sig).name
            except ValueError:
                sig_name = f"signal {sig}"
            hint = " - usually the machine ran out of memory" if sig == signal.SIGKILL else ""
            summary = f"the step's process was killed by {sig_name}{hint}"
        elif returncode == 0:
            summary = ("the step's process exited without writing its results (did the step call sys.exit() "
                       "or os._exit()?); SageMaker would mark the step Succeeded and fail the steps that read it")
        else:
            summary = f"the step's process exited with status {returncode} (did the step call sys.exit?)"
        return summary, f"step '{step}' failed: {summary} {log_hint}\n{tail}".rstrip()
    phase = diag.get("phase")
    exc_line = f"{diag.get('type')}: {diag.get('message')}".rstrip(": ")
    if phase == "function":
        user_tb = (diag.get("user_traceback") or diag.get("traceback") or "").rstrip()
        variable = diag.get("variable")
        if diag.get("type") == "NameError" and variable:
            explanation = (
                f"step '{step}' reads '{variable}', which does not exist when the step runs: it was neither "
                "passed to the step nor captured with it. Define it in an earlier step or in this cell, "
                "or import it inside the step."
            )
            return f"NameError: '{variable}' is not defined when the step runs", f"{explanation}\n{user_tb}"
        return exc_line, user_tb
    if phase == "output":
        bad = diag.get("unpicklable") or []
        if bad:
            parts = ", ".join(
                (f"output '{key}'" if key is not None else "its return value") + f" ({kind}: {reason})"
                for key, kind, reason in bad
            )
        else:
            parts = f"its return value ({diag.get('cause') or exc_line})"
        summary = f"returned a value that cannot be pickled: {parts}"
        explanation = (
            f"step '{step}' {summary}. A step's outputs are pickled to S3 for the steps that read them; "
            "return plain data instead (close files, clients and connections inside the step, return "
            "what they hold or a path)."
        )
        return summary, explanation
    if phase in ("load_function", "load_arguments"):
        what = "its code" if phase == "load_function" else "its inputs"
        cause = diag.get("cause") or exc_line
        summary = f"could not load {what} in the step's process: {cause}"
        fix = ""
        if "ModuleNotFoundError" in cause or "No module named" in cause:
            fix = (" The step runs in a fresh process, like a SageMaker container: a module that is only "
                   "importable from the notebook's folder must be shipped with the step, and packages must "
                   "be in the image or the step's dependencies.")
        return summary, f"step '{step}' {summary}.{fix}\n{diag.get('traceback', '').rstrip()}"
    if phase == "resolve_inputs":
        summary = f"could not read the outputs of an upstream step: {diag.get('cause') or exc_line}"
        return summary, f"step '{step}' {summary}\n{diag.get('traceback', '').rstrip()}"
    return exc_line, f"step '{step}' failed in the SageMaker entry point {log_hint}:\n{diag.get('traceback', '').rstrip()}"


# ======================================================================================
# Terminal progress
# ======================================================================================
class TerminalProgress:
    """Prints a run's progress, one line per change, e.g. ``TerminalProgress(sys.stderr)``.

    Use it as ``on_event``. Colours and symbols when the stream is a terminal
    that can show them; plain ASCII otherwise (CI logs, pipes).
    """

    _COLORS = {"running": "36", "succeeded": "32", "failed": "31", "skipped": "33", "warning": "33", "retry": "35"}

    def __init__(self, stream: Any = None, *, color: bool | None = None, show_pending: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.color = isatty if color is None else color
        encoding = (getattr(self.stream, "encoding", None) or "").lower()
        self.unicode = "utf" in encoding
        self.show_pending = show_pending
        self.width = 12

    def _symbol(self, key: str) -> str:
        fancy = {"running": "▶", "succeeded": "✔", "failed": "✘", "skipped": "↷", "warning": "⚠",
                 "retry": "↻", "pending": "·"}
        plain = {"running": ">", "succeeded": "+", "failed": "x", "skipped": "-", "warning": "!",
                 "retry": "~", "pending": "."}
        return (fancy if self.unicode else plain).get(key, "?")

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
        label = self._paint(key, event.state.ljust(9))
        text = f"  {symbol} {name}  {label} {took}"
        if event.state == "failed":
            text += f"  {event.message or ''}"
            if event.error:
                text += "\n" + "\n".join("      " + l for l in event.error.rstrip().splitlines())
        elif event.state == "skipped" and event.message:
            text = f"  {symbol} {name}  {label}          {event.message}"
        return text
