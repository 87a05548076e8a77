"""Sessions for the SDK: a ``PipelineSession`` that honours the user's AWS environment.

``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_S3`` / ``_SAGEMAKER``) are read
by botocore itself; :func:`make_session` with ``endpoint_url`` binds every
client the SDK makes to one endpoint (how the local runner points the SDK at
its embedded S3) without touching ``os.environ``.
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_smstep.errors import SmstepError, aws_error
from jupyter_smstep.sdk.compat import load


def make_session(
    *,
    region: str | None = None,
    bucket: str | None = None,
    endpoint_url: str | None = None,
    boto_session: Any = None,
) -> Any:
    """A ``PipelineSession`` honouring the standard AWS environment.

    ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_S3`` / ``_SAGEMAKER``) are read
    by botocore itself; ``endpoint_url`` forces one endpoint for every client,
    which is how the local runner points the SDK at its embedded S3.
    """
    import boto3

    sdk = load()
    if boto_session is None:
        from jupyter_smstep.sdk.compat import aws_region

        region = region or aws_region()
        boto_session = boto3.Session(region_name=region) if region else boto3.Session()
    kwargs: dict[str, Any] = {"boto_session": boto_session}
    if endpoint_url:
        kwargs["sagemaker_client"] = boto_session.client("sagemaker", endpoint_url=endpoint_url)
        kwargs["s3_client"] = boto_session.client("s3", endpoint_url=endpoint_url)
        kwargs["s3_resource"] = boto_session.resource("s3", endpoint_url=endpoint_url)
    if bucket:
        kwargs["default_bucket"] = bucket
    try:
        session = _construct_session(sdk.PipelineSession, kwargs)
        if not bucket and not endpoint_url and os.environ.get("AWS_ENDPOINT_URL"):
            _resolve_default_bucket(session, boto_session)
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore's and the SDK's own errors, said by cause
        raise aws_error(exc, "connecting to AWS (the SageMaker session and its default bucket)") from None
    return session


def _resolve_default_bucket(session: Any, boto_session: Any) -> None:
    """Find the SDK's default bucket through clients that honour ``AWS_ENDPOINT_URL``.

    The SDK asks STS for the account on its hard-coded regional endpoint, which
    ignores ``AWS_ENDPOINT_URL``; resolving the bucket here keeps every call on
    the endpoint the user chose.
    """
    region = boto_session.region_name
    account = boto_session.client("sts").get_caller_identity()["Account"]
    name = f"sagemaker-{region}-{account}"
    s3 = boto_session.client("s3")
    try:
        s3.head_bucket(Bucket=name)
    except Exception:  # noqa: BLE001 - missing: create it, as the SDK would
        config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **config)
    from jupyter_smstep.sdk import patches

    patches.set_default_bucket(session, name)


def _construct_session(cls: Any, kwargs: dict[str, Any]) -> Any:
    """PipelineSession's keyword set differs slightly between lines; pass what it takes."""
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    s3_client = kwargs.pop("s3_client", None)
    s3_resource = kwargs.pop("s3_resource", None)
    session = cls(**{k: v for k, v in kwargs.items() if k in accepted})
    if s3_client is not None:
        session.s3_client = s3_client
        session.s3_resource = s3_resource
    return session


def execution_role(session: Any) -> str:
    """The SDK's guess of the role to create the pipeline with (works inside SageMaker only)."""
    try:
        return load().get_execution_role(session)
    except Exception:  # noqa: BLE001 - outside SageMaker it cannot know; say how to fix it
        raise SmstepError(
            "no IAM role to create the pipeline with (outside SageMaker the SDK cannot guess one)",
            fix="%pipeline config --role arn:aws:iam::ACCOUNT:role/NAME",
        ) from None
