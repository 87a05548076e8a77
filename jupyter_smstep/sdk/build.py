"""Graph -> SageMaker ``Pipeline``: generated functions wrapped with the SDK's ``@step``.

Every link is passed as its own top-level argument (the SDK rejects a
``DelayedReturn`` nested in a list or dict). Captured kernel values become the
step function's globals, so the SDK's cloudpickle ships them by value; each is
test-pickled first so that an open file or a client fails here, named, rather
than deep inside the SDK.

The build is content-addressed (:mod:`.content`): each step's payloads live in a
folder named by its content key, so an unchanged step keeps its definition and
is not uploaded again. :class:`Compiled` carries the plan; produce the
definition (or upsert) through it.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import contextlib
import os
import sys
import linecache
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable, Iterator, Mapping

from jupyter_smstep.core import codegen, foreach
from jupyter_smstep.core.model import values_at
from jupyter_smstep.core.model import PipelineGraph, StepNode, check_buildable
from jupyter_smstep.errors import Problem, SmstepError, aws_error
from jupyter_smstep.core.keys import StepKey, shared
from jupyter_smstep.core.workdir import Shipping
from jupyter_smstep.sdk import condition_steps, content, content_keys, patches, requirements, stepargs, workdir
from jupyter_smstep.sdk.uploads import UploadCount
from jupyter_smstep.sdk.capture import Captures
from jupyter_smstep.sdk.compat import Sdk, load


@dataclass
class Compiled:
    """The SDK ``Pipeline``, the Python function of every step (the local runner maps tracebacks with
    them) and the content-addressed build plan (payload folders, signing key, cache settings)."""

    pipeline: Any
    functions: dict[str, Callable[..., Any]]
    plan: content.BuildPlan | None = None
    uploads: UploadCount = field(default_factory=UploadCount)
    #: The notebook's folder: the SDK ships the current directory (IncludeLocalWorkDir), the key hashes the
    #: notebook's folder; one truth, the notebook's folder (``smstep run proj/nb.ipynb`` from the parent).
    root: Path | None = None
    #: The steps' workspace: the notebook's modules they import, or what config.yaml's IncludeLocalWorkDir asks
    #: (``sdk.workdir``); None ships none.
    shipping: Shipping | None = None

    @property
    def name(self) -> str:
        return str(self.pipeline.name)

    @contextlib.contextmanager
    def building(self) -> Iterator[UploadCount]:
        """While the SDK compiles the steps (``definition()``, ``upsert()``): the plan applies, in the notebook's
        folder."""
        with _in_folder(self.root), workdir.shipping(self.shipping):
            if self.plan is None:
                yield self.uploads
                return
            with content.content_addressed(self.plan, self.pipeline.sagemaker_session) as count:
                yield count

    def definition(self) -> str:
        with self.building():
            return str(self.pipeline.definition())

    def checked(self, values: Mapping[str, Any] | None = None) -> str:
        """The definition, built with nothing sent to S3, checked by SageMaker's published rules (every training
        step against the service's CreateTrainingJob model, at each parameter's default and at ``values``; the
        whole against its JSON schema). Raises :class:`SmstepError` naming each value it would refuse."""
        from jupyter_smstep.sdk import rules, schema

        assert self.plan is not None
        dry = dataclasses.replace(self.plan, dry=True, uploads=UploadCount(), compiling=None)
        with (
            _in_folder(self.root),
            workdir.shipping(self.shipping),
            content.content_addressed(dry, self.pipeline.sagemaker_session),
        ):
            text = str(self.pipeline.definition())
        problems = rules.definition_problems(text, values) + schema.problems(text)
        if problems:
            raise SmstepError(problems)
        return text


@contextlib.contextmanager
def _in_folder(folder: Path | None) -> Iterator[None]:
    if folder is None or Path.cwd() == Path(folder):
        yield
        return
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def plan_for(
    graph: PipelineGraph,
    keys: Mapping[str, StepKey],
    reuse: frozenset[str] = frozenset(),
    fans: Mapping[str, list[StepNode]] | None = None,
) -> content.BuildPlan:
    """``reuse``: steps a local run takes from its cache, whose payloads need not be uploaded. ``fans``: the
    fan-outs built as a ForEach (:func:`for_each_fan_outs`), whose steps the definition names otherwise."""
    cache = {node.name: node.settings["cache"].value for node in graph.steps if "cache" in node.settings}
    named, reused = dict(keys), set(reuse)
    for step, iterations in (fans or {}).items():
        names = [n.name for n in iterations]
        if step in named:
            named[foreach.gather_name(step)] = named.pop(step)
        if step in cache:
            cache[foreach.gather_name(step)] = cache.pop(step)
        if step in reused:
            reused.add(foreach.gather_name(step))
        reused.discard(step)
        # the body is one payload for every iteration: keyed by all of them, reused only when all are
        named[step] = shared([named[n] for n in names], names)
        if names[0] in cache:
            cache[step] = cache[names[0]]
        if reused.issuperset(names):
            reused.add(step)
    return content.BuildPlan(graph.name, named, cache, frozenset(reused), per_item=frozenset(fans or ()))


def step_functions(
    graph: PipelineGraph, namespace: Mapping[str, Any], captures: Captures | None = None
) -> dict[str, Callable[..., Any]]:
    """The step functions, their captured values checked first (an unpicklable one is an error here,
    named, rather than deep inside the SDK)."""
    problems = (captures or Captures()).problems(graph, namespace)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise SmstepError(errors)
    names = codegen.function_names(graph)
    node_by_name = {n.name: n for n in graph.steps}
    functions: dict[str, Callable[..., Any]] = {}
    for node in graph.steps:
        fname = names[node.name]
        filename = f"<%%step {node.name}>"
        glb: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        values = values_at(node.cell, namespace)  # as the step's cell saw them
        for inp in node.captured:
            glb[inp.name] = values[inp.name]
        if node.saves:  # compiled here, so the step ships it by value (the container has no jupyter_smstep)
            glb[codegen.SAVE_FUNCTION] = helper(codegen.SAVE_FUNCTION)
        if node.unchecked:
            glb[codegen.PLAIN_FUNCTION] = helper(codegen.PLAIN_FUNCTION)
        code = compile(codegen.function_code(node, fname, filename), filename, "exec")
        # Register the cell so local tracebacks can show the user's lines.
        text = "\n" + node.cell.source
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        exec(code, glb)  # noqa: S102 - this is the compiler
        functions[node.name] = glb[fname]
        upstream = sorted({i.step for i in node.links if i.step is not None})
        kernel = [namespace[i.produced] for i in node.links if i.kind == "step" and i.produced in namespace]
        preload = _preload_names(kernel, [node_by_name[name].cell for name in upstream])
        if preload:
            functions[node.name].__dict__[PRELOAD] = _Preload(preload)
    return functions


#: A step function's attribute naming the modules its upstream results are made of (imported when it is unpickled).
PRELOAD = "_smstep_preload"


def _preload_names(values: list[Any], cells: list[Any]) -> tuple[str, ...]:
    """The modules a step's upstream results are made of: those defining the kernel's values' types (and their
    items', one level down) and those the upstream cells import.

    The SDK unpickles a step's function, then its upstream results, in parallel threads; two threads importing
    scikit-learn at once can see a half-initialised ``sklearn.base`` (``cannot import name 'clone'``). The
    function carries these names in its ``__dict__`` and unpickling it imports them, in one thread, before the
    results are read: in the local runner and on SageMaker alike (a module the container lacks is skipped)."""
    import ast

    names: set[str] = set()
    for value in values:
        items = (
            list(value.values()) if isinstance(value, dict) else list(value) if isinstance(value, (list, tuple)) else []
        )
        names.update(type(item).__module__ for item in [value, *items[:64]])
    for cell in cells:
        for statement in cell.analysis.imports.values() if cell.analysis else ():
            for node in ast.walk(ast.parse(statement)):
                if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module)
                elif isinstance(node, ast.Import):
                    names.update(alias.name for alias in node.names)
    return tuple(sorted(n for n in names if n not in ("builtins", "__main__") and not n.startswith("_")))


class _Preload:
    """Pickled as a call of the step's own preloader (shipped by value): unpickling imports the names."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return helper(codegen.PRELOAD_FUNCTION), (self.names,)


