"""Schedules: EventBridge Scheduler starts the pipeline (the SDK's ``PipelineSchedule`` and ``put_triggers``).

:func:`put` upserts the pipeline when its stored definition differs, then creates or
updates the schedule through ``Pipeline.put_triggers``. The SDK's helper always sends
empty pipeline parameters and no end date, so a schedule with ``-p`` values or an
``--end`` is updated once more with them (``UpdateSchedule`` takes the whole
schedule). :func:`listing` reads every schedule whose target is the pipeline, and
:func:`remove` deletes one through ``Pipeline.delete_triggers``.

The schedule's role is the one EventBridge Scheduler assumes to call
``StartPipelineExecution``: it must trust ``scheduler.amazonaws.com``. It is not the
steps' role. No printing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core import schedules as expr_mod
from jupyter_smstep.core.model import PipelineGraph
from jupyter_smstep.errors import Problem, SmstepError, aws_error, error_code

ROLE_FIX = (
    "pass --role ARN of a role that trusts scheduler.amazonaws.com and may call "
    "sagemaker:StartPipelineExecution on this pipeline (or set SageMaker.Pipeline.RoleArn in config.yaml)"
)


@dataclass
class Schedule:
    name: str
    expression: str
    state: str  # ENABLED / DISABLED
    role: str | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    arn: str | None = None
    next_times: list[dt.datetime] = field(default_factory=list)
    upserted: str = ""  # put: "created or updated" / "unchanged" (the pipeline)
    notes: list[str] = field(default_factory=list)  # put: what was not checked, and why (the roles' trust)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "expression": self.expression,
            "state": self.state,
            "role": self.role,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "parameters": dict(self.parameters),
            "arn": self.arn,
            "next": [_iso(t) for t in self.next_times],
            **({"pipeline": self.upserted} if self.upserted else {}),
            **({"notes": list(self.notes)} if self.notes else {}),
        }


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if value else None


def config_role() -> str | None:
    """``SageMaker.Pipeline.RoleArn`` of the SageMaker config.yaml (the SDK's default pipeline role)."""
    from jupyter_smstep.core.sdk_config import load_sdk_config

    node: Any = load_sdk_config()
    for part in ("SageMaker", "Pipeline", "RoleArn"):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node if isinstance(node, str) else None


def put(
    graph: PipelineGraph,
    namespace: Mapping[str, Any],
    name: str,
    expression: expr_mod.Expression,
    *,
    role: str | None,
    parameters: Mapping[str, Any],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    enabled: bool = True,
    session: Any = None,
    root: Path | None = None,
    now: dt.datetime | None = None,
) -> Schedule:
    """Create or update schedule ``name`` for ``graph``'s pipeline; everything is checked before any call."""
    from jupyter_smstep import sdk
    from jupyter_smstep.remote.submit import upsert
    from jupyter_smstep.sdk import patches, rules

    expr_mod.check_name(name)
    role = role or config_role()
    if role is None:
        raise SmstepError(
            Problem("a schedule needs a role for EventBridge Scheduler to start the pipeline with", fix=ROLE_FIX)
        )
    problems = rules.schedule_problems(name, expression.text, role, parameters)
    if problems:
        raise SmstepError(problems)
    if start is not None and end is not None and end <= start:
        raise SmstepError(Problem("--end is not after --start", fix="give an end date after the start date"))
    now = now or dt.datetime.now(dt.timezone.utc)
    upcoming = expression.next_times(now, start=start, end=end)
    if not upcoming:
        raise SmstepError(
            Problem(
                f"{expression.text} never fires after now ({_iso(now)})"
                + (f" and before --end {_iso(end)}" if end else ""),
                fix="pick a time in the future (at() is UTC), or a later --end",
            )
        )
    if session is None:
        session = sdk.make_session()
    from jupyter_smstep.remote import roles

    trusted = roles.trust(session, role, roles.SCHEDULER, "the schedule's role")
    notes = [trusted.note] if trusted.note else []
    compiled, response = upsert(
        graph, namespace, session, root, only_if_changed=True, parameters=parameters, notes=notes
    )
    pipeline = compiled.pipeline
    kwargs: dict[str, Any] = {"name": name, "enabled": enabled, "start_date": start}
    if expression.kind == "cron":
        kwargs["cron"] = expression.text[len("cron(") : -1]
    elif expression.kind == "rate":
        value, unit = expression.text[len("rate(") : -1].split()
        kwargs["rate"] = (int(value), unit)
    else:
        kwargs["at"] = expression.at
    try:
        # SDK 3.27 checks this role as a pipeline's (trusting SageMaker); EventBridge Scheduler assumes it, and
        # that trust was just checked: the SDK's check is off for this call (sdk.patches)
        with patches.without_sdk_role_check() if trusted.trusted else contextlib.nullcontext():
            pipeline.put_triggers([sdk.load().PipelineSchedule(**kwargs)], role_arn=role)
        client = _client(session)
        if parameters or end is not None:
            _update(client, name, parameters, end)
        found = _schedule(client.get_schedule(Name=name), now)
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise aws_error(
            exc,
            f"scheduling pipeline {graph.name!r} ({name})",
            denied_fix="give your credentials scheduler:CreateSchedule/UpdateSchedule/GetSchedule "
            "and iam:PassRole on the schedule's role",
        ) from None
    found.upserted = "unchanged" if response.get("Unchanged") else "created or updated"
    found.notes = notes
    return found


def _update(client: Any, name: str, parameters: Mapping[str, Any], end: dt.datetime | None) -> None:
    current = client.get_schedule(Name=name)
    target = dict(current["Target"])
    if parameters:
        target["SageMakerPipelineParameters"] = {
            "PipelineParameterList": [{"Name": k, "Value": _text(v)} for k, v in parameters.items()]
        }
    request = {
        k: current[k]
        for k in (
            "Name",
            "ScheduleExpression",
            "FlexibleTimeWindow",
            "State",
            "StartDate",
            "ScheduleExpressionTimezone",
            "Description",
            "GroupName",
        )
        if k in current
    }
    if end is not None:
        request["EndDate"] = end
    client.update_schedule(**request, Target=target)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _client(session: Any) -> Any:
    from jupyter_smstep.sdk import rules

    client = session.boto_session.client("scheduler")
    rules.guard(client)
    return client


def _schedule(raw: Mapping[str, Any], now: dt.datetime) -> Schedule:
    target = raw.get("Target") or {}
    params = {
        p["Name"]: p["Value"]
        for p in (target.get("SageMakerPipelineParameters") or {}).get("PipelineParameterList") or []
    }
    start, end = raw.get("StartDate"), raw.get("EndDate")
    expression = str(raw.get("ScheduleExpression", ""))
    kind = expression.split("(", 1)[0]
    try:
        parsed = expr_mod.parse(**{kind: expression})
        upcoming = parsed.next_times(now, start=start, end=end) if raw.get("State") != "DISABLED" else []
    except (SmstepError, TypeError):
        upcoming = []  # made elsewhere with a form this parser does not know: shown without times
    return Schedule(
        str(raw.get("Name")),
        expression,
        str(raw.get("State", "")),
        target.get("RoleArn"),
        start,
        end,
        params,
        raw.get("Arn"),
        upcoming,
    )


def listing(pipeline_name: str, session: Any = None, now: dt.datetime | None = None) -> list[Schedule]:
    """Every schedule (default group) whose target is the pipeline."""
    from jupyter_smstep import sdk

    session = session or sdk.make_session()
    now = now or dt.datetime.now(dt.timezone.utc)
    client = _client(session)
    found: list[Schedule] = []
    try:
        arn = session.sagemaker_client.describe_pipeline(PipelineName=pipeline_name)["PipelineArn"]
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in ("ResourceNotFound", "ValidationException"):
            return []  # no pipeline, hence no schedule of it
        raise aws_error(exc, f"reading pipeline {pipeline_name!r}") from None
    try:
        kwargs: dict[str, Any] = {}
        while True:
            page = client.list_schedules(**kwargs)
            for row in page.get("Schedules", []):
                if (row.get("Target") or {}).get("Arn") == arn:
                    found.append(
                        _schedule(client.get_schedule(Name=row["Name"], GroupName=row.get("GroupName", "default")), now)
                    )
            if not page.get("NextToken"):
                return sorted(found, key=lambda s: s.name)
            kwargs["NextToken"] = page["NextToken"]
    except Exception as exc:  # noqa: BLE001
        raise aws_error(
            exc,
            "listing the schedules",
            denied_fix="give your credentials scheduler:ListSchedules and scheduler:GetSchedule",
        ) from None


def remove(pipeline_name: str, name: str, session: Any = None) -> None:
    """Delete schedule ``name`` of the pipeline (through ``Pipeline.delete_triggers``)."""
    from jupyter_smstep import sdk
    from jupyter_smstep.errors import did_you_mean

    session = session or sdk.make_session()
    known = [s.name for s in listing(pipeline_name, session)]
    if name not in known:
        raise SmstepError(
            Problem(
                f"pipeline {pipeline_name!r} has no schedule {name!r}",
                fix=did_you_mean(name, known, "its schedules")
                if known
                else "it has no schedules (%pipeline schedules lists them)",
            )
        )
    try:
        sdk.load().Pipeline(name=pipeline_name, sagemaker_session=session).delete_triggers([name])
    except Exception as exc:  # noqa: BLE001
        raise aws_error(
            exc, f"deleting schedule {name!r}", denied_fix="give your credentials scheduler:DeleteSchedule"
        ) from None
