"""What SageMaker and EventBridge Scheduler accept, by their own published models.

botocore ships each service's model: for every field of every request, its type,
length or value range, entry count, ``pattern`` and enum. botocore itself checks
only required fields, types and minimums; the service checks the rest, after an
upload. :func:`check` walks a request against its operation's input shape and
returns every value the service would refuse, so that the tool refuses it first.

- Patterns are the service's (Java) regular expressions, matched whole, with the
  ``regex`` library (it has Java's ``\\p{L}`` and ``\\p{Alnum}`` classes).
- A value that is a pipeline variable (``{"Get": "Parameters.X"}``, a ``Std:Join``
  of them) is checked for each value it can take: the parameter's default and
  each ``-p`` value (``candidates``). One only known when the pipeline runs (a
  step's output, the execution id) cannot be checked, and is not.
- Fields the installed model does not know (an SDK newer than botocore) are not
  checked: botocore's own validation refuses them for a direct call.

:data:`LIMITS` holds the rules the models cannot say, each with the page it comes
from. :func:`step_request` maps a step's settings onto the ``CreateTrainingJob``
fields the SDK puts them in (:data:`FIELDS`; a test checks the SDK agrees), so a
step's options are checked when the graph is, before anything is built.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jupyter_smstep.core import settings as settings_mod
from jupyter_smstep.core.conditions import definition_steps
from jupyter_smstep.errors import Problem
from jupyter_smstep.core import setting_rules


_POSITIONS = re.compile(r"\[\d+\]| key$")


@dataclass(frozen=True)
class Violation:
    """One value the service would refuse: where (``Operation.Field.Sub``), the value and the rule broken."""

    operation: str
    path: str  # "Environment key", "ResourceConfig.KeepAlivePeriodInSeconds", "Tags[3].Key"
    value: Any
    rule: str  # "must match [a-zA-Z_][a-zA-Z0-9_]*", "is at most 21600"
    via: str = ""  # "parameter InstanceType's default", "-p InstanceType=..."
    choices: tuple[str, ...] = ()  # an enum's values

    @property
    def field(self) -> str:
        """``CreateTrainingJob.Environment``: the field, without list positions and key markers."""
        return f"{self.operation}.{_POSITIONS.sub('', self.path)}"

    @property
    def what(self) -> str:
        """The field as a user reads it: ``Environment keys``, ``SecurityGroupIds entries``, ``Tags[2].Key``."""
        last = self.path.rsplit(".", 1)[-1]
        if last.endswith(" key"):
            return f"{last[:-4]} keys"
        return re.sub(r"(\w+)\[\d+\]$", r"\1 entries", last)

    def __str__(self) -> str:
        return f"{self.what} {self.rule} ({self.field})"


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple, Mapping)):
        return f"({len(value)} entries)"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}…({len(str(value))} characters)"


@functools.cache
def _model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


@functools.cache
def _pattern(text: str) -> Any:
    import regex

    return regex.compile(text, regex.VERSION0)


def input_shape(service: str, operation: str) -> Any:
    return _model(service).operation_model(operation).input_shape


#: A pipeline variable in a definition: resolved when the pipeline runs.
_VARIABLES = ("Get", "Std:Join", "Std:JsonGet")


def check(
    service: str,
    operation: str,
    request: Mapping[str, Any],
    candidates: Mapping[str, list[tuple[Any, str]]] | None = None,
) -> list[Violation]:
    """Every value of ``request`` that ``service``'s ``operation`` would refuse.

    ``candidates``: parameter name -> [(value, where it comes from)], the values a ``{"Get": "Parameters.NAME"}``
    can take (its default, each ``-p`` value)."""
    found: list[Violation] = []
    _walk(input_shape(service, operation), request, "", operation, candidates or {}, "", found)
    return found


def _walk(
    shape: Any,
    value: Any,
    path: str,
    operation: str,
    candidates: Mapping[str, list[tuple[Any, str]]],
    via: str,
    found: list[Violation],
) -> None:
    if isinstance(value, Mapping) and len(value) == 1 and next(iter(value)) in _VARIABLES:
        for resolved, where in _resolutions(value, candidates):
            _walk(shape, resolved, path, operation, candidates, where, found)
        return
    kind = shape.type_name
    meta = shape.metadata

    def refuse(rule: str, at: str = path, got: Any = value) -> None:
        found.append(Violation(operation, at.lstrip("."), got, rule, via))

    if kind == "structure":
        if isinstance(value, Mapping):
            for name, member in value.items():
                if name in shape.members:
                    _walk(shape.members[name], member, f"{path}.{name}", operation, candidates, via, found)
        return
    if kind == "list":
        if isinstance(value, (list, tuple)):
            _count(meta, len(value), "entries", refuse)
            for i, item in enumerate(value):
                _walk(shape.member, item, f"{path}[{i}]", operation, candidates, via, found)
        return
    if kind == "map":
        if isinstance(value, Mapping):
            _count(meta, len(value), "entries", refuse)
            for key, item in value.items():
                _walk(shape.key, key, f"{path} key", operation, candidates, via, found)
                _walk(shape.value, item, f"{path}.{key}", operation, candidates, via, found)
        return
    if kind == "string":
        if not isinstance(value, str):
            return
        # one rule per value: too long first (no pattern runs over a huge value), then enum, pattern, too short
        if "max" in meta and len(value) > meta["max"]:
            _count(meta, len(value), "characters", refuse)
        elif "enum" in meta and value not in meta["enum"]:
            found.append(
                Violation(
                    operation,
                    path.lstrip("."),
                    value,
                    f"must be one of the {len(meta['enum'])} values botocore {_botocore()} lists",
                    via,
                    tuple(meta["enum"]),
                )
            )
        elif "pattern" in meta and not _matches(meta["pattern"], value):
            refuse(f"must match {meta['pattern']}")
        else:
            _count(meta, len(value), "characters", refuse)
        return
    if (
        kind in ("integer", "long", "float", "double")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ):
        if "min" in meta and value < meta["min"]:
            refuse(f"is at least {meta['min']}")
        if "max" in meta and value > meta["max"]:
            refuse(f"is at most {meta['max']}")


def _matches(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the service's ``pattern`` whole; one that takes over a second to decide (a
    pattern that backtracks) is not refused here (the service says)."""
    try:
        return bool(_pattern(pattern).fullmatch(value, timeout=1.0))
    except TimeoutError:
        return True


