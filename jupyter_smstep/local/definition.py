"""Read a pipeline definition the way the SageMaker Pipelines service does.

The local runner executes the JSON definition that ``Pipeline.definition()``
produces, not the Python objects that built it: that is what the service
receives, so that is what has to work. This module knows the definition's
shape: its parameters, its steps and their dependencies, and the expressions
(``Get``, ``Std:Join``, ``Std:JsonGet``) that the service resolves before it
creates each training job.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from jupyter_smstep.core import parameters
from jupyter_smstep.core.conditions import definition_steps
from jupyter_smstep.errors import Problem, SmstepError

_ENTRY_POINT_MARK = "sagemaker_remote_function_bootstrap"


@dataclass
class StepSpec:
    """One step of the definition, as the runner needs it."""

    name: str
    type: str
    arguments: dict
    depends_on: list[str]
    retry_policies: list[dict] = field(default_factory=list)
    display_name: str | None = None
    description: str | None = None
    #: (ConditionStep, outcome): the step is in that condition's if (True) or else (False) branch
    branch: tuple[str, bool] | None = None

    def option(self, name: str) -> str | None:
        """A literal ``--name VALUE`` of the step's container arguments (expressions are skipped)."""
        argv = [
            to_text(v)
            for v in self.arguments["AlgorithmSpecification"]["ContainerArguments"]
            if not isinstance(v, (dict, list))
        ]
        return container_option(argv, name)

    @property
    def is_function_step(self) -> bool:
        spec = self.arguments.get("AlgorithmSpecification", {}) if self.type == "Training" else {}
        entry = spec.get("ContainerEntrypoint") or []
        return any(_ENTRY_POINT_MARK in str(part) for part in entry)


def parse_steps(definition: dict) -> dict[str, StepSpec]:
    """The definition's steps, by name, with every dependency made explicit.

    A step depends on the steps named in its ``DependsOn`` and on every step
    whose properties its arguments read (``{"Get": "Steps.X...."}``), as in the
    service. Raises :class:`SmstepError` for what the local runner cannot run.
    """
    raw_steps = definition_steps(as_run(definition))
    names = {raw["Name"] for raw, _ in raw_steps}
    steps: dict[str, StepSpec] = {}
    problems: list[Problem] = []
    for raw, branch in raw_steps:
        name = raw["Name"]
        arguments = raw.get("Arguments", {})
        if raw.get("Type") == "Condition":  # its branches are steps of their own; it reads its conditions
            arguments = {"Conditions": arguments.get("Conditions", [])}
        deps = list(
            dict.fromkeys(
                ([branch[0]] if branch else []) + list(raw.get("DependsOn", [])) + sorted(referenced_steps(arguments))
            )
        )
        spec = StepSpec(
            name=name,
            type=raw.get("Type", ""),
            arguments=arguments,
            depends_on=[d for d in deps if d != name],
            retry_policies=list(raw.get("RetryPolicies", [])),
            display_name=raw.get("DisplayName"),
            description=raw.get("Description"),
            branch=branch,
        )
        for dep in spec.depends_on:
            if dep not in names:
                problems.append(Problem(f"depends on step '{dep}', which is not in the pipeline", step=name))
        if not spec.is_function_step and spec.type not in ("Condition", "Fail"):
            problems.append(
                Problem(
                    f"is a '{spec.type}' step; the local runner runs @step (function) steps only",
                    fix="run this pipeline on SageMaker (`%pipeline submit`), or express the step as a %%step cell",
                    step=name,
                )
            )
        steps[name] = spec
    if problems:
        raise SmstepError(problems)
    _check_acyclic(steps)
    return steps


# -- ForEach -------------------------------------------------------------------------
_ITERATION = re.compile(r"Steps\.(?P<each>[^.\[]+)\.IterationOutputs\[(?P<index>\d+)\]\.(?P<body>[^.\[]+)(?P<rest>.*)$")
_CURRENT_ITEM = "ForEach.CurrentItem"


