"""Executing a parsed definition: the service's scheduler, in one thread.

:class:`Execution` starts each step when its dependencies have succeeded,
bounded by the cores; runs it through the warm worker; enforces
``StoppingCondition.MaxRuntimeInSeconds``; applies ``RetryStrategy`` and
``RetryPolicies`` as the service does; skips the dependents of a failure; and
turns what went wrong into the user's terms (their exception and traceback,
the output that cannot be pickled, the variable that does not exist).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import queue
import re
import secrets
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from jupyter_smstep.errors import SmstepError
from jupyter_smstep.local.definition import Resolver, StepSpec, container_option, split_s3_uri, to_text
from jupyter_smstep.local.environment import check_dependencies_dir
from jupyter_smstep.local.results import StepEvent, StepResult
from jupyter_smstep.local.s3.server import DUMMY_CREDENTIALS, LOCAL_ACCOUNT, LocalS3
from jupyter_smstep.local.worker import WarmWorker, log_tail, worker_args, worker_log_path

_log = logging.getLogger(__name__)

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
# Executing the definition
# ======================================================================================
class Emitter:
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


class Execution:
    """One execution of a parsed definition: the service's scheduler, in one thread."""

    def __init__(self, *, run_id: str, run_dir: Path, pipeline_name: str, steps: dict[str, StepSpec],
                 parameters: dict, s3: LocalS3, worker: WarmWorker, emit: Emitter, max_workers: int,
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
        try:
            self.worker.send({
                "op": "run", "id": attempt.command_id, "argv": argv, "env": env, "cwd": str(workspace),
                "log_path": str(attempt.log_path), "failure_path": str(attempt.failure_path),
                "diag_path": str(attempt.diag_path),
            })
        except OSError as exc:  # the worker is gone; its "worker-died" message restarts it
            self._attempt_failed(st, "SageMaker.JOB_INTERNAL_ERROR",
                                 f"the local runner's worker process is gone ({exc})", None, time.time())

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
        count = spec.arguments.get("ResourceConfig", {}).get("InstanceCount", 1)
        if isinstance(count, int) and count > 1:
            warnings.append(f"instance_count={count}: the local runner runs the step once, in one process")
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
            "SM_NUM_CPUS": str(cores()),
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
                f"as SageMaker stops the training job (log: {attempt.log_path})",
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
        self.worker = WarmWorker(*worker_args(), worker_log_path())
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
        "ModelArtifacts": {
            "S3ModelArtifacts": f"{attempt.output_uri.rstrip('/')}/{attempt.job_name}/output/model.tar.gz"},
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
        tail = log_tail(attempt.log_path, 20)
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
        return summary, f"step '{step}' {summary}.{fix}\n(the SDK's traceback is in {attempt.log_path})"
    if phase == "resolve_inputs":
        summary = f"could not read the outputs of an upstream step: {diag.get('cause') or exc_line}"
        return summary, f"step '{step}' {summary}\n(the SDK's traceback is in {attempt.log_path})"
    sdk_traceback = diag.get("traceback", "").rstrip()
    return exc_line, f"step '{step}' failed in the SageMaker entry point {log_hint}:\n{sdk_traceback}"


def cores() -> int:
    """The cores this process may use (a container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


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
