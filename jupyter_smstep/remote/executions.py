"""A SageMaker execution's step results, brought back to the notebook: ``pull --execution``,
``run --from STEP --upstream``, ``verify --execution``.

An execution is looked up by ARN, or ``latest`` (the pipeline's newest), and refused when it is not
this notebook's:

- it belongs to another pipeline (the ARN names it);
- a step to be read was built from other code, captured values, settings or files than the notebook
  builds now: its content key, which names the step's payload folder in the execution's definition
  (:func:`jupyter_smstep.sdk.content.definition_keys`), differs from the key the notebook has now.

A step's results are the ``@step`` function's return value, pickled by the SDK in the job's output folder
(``DescribeTrainingJob``'s ``S3OutputPath``). They are read only from under the pipeline's own S3 root
(the root this notebook builds with: ``S3RootUri`` in config.yaml, else the session's default bucket, then
the pipeline's name), and only when their SHA-256 matches the SDK's ``metadata.json`` beside them; the SDK's
own deserialisation reads them (:func:`jupyter_smstep.sdk.results.load`). These are pickles from your own
account's bucket: whoever can write there can run code in your kernel, as with the SDK's
``execution.result(step)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

from jupyter_smstep.errors import Problem, SmstepError, aws_error
from jupyter_smstep.core import foreach, sdk_config
from jupyter_smstep.core.keys import shared

#: the files of a ``@step`` results folder the SDK writes (results.json only with JSON-able outputs)
RESULT_FILES = ("payload.pkl", "metadata.json", "results.json")


@dataclass(frozen=True)
class RemoteStep:
    name: str
    status: str  # the service's StepStatus of its last attempt
    job_name: str  # "" for a step that is not a training job (a condition, a fail step)
    key: str | None  # the short content key its definition was built with (None: not built by this package)
    #: A ForEach's child: its key is its body's, which all the children (these steps) share
    shared: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoteExecution:
    arn: str
    pipeline: str
    status: str
    steps: dict[str, RemoteStep]
    parameters: dict[str, str] = field(default_factory=dict)  # the values it ran with, as the service keeps them

    @property
    def id(self) -> str:
        return self.arn.rsplit("/", 1)[-1]

    def label(self, step: str) -> str:
        return f"step {step} of execution {self.id}"


@dataclass
class Pulled:
    """What ``pull --execution`` read: each step's outputs, and what it could not read or the user should know."""

    execution: RemoteExecution
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = list(self.notes)
        for step, values in self.values.items():
            out.append(f"from {self.execution.label(step)}: {', '.join(values) or 'no outputs'}")
        return out


def parameter_notes(remote: RemoteExecution, defaults: Mapping[str, Any]) -> list[str]:
    """The parameters the execution ran with that differ from the notebook's defaults."""
    out = []
    for name, value in remote.parameters.items():
        default = defaults.get(name)
        if name in defaults and str(value).lower() != str(default).lower():
            out.append(f"execution {remote.id} ran with {name}={value} (the notebook's default: {default!r})")
    return out


def pipeline_of(arn: str) -> str | None:
    """The pipeline an execution ARN names (``arn:aws:sagemaker:R:A:pipeline/NAME/execution/ID``)."""
    parts = arn.split(":", 5)[-1].split("/") if arn.startswith("arn:") else []
    return parts[1] if len(parts) == 4 and parts[0] == "pipeline" and parts[2] == "execution" else None


def owner_of(arn: str, or_latest: bool = False) -> str:
    """The pipeline an execution ARN names; an error with the ARN's form when it is none (said before anything
    reaches AWS)."""
    owner = pipeline_of(arn)
    if owner is None:
        raise SmstepError(
            f"{arn!r} is not a pipeline execution ARN",
            fix="pass arn:aws:sagemaker:REGION:ACCOUNT:pipeline/NAME/execution/ID (the ARN %pipeline "
            "submit printed; %pipeline history lists the latest)" + (", or latest" if or_latest else ""),
        )
    return owner


