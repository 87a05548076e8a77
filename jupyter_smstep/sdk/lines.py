"""Which SageMaker SDK line is installed, and where each piece lives in it: read without importing the SDK.

The export and the local runner's worker read the table as :mod:`.compat` does; :mod:`.patches` finds the private
parts it touches through it.
"""

from __future__ import annotations

import importlib.metadata

from jupyter_smstep.errors import ServiceError


#: Where each piece lives in each SDK line: the one table of module paths (the export and the
#: local runner's worker read it too, without importing the SDK).
MODULES: dict[int, dict[str, str]] = {
    2: {
        "function_step": "sagemaker.workflow.function_step",
        "pipeline": "sagemaker.workflow.pipeline",
        "pipeline_context": "sagemaker.workflow.pipeline_context",
        "pipeline_definition_config": "sagemaker.workflow.pipeline_definition_config",
        "parameters": "sagemaker.workflow.parameters",
        "retry": "sagemaker.workflow.retry",
        "spark_config": "sagemaker.remote_function.spark_config",
        "remote_function": "sagemaker.remote_function",
        "session_helper": "sagemaker.session",
        "step_outputs": "sagemaker.workflow.step_outputs",
        "steps_compiler": "sagemaker.workflow._steps_compiler",
        "selective_execution_config": "sagemaker.workflow.selective_execution_config",
        "steps": "sagemaker.workflow.steps",
        "conditions": "sagemaker.workflow.conditions",
        "condition_step": "sagemaker.workflow.condition_step",
        "fail_step": "sagemaker.workflow.fail_step",
        "functions": "sagemaker.workflow.functions",
        "triggers": "sagemaker.workflow.triggers",
        "execution_variables": "sagemaker.workflow.execution_variables",
    },
    3: {
        "function_step": "sagemaker.mlops.workflow.function_step",
        "pipeline": "sagemaker.mlops.workflow.pipeline",
        "pipeline_context": "sagemaker.core.workflow.pipeline_context",
        "pipeline_definition_config": "sagemaker.core.workflow.pipeline_definition_config",
        "parameters": "sagemaker.core.workflow.parameters",
        "retry": "sagemaker.mlops.workflow.retry",
        "spark_config": "sagemaker.core.remote_function.spark_config",
        "remote_function": "sagemaker.core.remote_function",
        "session_helper": "sagemaker.core.helper.session_helper",
        "step_outputs": "sagemaker.core.workflow.step_outputs",
        "steps_compiler": "sagemaker.mlops.workflow._steps_compiler",
        "selective_execution_config": "sagemaker.mlops.workflow.selective_execution_config",
        "steps": "sagemaker.mlops.workflow.steps",
        "conditions": "sagemaker.core.workflow.conditions",
        "condition_step": "sagemaker.mlops.workflow.condition_step",
        "fail_step": "sagemaker.mlops.workflow.fail_step",
        "functions": "sagemaker.core.workflow.functions",
        "triggers": "sagemaker.mlops.workflow.triggers",
        "execution_variables": "sagemaker.core.workflow.execution_variables",
    },
}


def modules(major: int | None = None) -> dict[str, str]:
    """The module table for an SDK line (default: the installed one), without importing the SDK."""
    if major is None:
        major = installed_major()
    return MODULES[3 if major >= 3 else 2]


def installed_version() -> str | None:
    """The installed SDK version, read from metadata without importing it."""
    try:
        return importlib.metadata.version("sagemaker")
    except importlib.metadata.PackageNotFoundError:
        return None


def installed_major() -> int:
    """The installed SDK's major version; :class:`ServiceError` when it is not installed."""
    version = installed_version()
    if version is None:
        raise ServiceError("the SageMaker Python SDK is not installed", fix="pip install 'sagemaker>=2.245'")
    return int(version.split(".")[0])
