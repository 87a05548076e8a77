"""Submit a pipeline to SageMaker: upsert the definition and start an execution.

Talks to the real service through boto3 and the SDK (``AWS_ENDPOINT_URL``,
profiles and region honoured as usual). Monitoring lives in ``monitor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .errors import Problem, SmstepError
from .graph import PipelineGraph


@dataclass(frozen=True)
class Submission:
    pipeline_arn: str
    execution_arn: str
    region: str

    @property
    def console_url(self) -> str:
        return console_url(self.execution_arn, self.region)

    def to_json(self) -> dict[str, str]:
        return {"pipeline_arn": self.pipeline_arn, "execution_arn": self.execution_arn,
                "console_url": self.console_url}


def console_url(execution_arn: str, region: str) -> str:
    # arn:aws:sagemaker:REGION:ACCOUNT:pipeline/NAME/execution/ID
    parts = execution_arn.split(":", 5)[-1].split("/")
    name, exec_id = (parts[1], parts[3]) if len(parts) >= 4 else ("", "")
    return (f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}"
            f"#/pipelines/{name}/executions/{exec_id}")


def pipeline_role(graph: PipelineGraph) -> str | None:
    """The role the pipeline itself runs as: the notebook-wide (or first step's) role."""
    for node in graph.steps:
        if "role" in node.settings:
            return node.settings["role"].value
    return None


def submit(graph: PipelineGraph, namespace: Mapping[str, Any], parameters: Mapping[str, Any],
           session: Any = None, display_name: str | None = None) -> Submission:
    from . import compile as compile_mod, sdk
    from .workspace import coerce_overrides

    if session is None:
        session = sdk.make_session()
    compiled = compile_mod.build_pipeline(graph, namespace, session)
    role = pipeline_role(graph)
    if role is None:
        try:
            from sagemaker import get_execution_role  # v2
        except ImportError:  # v3
            from sagemaker.core.helper.session_helper import get_execution_role
        try:
            role = get_execution_role(session)
        except Exception:  # noqa: BLE001
            raise SmstepError("no IAM role to create the pipeline with",
                              fix="%pipeline config --role arn:aws:iam::ACCOUNT:role/NAME") from None
    pipeline = compiled.pipeline
    try:
        response = pipeline.upsert(role_arn=role, description=f"jupyter_smstep pipeline {graph.name}")
        kwargs: dict[str, Any] = {"parameters": coerce_overrides(graph, parameters) or None}
        if display_name:
            kwargs["execution_display_name"] = display_name[:82]
        execution = pipeline.start(**kwargs)
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001 - say what failed without the SDK's traceback
        raise SmstepError(Problem(f"submitting pipeline {graph.name!r} failed: {type(exc).__name__}: {exc}",
                                  fix="check credentials, region, the role's permissions and the endpoint")) from None
    return Submission(response["PipelineArn"], execution.arn, session.boto_region_name)