def _botocore() -> str:
    import botocore

    return str(botocore.__version__)


def _count(meta: Mapping[str, Any], n: int, unit: str, refuse: Any) -> None:
    def units(limit: int) -> str:
        return unit if limit != 1 else unit.replace("entries", "entry").rstrip("s")

    if "min" in meta and n < meta["min"]:
        refuse(f"has at least {meta['min']} {units(meta['min'])}")
    if "max" in meta and n > meta["max"]:
        refuse(f"has at most {meta['max']} {units(meta['max'])}")


def _resolutions(variable: Mapping[str, Any], candidates: Mapping[str, list[tuple[Any, str]]]) -> list[tuple[Any, str]]:
    """The values a pipeline variable can take that are known before it runs (none for a step's output)."""
    key, body = next(iter(variable.items()))
    if key == "Get":
        name = str(body)
        return list(candidates.get(name[len("Parameters.") :], [])) if name.startswith("Parameters.") else []
    if key == "Std:Join" and isinstance(body, Mapping):
        parts = [
            _resolutions(part, candidates) if isinstance(part, Mapping) else [(part, "")]
            for part in body.get("Values", [])
        ]
        if not all(parts):
            return []
        combos = itertools.islice(itertools.product(*parts), 64)
        return [
            (str(body.get("On", "")).join(str(v) for v, _ in combo), ", ".join(w for _, w in combo if w))
            for combo in combos
        ]
    return []


