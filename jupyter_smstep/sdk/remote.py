"""``%%remote``: one cell as a SageMaker training job, through the SDK's remote function (``@remote``).

The cell becomes the same function a ``%%step`` cell becomes (``sdk.build``: its
captured values and imports carried the same way, its settings resolved the same
way), started with the SDK's own job machinery (``_JobSettings``, ``_Job``: what
``@remote`` does inside, used here so the job can be stopped). While it runs, the
SDK streams the job's log lines; the kernel's stop button (KeyboardInterrupt)
stops the training job; a failure raises the cell's own exception as the job
pickled it; success returns the variables the cell assigned.

The only importer of sagemaker is ``sdk`` (this module loads it through ``compat``).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core.model import PipelineGraph, check_buildable
from jupyter_smstep.errors import Problem, RunFailed, SmstepError, aws_error
from jupyter_smstep.sdk.compat import load

#: ``@step`` keywords a remote function has no use for (it is no pipeline step)
NOT_REMOTE = ("name", "display_name", "description", "retry_policies")


def job_arguments(graph: PipelineGraph, namespace: Mapping[str, Any], root: Path | None = None) -> dict[str, Any]:
    """The remote function's job settings for the graph's one step, as SDK objects."""
    from jupyter_smstep.sdk import requirements, stepargs

    sdk = load()
    node = graph.steps[0]
    kwargs = stepargs.to_sdk(stepargs.step_arguments(node, root), sdk)
    if kwargs.get("dependencies") == requirements.AUTO:
        kwargs["dependencies"] = requirements.auto_files(graph.steps, namespace)[node.name]
    accepted = set(inspect.signature(_client()._JobSettings.__init__).parameters)
    return {k: v for k, v in kwargs.items() if k not in NOT_REMOTE and k in accepted}


def _client() -> Any:
    return importlib.import_module(f"{load().remote_function.__name__}.client")


def run(
    graph: PipelineGraph, namespace: Mapping[str, Any], session: Any = None, root: Path | None = None
) -> tuple[dict[str, Any], str]:
    """Run the graph's one step as a training job; (the variables it assigned, the job's name)."""
    from jupyter_smstep.sdk import build
    from jupyter_smstep.sdk.session import make_session

    check_buildable(graph)
    node = graph.steps[0]
    function = build.step_functions(graph, namespace)[node.name]
    client = _client()
    session = session or make_session()
    try:
        settings = client._JobSettings(sagemaker_session=session, **job_arguments(graph, namespace, root))
        job = client._Job.start(settings, function, [], {})
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001 - the SDK's and botocore's errors, said by cause
        raise aws_error(
            exc,
            "starting the training job for %%remote",
            denied_fix="give your credentials sagemaker:CreateTrainingJob and iam:PassRole on the "
            "role, and the role S3 access to the SDK's bucket",
        ) from None
    try:
        job.wait()  # streams the job's log lines
    except KeyboardInterrupt:
        job.stop()
        raise KeyboardInterrupt(f"stopped training job {job.job_name}") from None
    except client.UnexpectedStatusException as exc:
        if getattr(exc, "actual_status", None) == "Failed":
            try:
                error = client.serialization.deserialize_exception_from_s3(
                    sagemaker_session=session,
                    s3_uri=client.s3_path_join(settings.s3_root_uri, job.job_name, client.EXCEPTION_FOLDER),
                )
            except Exception:  # noqa: BLE001 - no exception was stored: the job failed before the cell ran
                reason = job.describe().get("FailureReason") or "no reason given"
                raise RunFailed(
                    Problem(
                        f"training job {job.job_name} failed before the cell ran: {reason}",
                        fix="see the job's log in CloudWatch (/aws/sagemaker/TrainingJobs)",
                    )
                ) from None
            raise error from None
        raise
    status = job.describe()["TrainingJobStatus"]
    if status != "Completed":
        raise RunFailed(Problem(f"training job {job.job_name} ended {status}", fix="see the job in the console"))
    result = client.serialization.deserialize_obj_from_s3(
        sagemaker_session=session, s3_uri=client.s3_path_join(settings.s3_root_uri, job.job_name, client.RESULTS_FOLDER)
    )
    return (dict(result) if isinstance(result, Mapping) else {}), str(job.job_name)
