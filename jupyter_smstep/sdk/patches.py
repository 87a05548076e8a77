"""Every place jupyter_smstep touches a private part of the SageMaker SDK: here, and only here.

- ``StepsCompiler._build_step`` (wrapped), and on the compiler ``pipeline_build_time``,
  ``_function_step_secret_token``, ``upload_workspace``, on its result ``_request_dict``. v2 and v3.
  The SDK has no setting for a step's payload folder, signing key, workspace upload or cache config;
  content-addressed builds (``sdk.content``) set them per step.
- ``remote_function.job._ensure_sagemaker_dependency`` (wrapped). v2 2.256+. It writes the SDK's
  own requirement into a temporary file with a random name (which the definition names), or
  appends to the user's file; a copy named by its content keeps the definition stable (``sdk.content``).
- ``SageMakerConfig.validate_sagemaker_config`` (memoized). v3. It re-validates config.yaml against
  its JSON schema on every lookup, ~0.5 s each, ~15 lookups a step (``sdk.compat.load``).
- ``SAGEMAKER_VALIDATE_ROLE`` (set to false around one call). v3 3.27. ``Pipeline.put_triggers`` checks the
  schedule's role as a pipeline role (that it trusts sagemaker.amazonaws.com), but EventBridge Scheduler
  is what assumes it; after ``remote.roles`` has checked the right trust, the SDK's check is off for
  that call only (``remote.eventbridge``).
- ``remote_function.job._prepare_and_upload_workspace`` (wrapped). v2 and v3. The @step decorator takes
  neither ``include_local_workdir`` nor ``custom_file_filter`` (it reads them from config.yaml, whose filter
  cannot be a function); the build ships the notebook's own modules, and never ``.smstep`` (``sdk.workdir``).
- ``Session._default_bucket`` (set). v2 and v3. The SDK's cache of ``default_bucket()``, set after
  finding the bucket through clients that honour ``AWS_ENDPOINT_URL`` (``sdk.session``).
- ``remote_function.core.pipeline_variables._Properties`` and ``._DelayedReturn`` (made), and
  ``Properties`` (subclassed). v3 3.27+. A ``@step`` function cannot take ``ForEach.CurrentItem`` (its
  ``_pickleable`` raises) nor another ForEach step's ``IterationOutputs[i]`` as an upstream result:
  :func:`current_item` and :func:`iteration_result` are ``Properties`` the SDK passes as it passes any step
  property (``--property_references``), which the job reads as the SDK's own records do (``sdk.build``).
- A ForEach body step's compiled request (``_request_dict``'s ``OutputDataConfig.S3OutputPath`` and the
  ``--pipeline_execution_id`` container argument). v3. The SDK fixes a ``@step``'s results folder when the
  definition is built, so every iteration would write the same one; :func:`results_per_item` puts the
  item's number in both, as each child's own folder.

Each wrapper is installed once, marks itself (``_smstep``) and does nothing unless its caller asks.
``tests/sdk/test_patches.py`` has one canary per patched attribute under each SDK line: a release
that moves one fails one named test. (botocore's event hooks that ``sdk.content`` and ``sdk.rules``
use are public API and not listed.)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Patched:
    """One private attribute of the SDK that jupyter_smstep relies on (a canary test checks it exists)."""

    module: str  # sdk.lines.MODULES key
    path: str  # "StepsCompiler._build_step"
    lines: tuple[int, ...]  # SDK majors it applies to
    optional: bool = False  # absent in some releases of the line (then the patch is not applied)


PATCHED = (
    Patched("steps_compiler", "StepsCompiler._build_step", (2, 3)),
    Patched("steps_compiler", "StepsCompiler.__init__", (2, 3)),  # sets the three attributes below
    Patched("remote_function", "job._ensure_sagemaker_dependency", (2,), optional=True),
    Patched("remote_function", "job._prepare_and_upload_workspace", (2, 3)),
    Patched("config_manager", "SageMakerConfig.validate_sagemaker_config", (3,)),
    Patched("remote_function", "core.pipeline_variables._Properties", (3,)),
    Patched("remote_function", "core.pipeline_variables._DelayedReturn", (3,)),
)
#: The compiler attributes the build-step wrapper sets (present once StepsCompiler.__init__ ran).
COMPILER_ATTRIBUTES = ("pipeline_build_time", "_function_step_secret_token", "upload_workspace")


def resolve(patched: Patched, major: int) -> Any:
    """The patched attribute in the installed SDK (AttributeError/ImportError when a release moved it)."""
    from jupyter_smstep.sdk import lines

    path = (lines.modules(major) | _EXTRA[major])[patched.module]
    *parents, last = patched.path.split(".")
    node: Any = importlib.import_module(path)
    for part in parents:
        node = getattr(node, part, None) or importlib.import_module(f"{path}.{part}")
    return getattr(node, last)


_EXTRA = {
    2: {"config_manager": "sagemaker.config.config_manager"},
    3: {"config_manager": "sagemaker.core.config.config_manager"},
}


# ---------------------------------------------------------------------------- the steps compiler
BuildStep = Callable[[Any, Any, Callable[[Any, Any], Any]], Any]


def wrap_build_step(major: int, around: BuildStep) -> None:
    """``StepsCompiler._build_step(self, step)`` becomes ``around(self, step, original)``. Once."""
    from jupyter_smstep.sdk import lines

    compiler = importlib.import_module(lines.modules(major)["steps_compiler"]).StepsCompiler
    original = compiler.__dict__["_build_step"]
    if getattr(original, "_smstep", False):
        return

    def _build_step(self: Any, step: Any) -> Any:
        return around(self, step, original)

    _build_step._smstep = True  # type: ignore[attr-defined]
    compiler._build_step = _build_step


def set_compilation(compiler: Any, folder: str, token: Callable[[Any], Any]) -> None:
    """The step's payload folder (instead of the build time), signing key (``token`` of the SDK's) and a workspace
    upload into the step's own folder."""
    compiler.pipeline_build_time = folder
    compiler._function_step_secret_token = token(compiler._function_step_secret_token)
    compiler.upload_workspace = True


