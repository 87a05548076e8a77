"""A step's ``@step`` keywords, decided once and rendered twice.

:func:`step_arguments` turns a step's resolved settings into one neutral
spec: plain values plus :class:`Call` (a constructor of an SDK class) and
:class:`Member` (an SDK enum member). The build renders it to SDK objects
(:func:`to_sdk`), the export to Python source (:func:`to_source`), so the
module ``%pipeline export`` writes passes ``@step`` exactly what the notebook's
build passes, and its definition is the same.

Only settings that differ from the SDK's own defaults are passed (plus the job
name prefix, the display name and the description that jupyter_smstep always
sets): passing a default explicitly changes nothing in the definition, and
leaving it out keeps the exported module readable.

No sagemaker import: :func:`to_sdk` takes the loaded :class:`~.compat.Sdk`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core.model import StepNode
from jupyter_smstep.core.settings import FILE_OPTIONS, OPTIONS_BY_KEY, ParameterRef, local_file

#: ``--retry`` exception type (the enum member's *value*, as the definition writes it) ->
#: (enum class, member name). SageMaker's ``JOB_INTERNAL_ERROR`` is the member ``INTERNAL_ERROR``.
RETRY_MEMBERS: dict[str, tuple[str, str]] = {
    "Step.SERVICE_FAULT": ("StepExceptionTypeEnum", "SERVICE_FAULT"),
    "Step.THROTTLING": ("StepExceptionTypeEnum", "THROTTLING"),
    "SageMaker.JOB_INTERNAL_ERROR": ("SageMakerJobExceptionTypeEnum", "INTERNAL_ERROR"),
    "SageMaker.CAPACITY_ERROR": ("SageMakerJobExceptionTypeEnum", "CAPACITY_ERROR"),
    "SageMaker.RESOURCE_LIMIT": ("SageMakerJobExceptionTypeEnum", "RESOURCE_LIMIT"),
}


@dataclass(frozen=True)
class Call:
    """``cls(**kwargs)`` for an SDK class named by its attribute on :class:`~.compat.Sdk`."""

    cls: str
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class Member:
    """``enum.member`` of an SDK enum named by its attribute on :class:`~.compat.Sdk`."""

    enum: str
    member: str


@dataclass(frozen=True)
class Source:
    """A Python expression written into the export as it is (e.g. a path next to the module)."""

    code: str


_PARAMETER_CLASSES = {bool: "ParameterBoolean", int: "ParameterInteger", float: "ParameterFloat"}


def parameter_class(default: Any) -> str:
    """The SDK parameter class for a default value (anything but bool/int/float is a string)."""
    return _PARAMETER_CLASSES.get(type(default), "ParameterString")


def parameter_default(default: Any) -> Any:
    return default if type(default) in _PARAMETER_CLASSES else str(default)


def retry_policy(spec: Mapping[str, Any]) -> Call:
    """``{"exception_types", "max_attempts", "interval_seconds", "backoff_rate"}`` -> a policy call."""
    members = [Member(*RETRY_MEMBERS[t]) for t in spec["exception_types"]]
    kwargs: dict[str, Any] = {"exception_types": members}
    kwargs.update({k: spec[k] for k in ("max_attempts", "interval_seconds", "backoff_rate") if spec.get(k) is not None})
    family = "StepRetryPolicy" if members[0].enum == "StepExceptionTypeEnum" else "SageMakerJobStepRetryPolicy"
    return Call(family, kwargs)


def step_arguments(node: StepNode, root: Path | None = None) -> dict[str, Any]:
    """The keywords ``@step`` gets for ``node`` (besides the function), as a neutral spec.

    With ``root`` (the notebook's folder), relative file options become absolute,
    so the SDK finds them whatever the process' working directory; without it
    (the export) they stay as written.
    """
    out: dict[str, Any] = {"name": node.name}
    for key, resolved in node.settings.items():
        if resolved.source == "default" and key != "job_name_prefix":
            continue
        if key in OPTIONS_BY_KEY and not OPTIONS_BY_KEY[key].step_kwarg:
            continue
        value = resolved.value
        if root is not None and key in FILE_OPTIONS and (path := local_file(value, root)) is not None:
            value = str(path)
        if key == "tags":
            out[key] = [{"Key": k, "Value": v} for k, v in dict(value).items()]
        elif key == "spark_config":
            out[key] = Call("SparkConfig", dict(value))
        elif key == "retry_policies":
            out[key] = [retry_policy(p) for p in value]
        else:
            out[key] = value
    out.setdefault("display_name", node.name)
    out.setdefault("description", _description(node.name))
    return out


def _description(step: str) -> str:
    return f"jupyter_smstep step {step!r}"


def renamed(spec: dict[str, Any], node: StepNode, name: str, description: str) -> dict[str, Any]:
    """``node``'s keywords for a step the definition names ``name`` (a ForEach body, a gather): its display
    name and description follow, unless the cell set them."""
    out = {**spec, "name": name}
    if spec.get("display_name") == node.name:
        out["display_name"] = name
    if spec.get("description") == _description(node.name):
        out["description"] = description
    return out


def classes_used(spec: Any) -> set[str]:
    """The SDK classes and enums a spec refers to (the export imports them)."""
    if isinstance(spec, Call):
        return {spec.cls} | classes_used(dict(spec.kwargs))
    if isinstance(spec, Member):
        return {spec.enum}
    if isinstance(spec, Mapping):
        return set().union(*(classes_used(v) for v in spec.values())) if spec else set()
    if isinstance(spec, (list, tuple)):
        return set().union(*(classes_used(v) for v in spec)) if spec else set()
    return set()


def to_sdk(spec: Any, sdk: Any, parameters: Mapping[str, Any] | None = None) -> Any:
    """The spec with every :class:`Call` and :class:`Member` made into the SDK's objects, and every
    :class:`~jupyter_smstep.core.settings.ParameterRef` into its ``Parameter*`` object in ``parameters``."""
    if isinstance(spec, ParameterRef):
        return (parameters or {})[spec.name]
    if isinstance(spec, Call):
        return getattr(sdk, spec.cls)(**{k: to_sdk(v, sdk, parameters) for k, v in spec.kwargs.items()})
    if isinstance(spec, Member):
        return getattr(getattr(sdk, spec.enum), spec.member)
    if isinstance(spec, dict):
        return {k: to_sdk(v, sdk, parameters) for k, v in spec.items()}
    if isinstance(spec, list):
        return [to_sdk(v, sdk, parameters) for v in spec]
    return spec


def to_source(spec: Any) -> str:
    """The spec as Python source (``repr`` for plain values)."""
    if isinstance(spec, Source):
        return spec.code
    if isinstance(spec, ParameterRef):
        return f"{spec.name}_param"  # the export names each parameter object so
    if isinstance(spec, Call):
        return f"{spec.cls}(" + ", ".join(f"{k}={to_source(v)}" for k, v in spec.kwargs.items()) + ")"
    if isinstance(spec, Member):
        return f"{spec.enum}.{spec.member}"
    if isinstance(spec, dict) and any(isinstance(v, (Call, Member, list, dict)) for v in spec.values()):
        return "{" + ", ".join(f"{k!r}: {to_source(v)}" for k, v in spec.items()) + "}"
    if isinstance(spec, list):
        return "[" + ", ".join(to_source(v) for v in spec) + "]"
    return repr(spec)


#: Which :data:`~.compat.MODULES` entry each class in a spec is imported from.
CLASS_MODULES: dict[str, str] = {
    "SparkConfig": "spark_config",
    "StepRetryPolicy": "retry",
    "SageMakerJobStepRetryPolicy": "retry",
    "StepExceptionTypeEnum": "retry",
    "SageMakerJobExceptionTypeEnum": "retry",
}
