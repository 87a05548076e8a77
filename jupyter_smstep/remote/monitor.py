"""Follow a pipeline execution on SageMaker: per-step status, failures, logs, stop, retry.

Shared by the panel (which polls in a background thread), ``%pipeline submit
--wait`` / ``%pipeline status`` and ``smstep submit --wait`` / ``smstep status``.
Everything goes through boto3 as it would against the real service, so
``AWS_ENDPOINT_URL``, profiles and the region are honoured as usual; the
region defaults to the one in the execution ARN.

Polling backs off exponentially while nothing changes and harder when the
service throttles (``ThrottlingException``): a long execution costs a handful
of calls a minute and throttling never crashes a notebook. Errors the user
must fix (no permission, unknown execution) raise :class:`SmstepError`.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from collections.abc import Callable, Iterator

from jupyter_smstep.core import foreach
from jupyter_smstep.core.states import StepState
from jupyter_smstep.errors import THROTTLING, SmstepError, aws_error, error_code

TERMINAL = frozenset({"Succeeded", "Failed", "Stopped"})
#: Errors worth another try later (besides throttling): the service or the network hiccuped.
TRANSIENT = frozenset(
    {
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
    }
)
#: SageMaker step status -> the panel's (and the local runner's) state names.
STATE: dict[str, StepState] = {
    "Starting": "pending",
    "Executing": "running",
    "Stopping": "running",
    "Stopped": "stopped",
    "Failed": "failed",
    "Succeeded": "succeeded",
}
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
MAX_TRANSIENT_FAILURES = 8  # consecutive network/service errors before giving up (throttling never gives up)


# --------------------------------------------------------------------------- snapshots
@dataclass
class StepStatus:
    name: str
    status: str  # SageMaker's: Starting, Executing, Stopping, Stopped, Failed, Succeeded
    failure_reason: str = ""
    job_arn: str = ""
    start: datetime | None = None
    end: datetime | None = None
    attempt: int = 1

    @property
    def state(self) -> StepState:
        return STATE.get(self.status, "pending")

    @property
    def job_name(self) -> str:
        """The training job's name (the last part of its ARN), which prefixes its log streams."""
        return self.job_arn.rsplit("/", 1)[-1] if self.job_arn else ""

    @property
    def duration(self) -> float | None:
        if self.start is None:
            return None
        end = self.end or datetime.now(self.start.tzinfo)
        return max(0.0, (end - self.start).total_seconds())


@dataclass
class Snapshot:
    arn: str
    status: str  # Executing, Stopping, Stopped, Failed, Succeeded (or "Unknown" before the first answer)
    failure_reason: str = ""
    display_name: str = ""
    steps: dict[str, StepStatus] = field(default_factory=dict)
    throttled: bool = False  # this poll was throttled: the data is the previous poll's
    error: str = ""  # a transient error hit by this poll (the data is the previous poll's)
    mlflow: dict[str, str] = field(default_factory=dict)  # MLflowConfig: MlflowResourceArn, MlflowExperimentName

    @property
    def mlflow_line(self) -> str:
        """Where the execution's MLflow run is, and the command that opens it ("" without MLflow)."""
        arn = self.mlflow.get("MlflowResourceArn", "")
        if not arn:
            return ""
        kind, _, name = arn.split(":", 5)[-1].partition("/")
        experiment = self.mlflow.get("MlflowExperimentName") or "the pipeline's name"
        if kind == "mlflow-tracking-server":
            where = f"tracking server {name}"
            command = f"aws sagemaker create-presigned-mlflow-tracking-server-url --tracking-server-name {name}"
        else:
            where, command = arn, f"aws sagemaker create-presigned-mlflow-app-url --arn {arn}"
        return f"MLflow: experiment {experiment} on {where} (open it: {command})"

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"

    @property
    def failed_steps(self) -> list[StepStatus]:
        return [s for s in self.steps.values() if s.status == "Failed"]

    def key(self) -> tuple:
        """What counts as a change worth showing (and resetting the backoff for)."""
        return (self.status, tuple((s.name, s.status, s.attempt, s.failure_reason) for s in self.steps.values()))