# ---------------------------------------------------------------------------- rules the models cannot say
@dataclass(frozen=True)
class Limit:
    key: str
    rule: str
    source: str  # the page it comes from


#: Rules the service documents but its model cannot express; core.settings checks them at graph time.
LIMITS = (
    Limit(
        "instance_count",
        "at least 1 (the model's 0 is for InstanceGroups, which a @step job never has)",
        "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html",
    ),
    Limit(
        "job_name_prefix",
        "at most 39 characters: the service appends a 24-character timestamp to the 63 of TrainingJobName",
        "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html",
    ),
    Limit(
        "tags",
        "keys do not start with aws: (reserved)",
        "https://docs.aws.amazon.com/tag-editor/latest/userguide/tagging.html",
    ),
    Limit(
        "max_runtime_in_seconds",
        f"at most {setting_rules.MAX_RUNTIME_SECONDS} (28 days)",
        "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_StoppingCondition.html",
    ),
    Limit(
        "max_wait_time_in_seconds",
        "at least max_runtime_in_seconds when use_spot_instances",
        "https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html",
    ),
)


# ---------------------------------------------------------------------------- a step's settings
#: setting -> the CreateTrainingJob field the SDK's @step puts it in (tests/sdk/test_rules.py checks each).
FIELDS: dict[str, str] = {
    "role": "RoleArn",
    "image_uri": "AlgorithmSpecification.TrainingImage",
    "instance_type": "ResourceConfig.InstanceType",
    "instance_count": "ResourceConfig.InstanceCount",
    "volume_size": "ResourceConfig.VolumeSizeInGB",
    "volume_kms_key": "ResourceConfig.VolumeKmsKeyId",
    "keep_alive_period_in_seconds": "ResourceConfig.KeepAlivePeriodInSeconds",
    "max_runtime_in_seconds": "StoppingCondition.MaxRuntimeInSeconds",
    "max_wait_time_in_seconds": "StoppingCondition.MaxWaitTimeInSeconds",
    "max_retry_attempts": "RetryStrategy.MaximumRetryAttempts",
    "environment_variables": "Environment",
    "tags": "Tags",
    "security_group_ids": "VpcConfig.SecurityGroupIds",
    "subnets": "VpcConfig.Subnets",
    "job_name_prefix": "TrainingJobName",
}
#: Entries the SDK adds to every step's Environment (AWS_DEFAULT_REGION, REMOTE_FUNCTION_SECRET_KEY).
SDK_ENVIRONMENT = 2