def as_run(definition: dict) -> dict:
    """The definition with each ForEach step as the service runs it: its children, ``<body>-<i>`` for item ``i``.

    - A child is the body step with ``ForEach.CurrentItem`` resolved to its item. It runs after what the ForEach
      runs after; with ``MaxConcurrency`` K below the item count, child ``i`` also runs after child ``i-K``
      (K lanes: never more than K at once).
    - A read of a child's outputs (``Steps.<each>.IterationOutputs[i].<body>.X``) reads the child
      (``Steps.<body>-<i>.X``); a ``DependsOn`` naming the ForEach names its children.
    - A fan-out cell's gather, which the definition names ``<body>-gather`` (``core.foreach.gather_name``), takes
      back the cell's name, the one its records and the notebook use.

    Raises :class:`SmstepError` for what the local runner cannot expand: items that are not literals (a
    parameter, a step's output), a body of several steps, a read of the ForEach's own properties."""
    from jupyter_smstep.core import foreach

    def walk(steps: Any) -> tuple[list[Any], dict[str, list[str]]]:
        out: list[Any] = []
        children: dict[str, list[str]] = {}  # ForEach -> its children
        for raw in steps or []:
            if isinstance(raw, dict) and raw.get("Type") == "ForEach":
                made = _children(raw)
                children[str(raw["Name"])] = [c["Name"] for c in made]
                out += made
                continue
            if isinstance(raw, dict) and raw.get("Type") == "Condition":
                arguments = dict(raw.get("Arguments") or {})
                for branch in ("IfSteps", "ElseSteps"):
                    arguments[branch], inner = walk(arguments.get(branch))
                    children.update(inner)
                raw = {**raw, "Arguments": arguments}
            out.append(raw)
        return out, children

    steps, children = walk(definition.get("Steps"))
    if not children:
        return definition
    renamed = foreach.named_back(str(raw.get("Name")) for raw, _ in definition_steps(definition))

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Get"} and isinstance(value["Get"], str):
                return {"Get": _reread(value["Get"], children, renamed)}
            out = {k: rewrite(v) for k, v in value.items()}
            if isinstance(out.get("DependsOn"), list):
                out["DependsOn"] = [n for d in out["DependsOn"] for n in children.get(d, [renamed.get(d, d)])]
            if isinstance(out.get("Name"), str) and "Type" in out:
                out["Name"] = renamed.get(out["Name"], out["Name"])
            return out
        if isinstance(value, list):
            return [rewrite(v) for v in value]
        return value

    return {**definition, "Steps": rewrite(steps)}


def _children(raw: dict) -> list[dict]:
    """A ForEach's children (:func:`as_run`), named as the service names them."""
    from jupyter_smstep.core.foreach import iteration_name

    name = str(raw.get("Name"))
    arguments = raw.get("Arguments") or {}
    items, body = arguments.get("IterableItems"), arguments.get("ForEachBody") or []
    if not isinstance(items, list) or any(isinstance(i, (dict, list)) for i in items):
        raise SmstepError(
            Problem(
                "its items are read when the pipeline runs; the local runner expands a ForEach over literal items only",
                step=name,
                fix="run this pipeline on SageMaker (`%pipeline submit`)",
            )
        )
    if len(body) != 1:
        raise SmstepError(
            Problem(f"has {len(body)} body steps; the local runner runs a ForEach of one", step=name, fix="")
        )
    lanes = int(arguments.get("MaxConcurrency") or len(items))
    made = []
    for index, item in enumerate(items):
        child = _with_item(body[0], item)
        child["Name"] = iteration_name(body[0]["Name"], index)
        after = [iteration_name(body[0]["Name"], index - lanes)] if index >= lanes else []
        child["DependsOn"] = list(dict.fromkeys([*raw.get("DependsOn", []), *body[0].get("DependsOn", []), *after]))
        made.append(child)
    return made


def _with_item(value: Any, item: Any) -> Any:
    if isinstance(value, dict):
        if value == {"Get": _CURRENT_ITEM}:
            return item
        return {k: _with_item(v, item) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_item(v, item) for v in value]
    return value


def _reread(path: str, children: dict[str, list[str]], renamed: dict[str, str]) -> str:
    """A ``Get`` path as it reads once each ForEach is its children (:func:`as_run`)."""
    match = _ITERATION.match(path)
    if match and match["each"] in children:
        return f"Steps.{match['body']}-{match['index']}{match['rest']}"
    head, _, rest = path.partition(".")
    step, dot, tail = rest.partition(".")
    if head == "Steps" and step in children:
        raise SmstepError(
            Problem(
                f"a step reads {path}, which the local runner does not produce (it runs the children only)",
                step=step,
                fix="read the iterations' outputs, or run this pipeline on SageMaker (`%pipeline submit`)",
            )
        )
    if head == "Steps" and step in renamed:
        return f"Steps.{renamed[step]}{dot}{tail}"
    return path


