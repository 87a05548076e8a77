"""Graph -> SageMaker ``Pipeline``: generated functions wrapped with the SDK's ``@step``.

Every link is passed as its own top-level argument (the SDK rejects a
``DelayedReturn`` nested in a list or dict). Captured kernel values become the
step function's globals, so the SDK's cloudpickle ships them by value; each is
test-pickled first so that an open file or a client fails here, named, rather
than deep inside the SDK.
"""

from __future__ import annotations

import builtins
import linecache
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from . import codegen, sdk as sdk_mod
from .errors import Problem, Report, SmstepError
from .graph import PipelineGraph, StepNode, LARGE_CAPTURE_BYTES

#: Settings handed to @step as they are; the others are converted below.
_PASSTHROUGH = {
    "display_name", "description", "dependencies", "pre_execution_commands", "pre_execution_script",
    "environment_variables", "image_uri", "instance_count", "instance_type", "job_conda_env",
    "job_name_prefix", "keep_alive_period_in_seconds", "max_retry_attempts", "max_runtime_in_seconds",
    "role", "security_group_ids", "subnets", "volume_kms_key", "volume_size",
    "encrypt_inter_container_traffic", "use_spot_instances", "max_wait_time_in_seconds",
}


@dataclass
class Compiled:
    pipeline: Any  # sagemaker Pipeline
    graph: PipelineGraph
    functions: dict[str, Callable[..., Any]]
    captured_sizes: dict[str, dict[str, int]] = field(default_factory=dict)  # step -> var -> pickled bytes


def check_graph(graph: PipelineGraph) -> None:
    """Refuse to build a graph with errors (nothing is uploaded)."""
    if not graph.steps and not graph.report.errors:
        raise SmstepError("the notebook has no %%step cells", fix="mark a cell with %%step NAME and run it")
    graph.report.raise_if_errors()


def make_functions(graph: PipelineGraph, namespace: Mapping[str, Any]) -> tuple[dict[str, Callable], dict[str, dict[str, int]], Report]:
    """The step functions, with captured values checked for picklability and size."""
    import cloudpickle

    report = Report()
    names = codegen.function_names(graph)
    functions: dict[str, Callable] = {}
    sizes: dict[str, dict[str, int]] = {}
    for node in graph.steps:
        fname = names[node.name]
        filename = f"<%%step {node.name}>"
        glb: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        sizes[node.name] = {}
        for inp in node.captured:
            value = namespace[inp.name]
            try:
                size = len(cloudpickle.dumps(value))
            except Exception as exc:  # noqa: BLE001 - any pickling failure is the user's to fix
                report.error(
                    f"captures {inp.name!r} ({type(value).__name__}) from the kernel, but it cannot be pickled "
                    f"({type(exc).__name__}: {exc})",
                    fix=f"create {inp.name!r} inside the step (open files, clients, locks and sockets do not "
                    "travel), or pass what it is made from",
                    step=node.name, line=inp.line + 1)
                continue
            sizes[node.name][inp.name] = size
            if size > LARGE_CAPTURE_BYTES:
                report.warn(f"captures {inp.name!r}, {size / 2**20:.1f} MiB pickled, into the step's code upload",
                            fix=f"load {inp.name!r} from S3 inside the step, or make it a step output",
                            step=node.name, line=inp.line + 1)
            glb[inp.name] = value
        code = compile(codegen.function_code(node, fname, filename), filename, "exec")
        # Register the cell so local tracebacks can show the user's lines.
        text = "\n" + node.cell.source
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        exec(code, glb)  # noqa: S102 - this is the compiler
        functions[node.name] = glb[fname]
    return functions, sizes, report


def step_kwargs(node: StepNode, sdk: sdk_mod.Sdk) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for key, resolved in node.settings.items():
        value = resolved.value
        if key in _PASSTHROUGH:
            kwargs[key] = value
        elif key == "tags":
            kwargs["tags"] = [{"Key": k, "Value": v} for k, v in dict(value).items()]
        elif key == "spark_config":
            kwargs["spark_config"] = sdk.SparkConfig(**value)
        elif key == "retry_policies":
            kwargs["retry_policies"] = [retry_policy(p, sdk) for p in value]
    kwargs.setdefault("display_name", node.name)
    kwargs.setdefault("description", f"jupyter_smstep step '{node.name}'")
    return kwargs