# --------------------------------------------------------------------------- backoff
class Backoff:
    """Delays between polls: ``initial`` growing by ``factor`` to ``maximum``, with jitter.

    ``reset()`` after a change (so a running step is followed closely),
    ``throttled()`` when the service says slow down (jumps ahead twice as far).
    Iterating yields delays forever.
    """

    def __init__(
        self,
        initial: float = 2.0,
        factor: float = 1.5,
        maximum: float = 30.0,
        jitter: float = 0.1,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial, self.factor, self.maximum, self.jitter = initial, factor, maximum, jitter
        self._rand = rand
        self.current = initial

    def __iter__(self) -> Iterator[float]:
        while True:
            yield self.next()

    def next(self) -> float:
        delay = self.current
        self.current = min(self.maximum, self.current * self.factor)
        return self._jittered(delay)

    def reset(self) -> None:
        self.current = self.initial

    def throttled(self) -> float:
        self.current = min(self.maximum, max(self.current, self.initial) * self.factor * 2)
        return self.next()

    def _jittered(self, delay: float) -> float:
        return max(0.0, delay * (1 + self.jitter * (2 * self._rand() - 1)))


def backoff(initial: float = 2.0, factor: float = 1.5, maximum: float = 30.0, jitter: float = 0.1) -> Iterator[float]:
    """The delays of a fresh :class:`Backoff` (for callers that only need the sequence)."""
    return iter(Backoff(initial, factor, maximum, jitter))


# --------------------------------------------------------------------------- clients
def region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 4 and parts[3] else None


_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def _client(service: str, region: str | None) -> Any:
    """A boto3 client, reused while the AWS environment is the same (loading SageMaker's model takes ~0.5 s)."""
    import os

    import boto3
    from botocore.config import Config

    env = tuple(
        os.environ.get(k)
        for k in (
            "AWS_ENDPOINT_URL",
            f"AWS_ENDPOINT_URL_{service.upper()}",
            "AWS_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
        )
    )
    key = (service, region, env)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # Our own loop backs off between polls; botocore's few quick retries absorb blips.
            config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=10, read_timeout=30)
            client = _clients[key] = boto3.session.Session().client(service, region_name=region, config=config)
        return client


def _error_code(exc: BaseException) -> str:
    return error_code(exc) or ""


def is_throttling(exc: BaseException) -> bool:
    return _error_code(exc) in THROTTLING


def _is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import BotoCoreError, ConnectionError as BotoConnectionError, EndpointConnectionError

    if _error_code(exc) in TRANSIENT:
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
        return True
    return isinstance(exc, (EndpointConnectionError, BotoConnectionError)) or (
        isinstance(exc, BotoCoreError) and "timeout" in type(exc).__name__.lower()
    )


def _explain(exc: BaseException, what: str) -> SmstepError:
    return aws_error(
        exc,
        what,
        denied_fix="give your credentials sagemaker:DescribePipelineExecution, "
        "ListPipelineExecutionSteps, StopPipelineExecution, RetryPipelineExecution "
        "(and logs:GetLogEvents for logs)",
        not_found_fix="check the execution ARN and the region (the ARN's region is used unless "
        "AWS_REGION says otherwise)",
    )


