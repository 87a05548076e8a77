"""The one module that imports the SageMaker Python SDK.

Two SDK lines matter: v2 (``sagemaker.workflow.*``, pinned by Studio's
SageMaker Distribution images) and v3 (``sagemaker.mlops.workflow.*`` plus
``sagemaker.core.*``, PyPI's latest). Their ``@step`` signatures are identical;
only the import paths differ. :func:`load` imports whichever is installed, once,
and hands the rest of the package a small namespace of the classes it needs.

Importing the SDK takes seconds, so nothing here runs at ``%load_ext`` time:
callers ask for :func:`load` when they first compile a pipeline.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Sdk:
    """The SDK classes jupyter_smstep uses, whatever the SDK line."""

    major: int
    version: str
    step: Any
    Pipeline: Any
    PipelineSession: Any
    PipelineDefinitionConfig: Any
    DelayedReturn: Any
    ParameterString: Any
    ParameterInteger: Any
    ParameterFloat: Any
    ParameterBoolean: Any
    StepRetryPolicy: Any
    SageMakerJobStepRetryPolicy: Any
    StepExceptionTypeEnum: Any
    SparkConfig: Any
    remote_function: ModuleType
    invoke_function_module: str  # run as ``python -m <this>`` inside the container

    @property
    def errors_module(self) -> ModuleType:
        """``remote_function.errors``: holds the hard-coded failure-file path."""
        return importlib.import_module(f"{self.remote_function.__name__}.errors")


def installed_version() -> str | None:
    """The installed SDK version, read from metadata without importing it."""
    try:
        return importlib.metadata.version("sagemaker")
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def load() -> Sdk:
    """Import the SDK (v2 or v3) and return its classes. Cached."""
    version = installed_version()
    if version is None:
        from .errors import SmstepError

        raise SmstepError(
            "the SageMaker Python SDK is not installed",
            fix="pip install 'sagemaker>=2.245'",
        )
    # The v2 deprecation banner and config-file INFO lines are noise in a notebook.
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    _quiet_sdk_loggers()  # before the imports too: the SDK keeps a level that is already set
    major = int(version.split(".")[0])
    if major >= 3:
        # v3's sagemaker.mlops import needs a region; boto3's own lookup may find none.
        if not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            import boto3

            if boto3.session.Session().region_name is None:
                os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
        from sagemaker.core.remote_function import spark_config
        from sagemaker.core.workflow import parameters, pipeline_context, pipeline_definition_config
        from sagemaker.mlops.workflow import function_step, pipeline, retry
        import sagemaker.core.remote_function as remote_function

        invoke = "sagemaker.core.remote_function.invoke_function"
        _memoize_config_validation()
    else:
        from sagemaker.remote_function import spark_config
        from sagemaker.workflow import (
            function_step,
            parameters,
            pipeline,
            pipeline_context,
            pipeline_definition_config,
            retry,
        )
        import sagemaker.remote_function as remote_function

        invoke = "sagemaker.remote_function.invoke_function"
    _quiet_sdk_loggers()  # after the imports: the SDK sets its loggers' levels when imported
    return Sdk(
        major=major,
        version=version,
        step=function_step.step,
        Pipeline=pipeline.Pipeline,
        PipelineSession=pipeline_context.PipelineSession,
        PipelineDefinitionConfig=pipeline_definition_config.PipelineDefinitionConfig,
        DelayedReturn=function_step.DelayedReturn,
        ParameterString=parameters.ParameterString,
        ParameterInteger=parameters.ParameterInteger,
        ParameterFloat=parameters.ParameterFloat,
        ParameterBoolean=parameters.ParameterBoolean,
        StepRetryPolicy=retry.StepRetryPolicy,
        SageMakerJobStepRetryPolicy=retry.SageMakerJobStepRetryPolicy,
        StepExceptionTypeEnum=retry.StepExceptionTypeEnum,
        SparkConfig=spark_config.SparkConfig,
        remote_function=remote_function,
        invoke_function_module=invoke,
    )


def _memoize_config_validation() -> None:
    """v3 re-validates the whole config.yaml against its JSON schema on every lookup.

    That is ~0.5 s a time and ~15 lookups per step built, so a Studio admin
    config made a 10-step build take over a minute. Validation depends only on
    the config's content, so remember the configs that passed.
    """
    import json

    from sagemaker.core.config.config_manager import SageMakerConfig

    original = SageMakerConfig.__dict__["validate_sagemaker_config"].__func__
    if getattr(original, "_smstep_memo", False):
        return
    valid: set[str] = set()

    def validate(sagemaker_config=None):
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in valid:
            original(sagemaker_config)  # raises on an invalid config, which is then not remembered
            valid.add(key)

    validate._smstep_memo = True  # type: ignore[attr-defined]
    SageMakerConfig.validate_sagemaker_config = staticmethod(validate)


def _quiet_sdk_loggers() -> None:
    import logging

    for name in ("sagemaker.config", "sagemaker.remote_function", "sagemaker.core.remote_function",
                 "sagemaker.workflow.utilities", "sagemaker.core.workflow.utilities"):
        logging.getLogger(name).setLevel(logging.ERROR if name.endswith("utilities") else logging.WARNING)


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
        boto_session = boto3.Session(region_name=region) if region else boto3.Session()
    kwargs: dict[str, Any] = {"boto_session": boto_session}
    if endpoint_url:
        kwargs["sagemaker_client"] = boto_session.client("sagemaker", endpoint_url=endpoint_url)
        kwargs["s3_client"] = boto_session.client("s3", endpoint_url=endpoint_url)
        kwargs["s3_resource"] = boto_session.resource("s3", endpoint_url=endpoint_url)
    if bucket:
        kwargs["default_bucket"] = bucket
    session = _construct_session(sdk.PipelineSession, kwargs)
    if not bucket and not endpoint_url and os.environ.get("AWS_ENDPOINT_URL"):
        _resolve_default_bucket(session, boto_session)
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
    session._default_bucket = name  # the SDK's own cache of default_bucket()


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