def referenced_steps(expr: Any) -> set[str]:
    """Names of the steps whose properties an expression reads."""
    found: set[str] = set()
    if isinstance(expr, dict):
        if set(expr) == {"Get"} and isinstance(expr["Get"], str) and expr["Get"].startswith("Steps."):
            found.add(expr["Get"].split(".")[1].split("[")[0])
        for value in expr.values():
            found |= referenced_steps(value)
    elif isinstance(expr, list):
        for value in expr:
            found |= referenced_steps(value)
    return found


def _check_acyclic(steps: dict[str, StepSpec]) -> None:
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join(path[path.index(name) :] + [name])
            raise SmstepError(Problem(f"the steps depend on each other in a cycle: {cycle}"))
        state[name] = 1
        for dep in steps[name].depends_on:
            visit(dep, path + [name])
        state[name] = 2

    for name in steps:
        visit(name, [])


# -- parameters -------------------------------------------------------------------
def resolve_parameters(definition: dict, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Parameter values for a run: overrides (checked, coerced) over the defaults."""
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    overrides = dict(overrides or {})
    problems: list[Problem] = parameters.unknown(overrides, declared)
    values: dict[str, Any] = {}
    for name, param in declared.items():
        kind = parameters.kind_from_definition(param.get("Type", "String"))
        if name in overrides:
            try:
                values[name] = parameters.coerce(name, kind, overrides[name])
            except SmstepError as exc:
                problems += exc.problems
        elif "DefaultValue" in param:
            values[name] = param["DefaultValue"]
        else:
            problems.append(Problem(f"parameter '{name}' has no default value", fix=f"pass one: -p {name}=VALUE"))
    if problems:
        raise SmstepError(problems)
    return values


def to_text(value: Any) -> str:
    """How the service renders a value inside ``Std:Join`` and job arguments."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


# -- expressions ---------------------------------------------------------------------
class Resolver:
    """Evaluates the definition's expressions against one execution's state.

    ``execution`` holds the ``Execution.*`` variables, ``parameters`` the typed
    parameter values, ``step_properties`` a DescribeTrainingJob-like dict per
    finished step (``Steps.X.<path>``), and ``read_s3`` fetches an object for
    ``Std:JsonGet``.
    """

    def __init__(
        self, execution: dict[str, Any], parameters: dict[str, Any], read_s3: Callable[[str], bytes] | None = None
    ) -> None:
        self.execution = execution
        self.parameters = parameters
        self.step_properties: dict[str, dict] = {}
        self.read_s3 = read_s3

    def get(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Execution":
            if rest == "CurrentDateTime":
                return _now_iso()
            if rest in self.execution:
                return self.execution[rest]
        elif head == "Parameters":
            if rest in self.parameters:
                return self.parameters[rest]
        elif head == "Steps":
            step, _, prop = rest.partition(".")
            if step in self.step_properties:
                value = _walk(self.step_properties[step], prop)
                if value is not _MISSING:
                    return value
            raise SmstepError(
                Problem(
                    f"the definition reads '{path}', which the local runner cannot resolve"
                    + ("" if step in self.step_properties else f" (step '{step}' has not run)")
                )
            )
        raise SmstepError(Problem(f"the definition reads '{path}', which the local runner cannot resolve"))

    def evaluate(self, expr: Any) -> Any:
        if isinstance(expr, dict):
            if len(expr) == 1:
                ((key, value),) = expr.items()
                if key == "Get":
                    return self.get(value)
                if key == "Std:Join":
                    return str(value.get("On", "")).join(to_text(self.evaluate(v)) for v in value.get("Values", []))
                if key == "Std:JsonGet":
                    return self._json_get(value)
            return {k: self.evaluate(v) for k, v in expr.items()}
        if isinstance(expr, list):
            return [self.evaluate(v) for v in expr]
        return expr

    def _json_get(self, spec: dict) -> Any:
        if "S3Uri" not in spec or self.read_s3 is None:
            raise SmstepError(Problem("the local runner resolves Std:JsonGet on an S3Uri only (not PropertyFile)"))
        uri = to_text(self.evaluate(spec["S3Uri"]))
        try:
            document = json.loads(self.read_s3(uri))
        except (OSError, ValueError) as exc:
            raise SmstepError(Problem(f"Std:JsonGet: cannot read {uri} ({exc})")) from None
        value = _walk(document, spec.get("Path", ""))
        if value is _MISSING and isinstance(document, dict) and document.get("Exception"):
            # the SDK writes {"Result": null, "Exception": "... is not JSON serializable."}
            raise SmstepError(
                Problem(
                    f"cannot read {spec.get('Path')} from the step's results: {document['Exception']}",
                    fix="make every output of that step JSON (numbers, strings, lists, dicts; "
                    "int()/float() for numpy numbers), or compute the compared value in a "
                    "step of its own",
                )
            )
        if value is _MISSING:
            raise SmstepError(Problem(f"Std:JsonGet: no '{spec.get('Path')}' in {uri}"))
        return value


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


def evaluate_condition(condition: dict, resolver: Resolver) -> bool:
    """One entry of a ConditionStep's ``Conditions``, as the service evaluates it; raises SmstepError."""
    kind = condition.get("Type")
    if kind in _COMPARE:
        left, right = resolver.evaluate(condition.get("LeftValue")), resolver.evaluate(condition.get("RightValue"))
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (left, right))
        if kind != "Equals" and not numbers and not (isinstance(left, str) and isinstance(right, str)):
            raise SmstepError(
                Problem(
                    f"cannot compare {left!r} with {right!r} ({kind}): SageMaker compares two numbers or two strings",
                    fix="compare values of the same type",
                )
            )
        return bool(_COMPARE[kind](left, right))
    if kind == "In":
        value = resolver.evaluate(condition.get("QueryValue"))
        return value in [resolver.evaluate(v) for v in condition.get("Values", [])]
    if kind == "Not":
        return not evaluate_condition(condition.get("Condition") or condition.get("Expression") or {}, resolver)
    if kind == "Or":
        return any(evaluate_condition(c, resolver) for c in condition.get("Conditions", []))
    raise SmstepError(Problem(f"the local runner does not evaluate '{kind}' conditions"))


_MISSING = object()
_TOKEN = re.compile(r"""([^.\[\]]+)|\[(\d+)\]|\[['"]([^'"]*)['"]\]""")


def _walk(document: Any, path: str) -> Any:
    """``a.b[0]['c']`` into nested dicts and lists."""
    value = document
    for name, index, key in _TOKEN.findall(path):
        try:
            if index:
                value = value[int(index)]
            else:
                value = value[name or key]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def container_option(argv: list[str], name: str) -> str | None:
    """The value after ``--name`` in a list of container arguments."""
    flag = f"--{name}"
    for i, item in enumerate(argv[:-1]):
        if item == flag:
            return argv[i + 1]
    return None


@dataclass(frozen=True)
class Decision:
    """What the service does at a ConditionStep (its outcome) or a FailStep (the execution fails)."""

    outcome: bool | None = None
    when: str | None = None  # the condition as the notebook wrote it (the step's description)
    failure: tuple[str, str, str] | None = None  # (failure type, summary, message)


def decide(spec: StepSpec, resolver: Resolver) -> Decision:
    """Evaluate a ConditionStep on its upstream results, or a FailStep's message, as the service does."""
    if spec.type == "Fail":
        try:
            message = to_text(resolver.evaluate(spec.arguments.get("ErrorMessage", "")))
        except SmstepError as exc:
            message = f"(the message could not be rendered: {exc})"
        return Decision(failure=("Fail", f"failed: {message}" if message else "failed (FailStep)", message))
    when = (spec.description or "").removeprefix("when ") or None
    try:
        outcome = all(evaluate_condition(c, resolver) for c in spec.arguments.get("Conditions", []))
    except SmstepError as exc:
        return Decision(when=when, failure=("ConditionError", f"could not evaluate the condition: {exc}", str(exc)))
    return Decision(outcome=outcome, when=when)
