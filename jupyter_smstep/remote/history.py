"""The pipeline's last executions on SageMaker: status, duration, who started them, and what each step was
billed (``DescribeTrainingJob``'s ``BillableTimeInSeconds``) beside what the last local run estimated.

A user sees what a run cost, not only what it would cost. Read-only: ``ListPipelineExecutions``,
``DescribePipelineExecution``, ``ListPipelineExecutionSteps`` and ``DescribeTrainingJob``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core import foreach
from jupyter_smstep.errors import aws_error, error_code
from jupyter_smstep.remote.executions import last_attempts, training_job


@dataclass(frozen=True)
class StepBill:
    step: str
    status: str
    job_name: str
    billable_s: int | None  # None: not a training job, or the service has not said yet
    instance_type: str = ""
    instance_count: int = 1


@dataclass(frozen=True)
class ExecutionRow:
    arn: str
    status: str
    started: datetime | None
    duration_s: float | None  # start to last change (still running: to now)
    started_by: str  # a Studio user profile, an IAM identity, or "" when the service does not say
    steps: list[StepBill] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    @property
    def billable_s(self) -> int | None:
        known = [s.billable_s for s in self.steps if s.billable_s is not None]
        return sum(known) if known else None

    def to_json(self, estimates: Mapping[str, float] | None = None) -> dict[str, Any]:
        return {
            "execution_arn": self.arn,
            "status": self.status,
            "started": self.started.isoformat() if self.started else None,
            "duration_s": None if self.duration_s is None else round(self.duration_s, 1),
            "started_by": self.started_by or None,
            "billable_s": self.billable_s,
            "steps": {
                s.step: {
                    "status": s.status,
                    "job_name": s.job_name or None,
                    "billable_s": s.billable_s,
                    "instance_type": s.instance_type or None,
                    "instance_count": s.instance_count,
                    "estimated_billable_s": (estimates or {}).get(s.step),
                }
                for s in self.steps
            },
        }


def started_by(described: Mapping[str, Any]) -> str:
    """Who started an execution, as the service records it (``CreatedBy``)."""
    created = described.get("CreatedBy") or {}
    if created.get("UserProfileName"):
        return f"Studio user {created['UserProfileName']}"
    arn = str((created.get("IamIdentity") or {}).get("Arn") or "")
    return arn.rsplit(":", 1)[-1] if arn else ""


def history(client: Any, pipeline: str, limit: int = 5) -> list[ExecutionRow]:
    """The ``limit`` newest executions of ``pipeline``, newest first, each with its steps' billed seconds."""
    what = f"reading the executions of pipeline {pipeline!r}"
    try:
        rows = client.list_pipeline_executions(
            PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=limit
        ).get("PipelineExecutionSummaries", [])
        return [_row(client, row) for row in rows[:limit]]
    except Exception as exc:  # noqa: BLE001 - botocore's errors, said by cause
        raise aws_error(
            exc,
            what,
            denied_fix="give your credentials sagemaker:ListPipelineExecutions, "
            "DescribePipelineExecution, ListPipelineExecutionSteps and DescribeTrainingJob",
        ) from None


def _row(client: Any, summary: Mapping[str, Any]) -> ExecutionRow:
    arn = str(summary["PipelineExecutionArn"])
    described = client.describe_pipeline_execution(PipelineExecutionArn=arn)
    status = str(described.get("PipelineExecutionStatus") or summary.get("PipelineExecutionStatus") or "")
    started = _time(described.get("CreationTime") or summary.get("StartTime"))
    ended = _time(described.get("LastModifiedTime"))
    if status in ("Executing", "Stopping"):
        ended = datetime.now(started.tzinfo) if started else None
    duration = (ended - started).total_seconds() if started and ended else None
    latest = last_attempts(client, arn)
    steps = []

    def began(item: tuple[str, Mapping[str, Any]]) -> float:
        when = _time(item[1].get("StartTime"))
        return when.timestamp() if when is not None else float("inf")

    renamed = foreach.named_back(latest)  # a fan-out's gather, in the notebook's name
    for name, step in sorted(latest.items(), key=began):  # in the order they started
        if name not in renamed.values():  # (a row of a ForEach's body itself is its children's)
            steps.append(_bill(client, renamed.get(name, name), str(step.get("StepStatus", "")), training_job(step)))
    return ExecutionRow(arn, status, started, duration, started_by(described), steps)


def _bill(client: Any, step: str, status: str, job: str) -> StepBill:
    if not job:
        return StepBill(step, status, "", None)
    try:
        described = client.describe_training_job(TrainingJobName=job)
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in ("ResourceNotFound", "ValidationException"):  # gone (or not yet): unknown
            return StepBill(step, status, job, None)
        raise
    billable = described.get("BillableTimeInSeconds")
    resources = described.get("ResourceConfig") or {}
    return StepBill(
        step,
        status,
        job,
        int(billable) if billable is not None else None,
        str(resources.get("InstanceType", "")),
        int(resources.get("InstanceCount") or 1),
    )


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value).astimezone()
    return None


def lines(rows: list[ExecutionRow], estimates: Mapping[str, float]) -> list[str]:
    """The executions as text: one line each, then one per step with billed and estimated seconds."""
    if not rows:
        return ["no execution on SageMaker yet (%pipeline submit starts one)"]
    out = []
    for row in rows:
        when = row.started.strftime("%Y-%m-%d %H:%M") if row.started else "?"
        took = f"{row.duration_s:.0f} s" if row.duration_s is not None else "?"
        billed = f", billed {row.billable_s} s" if row.billable_s is not None else ""
        who = f" by {row.started_by}" if row.started_by else ""
        out.append(f"{row.id}  {row.status:<10} {when}  {took}{billed}{who}")
        for step in row.steps:
            bill = f"billed {step.billable_s} s" if step.billable_s is not None else "not billed yet"
            guess = estimates.get(step.step)
            est = f" (local estimate ≥ {guess:.0f} s)" if guess is not None else ""
            out.append(f"    {step.step}: {step.status}, {bill}{est}")
    return out