def helper_source(name: str) -> str:
    """The source of a self-contained helper the steps call (``_smstep_save``: ``sdk/saving.py``;
    ``_smstep_plain``: ``core/plain.py``): compiled for the build, written into the export."""
    from jupyter_smstep.core import plain
    from jupyter_smstep.sdk import saving

    if name == codegen.PRELOAD_FUNCTION:
        return _PRELOAD_SOURCE
    module = {codegen.SAVE_FUNCTION: saving, codegen.PLAIN_FUNCTION: plain}[name]
    return Path(module.__file__ or "").read_text()


_PRELOAD_SOURCE = f"""
def {codegen.PRELOAD_FUNCTION}(names):
    import importlib
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # the container lacks it: the result that needs it says so when it is read
            pass
    return tuple(names)
"""


@functools.cache
def helper(name: str) -> Callable[..., Any]:
    """The helper ``name``, compiled from its source in a namespace of its own (so its imports never
    shadow a captured value of the step), as ``__main__``: cloudpickle ships it by value."""
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    exec(compile(helper_source(name), f"<jupyter_smstep {name}>", "exec"), namespace)  # noqa: S102
    return namespace[name]


def parameter_objects(graph: PipelineGraph, sdk: Sdk) -> dict[str, Any]:
    return {
        name: getattr(sdk, stepargs.parameter_class(value))(name, default_value=stepargs.parameter_default(value))
        for name, value in graph.parameters.items()
    }


