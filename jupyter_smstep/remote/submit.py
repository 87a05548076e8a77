"""Submit a pipeline to SageMaker: upsert the definition and start an execution.

Talks to the real service through boto3 and the SDK (``AWS_ENDPOINT_URL``,
profiles and region honoured as usual). Monitoring lives in ``monitor``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.errors import SmstepError, aws_error
from jupyter_smstep.core.graph import PipelineGraph, pipeline_role


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


def submit(graph: PipelineGraph, namespace: Mapping[str, Any], parameters: Mapping[str, Any],
           session: Any = None, display_name: str | None = None, root: Path | None = None) -> Submission:
    """Upsert the pipeline and start an execution with ``parameters`` (already checked and coerced)."""
    from jupyter_smstep import sdk
    from jupyter_smstep.sdk import build

    if session is None:
        session = sdk.make_session()
    compiled = build.build_pipeline(graph, namespace, session, root=root)
    role = pipeline_role(graph) or sdk.execution_role(session)
    pipeline = compiled.pipeline
    try:
        with compiled.building():  # content-addressed: unchanged steps are not uploaded again
            response = pipeline.upsert(role_arn=role, description=f"jupyter_smstep pipeline {graph.name}")
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001 - say what failed without the SDK's traceback
        raise aws_error(exc, f"creating pipeline {graph.name!r} on SageMaker",
                        denied_fix="give your credentials sagemaker:CreatePipeline/UpdatePipeline and "
                        "iam:PassRole on the pipeline's role") from None
    kwargs: dict[str, Any] = {"parameters": dict(parameters) or None}
    if display_name:
        kwargs["execution_display_name"] = display_name[:82]
    try:
        execution = pipeline.start(**kwargs)
    except Exception as exc:  # noqa: BLE001
        error = aws_error(exc, f"starting pipeline {graph.name!r} (it was created: {response['PipelineArn']})",
                          denied_fix="give your credentials sagemaker:StartPipelineExecution")
        raise error from None
    return Submission(response["PipelineArn"], execution.arn, session.boto_region_name)