def find(client: Any, pipeline: str, execution: str) -> RemoteExecution:
    """The execution ``execution`` (an ARN, or ``latest``) of ``pipeline``, with its steps and parameters."""
    if execution == "latest":
        arn = _latest(client, pipeline)
    else:
        owner = owner_of(execution, or_latest=True)
        if owner.lower() != pipeline.lower():
            raise SmstepError(
                f"execution {execution} is of pipeline {owner!r}, not of this notebook's pipeline {pipeline!r}",
                fix=f"pass an execution of {pipeline!r} (--execution latest), or, if this notebook "
                f"is that pipeline, name it so: %pipeline config --name {owner}",
            )
        arn = execution
    what = f"reading execution {arn}"
    try:
        described = client.describe_pipeline_execution(PipelineExecutionArn=arn)
        definition = json.loads(
            client.describe_pipeline_definition_for_execution(PipelineExecutionArn=arn)["PipelineDefinition"]
        )
        latest = last_attempts(client, arn)
        parameters = {
            p["Name"]: p["Value"]
            for p in _pages(
                client.list_pipeline_parameters_for_execution, "PipelineParameters", PipelineExecutionArn=arn
            )
        }
    except Exception as exc:  # noqa: BLE001 - botocore's errors, said by cause
        raise aws_error(
            exc,
            what,
            denied_fix="give your credentials sagemaker:DescribePipelineExecution, "
            "DescribePipelineDefinitionForExecution, ListPipelineExecutionSteps and "
            "ListPipelineParametersForExecution",
        ) from None
    from jupyter_smstep.sdk.content import definition_keys

    keys = definition_keys(definition)
    children = for_each_children(definition)
    renamed = foreach.named_back(latest)  # a fan-out's gather, in the notebook's name
    steps = {}
    for name, row in latest.items():
        if name in renamed.values():  # (a row of a ForEach's body itself is its children's)
            continue
        body, siblings = children.get(name, (name, ()))
        mine = renamed.get(name, name)
        steps[mine] = RemoteStep(mine, str(row.get("StepStatus", "")), training_job(row), keys.get(body), siblings)
    return RemoteExecution(arn, pipeline, str(described.get("PipelineExecutionStatus", "")), steps, parameters)