def set_request_field(compiled: Any, key: str, value: Any) -> None:
    """A field of a compiled step's request (``CacheConfig``), which the SDK's @step has no keyword for."""
    compiled._request_dict[key] = value


def wrap_ensure_dependency(remote_function: str, around: Callable[[Any, str | None], str]) -> None:
    """v2's ``job._ensure_sagemaker_dependency(path)`` becomes ``around(original, path)``, where it exists. Once."""
    job = importlib.import_module(f"{remote_function}.job")
    original = getattr(job, "_ensure_sagemaker_dependency", None)
    if original is None or getattr(original, "_smstep", False):
        return

    def ensure(local_dependencies_path: str | None) -> str:
        return around(original, local_dependencies_path)

    ensure._smstep = True  # type: ignore[attr-defined]
    setattr(job, "_ensure_sagemaker_dependency", ensure)  # noqa: B010 - a module attribute mypy cannot see


def wrap_prepare_workspace(remote_function: str, around: Callable[[Callable[..., Any], dict[str, Any]], Any]) -> None:
    """``job._prepare_and_upload_workspace(**kwargs)`` becomes ``around(original, kwargs)``. Once."""
    job = importlib.import_module(f"{remote_function}.job")
    original = job.__dict__["_prepare_and_upload_workspace"]
    if getattr(original, "_smstep", False):
        return

    def prepare(*args: Any, **kwargs: Any) -> Any:
        if args:  # the SDK passes keywords; a release that passes positions is not ours to rewrite
            return original(*args, **kwargs)
        return around(original, kwargs)

    prepare._smstep = True  # type: ignore[attr-defined]
    setattr(job, "_prepare_and_upload_workspace", prepare)  # noqa: B010 - a module attribute mypy cannot see


