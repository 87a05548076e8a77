"""Run a pipeline on this machine, faithfully: no AWS account, no Docker.

``run_pipeline(build)`` does what SageMaker Pipelines does with the same
pipeline, with local stand-ins for the services:

1. It starts an embedded S3 endpoint (:class:`~jupyter_smstep.local.s3.server.LocalS3`)
   and builds the pipeline with the real SDK against it. ``definition()``
   uploads the pickled step functions and arguments there: the same bytes that
   ``submit`` uploads to the real bucket.
2. It reads the JSON definition like the service: parameters, dependencies
   (``DependsOn`` and property references), and the ``Get`` / ``Std:Join`` /
   ``Std:JsonGet`` expressions in each step's training-job request.
3. It runs each step as SageMaker would run its training job: a process that
   calls the SDK's container entry point (``invoke_function``) with the step's
   ``ContainerArguments`` and ``Environment``. Processes are forked from a warm
   worker (:mod:`jupyter_smstep.local.worker_entry`) that has imported the SDK but no
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

import errno
import json
import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterable, Mapping

from jupyter_smstep import sdk as _sdk
from jupyter_smstep.core.model import with_dependents
from jupyter_smstep.core.keys import StepKey
from jupyter_smstep.errors import Problem, SmstepError, causes
from jupyter_smstep.sdk.capture import explain_serialization_error
from jupyter_smstep.folders import private_folder
from jupyter_smstep.local.cache import Entry, StepCache, reusable
from jupyter_smstep.local.definition import parse_steps, resolve_parameters
from jupyter_smstep.local.container import cores
from jupyter_smstep.local.scheduler import RETRYABLE_FAILURES, TERMINATION_GRACE_SECONDS, Emitter, Execution
from jupyter_smstep.local.results import DEFAULT_RUNS_DIR, RunResult, StepEvent, load_run, owner, record_saves
from jupyter_smstep.local.s3.server import LocalS3
from jupyter_smstep.local.worker import return_worker, take_worker

__all__ = ["RETRYABLE_FAILURES", "TERMINATION_GRACE_SECONDS", "run_pipeline"]

_log = logging.getLogger(__name__)


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
    functions: Mapping[str, Callable[..., Any]] | None = None,
    keys: Mapping[str, StepKey] | None = None,
    cache: bool | StepCache = True,
    force: Iterable[str] = (),
    pipeline_key: str | None = None,
    buckets: Iterable[str] = (),
    saves: Mapping[str, list[dict[str, Any]]] | None = None,
    root: str | Path | None = None,
    stop: threading.Event | None = None,
    notebook: str | None = None,
    taken: Mapping[str, tuple[Path, str]] | None = None,
    host_env: Mapping[str, str] | None = None,
) -> RunResult:
    """Build the pipeline against an embedded S3 and run every step locally.

    ``build`` is ``build(session) -> Pipeline`` (called with a ``PipelineSession``
    bound to the local S3), or a ``Pipeline`` whose session is swapped for the
    local one while its definition is produced. ``parameters`` override the
    pipeline's parameter defaults (values are checked and coerced to the declared
    types). ``on_event`` receives a :class:`StepEvent` for every change.
    ``faults`` simulates service-side failures, e.g. ``{"train":
    ["SageMaker.JOB_INTERNAL_ERROR"]}`` fails the first attempt of ``train`` that
    way, to exercise retry policies. ``functions`` (step name -> the Python
    function the step runs) lets a failure's traceback show the user's own file
    and lines (cloudpickle ships code as ``<dynamic-code>``). ``keys`` (step name -> content key) lets a
    step reuse the verified results of an earlier run under ``runs_dir`` with the same key
    (:mod:`.cache`) unless ``cache`` is False (a :class:`~.cache.StepCache` the caller already consulted
    is used as it is); the steps in ``force`` and their dependents always run.
    With ``pipeline_key`` (:func:`jupyter_smstep.core.keys.pipeline_key`), a run whose every step is
    cached reuses the earlier run's definition instead of building one (no SDK import, no upload).
    ``host_env`` is the environment a step's process inherits (default: this process's; a kernel passes
    its own without what its cells set, as a SageMaker job would not have it).
    Setting ``stop`` (the panel's Stop) ends the run within about a second: running steps are killed and
    ``stopped``, the rest skipped. ``taken`` (step -> a folder holding its results files, and where they came
    from) gives steps their results from elsewhere (``run --upstream``: a SageMaker execution's).
    Returns a :class:`RunResult` (also when steps failed); raises
    :class:`SmstepError` when the pipeline cannot be run at all.
    """
    if os.name != "posix" or not hasattr(os, "fork"):
        raise SmstepError(
            Problem(
                "the local runner needs a POSIX system with fork() (Linux, macOS)",
                fix="run the notebook in WSL or a Linux container",
            )
        )
    for step, kinds in (faults or {}).items():
        for kind in kinds:
            if kind not in RETRYABLE_FAILURES:
                raise SmstepError(
                    Problem(
                        f"unknown fault '{kind}' for step '{step}'", fix="use one of: " + ", ".join(RETRYABLE_FAILURES)
                    )
                )
    worker = take_worker()  # its SDK import overlaps the build below
    run_id = _new_run_id()
    run_dir = Path(runs_dir).absolute() / run_id
    try:
        private_folder(run_dir.parent)  # .smstep and runs: 0700 whatever the umask
        run_dir.mkdir(mode=0o700)  # the user's only: its payloads are pickles that steps load
    except OSError as exc:
        return_worker(worker)
        raise SmstepError(
            Problem(
                f"cannot create the run folder {run_dir}: {exc.strerror or exc}",
                fix=f"pass --runs-dir DIR with a folder you can write, or make {run_dir.parent} writable",
            )
        ) from None
    emit = Emitter(run_id, run_dir, on_event)
    s3 = LocalS3(run_dir / "s3", region=region)  # objects are files there as soon as written
    if saves:  # what the steps' --save values write: the run lists the objects (RunResult.saved)
        record_saves(run_dir, dict(saves))
    started = time.time()
    sdk_version = _sdk.installed_version()
    info: dict[str, Any] = {
        "run_id": run_id,
        "started": started,
        "sdk_version": sdk_version,
        "python": sys.version.split()[0],
        "steps": [],
        "succeeded": False,
        "owner": owner(),
        **({"notebook": notebook} if notebook else {}),
    }
    emit.record(run_dir / "run.json", info)
    if emit.lost is not None:  # nothing has run yet: say so before building anything
        return_worker(worker)
        raise _record_lost(run_dir, *emit.lost, None)
    executor: Execution | None = None
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
        for bucket in buckets:  # the buckets --save writes to, in this run's S3
            s3.create_bucket(bucket)
        lap("start_s3")
        forced = set(force)
        step_cache = cache if isinstance(cache, StepCache) else StepCache(run_dir.parent) if cache else None
        reused = None
        entries = {n: step_cache.lookup(k.key) for n, k in keys.items()} if step_cache is not None and keys else {}
        if (
            step_cache is not None
            and pipeline_key
            and keys
            and not forced
            and all(isinstance(e, Entry) for e in entries.values())
            and len(
                reusable(
                    step_cache,
                    {n: k.key for n, k in keys.items()},
                    {n: list(e.upstream) for n, e in entries.items() if isinstance(e, Entry)},
                    dict(saves or {}),
                )
            )
            == len(keys)
        ):
            reused = step_cache.definition(pipeline_key)
        if reused is not None:
            definition, pipeline_name = reused
            lap("reuse_definition")
        else:
            definition, pipeline_name = _build_definition(build, s3)
            lap("build_definition")
        emit.record(run_dir / "definition.json", definition)
        steps = parse_steps(definition)
        values = resolve_parameters(definition, parameters)
        info.update(
            pipeline=pipeline_name,
            steps=list(steps),
            parameters=values,
            endpoint_url=s3.endpoint_url,
            bucket=s3.bucket,
            region=s3.region,
        )
        emit.record(run_dir / "run.json", info)
        if emit.lost is not None:
            raise _record_lost(run_dir, *emit.lost, None)
        executor = Execution(
            run_id=run_id,
            run_dir=run_dir,
            pipeline_name=pipeline_name,
            steps=steps,
            parameters=values,
            s3=s3,
            worker=worker,
            emit=emit,
            max_workers=max_workers or cores(),
            faults=faults or {},
            started=started,
            functions=dict(functions or {}),
            keys=dict(keys or {}),
            cache=step_cache,
            force=with_dependents({n: spec.depends_on for n, spec in steps.items()}, forced),
            root=Path(root).resolve() if root else None,
            stop=stop,
            saves=dict(saves or {}),
            taken=dict(taken or {}),
            host_env=host_env,
        )
        executor.run()
        lap("execute")
        if step_cache is not None and pipeline_key and "build_definition" in timings:
            try:
                step_cache.record_definition(pipeline_key, run_id, pipeline_name)
            except OSError as exc:  # a full or read-only cache folder costs the next run a build, nothing more
                emit(
                    StepEvent(
                        run_id=run_id,
                        step=None,
                        state="running",
                        kind="warning",
                        message=f"could not record the definition in the cache {step_cache.folder} "
                        f"({exc.strerror or exc}): the next run builds it again",
                    )
                )
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
                for step_result in executor.results.values():
                    emit.record(run_dir / "steps" / step_result.name / "step.json", step_result.to_json())
            emit.record(run_dir / "run.json", info)
            if executor is not None and executor.worker is not worker:  # replaced after a crash
                worker.close(timeout=2)
                worker = executor.worker
            if worker.alive() and (executor is None or not (executor.busy() or executor.stopped)):
                return_worker(worker)
            else:
                worker.close(timeout=2)
    assert executor is not None
    if emit.lost is not None:
        raise _record_lost(run_dir, *emit.lost, executor)
    result = load_run(run_dir)
    emit.run_event(
        "succeeded" if result.succeeded else "stopped" if executor.stopped else "failed",
        duration=result.duration,
        message=_run_summary(result),
    )
    return result


def _record_lost(run_dir: Path, path: Path, exc: OSError, executor: Execution | None) -> SmstepError:
    """The error for a run whose record could not be written: what ran, what is missing, and where."""
    ran = (
        " (its steps: " + ", ".join(f"{r.name} {r.state}" for r in executor.results.values()) + ")"
        if executor is not None
        else ", and no step ran"
    )
    full = exc.errno == errno.ENOSPC
    return SmstepError(
        Problem(
            f"the run's record could not be written ({path.relative_to(run_dir.parent)}: "
            f"{'the disk is full' if full else exc.strerror or exc}), so run {run_dir.name} cannot be reopened, "
            f"pulled or reused{ran}",
            fix=_free_space(run_dir.parent)
            if full
            else f"make {run_dir.parent} writable, or pass --runs-dir DIR on another disk, and run again",
        )
    )


def _free_space(runs_dir: Path) -> str:
    """The fix for a full disk under a runs folder."""
    return f"free space on the disk that holds {runs_dir} (df -h {runs_dir}), or pass --runs-dir DIR on a larger disk"


def _new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _run_summary(result: RunResult) -> str:
    counts: dict[str, int] = {}
    for step in result.steps.values():
        state = "cached" if step.cached_from else "taken from SageMaker" if step.taken_from else step.state
        counts[state] = counts.get(state, 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    if counts.get("cached"):
        summary += (
            " (a cached step reused an earlier run's result: the same code, captured values, settings and "
            "inputs, and every file, module, package and environment variable it read unchanged)"
        )
    return summary


# -- building the definition against the local S3 ---------------------------------------
def _local_boto_session(s3: LocalS3) -> Any:
    """A boto3 session whose every client (S3, SageMaker, and the STS/IAM clients the SDK makes
    on its own) talks to the local endpoint with the run's credentials: nothing reaches AWS from a
    local run, nor waits on a network this machine may not have, and ``os.environ`` is untouched
    (other threads of the kernel, e.g. the panel following a real execution, keep theirs)."""
    import boto3
    import botocore.session

    core = botocore.session.Session()
    core.set_config_variable("endpoint_url", s3.endpoint_url)
    core.set_config_variable("region", s3.region)
    return boto3.session.Session(botocore_session=core, **s3.credentials.as_boto())


def _build_definition(build: Any, s3: LocalS3) -> tuple[dict, str]:
    sdk = _sdk.load()
    boto_session = _local_boto_session(s3)
    chatty = logging.getLogger("botocore.configprovider")  # "Found endpoint for s3 via: ..."
    level = chatty.level
    chatty.setLevel(logging.WARNING)
    try:
        for _ in range(5):
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
                if _disk_full(exc):
                    raise SmstepError(
                        Problem(
                            "the disk is full: the build could not put the steps' code and captured values into the "
                            f"run's local S3 ({s3.root})",
                            fix=_free_space(s3.root.parent.parent),
                        )
                    ) from None
                explained = explain_serialization_error(exc, getattr(sdk.errors_module, "SerializationError", None))
                if explained is not None:
                    raise explained from exc
                raise
            return json.loads(text), pipeline.name
    finally:
        chatty.setLevel(level)
    raise SmstepError(Problem("could not build the pipeline against the local S3 (buckets keep missing)"))


def _missing_bucket(exc: BaseException) -> str | None:
    for cause in causes(exc):
        response = getattr(cause, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") == "NoSuchBucket":
            return response["Error"].get("BucketName")
    return None


def _disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a full disk: an ENOSPC, or the local S3's answer to one (the SDK's upload
    keeps only the text of the S3 error it got)."""
    return any(
        (isinstance(c, OSError) and c.errno == errno.ENOSPC) or "No space left on device" in str(c) for c in causes(exc)
    )
