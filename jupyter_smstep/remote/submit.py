"""Submit a pipeline to SageMaker: upsert the definition and start an execution.

Talks to the real service through boto3 and the SDK (``AWS_ENDPOINT_URL``,
profiles and region honoured as usual). Monitoring lives in ``monitor``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.errors import SmstepError, aws_error, error_code
from jupyter_smstep.core import foreach
from jupyter_smstep.core.model import PipelineGraph, pipeline_role
from jupyter_smstep.sdk.content import definition_keys


@dataclass(frozen=True)
class Selection:
    """What ``--changed`` runs: the steps whose content key differs from a succeeded execution's."""

    source_arn: str | None  # the latest succeeded execution (None: there is none, everything runs)
    steps: list[str]  # selected, in pipeline order
    why: dict[str, str]  # step -> why it is selected
    note: str  # one line for the user


@dataclass(frozen=True)
class Submission:
    pipeline_arn: str
    execution_arn: str  # "" when nothing was started (--changed with nothing changed)
    region: str
    selection: Selection | None = None
    uploads: tuple[int, int] = (0, 0)  # objects uploaded, objects already there
    keys: dict[str, dict[str, str]] = field(default_factory=dict)  # step -> its key's parts, as submitted
    notes: list[str] = field(default_factory=list)  # what was not checked, and why (a role's trust)

    @property
    def started(self) -> bool:
        return bool(self.execution_arn)

    @property
    def console_url(self) -> str:
        return console_url(self.execution_arn, self.region) if self.started else ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pipeline_arn": self.pipeline_arn,
            "execution_arn": self.execution_arn or None,
            "console_url": self.console_url or None,
            "uploaded": self.uploads[0],
            "already_uploaded": self.uploads[1],
            "notes": list(self.notes),
        }
        if self.selection is not None:
            out["changed"] = {
                "source_execution_arn": self.selection.source_arn,
                "steps": self.selection.steps,
                "why": self.selection.why,
                "note": self.selection.note,
            }
        return out


def console_url(execution_arn: str, region: str) -> str:
    # arn:aws:sagemaker:REGION:ACCOUNT:pipeline/NAME/execution/ID
    parts = execution_arn.split(":", 5)[-1].split("/")
    name, exec_id = (parts[1], parts[3]) if len(parts) >= 4 else ("", "")
    return (
        f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/pipelines/{name}/executions/{exec_id}"
    )


def changed_steps(graph: PipelineGraph, keys: Mapping[str, Any], client: Any) -> Selection:
    """The steps whose key differs from the latest succeeded execution of ``graph``'s pipeline, plus
    the steps after them; every step when there is no such execution (or it cannot be read)."""
    everything = [s.name for s in graph.steps]
    if graph.conditions:  # a selected step may read a step the last execution's condition skipped
        names = ", ".join(c.name for c in graph.conditions)
        return Selection(
            None,
            everything,
            dict.fromkeys(everything, "the pipeline has --when conditions"),
            f"the pipeline has conditions ({names}): --changed is not built for them yet, every step runs",
        )
    fanned = sorted({n.fanout.step for n in graph.steps if n.fanout and foreach.gather_name(n.fanout.step) in keys})
    if fanned:  # built as SageMaker ForEach steps, whose children a selective execution does not name
        return Selection(
            None,
            everything,
            dict.fromkeys(everything, "the pipeline has --foreach steps built as SageMaker ForEach steps"),
            f"the pipeline has --foreach steps ({', '.join(fanned)}), built as SageMaker ForEach steps: "
            "--changed is not built for them yet, every step runs",
        )
    source = _latest_succeeded(client, graph.name)
    if source is None:
        return Selection(
            None,
            everything,
            dict.fromkeys(everything, "no succeeded execution to reuse"),
            f"pipeline {graph.name!r} has no succeeded execution to start from: every step runs",
        )
    try:
        text = client.describe_pipeline_definition_for_execution(PipelineExecutionArn=source)["PipelineDefinition"]
        ran = definition_keys(json.loads(text))
    except Exception as exc:  # noqa: BLE001 - unreadable: run everything, and say so
        return Selection(
            None,
            everything,
            dict.fromkeys(everything, "the source definition cannot be read"),
            f"the definition of {source} cannot be read ({exc}): every step runs",
        )
    why: dict[str, str] = {}
    for node in graph.steps:
        after = next((d for d in node.depends_on if d in why), None)
        if node.name not in ran:
            why[node.name] = "not in the source execution (or built without content keys)"
        elif after is not None:  # its key changed with its upstream's
            why[node.name] = f"runs after changed step {after}"
        elif ran[node.name] != keys[node.name].short:
            why[node.name] = "its code, captured values, settings or files changed"
    steps = [name for name in everything if name in why]
    note = (
        f"{len(steps)} of {len(everything)} step(s) changed since {source}: {', '.join(steps)}"
        if steps
        else f"nothing changed since {source}"
    )
    return Selection(source, steps, why, note)


def _latest_succeeded(client: Any, pipeline: str) -> str | None:
    kwargs: dict[str, Any] = {"PipelineName": pipeline, "SortBy": "CreationTime", "SortOrder": "Descending"}
    try:
        while True:
            page = client.list_pipeline_executions(**kwargs)
            rows = sorted(
                page.get("PipelineExecutionSummaries", []), key=lambda r: r.get("StartTime") or 0, reverse=True
            )
            for row in rows:
                if row.get("PipelineExecutionStatus") == "Succeeded":
                    return str(row["PipelineExecutionArn"])
            if not page.get("NextToken"):
                return None
            kwargs["NextToken"] = page["NextToken"]
    except Exception as exc:  # noqa: BLE001
        raise aws_error(
            exc,
            f"listing the executions of pipeline {pipeline!r}",
            denied_fix="give your credentials sagemaker:ListPipelineExecutions",
        ) from None