# ---------------------------------------------------------------------------- config and session
def memoize_config_validation() -> None:
    """v3 re-validates the whole config.yaml against its JSON schema on every lookup.

    That is ~0.5 s a time and ~15 lookups per step built, so a Studio admin
    config made a 10-step build take over a minute. Validation depends only on
    the config's content, so remember the configs that passed.
    """
    import json

    from sagemaker.core.config.config_manager import SageMakerConfig

    original = SageMakerConfig.__dict__["validate_sagemaker_config"].__func__
    if getattr(original, "_smstep", False):
        return
    valid: set[str] = set()

    def validate(sagemaker_config: Any = None) -> None:
        key = json.dumps(sagemaker_config, sort_keys=True, default=str)
        if key not in valid:
            original(sagemaker_config)  # raises on an invalid config, which is then not remembered
            valid.add(key)

    validate._smstep = True  # type: ignore[attr-defined]
    SageMakerConfig.validate_sagemaker_config = staticmethod(validate)


@contextlib.contextmanager
def without_sdk_role_check() -> Iterator[None]:
    """SDK v3's own role check off for one call (its public switch, ``SAGEMAKER_VALIDATE_ROLE``)."""
    previous = os.environ.get("SAGEMAKER_VALIDATE_ROLE")
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SAGEMAKER_VALIDATE_ROLE", None)
        else:
            os.environ["SAGEMAKER_VALIDATE_ROLE"] = previous


def set_default_bucket(session: Any, name: str) -> None:
    """The SDK's own cache of ``default_bucket()``."""
    session._default_bucket = name


# ---------------------------------------------------------------------------- ForEach bodies (v3 3.27+)
# An export copies these four functions into its module (``export._for_each_block``): each stays self-contained
# (it imports what it needs, and calls only the others).
@functools.cache
def _reference_class() -> type:
    from sagemaker.core.remote_function.core.pipeline_variables import _DelayedReturn, _Properties
    from sagemaker.core.workflow.properties import Properties

    class Reference(Properties):
        """``{"Get": path}`` as a ``@step`` argument: the job gets the resolved text (``output`` None), or the
        results at that S3 path, as for an upstream step (``output``: the member its function returned)."""

        def __init__(self, path: str, steps: list[Any] | None = None, output: str | None = None) -> None:
            super().__init__(step_name="")
            self.full_path, self.steps, self.output = path, list(steps or []), output

        @property
        def expr(self) -> dict[str, str]:
            return {"Get": self.full_path}

        @property
        def _referenced_steps(self) -> list[Any]:
            return list(self.steps)

        @property
        def _pickleable(self) -> Any:
            if self.output is None:
                return _Properties(path=self.full_path)
            return _DelayedReturn(uri=_Properties(path=self.full_path), reference_path=(("__getitem__", self.output),))

        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return type(self), (self.full_path, None, self.output)

    return Reference


def current_item() -> Any:
    """``ForEach.CurrentItem`` as a ``@step`` argument: the job gets the item as text."""
    return _reference_class()("ForEach.CurrentItem")


def iteration_result(for_each: Any, body: str, index: int, output: str) -> Any:
    """Iteration ``index``'s ``output`` as a ``@step`` argument, read from where that child wrote its results."""
    path = f"Steps.{for_each.name}.IterationOutputs[{index}].{body}.OutputDataConfig.S3OutputPath"
    return _reference_class()(path, [for_each], output)


def results_per_item(arguments: dict[str, Any], join: Any, execution_id: Any) -> None:
    """A ForEach body step's request ``arguments`` (a compiled step's ``_request_dict["Arguments"]``) made to
    write its results under ``…/<execution id>/<item>/results``: the ``S3OutputPath`` the SDK made (``[base,
    step, folder, execution id, "results"]``) and the execution id the job builds its own path from
    (``--pipeline_execution_id``) both get the item."""
    output = arguments["OutputDataConfig"]["S3OutputPath"]
    values = list(output.values)
    if values[-1] != "results" or getattr(values[-2], "expr", None) != execution_id.expr:
        raise RuntimeError(f"this SDK writes a @step's results elsewhere ({output.expr}): cannot run it per item")
    arguments["OutputDataConfig"]["S3OutputPath"] = join(on="/", values=[*values[:-1], current_item(), "results"])
    argv = arguments["AlgorithmSpecification"]["ContainerArguments"]
    at = argv.index("--pipeline_execution_id") + 1
    argv[at] = join(on="/", values=[argv[at], current_item()])