def step_request(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``CreateTrainingJob`` fields a step's resolved settings (key -> value) become."""
    request: dict[str, Any] = {}
    for key, path in FIELDS.items():
        value = settings.get(key)
        if value is None or isinstance(value, settings_mod.ParameterRef):
            continue
        if key == "tags" and isinstance(value, Mapping):
            value = [{"Key": str(k), "Value": str(v)} for k, v in value.items()]
        elif key == "environment_variables" and isinstance(value, Mapping):
            value = {str(k): str(v) for k, v in value.items()}
        node = request
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return request


def option_of(path: str) -> str | None:
    """The setting a CreateTrainingJob field (``Environment.X``, ``Tags[2].Key``) comes from."""
    for key, field in FIELDS.items():
        if path == field or path.startswith((f"{field}.", f"{field}[", f"{field} ")):
            return key
    return None


def step_problems(step: str, settings: Mapping[str, Any], origins: Mapping[str, str] | None = None) -> list[Problem]:
    """A step's settings checked against ``CreateTrainingJob``: one error per value the service would refuse,
    naming the option, the field and the rule. (Remembered by content: a panel refresh walks nothing again.)"""
    key = json.dumps([step, step_request(settings), dict(origins or {})], sort_keys=True, default=repr)
    return list(_step_problems(key))


@functools.lru_cache(maxsize=4096)
def _step_problems(key: str) -> tuple[Problem, ...]:
    step, request, origins = json.loads(key)
    return tuple(_walk_step(step, request, origins))


def _walk_step(step: str, request: dict[str, Any], origins: Mapping[str, str]) -> list[Problem]:
    problems = []
    env = request.get("Environment")
    for violation in check("sagemaker", "CreateTrainingJob", request):
        key = option_of(violation.path)
        problems.append(_problem(violation, key, step, origins.get(key or "")))
    if isinstance(env, Mapping):  # the SDK adds its own entries: the service counts them too
        room = int(input_shape("sagemaker", "CreateTrainingJob").members["Environment"].metadata["max"])
        if room - SDK_ENVIRONMENT < len(env) <= room:
            problems.append(
                _problem(
                    Violation(
                        "CreateTrainingJob",
                        "Environment",
                        env,
                        f"has at most {room} entries, {SDK_ENVIRONMENT} of them the SDK's",
                    ),
                    "environment_variables",
                    step,
                    origins.get("environment_variables"),
                )
            )
    return problems


_FLAGS = {key: flag for flag, key in settings_mod.ALIASES.items()}


def _problem(violation: Violation, key: str | None, step: str | None, origin: str | None = None) -> Problem:
    flag = f"--{_FLAGS.get(key or '', (key or '').replace('_', '-'))}" if key else violation.field
    value = _short(violation.value)
    where = ", ".join(w for w in (f"from {origin}" if origin else "", violation.via) if w)
    fix = f"use a value SageMaker accepts ({violation.what} {violation.rule})"
    if violation.choices:
        close = difflib.get_close_matches(str(violation.value), violation.choices, n=3)
        fix = (
            f"did you mean {' or '.join(close)}?" if close else "see the service's list"
        ) + " (a value newer than the list needs a newer botocore: pip install -U botocore)"
    return Problem(f"{flag} {value}{f' ({where})' if where else ''}: {violation}", step=step, fix=fix)


# ---------------------------------------------------------------------------- a definition
def definition_problems(definition: Mapping[str, Any] | str, values: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every training step of a pipeline definition checked against ``CreateTrainingJob``, each pipeline
    variable at its default and at ``values`` (a run's ``-p``)."""
    parsed: Mapping[str, Any] = json.loads(definition) if isinstance(definition, str) else definition
    candidates: dict[str, list[tuple[Any, str]]] = {}
    for parameter in parsed.get("Parameters") or []:
        name = str(parameter.get("Name"))
        if "DefaultValue" in parameter:
            candidates.setdefault(name, []).append((parameter["DefaultValue"], f"parameter {name}'s default"))
    for name, value in (values or {}).items():
        candidates.setdefault(name, []).append((value, f"-p {name}={value}"))
    problems = []
    for step, _ in definition_steps(parsed):
        if step.get("Type") != "Training":
            continue
        for violation in check("sagemaker", "CreateTrainingJob", step.get("Arguments") or {}, candidates):
            problems.append(_problem(violation, option_of(violation.path), str(step.get("Name"))))
    return problems


# ---------------------------------------------------------------------------- the API requests
def request_problems(service: str, operation: str, request: Mapping[str, Any], what: str) -> list[Problem]:
    """A request the tool is about to send, checked whole; ``what`` names it for the user."""
    return [
        Problem(f"{what}: {v}", fix=f"use a value the service accepts: {v.path} {v.rule}")
        for v in check(service, operation, request)
    ]


def shape_problems(shape: str, value: Mapping[str, Any], what: str) -> list[Problem]:
    """A value the tool will send as the SageMaker model's ``shape`` (``MlflowConfig``), checked; ``what``: where it
    was given."""
    found: list[Violation] = []
    _walk(_model("sagemaker").shape_for(shape), value, "", shape, {}, "", found)
    return [Problem(f"{what}: {v}", fix=f"use a value SageMaker accepts ({v.path} {v.rule})") for v in found]


# ---------------------------------------------------------------------------- a graph
def graph_problems(graph: Any, values: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every step's settings as ``CreateTrainingJob`` takes them, each parameter-bound one at the parameter's
    default; with ``values`` (a run's ``-p``), only the settings bound to those parameters, at those values, and
    the ``StartPipelineExecution`` request that carries them."""
    merged = {**graph.parameters, **(values or {})}
    problems: list[Problem] = []
    for node in graph.steps:
        bound = {
            k
            for k, r in node.settings.items()
            if isinstance(r.value, settings_mod.ParameterRef) and (values is None or r.value.name in values)
        }
        settings = settings_mod.with_parameter_values(node.settings, merged)
        if values is not None:
            settings = {k: r for k, r in settings.items() if k in bound}
        request = {k: r.value for k, r in settings.items() if k != "job_name_prefix"}  # core checks it (LIMITS)
        problems += step_problems(node.name, request, {k: r.origin for k, r in settings.items()})
    if graph.mlflow and values is None:
        problems += shape_problems("MlflowConfig", mlflow_request(graph.mlflow), "%pipeline config --mlflow-arn")
    for name, value in (values or {}).items():  # the StartPipelineExecution request that carries them
        start = {"PipelineParameters": [{"Name": name, "Value": _parameter_text(value)}]}
        problems += [
            Problem(f"-p {name}={_short(value)}: {v}", fix=f"use a value SageMaker accepts ({v.what} {v.rule})")
            for v in check("sagemaker", "StartPipelineExecution", start)
        ]
    return problems


def mlflow_request(mlflow: Mapping[str, str]) -> dict[str, str]:
    """``%pipeline config --mlflow-*`` as the definition's ``MlflowConfig``."""
    return {
        "MlflowResourceArn": mlflow.get("arn", ""),
        **({"MlflowExperimentName": mlflow["experiment"]} if mlflow.get("experiment") else {}),
    }


def _parameter_text(value: Any) -> str:
    """A parameter's value as StartPipelineExecution carries it (a string)."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


#: The requests :func:`guard` checks as they are sent, per service.
GUARDED = {
    "sagemaker": ("CreatePipeline", "UpdatePipeline", "StartPipelineExecution"),
    "scheduler": ("CreateSchedule", "UpdateSchedule"),
}


def guard(client: Any) -> None:
    """Check every request of :data:`GUARDED` that ``client`` sends, as sent (the SDK builds them), against the
    service's model: a value it would refuse raises :class:`SmstepError` before the request leaves. Once per
    client."""
    service = client.meta.service_model.service_name
    events = client.meta.events

    def before(params: dict, model: Any, **_: Any) -> None:
        problems = request_problems(service, model.name, params, f"the {model.name} request")
        if problems:
            from jupyter_smstep.errors import SmstepError

            raise SmstepError(problems)

    for operation in GUARDED.get(service, ()):
        events.register(
            f"before-parameter-build.{service}.{operation}", before, unique_id=f"jupyter_smstep.rules.{operation}"
        )


def schedule_problems(name: str, expression: str, role: str, parameters: Mapping[str, Any]) -> list[Problem]:
    """A schedule's own values against EventBridge Scheduler's ``CreateSchedule``: its name, expression, role and
    each ``-p`` it starts the pipeline with."""
    request = {
        "Name": name,
        "ScheduleExpression": expression,
        "Target": {
            "RoleArn": role,
            "SageMakerPipelineParameters": {
                "PipelineParameterList": [{"Name": k, "Value": _parameter_text(v)} for k, v in parameters.items()]
            },
        },
    }
    flags = {"Name": "the schedule name", "ScheduleExpression": "the expression", "Target.RoleArn": "--role"}
    problems = []
    for v in check("scheduler", "CreateSchedule", request):
        field = _POSITIONS.sub("", v.path)
        flag = flags.get(field, "-p" if "PipelineParameterList" in field else v.field)
        problems.append(
            Problem(
                f"{flag} {_short(v.value)}: {v}", fix=f"use a value EventBridge Scheduler accepts ({v.what} {v.rule})"
            )
        )
    return problems