# --------------------------------------------------------------------------- the monitor
class ExecutionMonitor:
    """Poll one pipeline execution; see the module docstring."""

    def __init__(self, arn: str, client: Any = None, logs_client: Any = None, region: str | None = None) -> None:
        self.arn = arn
        self.region = region or region_of(arn)
        self._client = client
        self._logs = logs_client
        self.last: Snapshot = Snapshot(arn, "Unknown")
        self.polls = 0  # API round trips attempted (for tests and curiosity)
        self._transient_failures = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client("sagemaker", self.region)
        return self._client

    @property
    def logs(self) -> Any:
        if self._logs is None:
            self._logs = _client("logs", self.region or getattr(self.client.meta, "region_name", None))
        return self._logs

    @property
    def console_url(self) -> str:
        from jupyter_smstep.remote.submit import console_url

        return console_url(self.arn, self.region or "us-east-1")

    # ------------------------------------------------------------------ polling
    def poll(self) -> Snapshot:
        """One look at the execution and its steps.

        Throttling or a transient error returns the previous snapshot marked
        ``throttled`` / ``error`` (the caller backs off); a permission or
        not-found error raises :class:`SmstepError`.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        self.polls += 1
        try:
            desc = self.client.describe_pipeline_execution(PipelineExecutionArn=self.arn)
            steps = self._list_steps()
        except (ClientError, BotoCoreError) as exc:
            if is_throttling(exc):
                return self._stale(throttled=True)
            if _is_transient(exc):
                self._transient_failures += 1
                if self._transient_failures > MAX_TRANSIENT_FAILURES:
                    raise _explain(exc, "following the execution") from None
                return self._stale(error=f"{_error_code(exc) or type(exc).__name__}: {exc}")
            raise _explain(exc, "reading the execution") from None
        self._transient_failures = 0
        self.last = Snapshot(
            self.arn,
            desc.get("PipelineExecutionStatus", "Unknown"),
            desc.get("FailureReason", "") or "",
            desc.get("PipelineExecutionDisplayName", "") or "",
            steps,
            mlflow={k: str(v) for k, v in (desc.get("MLflowConfig") or {}).items()},
        )
        return self.last

    def _stale(self, throttled: bool = False, error: str = "") -> Snapshot:
        last = self.last
        return Snapshot(
            last.arn,
            last.status,
            last.failure_reason,
            last.display_name,
            dict(last.steps),
            throttled=throttled,
            error=error,
            mlflow=dict(last.mlflow),
        )

    def _list_steps(self) -> dict[str, StepStatus]:
        rows: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"PipelineExecutionArn": self.arn, "SortOrder": "Ascending", "MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            page = self.client.list_pipeline_execution_steps(**kwargs)
            rows.extend(page.get("PipelineExecutionSteps", []))
            token = page.get("NextToken")
            if not token:
                break
        rows.sort(
            key=lambda r: r["StartTime"].timestamp() if isinstance(r.get("StartTime"), datetime) else float("inf")
        )
        steps: dict[str, StepStatus] = {}
        for row in rows:  # oldest first: a retried step's latest attempt wins
            name = row.get("StepName", "?")
            meta = row.get("Metadata") or {}
            job = (meta.get("TrainingJob") or meta.get("ProcessingJob") or {}).get("Arn", "")
            previous = steps.get(name)
            steps[name] = StepStatus(
                name=name,
                status=row.get("StepStatus", "Starting"),
                failure_reason=row.get("FailureReason", "") or "",
                job_arn=job,
                start=row.get("StartTime"),
                end=row.get("EndTime"),
                attempt=max(int(row.get("AttemptCount") or 1), (previous.attempt + 1) if previous else 1),
            )
        renamed = foreach.named_back(steps)  # a fan-out's gather, in the notebook's name (as a local run has it)
        return {  # (a row of the ForEach's body itself, if the service lists one, is its children's)
            renamed.get(n, n): dataclasses.replace(s, name=renamed.get(n, n))
            for n, s in steps.items()
            if n not in renamed.values()
        }

    def watch(
        self,
        delays: Backoff | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], Any] | None = None,
        settle: int = 0,
    ) -> Iterator[Snapshot]:
        """Yield a snapshot whenever something changed, until the execution ends (or ``stop`` is set).

        Also yields throttled/erroring polls (``snapshot.throttled`` / ``.error``) so
        a UI can say it is waiting; those never end the watch. During the first
        ``settle`` polls an ended status does not end the watch (just after a
        retry the service may still report the previous end).
        """
        delays = delays or Backoff()
        stop = stop or threading.Event()
        wait = sleep or stop.wait
        seen: tuple | None = None
        answered = 0
        while not stop.is_set():
            snap = self.poll()
            if snap.throttled or snap.error:
                yield snap
                delay = delays.throttled() if snap.throttled else delays.next()
            else:
                answered += 1
                if snap.key() != seen:
                    seen = snap.key()
                    delays.reset()
                    yield snap
                if snap.done and answered > settle:
                    return
                delay = delays.next()
            wait(delay)

    # ------------------------------------------------------------------ actions
    def stop(self) -> str:
        """Ask SageMaker to stop the execution (steps go Stopping, then Stopped)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            out = self.client.stop_pipeline_execution(
                PipelineExecutionArn=self.arn, ClientRequestToken=uuid.uuid4().hex
            )
        except (ClientError, BotoCoreError) as exc:
            raise _explain(exc, "stopping the execution") from None
        return out.get("PipelineExecutionArn", self.arn)

    def retry(self) -> str:
        """Re-run the failed steps of a Failed (or Stopped) execution; same ARN, new attempts."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            out = self.client.retry_pipeline_execution(
                PipelineExecutionArn=self.arn, ClientRequestToken=uuid.uuid4().hex
            )
        except (ClientError, BotoCoreError) as exc:
            raise _explain(exc, "retrying the execution") from None
        self.last = Snapshot(self.arn, "Executing", "", self.last.display_name, dict(self.last.steps))
        return out.get("PipelineExecutionArn", self.arn)

    def log_tail(self, job_name: str, n: int = 50) -> list[str]:
        """The last ``n`` lines the training job logged to CloudWatch (all its streams, merged)."""
        return log_tail(job_name, n, client=self.logs)


# --------------------------------------------------------------------------- logs
def log_tail(
    job_name: str, n: int = 50, client: Any = None, region: str | None = None, group: str = LOG_GROUP
) -> list[str]:
    """Last ``n`` log lines of a training job. Empty when it has not logged (yet).

    Streams are named ``<job name>/algo-<i>-<epoch>``; each host's stream is
    read from its end and the lines merged by timestamp.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    if not job_name:
        return []
    client = client or _client("logs", region)
    for attempt in range(4):
        try:
            streams = client.describe_log_streams(logGroupName=group, logStreamNamePrefix=job_name, limit=50).get(
                "logStreams", []
            )
            events: list[tuple[int, str]] = []
            for stream in streams[:8]:
                page = client.get_log_events(
                    logGroupName=group, logStreamName=stream["logStreamName"], limit=n, startFromHead=False
                )
                events.extend(
                    (e.get("timestamp", 0), e.get("message", "").rstrip("\n")) for e in page.get("events", [])
                )
            events.sort(key=lambda e: e[0])
            return [m for _, m in events[-n:]]
        except (ClientError, BotoCoreError) as exc:
            code = _error_code(exc)
            if code == "ResourceNotFoundException":
                return []
            if is_throttling(exc) and attempt < 3:
                time.sleep(0.5 * 2**attempt)
                continue
            raise _explain(exc, f"reading the logs of {job_name}") from None
    return []


def stop(arn: str, client: Any = None) -> str:
    return ExecutionMonitor(arn, client=client).stop()


def retry(arn: str, client: Any = None) -> str:
    return ExecutionMonitor(arn, client=client).retry()