#: The image a local run's definition names for a step without one: the local runner runs no image, and the
#: SDK refuses to build without one for this Python (the service would; check_buildable says so there)
LOCAL_IMAGE = f"local/jupyter-smstep-no-image:python{sys.version_info[0]}.{sys.version_info[1]}"


def assemble(
    graph: PipelineGraph,
    functions: Mapping[str, Callable[..., Any]],
    session: Any = None,
    root: Path | None = None,
    dependency_files: Mapping[str, str] | None = None,
    local: bool = False,
    fans: Mapping[str, list[StepNode]] | None = None,
) -> Any:
    """The SDK ``Pipeline``: each function wrapped with ``@step``, every link a top-level argument.

    ``dependency_files``: the written requirements.txt of each ``--dependencies auto`` step; ``local``: for the
    local runner (a step without an image gets :data:`LOCAL_IMAGE`); ``fans``: the fan-outs built as a ForEach
    (:func:`for_each_fan_outs`, found here unless given)."""
    sdk = load()
    params = parameter_objects(graph, sdk)
    returns: dict[str, Any] = {}  # step -> what later steps read (``returns[step][output]``)
    entries: dict[str, Any] = {}  # step -> what the pipeline (or a condition's branch) lists
    fans = for_each_fan_outs(graph) if fans is None else fans
    iteration_names = {n.name for nodes in fans.values() for n in nodes}

    def steps_of(names: list[str]) -> list[Any]:
        """The SDK steps ``names`` run after (an iteration's is its ForEach step), each once."""
        made = (entries[d] if d in iteration_names else sdk.get_step(entries[d]) for d in names)
        return list({id(s): s for s in made}.values())

    def call(node: StepNode, function: Callable[..., Any], first: list[Any], name: str = "") -> Any:
        """``node``'s ``@step``; ``first``: arguments before its links; ``name``: another name in the definition
        (a fan-out's body or gather: ``core.foreach``)."""
        args = [returns[i.step][i.produced] if i.step is not None else params[i.name] for i in node.links]
        if node.needs_execution:  # jupyter_smstep.execution: the SDK resolves these when the step starts
            variables = sdk.ExecutionVariables
            args += [variables.PIPELINE_EXECUTION_ID, variables.START_DATETIME, variables.PIPELINE_NAME]
        spec = stepargs.step_arguments(node, root)
        if name and node.fanout is not None:
            spec = stepargs.renamed(spec, node, name, foreach.descriptions(node.fanout)[name])
        kwargs = stepargs.to_sdk(spec, sdk, params)
        if local and node.name in graph.no_image:
            kwargs["image_uri"] = LOCAL_IMAGE
        if kwargs.get("dependencies") == requirements.AUTO:
            if not dependency_files or node.name not in dependency_files:
                raise SmstepError(
                    Problem(
                        "--dependencies auto needs the kernel's values to pin from",
                        step=node.name,
                        fix="build from the notebook (its workspace)",
                    )
                )
            kwargs["dependencies"] = dependency_files[node.name]
        try:
            return sdk.step(function, **kwargs)(*first, *args)
        except (TypeError, ValueError) as exc:
            raise SmstepError(
                Problem(f"the SageMaker SDK rejected the step: {exc}", fix="check the step's options", step=node.name)
            ) from None

    for node in graph.steps:
        fan = node.fanout
        if fan is not None and fan.step in fans and fan.index is not None:  # an iteration: the ForEach's child
            if fan.index == 0:
                iterations = fans[fan.step]
                # the body takes the cell's name, so SageMaker names its children as the iterations: "<step>-<i>"
                body = call(
                    node,
                    for_each_body([functions[n.name] for n in iterations], len(codegen.arguments(node))),
                    [patches.current_item()],
                    fan.step,
                )
                for_each = sdk.ForEachStep(
                    **foreach.for_each_arguments(fan),
                    for_each_body=[sdk.get_step(body)],
                    depends_on=steps_of(foreach.runs_after(iterations)) or None,
                )
                for index, n in enumerate(iterations):
                    returns[n.name], entries[n.name] = _Iteration(for_each, fan.step, index), for_each
            continue
        gathers = fan is not None and fan.step in fans  # the iterations' outputs, from the ForEach's children
        returns[node.name] = entries[node.name] = call(
            node, functions[node.name], [], foreach.gather_name(node.name) if gathers else ""
        )
        after = ([foreach.iteration_name(node.name, 0)] if gathers else []) + node.order_only  # (--after)
        if after:  # DependsOn without data; an iteration's is its ForEach
            sdk.get_step(returns[node.name]).add_depends_on(steps_of(after))

    def value(operand: Any) -> Any:
        if operand.kind == "output":
            return condition_steps.item(returns[operand.step][operand.name], operand.path)
        return params[operand.name] if operand.kind == "parameter" else operand.value

    def listed(names: list[str]) -> list[Any]:  # a ForEach once for all its iterations
        return list({id(entries[n]): entries[n] for n in names}.values())

    branches = [
        stepargs.to_sdk(condition_steps.condition_step(c, value, listed(c.steps)), sdk) for c in graph.conditions
    ]
    return sdk.Pipeline(
        name=graph.name,
        steps=listed([n.name for n in graph.steps if n.guard is None]) + branches,
        parameters=[params[n] for n in graph.parameters],
        sagemaker_session=session,
        pipeline_definition_config=sdk.PipelineDefinitionConfig(use_custom_job_prefix=True),
        **({"mlflow_config": mlflow_config(graph.mlflow)} if graph.mlflow else {}),
    )