def upsert(
    graph: PipelineGraph,
    namespace: Mapping[str, Any],
    session: Any,
    root: Path | None = None,
    only_if_changed: bool = False,
    parameters: Mapping[str, Any] | None = None,
    notes: list[str] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Create or update the pipeline: the compiled pipeline and the service's answer (``PipelineArn``).

    The definition is checked by SageMaker's rules first (at each parameter's default and at ``parameters``,
    the run's ``-p``), before anything is uploaded; the requests themselves are checked as they are sent.
    With ``only_if_changed``, a pipeline whose stored definition is already this one is left alone
    (the answer then has ``"Unchanged": True``). The pipeline's role must trust SageMaker (asked of IAM first;
    ``notes`` gets why when IAM cannot be asked).
    """
    from jupyter_smstep import sdk
    from jupyter_smstep.remote import roles
    from jupyter_smstep.sdk import build, rules

    role = pipeline_role(graph) or sdk.execution_role(session)
    checked = roles.trust(session, role, roles.SAGEMAKER, "the pipeline's role")
    if checked.note and notes is not None:
        notes.append(checked.note)
    compiled = build.build_pipeline(graph, namespace, session, root=root)
    compiled.checked(parameters)
    rules.guard(session.sagemaker_client)
    pipeline = compiled.pipeline
    uploads = None
    try:
        with compiled.building() as uploads:  # content-addressed: unchanged steps are not uploaded again
            if only_if_changed:
                stored = _stored_pipeline(session.sagemaker_client, graph.name)
                if stored is not None and json.loads(stored["PipelineDefinition"]) == json.loads(pipeline.definition()):
                    return compiled, {"PipelineArn": stored["PipelineArn"], "Unchanged": True}
            response = pipeline.upsert(role_arn=role, description=f"jupyter_smstep pipeline {graph.name}")
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001 - say what failed without the SDK's traceback
        uploading = _UPLOADING.search(str(exc))
        if uploading is None:
            raise aws_error(
                exc,
                f"creating pipeline {graph.name!r} on SageMaker",
                denied_fix="give your credentials sagemaker:CreatePipeline/UpdatePipeline and "
                "iam:PassRole on the pipeline's role",
            ) from None
        bucket, key = uploading["bucket"], uploading["key"]
        sent = uploads.uploaded if uploads is not None else 0
        error = aws_error(
            exc,
            f"uploading s3://{bucket}/{key} for pipeline {graph.name!r}",
            denied_fix=f"give your credentials s3:PutObject on arn:aws:s3:::{bucket}/{graph.name}/* "
            "(or set S3RootUri in config.yaml to a bucket you may write)",
        )
        left = (
            f"; nothing was created on SageMaker, and the {sent} object(s) uploaded before it stay in S3: "
            "their names are their content, so the next submit reuses them and uploads only the rest"
        )
        error.problems = [dataclasses.replace(p, message=p.message + left) for p in error.problems]
        raise error from None
    return compiled, dict(response)


#: The SDK's text for an upload it could not make (``Failed to upload serialized bytes to s3://B/K: …``).
_UPLOADING = re.compile(r"Failed to upload [^:]*? to s3://(?P<bucket>[^/\s]+)/(?P<key>[^\s:]+)")


def _stored_pipeline(client: Any, name: str) -> dict[str, Any] | None:
    """The service's ``DescribePipeline`` of ``name``, or None when there is no such pipeline."""
    try:
        return dict(client.describe_pipeline(PipelineName=name))
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in ("ResourceNotFound", "ValidationException"):
            return None
        raise


def submit(
    graph: PipelineGraph,
    namespace: Mapping[str, Any],
    parameters: Mapping[str, Any],
    session: Any = None,
    display_name: str | None = None,
    root: Path | None = None,
    changed: bool = False,
    force: bool = False,
) -> Submission:
    """Upsert the pipeline and start an execution with ``parameters`` (already checked and coerced).

    With ``changed``, the execution re-runs only the steps whose content key changed since the latest
    succeeded execution (and the steps after them), through the SDK's ``SelectiveExecutionConfig``;
    when nothing changed, nothing is started unless ``force``.
    """
    from jupyter_smstep import sdk

    if session is None:
        session = sdk.make_session()
    notes: list[str] = []
    compiled, response = upsert(graph, namespace, session, root, parameters=parameters, notes=notes)
    assert compiled.plan is not None
    pipeline = compiled.pipeline
    uploads = (compiled.plan.uploads.uploaded, compiled.plan.uploads.skipped)
    selection = changed_steps(graph, compiled.plan.keys, session.sagemaker_client) if changed else None
    parts = {name: dict(key.parts) for name, key in compiled.plan.keys.items()}
    kwargs: dict[str, Any] = {"parameters": dict(parameters) or None}
    if display_name:
        kwargs["execution_display_name"] = display_name[:82]
    if selection is not None and selection.source_arn is not None:
        if not selection.steps and not force:
            return Submission(response["PipelineArn"], "", session.boto_region_name, selection, uploads, parts, notes)
        if selection.steps:
            kwargs["selective_execution_config"] = sdk.load().SelectiveExecutionConfig(
                selected_steps=selection.steps, source_pipeline_execution_arn=selection.source_arn
            )
    try:
        execution = pipeline.start(**kwargs)
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001
        error = aws_error(
            exc,
            f"starting pipeline {graph.name!r} (it was created: {response['PipelineArn']})",
            denied_fix="give your credentials sagemaker:StartPipelineExecution",
        )
        raise error from None
    return Submission(
        response["PipelineArn"], execution.arn, session.boto_region_name, selection, uploads, parts, notes
    )