def retry_policy(spec: Mapping[str, Any], sdk: sdk_mod.Sdk) -> Any:
    """{"exception_types": [...], "max_attempts", "interval_seconds", "backoff_rate"} -> SDK policy."""
    types = list(spec["exception_types"])
    extra = {k: spec[k] for k in ("max_attempts", "interval_seconds", "backoff_rate") if spec.get(k) is not None}
    if all(t.startswith("Step.") for t in types):
        enum = sdk.StepExceptionTypeEnum
        return sdk.StepRetryPolicy(exception_types=[_member(enum, t) for t in types], **extra)
    from importlib import import_module

    retry = import_module(sdk.StepRetryPolicy.__module__)
    job_enum = retry.SageMakerJobExceptionTypeEnum
    return sdk.SageMakerJobStepRetryPolicy(exception_types=[_member(job_enum, t) for t in types], **extra)


def _member(enum: Any, value: str) -> Any:
    """Look an enum member up by value (the SDK's DefaultEnumMeta makes ``enum(value)`` return the default)."""
    return next(member for member in enum if member.value == value)


def parameter_objects(graph: PipelineGraph, sdk: sdk_mod.Sdk) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in graph.parameters.items():
        if isinstance(value, bool):
            params[name] = sdk.ParameterBoolean(name, default_value=value)
        elif isinstance(value, int):
            params[name] = sdk.ParameterInteger(name, default_value=value)
        elif isinstance(value, float):
            params[name] = sdk.ParameterFloat(name, default_value=value)
        else:
            params[name] = sdk.ParameterString(name, default_value=str(value))
    return params


def build_pipeline(graph: PipelineGraph, namespace: Mapping[str, Any], session: Any = None) -> Compiled:
    """The SDK ``Pipeline`` for ``graph``. Validates first; raises :class:`SmstepError`."""
    check_graph(graph)
    functions, sizes, report = make_functions(graph, namespace)
    graph.report.problems.extend(report.problems)
    report.raise_if_errors()
    sdk = sdk_mod.load()
    params = parameter_objects(graph, sdk)
    returns: dict[str, Any] = {}
    for node in graph.steps:
        args = [returns[i.step][i.name] if i.kind == "step" else params[i.name] for i in node.links]
        try:
            returns[node.name] = sdk.step(functions[node.name], name=node.name, **step_kwargs(node, sdk))(*args)
        except (TypeError, ValueError) as exc:
            raise SmstepError(Problem(f"the SageMaker SDK rejected the step: {exc}",
                                      fix="check the step's options", step=node.name)) from None
    used = [params[n] for n in graph.parameters]
    pipeline = sdk.Pipeline(
        name=graph.name,
        steps=list(returns.values()),
        parameters=used,
        sagemaker_session=session,
        pipeline_definition_config=sdk.PipelineDefinitionConfig(use_custom_job_prefix=True),
    )
    return Compiled(pipeline, graph, functions, sizes)


def definition(compiled: Compiled) -> str:
    """``Pipeline.definition()``, which uploads the pickled functions; SDK errors made readable."""
    try:
        return compiled.pipeline.definition()
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001 - translate, never show the SDK's traceback
        raise SmstepError(_explain_sdk_error(exc)) from None


def _explain_sdk_error(exc: Exception) -> Problem:
    text = f"{type(exc).__name__}: {exc}"
    if "NoCredentialsError" in text or "Unable to locate credentials" in text:
        return Problem("no AWS credentials to upload the step code to S3",
                       fix="configure credentials (aws configure, AWS_PROFILE) or use %pipeline run for a local run")
    if "EndpointConnectionError" in text or "Could not connect" in text:
        return Problem(f"cannot reach AWS: {exc}", fix="check the network, AWS_ENDPOINT_URL and the region")
    if "NoSuchBucket" in text or "AccessDenied" in text:
        return Problem(f"S3 refused the upload of the step code: {exc}",
                       fix="check the default bucket (S3RootUri in config.yaml) and the role's S3 permissions")
    return Problem(f"building the pipeline definition failed: {text}", fix="see the message above")