def for_each_fan_outs(graph: PipelineGraph) -> dict[str, list[StepNode]]:
    """The fan-out cells built as a ``ForEachStep``: cell step -> its iteration nodes. None before SDK 3.27,
    which has no ForEachStep, or when the notebook asks for steps: there the iterations are steps of their own
    (``core.foreach``)."""
    if graph.foreach_as == "steps" or load().ForEachStep is None:  # %pipeline config --foreach-as steps
        return {}
    return foreach.iterations_of(graph.steps)


def for_each_body(iterations: list[Callable[..., Any]], arity: int) -> Callable[..., Any]:
    """The ForEach body's function: the iteration named by the item (its number) runs, so each child runs
    exactly what that iteration's own step would (its item pickled as the kernel held it, not through JSON).
    ``arity``: the arguments the step passes (``codegen.arguments``; an iteration's other parameters have
    defaults: the values its cell binds again)."""
    names = ", ".join(f"arg{i}" for i in range(arity))
    source = f"def {iterations[0].__name__}_item(item{', ' if names else ''}{names}):\n"
    source += f"    return ITERATIONS[int(item)]({names})\n"
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, "ITERATIONS": list(iterations)}
    filename = f"<foreach {iterations[0].__name__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # a traceback shows it
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - the compiler
    body = namespace[f"{iterations[0].__name__}_item"]
    if PRELOAD in iterations[0].__dict__:
        body.__dict__[PRELOAD] = iterations[0].__dict__[PRELOAD]
    return body