def for_each_children(definition: Mapping[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each child of a ForEach (``<body>-<i>``, as the service lists it) -> (its body step, whose content key it
    carries, and all the children, which share it)."""
    from jupyter_smstep.core.conditions import definition_steps

    children: dict[str, tuple[str, tuple[str, ...]]] = {}
    for raw, _ in definition_steps(definition):
        arguments = raw.get("Arguments") or {}
        if raw.get("Type") != "ForEach" or not isinstance(arguments.get("IterableItems"), list):
            continue
        for body in arguments.get("ForEachBody") or []:
            name = str(body.get("Name"))
            names = tuple(foreach.iteration_name(name, i) for i in range(len(arguments["IterableItems"])))
            children.update(dict.fromkeys(names, (name, names)))
    return children


def _latest(client: Any, pipeline: str) -> str:
    try:
        page = client.list_pipeline_executions(
            PipelineName=pipeline, SortBy="CreationTime", SortOrder="Descending", MaxResults=1
        )
    except Exception as exc:  # noqa: BLE001
        raise aws_error(
            exc,
            f"listing the executions of pipeline {pipeline!r}",
            denied_fix="give your credentials sagemaker:ListPipelineExecutions",
        ) from None
    rows = page.get("PipelineExecutionSummaries", [])
    if not rows:
        raise SmstepError(
            f"pipeline {pipeline!r} has no execution on SageMaker",
            fix="start one with %pipeline submit (smstep submit NB)",
        )
    return str(rows[0]["PipelineExecutionArn"])


def last_attempts(client: Any, arn: str) -> dict[str, dict]:
    """Step name -> the row of its last attempt (``ListPipelineExecutionSteps``, every page): the one that
    counts after a retry."""
    latest: dict[str, dict] = {}
    for row in _pages(client.list_pipeline_execution_steps, "PipelineExecutionSteps", PipelineExecutionArn=arn):
        name = str(row.get("StepName"))
        if name not in latest or (row.get("AttemptCount") or 0) > (latest[name].get("AttemptCount") or 0):
            latest[name] = row
    return latest


def training_job(row: Mapping[str, Any]) -> str:
    """The training job a ``ListPipelineExecutionSteps`` row ran ("" for a condition or a fail step)."""
    return str((row.get("Metadata") or {}).get("TrainingJob", {}).get("Arn", "")).rsplit("/", 1)[-1]


def _pages(call: Any, key: str, **kwargs: Any) -> list[dict]:
    out: list[dict] = []
    while True:
        page = call(**kwargs)
        out += page.get(key, [])
        if not page.get("NextToken"):
            return out
        kwargs["NextToken"] = page["NextToken"]


def changed(remote: RemoteExecution, keys: Mapping[str, Any], steps: Iterable[str]) -> dict[str, str]:
    """Step -> why the execution's step is not what the notebook builds now (empty: every one is)."""
    out = {}
    for name in steps:
        step = remote.steps.get(name)
        if step is None:
            continue
        if step.key is None:
            out[name] = "its definition was not built by jupyter_smstep (no content key): it cannot be checked"
        elif step.shared and all(n in keys for n in step.shared):  # a ForEach's child: its body, for every item
            if step.key != shared([keys[n] for n in step.shared], list(step.shared)).short:
                out[name] = (
                    "its ForEach step runs other code, captured values, settings, files or items now "
                    "(one of its iterations changed since the execution's submit)"
                )
        elif name in keys and step.key != keys[name].short:
            out[name] = "its code, captured values, settings or files changed since the execution's submit"
    return out


def refuse_changed(remote: RemoteExecution, why: Mapping[str, str], flag: str) -> None:
    if why:
        raise SmstepError(
            [
                Problem(
                    f"{remote.label(name)} is not what this notebook builds now: {reason}",
                    fix=f"submit again (%pipeline submit) and use the new execution, or pass {flag} to use it anyway",
                )
                for name, reason in why.items()
            ]
        )


def own_root(session: Any, pipeline: str) -> str:
    """The S3 prefix the SDK gives this notebook's pipeline: ``S3RootUri`` (config.yaml), else the session's
    default bucket (and prefix), then the pipeline's name."""

    root = sdk_config.remote_function_config(sdk_config.load_sdk_config(), "S3RootUri")
    if not root:
        prefix = getattr(session, "default_bucket_prefix", None)
        root = f"s3://{session.default_bucket()}" + (f"/{prefix}" if prefix else "")
    return f"{str(root).rstrip('/')}/{pipeline}"


def results_uri(session: Any, remote: RemoteExecution, step: str, root: str) -> str:
    """The S3 folder of ``step``'s results, checked to lie under ``root``."""
    job = remote.steps[step].job_name
    try:
        described = session.sagemaker_client.describe_training_job(TrainingJobName=job)
    except Exception as exc:  # noqa: BLE001
        raise aws_error(
            exc,
            f"describing training job {job} ({remote.label(step)})",
            denied_fix="give your credentials sagemaker:DescribeTrainingJob",
        ) from None
    uri = str((described.get("OutputDataConfig") or {}).get("S3OutputPath", "")).rstrip("/")
    if not uri.endswith("/results"):  # the SDK's oldest layout: base only (``get_function_step_result``)
        uri = f"{uri}/{remote.id}/{step}/results"
    if not uri.startswith(root.rstrip("/") + "/") or "/../" in uri:
        raise SmstepError(
            f"the results of {remote.label(step)} are at {uri}, outside this pipeline's own S3 root {root}: not read",
            fix="read results only from executions this notebook submitted; if the root moved "
            "(S3RootUri in config.yaml), set it back",
        )
    return uri


def load(session: Any, remote: RemoteExecution, step: str, root: str) -> dict[str, Any]:
    """``step``'s outputs (name -> value), read by the SDK after the root and hash checks."""
    from jupyter_smstep.sdk import results

    uri = results_uri(session, remote, step, root)
    try:
        value = results.load(session, uri)
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001 - the SDK's integrity error, botocore's, an unpickling one
        raise SmstepError(
            f"could not read the results of {remote.label(step)} from {uri}: {exc}",
            fix="see the step's log in the console; a hash mismatch means the object was changed "
            "after the job wrote it",
        ) from None
    return dict(value) if isinstance(value, Mapping) else {}


def download(session: Any, remote: RemoteExecution, step: str, root: str, folder: Path) -> Path:
    """``step``'s results folder, copied into ``folder`` (unpickled by nobody here) after the root and hash
    checks; returns ``folder``."""
    uri = results_uri(session, remote, step, root)
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    s3 = session.boto_session.client("s3")
    folder.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES:
        try:
            body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{name}")["Body"].read()
        except Exception as exc:  # noqa: BLE001
            if name == "results.json":
                continue  # the SDK writes it only for JSON-able outputs
            raise aws_error(
                exc,
                f"downloading {uri}/{name} ({remote.label(step)})",
                denied_fix="give your credentials s3:GetObject on the pipeline's bucket",
            ) from None
        (folder / name).write_bytes(body)
    try:
        expected = json.loads((folder / "metadata.json").read_bytes()).get("sha256_hash")
    except ValueError:
        expected = None
    actual = hashlib.sha256((folder / "payload.pkl").read_bytes()).hexdigest()
    if expected != actual:
        for name in os.listdir(folder):
            (folder / name).unlink()
        raise SmstepError(
            f"the results of {remote.label(step)} at {uri} do not match the SHA-256 in their metadata.json: not used",
            fix="the object was changed after the job wrote it; run the execution again",
        )
    return folder
