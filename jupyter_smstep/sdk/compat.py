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

import contextlib
import functools
import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from collections.abc import Iterator

from jupyter_smstep.sdk.lines import MODULES, installed_major, installed_version, modules

__all__ = ["MODULES", "Sdk", "installed_major", "installed_version", "load", "modules"]


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
    SageMakerJobExceptionTypeEnum: Any
    SparkConfig: Any
    get_execution_role: Any
    get_step: Any  # DelayedReturn -> its step (add_depends_on for order-only dependencies)
    SelectiveExecutionConfig: Any
    ConditionStep: Any
    FailStep: Any
    Join: Any
    PipelineSchedule: Any
    ExecutionVariables: Any
    conditions: ModuleType  # ConditionEquals, ConditionGreaterThan, ... ConditionIn, ConditionNot, ConditionOr
    remote_function: ModuleType
    invoke_function_module: str  # run as ``python -m <this>`` inside the container
    ForEachStep: Any = None  # v3 3.27+; None before (a fan-out is then expanded: ``sdk.build``)

    def __getattr__(self, name: str) -> Any:
        """``sdk.ConditionGreaterThan`` and the other ``Condition*`` classes (a spec names them so)."""
        if name.startswith("Condition"):
            return getattr(self.conditions, name)
        raise AttributeError(name)

    @property
    def errors_module(self) -> ModuleType:
        """``remote_function.errors``: holds the hard-coded failure-file path."""
        return importlib.import_module(f"{self.remote_function.__name__}.errors")


@functools.cache
def load() -> Sdk:
    """Import the SDK (v2 or v3) and return its classes. Cached."""
    major = installed_major()
    version = installed_version() or ""
    _quiet_sdk_loggers()  # before the imports too: the SDK keeps a level that is already set
    table = modules(major)
    with _import_environment(major):
        mod = {key: importlib.import_module(path) for key, path in table.items()}
    if major >= 3:
        from jupyter_smstep.sdk import patches

        patches.memoize_config_validation()
    _quiet_sdk_loggers()  # after the imports: the SDK sets its loggers' levels when imported
    retry = mod["retry"]
    return Sdk(
        major=major,
        version=version,
        step=mod["function_step"].step,
        Pipeline=mod["pipeline"].Pipeline,
        PipelineSession=mod["pipeline_context"].PipelineSession,
        PipelineDefinitionConfig=mod["pipeline_definition_config"].PipelineDefinitionConfig,
        DelayedReturn=mod["function_step"].DelayedReturn,
        ParameterString=mod["parameters"].ParameterString,
        ParameterInteger=mod["parameters"].ParameterInteger,
        ParameterFloat=mod["parameters"].ParameterFloat,
        ParameterBoolean=mod["parameters"].ParameterBoolean,
        StepRetryPolicy=retry.StepRetryPolicy,
        SageMakerJobStepRetryPolicy=retry.SageMakerJobStepRetryPolicy,
        StepExceptionTypeEnum=retry.StepExceptionTypeEnum,
        SageMakerJobExceptionTypeEnum=retry.SageMakerJobExceptionTypeEnum,
        SparkConfig=mod["spark_config"].SparkConfig,
        get_execution_role=mod["session_helper"].get_execution_role,
        get_step=mod["step_outputs"].get_step,
        SelectiveExecutionConfig=mod["selective_execution_config"].SelectiveExecutionConfig,
        ConditionStep=mod["condition_step"].ConditionStep,
        FailStep=mod["fail_step"].FailStep,
        Join=mod["functions"].Join,
        PipelineSchedule=mod["triggers"].PipelineSchedule,
        ExecutionVariables=mod["execution_variables"].ExecutionVariables,
        conditions=mod["conditions"],
        remote_function=mod["remote_function"],
        invoke_function_module=f"{table['remote_function']}.invoke_function",
        ForEachStep=_for_each_step(major),
    )


def _for_each_step(major: int) -> Any:
    if major < 3:
        return None
    try:
        from sagemaker.mlops.workflow.for_each_step import ForEachStep
    except ImportError:  # before 3.27
        return None
    return ForEachStep


@contextlib.contextmanager
def _import_environment(major: int) -> Iterator[None]:
    """The environment the SDK's import needs, for the import's duration only.

    v2 prints a deprecation banner unless ``SAGEMAKER_SUPPRESS_V2_WARNING`` is
    set (noise in a notebook); v3's ``sagemaker.mlops`` import fails without a
    region, so when neither the environment nor the AWS config names one it gets
    ``us-east-1``. Both are read at import time; afterwards the user's
    environment is as it was.
    """
    added: list[str] = []
    if "SAGEMAKER_SUPPRESS_V2_WARNING" not in os.environ:
        added.append("SAGEMAKER_SUPPRESS_V2_WARNING")
        os.environ["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
    if major >= 3 and not os.environ.get("AWS_DEFAULT_REGION"):
        import boto3

        if boto3.session.Session().region_name is None:
            added.append("AWS_DEFAULT_REGION")
            os.environ["AWS_DEFAULT_REGION"] = aws_region() or "us-east-1"
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def aws_region() -> str | None:
    """The region the user set: botocore's (AWS_DEFAULT_REGION, the profile), else ``AWS_REGION``, which the
    AWS CLI and most SDKs honour but this botocore does not."""
    import boto3

    return boto3.session.Session().region_name or os.environ.get("AWS_REGION") or None


def _quiet_sdk_loggers() -> None:
    import logging

    for name in (
        "sagemaker.config",
        "sagemaker.remote_function",
        "sagemaker.core.remote_function",
        "sagemaker.workflow.utilities",
        "sagemaker.core.workflow.utilities",
    ):
        logging.getLogger(name).setLevel(logging.ERROR if name.endswith("utilities") else logging.WARNING)
    # The SDK's usage telemetry logs its own failures (offline: "Request exception: HTTPSConnectionPool ..."
    # at ERROR, with a traceback) into the user's output; they say nothing about the user's pipeline.
    for name in ("sagemaker.telemetry", "sagemaker.core.telemetry"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