class _Iteration:
    """What a later step reads of one iteration of a ForEach (``[output]``): that child's results."""

    def __init__(self, for_each: Any, body: str, index: int) -> None:
        self.for_each, self.body, self.index = for_each, body, index

    def __getitem__(self, output: str) -> Any:
        return patches.iteration_result(self.for_each, self.body, self.index, output)


def mlflow_config(mlflow: Mapping[str, str]) -> Any:
    """SDK v3's ``MlflowConfig`` for ``%pipeline config --mlflow-arn`` (v2 has none: the graph said so already)."""
    from sagemaker.core.shapes import MlflowConfig

    return MlflowConfig(mlflow_resource_arn=mlflow["arn"], mlflow_experiment_name=mlflow.get("experiment"))


def build_pipeline(
    graph: PipelineGraph,
    namespace: Mapping[str, Any],
    session: Any = None,
    captures: Captures | None = None,
    root: Path | None = None,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    keys: Mapping[str, StepKey] | None = None,
    reused: frozenset[str] = frozenset(),
    local: bool = False,
) -> Compiled:
    """The SDK ``Pipeline`` for ``graph``: the one route every build takes (a definition, a submit, a local run).

    Validates first; raises :class:`SmstepError`. ``local``: for the local runner (a step without an image gets
    :data:`LOCAL_IMAGE`; what only the service needs is checked by the commands that send it). A local run makes
    ``functions`` and ``keys`` once and hands them to the runner too; ``reused``: the steps it takes from its cache,
    whose payloads are not uploaded.
    """
    check_buildable(graph, for_the_service=not local)
    if functions is None:
        functions = step_functions(graph, namespace, captures)
    if keys is None:
        keys = content_keys.step_keys(graph, namespace, root)
    files = requirements.auto_files(graph.steps, namespace)
    fans = for_each_fan_outs(graph)
    return Compiled(
        assemble(graph, functions, session, root, files, local=local, fans=fans),
        dict(functions),
        plan_for(graph, keys, reused, fans),
        root=root,
        shipping=graph.shipping,
    )


def definition(compiled: Compiled) -> str:
    """``Pipeline.definition()``, which uploads the pickled functions; SDK errors made readable."""
    try:
        return compiled.definition()
    except SmstepError:
        raise
    except Exception as exc:  # noqa: BLE001 - translate, never show the SDK's traceback
        raise aws_error(
            exc,
            "uploading the step code to S3",
            denied_fix="check the default bucket (S3RootUri in config.yaml) and the role's S3 permissions",
        ) from None
