"""A pipeline definition checked against the service's published JSON schema.

The schema is vendored unchanged (``data/pipeline-definition.schema.json``; its
repository, commit and licence in the NOTICE beside it). It is older than what the
SDK emits, so :data:`EXCEPTIONS` lists each difference, with its reason, and is
applied to a copy before validating. Nothing is skipped silently: a definition
that breaks the schema outside these is refused.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.errors import Problem

SCHEMA = Path(__file__).resolve().parent.parent / "data" / "pipeline-definition.schema.json"

_FUNCTION_VALUES = ("StringArgumentValue", "IntegerArgumentValue", "FloatArgumentValue", "BooleanArgumentValue")


@dataclass(frozen=True)
class Exception_:
    where: str  # a JSON pointer into the schema
    change: str
    reason: str


#: Every difference between the published schema and what the SDK (v2 and v3) emits, applied by :func:`_schema`.
EXCEPTIONS = (
    Exception_(
        "/properties",
        "adds PipelineExperimentConfig and MlflowConfig (object or null)",
        "both SDK lines emit them; the service accepts them; the schema predates them",
    ),
    Exception_(
        "/definitions/RetryPolicy/properties/ExceptionType",
        "also a list of the same exception types",
        "the SDK writes ExceptionType as a list (the service's form); the schema has one string",
    ),
    Exception_(
        "/definitions/TrainingStep/properties/Arguments",
        "any object",
        "a training step's Arguments are a CreateTrainingJob request: sdk.rules checks them against "
        "botocore's current model instead (the schema's copy predates ContainerEntrypoint, ContainerArguments, "
        "Environment, RetryStrategy and KeepAlivePeriodInSeconds)",
    ),
    Exception_(
        "/definitions/ConditionStep/properties/Arguments/properties/Conditions, /definitions/OrCondition",
        "also a Not condition ({Type: Not, Condition: ...}) and an In condition as the SDK writes it "
        "({Type: In, QueryValue, Values})",
        "the SDK's ConditionNot (a --when with not, not in) is a condition the service runs, which the schema "
        "lacks; its ConditionIn writes QueryValue and Values where the schema says Value and In",
    ),
    Exception_(
        "/definitions/ForEachStep",
        "adds it, as SDK 3.27's ForEachStep writes it and its checks allow: Name, Type ForEach, DependsOn, "
        "DisplayName, Description, and Arguments with IterableItems (1-100 literals or expressions, or one "
        "expression), MaxConcurrency (1-50), an optional Selector (Pick MaxBy or MinBy, Field a Get) and ForEachBody "
        "(its steps checked each on their own)",
        "the service runs ForEach steps (SDK 3.27 builds them); the schema predates them",
    ),
    Exception_(
        "/definitions/" + "|".join(_FUNCTION_VALUES),
        "also Std:Join and Std:JsonGet",
        "the SDK writes an output path as Std:Join and a --when operand read from a step's results as "
        "Std:JsonGet; the schema's argument values take only Get (its JoinFunction is referenced nowhere)",
    ),
)


@functools.cache
def _schema() -> dict[str, Any]:
    schema = copy.deepcopy(json.loads(SCHEMA.read_text()))
    definitions = schema["definitions"]
    schema["properties"]["PipelineExperimentConfig"] = {"type": ["object", "null"]}
    schema["properties"]["MlflowConfig"] = {"type": ["object", "null"]}
    single = definitions["RetryPolicy"]["properties"]["ExceptionType"]
    definitions["RetryPolicy"]["properties"]["ExceptionType"] = {
        "oneOf": [single, {"type": "array", "minItems": 1, "items": single}]
    }
    definitions["TrainingStep"]["properties"]["Arguments"] = {"type": "object"}
    definitions["SmstepJoin"] = {
        "type": "object",
        "required": ["Std:Join"],
        "additionalProperties": False,
        "properties": {
            "Std:Join": {
                "type": "object",
                "required": ["On", "Values"],
                "additionalProperties": False,
                "properties": {"On": {"type": "string"}, "Values": {"type": "array"}},
            }
        },
    }
    definitions["SmstepJsonGet"] = {
        "type": "object",
        "required": ["Std:JsonGet"],
        "additionalProperties": False,
        "properties": {
            "Std:JsonGet": {
                "type": "object",
                "required": ["Path"],
                "additionalProperties": False,
                "properties": {"S3Uri": {}, "PropertyFile": {}, "Path": {"type": "string"}},
            }
        },
    }
    conditions = [
        {"$ref": "#/definitions/BinaryCondition"},
        {"$ref": "#/definitions/InCondition"},
        {"$ref": "#/definitions/OrCondition"},
        {"$ref": "#/definitions/SmstepNot"},
        {"$ref": "#/definitions/SmstepIn"},
    ]
    definitions["SmstepNot"] = {
        "type": "object",
        "required": ["Type", "Condition"],
        "additionalProperties": False,
        "properties": {"Type": {"enum": ["Not"]}, "Condition": {"anyOf": conditions}},
    }
    values = {"anyOf": definitions["InCondition"]["properties"]["Value"]["oneOf"]}  # a Get matches them all
    definitions["SmstepIn"] = {
        "type": "object",
        "required": ["Type", "QueryValue", "Values"],
        "additionalProperties": False,
        "properties": {"Type": {"enum": ["In"]}, "QueryValue": values, "Values": {"type": "array", "items": values}},
    }
    definitions["ConditionStep"]["properties"]["Arguments"]["properties"]["Conditions"]["items"] = {"oneOf": conditions}
    definitions["OrCondition"]["properties"]["Conditions"]["items"] = {"anyOf": conditions}
    for name in _FUNCTION_VALUES:
        definitions[name]["oneOf"] += [{"$ref": "#/definitions/SmstepJoin"}, {"$ref": "#/definitions/SmstepJsonGet"}]
    get = {"type": "object", "required": ["Get"], "additionalProperties": False}
    get["properties"] = {"Get": {"type": "string"}}
    expr = {"anyOf": [get, {"$ref": "#/definitions/SmstepJoin"}, {"$ref": "#/definitions/SmstepJsonGet"}]}
    literal = {"type": ["string", "integer", "number", "boolean"]}
    definitions["ForEachStep"] = {
        "type": "object",
        "required": ["Name", "Type", "Arguments"],
        "additionalProperties": False,
        "properties": {
            "Name": definitions["ConditionStep"]["properties"]["Name"],
            "Type": {"enum": ["ForEach"]},
            "DependsOn": definitions["ConditionStep"]["properties"].get("DependsOn", {"type": "array"}),
            "DisplayName": {"type": "string"},
            "Description": {"type": "string"},
            "Arguments": {
                "type": "object",
                "required": ["IterableItems", "MaxConcurrency", "ForEachBody"],
                "additionalProperties": False,
                "properties": {
                    "IterableItems": {
                        "oneOf": [
                            {"type": "array", "minItems": 1, "maxItems": 100, "items": {"anyOf": [literal, expr]}},
                            expr,
                        ]
                    },
                    "MaxConcurrency": {"type": "integer", "minimum": 1, "maximum": 50},
                    "Selector": {
                        "type": "object",
                        "required": ["Pick", "Field"],
                        "additionalProperties": False,
                        "properties": {"Pick": {"enum": ["MaxBy", "MinBy"]}, "Field": get},
                    },
                    "ForEachBody": {"type": "array", "minItems": 1},
                },
            },
        },
    }
    return schema


def problems(definition: Mapping[str, Any] | str) -> list[Problem]:
    """Where ``definition`` breaks the published schema (with :data:`EXCEPTIONS`): one error each, per step
    against its type's schema (a ConditionStep's branches and a ForEach's body each on their own)."""
    import jsonschema

    from jupyter_smstep.core.conditions import definition_steps

    parsed: Mapping[str, Any] = json.loads(definition) if isinstance(definition, str) else definition
    schema = _schema()
    found = _errors(jsonschema, schema, {**parsed, "Steps": []}, "", None)
    for step, _ in definition_steps(parsed):
        kind = f"{step.get('Type')}Step"
        name = str(step.get("Name"))
        if kind not in schema["definitions"]:
            found.append(
                Problem(
                    f"a step of type {step.get('Type')!r}, which SageMaker's published schema does not have",
                    step=name,
                    fix=_FIX,
                )
            )
            continue
        if kind == "ConditionStep":
            step = {**step, "Arguments": {**(step.get("Arguments") or {}), "IfSteps": [], "ElseSteps": []}}
        elif kind == "ForEachStep":  # its body steps are checked on their own; the list must not be empty
            step = {**step, "Arguments": {**(step.get("Arguments") or {}), "ForEachBody": [{}]}}
        found += _errors(jsonschema, {**schema, **schema["definitions"][kind]}, step, "", name)
    return found


_FIX = (
    "report it to jupyter_smstep with the definition (smstep definition NB): the SDK emitted something the "
    "service's published schema refuses"
)


def _errors(jsonschema: Any, schema: Mapping[str, Any], instance: Any, prefix: str, step: str | None) -> list[Problem]:
    found = []
    for error in jsonschema.Draft7Validator(schema).iter_errors(instance):
        best = jsonschema.exceptions.best_match(error.context) if error.context else error
        where = "/".join(str(p) for p in best.absolute_path)
        found.append(
            Problem(
                f"the definition breaks SageMaker's published schema at {prefix}/{where}: {best.message[:300]}",
                step=step,
                fix=_FIX,
            )
        )
    return found
