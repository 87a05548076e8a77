"""Which value each ``@step`` setting gets, and where it came from.

Precedence, highest first (the user can see which one won):

1. ``cell``: an option on the ``%%step`` line;
2. ``notebook``: ``%pipeline config`` defaults;
3. ``config.yaml``: the SageMaker SDK's own defaults file
   (``SAGEMAKER_USER_CONFIG_OVERRIDE`` / ``SAGEMAKER_ADMIN_CONFIG_OVERRIDE``,
   read the way the SDK reads them);
4. ``kernel image``: the Studio kernel's image, for ``image_uri`` only;
5. ``default``: the SDK's default.

Pure: no IPython, no sagemaker. ``config.yaml`` is parsed with PyYAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping


from jupyter_smstep.core.sdk_config import remote_function_config
from jupyter_smstep.core.states import SETTING_SOURCES, SettingSource
from jupyter_smstep.errors import Report

CELL: SettingSource = "cell"
NOTEBOOK: SettingSource = "notebook"
CONFIG: SettingSource = "config.yaml"
KERNEL_IMAGE: SettingSource = "kernel image"
DEFAULT: SettingSource = "default"
SOURCES = SETTING_SOURCES  # highest first


@dataclass(frozen=True)
class Option:
    """One ``@step`` keyword as a ``%%step`` option."""

    key: str  # the SDK keyword
    kind: str  # str, int, float, bool, list, kv (KEY=VALUE pairs), json, retry
    help: str
    default: Any = None  # the SDK's default
    config_path: tuple[str, ...] | None = None  # under SageMaker.PythonSDK.Modules.RemoteFunction
    per_step: bool = False  # meaningful on a cell only (not as a notebook default)
    step_kwarg: bool = True  # passed to ``@step``; False: jupyter_smstep applies it to the definition itself

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")


#: Every ``@step`` keyword (v2 and v3 share the signature), in the SDK's order.
OPTIONS: tuple[Option, ...] = (
    Option("display_name", "str", "Display name of the step in Studio.", per_step=True),
    Option("description", "str", "Description of the step.", per_step=True),
    Option(
        "retry_policies",
        "retry",
        "Retry policy EXCEPTION[,EXCEPTION]:MAX_ATTEMPTS[:INTERVAL_S[:BACKOFF]], "
        "e.g. SageMaker.CAPACITY_ERROR:3 or Step.THROTTLING:5:2:2.0 (repeatable).",
    ),
    Option(
        "dependencies",
        "str",
        "Path to a requirements.txt or environment.yml installed before the step runs, "
        "'auto' (pin, from the kernel, every package the step uses) or 'auto_capture' (the SDK's: the whole "
        "environment).",
        config_path=("Dependencies",),
    ),
    Option(
        "pre_execution_commands",
        "list",
        "Shell command run before the step (repeatable).",
        config_path=("PreExecutionCommands",),
    ),
    Option(
        "pre_execution_script",
        "str",
        "Path to a shell script run before the step.",
        config_path=("PreExecutionScript",),
    ),
    Option(
        "environment_variables",
        "kv",
        "Environment variable KEY=VALUE for the job (repeatable).",
        config_path=("EnvironmentVariables",),
    ),
    Option("image_uri", "str", "Container image URI (default: the Studio kernel's image).", config_path=("ImageUri",)),
    Option("instance_count", "int", "Number of instances.", default=1),
    Option("instance_type", "str", "Instance type, e.g. ml.m5.xlarge.", config_path=("InstanceType",)),
    Option(
        "job_conda_env",
        "str",
        "Conda environment in the image to run the step in.",
        config_path=("JobCondaEnvironment",),
    ),
    Option("job_name_prefix", "str", "Training job name prefix (default: <pipeline>-<step>)."),
    Option("keep_alive_period_in_seconds", "int", "Warm pool keep-alive period.", default=0),
    Option("max_retry_attempts", "int", "Job-level retries on internal errors.", default=1),
    Option("max_runtime_in_seconds", "int", "Stop the job after this many seconds.", default=24 * 60 * 60),
    Option("role", "str", "IAM role ARN the job runs as.", config_path=("RoleArn",)),
    Option(
        "security_group_ids",
        "list",
        "VPC security group id (repeatable).",
        config_path=("VpcConfig", "SecurityGroupIds"),
    ),
    Option("subnets", "list", "VPC subnet id (repeatable).", config_path=("VpcConfig", "Subnets")),
    Option("tags", "kv", "Tag KEY=VALUE for the job (repeatable).", config_path=("Tags",)),
    Option("volume_kms_key", "str", "KMS key for the job's storage volume.", config_path=("VolumeKmsKeyId",)),
    Option("volume_size", "int", "Storage volume size in GB.", default=30),
    Option(
        "encrypt_inter_container_traffic",
        "bool",
        "Encrypt traffic between instances.",
        config_path=("EnableInterContainerTrafficEncryption",),
    ),
    Option("spark_config", "json", "SparkConfig fields as a JSON object."),
    Option("use_spot_instances", "bool", "Use managed spot training.", default=False),
    Option("max_wait_time_in_seconds", "int", "Maximum wait for spot capacity."),
    # Not an @step keyword: put on the step's definition (see sdk.content).
    Option(
        "cache",
        "duration",
        "Let SageMaker reuse a succeeded run of the unchanged step for this long (ISO 8601 duration: P30D, PT12H).",
        step_kwarg=False,
    ),
    # Not an @step keyword: the local runner's cache (local.reads).
    Option(
        "reuse",
        "str",
        "'always': a local run may reuse the step's cached result although the step read "
        "something that cannot be pinned (the clock, the network, unseeded randomness).",
        per_step=True,
        step_kwarg=False,
    ),
)
OPTIONS_BY_KEY = {o.key: o for o in OPTIONS}

#: The exception types a ``--retry`` policy can name (the values SageMaker's definition uses).
RETRY_TYPES = (
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "SageMaker.JOB_INTERNAL_ERROR",
    "SageMaker.CAPACITY_ERROR",
    "SageMaker.RESOURCE_LIMIT",
)

# Short flag names users will reach for; they map onto the SDK keyword.
ALIASES = {
    "env": "environment_variables",
    "tag": "tags",
    "retry": "retry_policies",
    "security-group-id": "security_group_ids",
    "subnet": "subnets",
}

#: An ISO 8601 duration as SageMaker's CacheConfig.ExpireAfter takes it (P30D, PT12H, P1Y2M10DT2H30M, P2W).
DURATION = re.compile(r"^P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?$")
PIPELINE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,255}$")
STEP_NAME = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
#: The SDK appends "-YYYY-MM-DD-HH-MM-SS-mmm" (24 chars) to a job name prefix and
#: the service keeps training job names to 63 characters.
MAX_JOB_PREFIX = 63 - 24


#: The options whose ``@step`` argument accepts a pipeline variable and that take a parameter's name as
#: their value (``--instance-type TrainingInstanceType``). Environment values and VPC ids accept one too,
#: but a literal string there could be a parameter's name by chance: they stay literal.
PARAMETER_OPTIONS = frozenset(
    {
        "image_uri",
        "instance_count",
        "instance_type",
        "job_conda_env",
        "keep_alive_period_in_seconds",
        "max_retry_attempts",
        "max_runtime_in_seconds",
        "volume_kms_key",
        "volume_size",
        "encrypt_inter_container_traffic",
        "use_spot_instances",
        "max_wait_time_in_seconds",
    }
)


@dataclass(frozen=True)
class ParameterRef:
    """An option whose value is a pipeline parameter: SageMaker reads the value of each execution."""

    name: str
    default: Any = None  # the parameter's declared default (filled when the graph binds it)

    def __str__(self) -> str:
        return f"{self.name} = {self.default!r}"

    def __repr__(self) -> str:
        return f"parameter {self.name} (default {self.default!r})"


@dataclass(frozen=True)
class Resolved:
    value: Any
    source: SettingSource
    via: str | None = None  # set while a parameter's value stands in for it (validation)

    @property
    def origin(self) -> str:
        """Where the value came from, as messages say it."""
        return self.source if self.via is None else f"{self.source}, {self.via}"

    def to_json(self) -> dict[str, Any]:
        if isinstance(self.value, ParameterRef):
            return {"value": self.value.default, "source": self.source, "parameter": self.value.name}
        return {"value": self.value, "source": self.source}


def bind_parameters(
    step: str | None, settings: dict[str, Resolved], parameters: Mapping[str, Any], report: Report
) -> None:
    """Make each :data:`PARAMETER_OPTIONS` value that names a declared parameter a :class:`ParameterRef`
    (in place). A number or flag option given a name that is no parameter, or a parameter of another
    type, is an error."""
    import difflib

    for key in sorted(PARAMETER_OPTIONS & set(settings)):
        r = settings[key]
        option = OPTIONS_BY_KEY[key]
        name = (
            r.value.name
            if isinstance(r.value, ParameterRef)
            else r.value
            if (isinstance(r.value, str) and r.value in parameters)
            else None
        )
        if name is None:
            continue
        if name not in parameters:
            close = difflib.get_close_matches(name, list(parameters), n=1)
            kind = {"int": "an integer", "bool": "true/false"}.get(option.kind, option.kind)
            report.error(
                f"{option.flag} {name!r} (from {r.source}) is neither {kind} nor a declared pipeline parameter",
                step=step,
                fix=f"did you mean {close[0]}?"
                if close
                else f"declare it in the parameters cell (%pipeline param {name}=VALUE), or give {kind}",
            )
            continue
        default = parameters[name]
        want = {"int": int, "bool": bool}.get(option.kind, str)
        if type(default) is not want:
            article = "an" if want is int else "a"
            report.error(
                f"{option.flag} {name}: parameter {name!r} is a {type(default).__name__} "
                f"({default!r}); {option.flag} takes {article} {want.__name__} parameter",
                step=step,
                fix=f"declare {name} with {article} {want.__name__} default, or use another parameter",
            )
            continue
        settings[key] = Resolved(ParameterRef(name, default), r.source)


def with_parameter_values(settings: Mapping[str, Resolved], values: Mapping[str, Any]) -> dict[str, Resolved]:
    """The settings with each parameter-bound value replaced by that parameter's value in ``values``
    (its default, or a run's override): what validation checks as it checks a literal."""
    out = dict(settings)
    for key, r in settings.items():
        if isinstance(r.value, ParameterRef):
            name = r.value.name
            out[key] = Resolved(values.get(name, r.value.default), r.source, f"parameter {name}")
    return out


def _config_value(config: Mapping[str, Any], option: Option) -> Any:
    if option.config_path is None:
        return None
    node = remote_function_config(config, *option.config_path)
    if node is None:
        return None
    if option.kind == "kv" and isinstance(node, list):  # Tags: [{Key, Value}]
        return {t.get("Key"): t.get("Value") for t in node if isinstance(t, Mapping)}
    return node


# --------------------------------------------------------------------------- resolution
def resolve(
    cell: Mapping[str, Any],
    notebook: Mapping[str, Any],
    config: Mapping[str, Any],
    kernel_image: str | None,
) -> dict[str, Resolved]:
    """Every ``@step`` setting with the value that wins and its source.

    Settings nobody set and the SDK has no default for are omitted (the SDK
    then leaves them out of the job request too).
    """
    out: dict[str, Resolved] = {}
    for option in OPTIONS:
        key = option.key
        if key in cell and cell[key] is not None:
            out[key] = Resolved(cell[key], CELL)
        elif key in notebook and notebook[key] is not None and not option.per_step:
            out[key] = Resolved(notebook[key], NOTEBOOK)
        elif (value := _config_value(config, option)) is not None:
            out[key] = Resolved(value, CONFIG)
        elif key == "image_uri" and kernel_image:
            out[key] = Resolved(kernel_image, KERNEL_IMAGE)
        elif option.default is not None:
            out[key] = Resolved(option.default, DEFAULT)
    return out


def job_name_prefix(pipeline: str, step: str) -> str:
    """``<pipeline>-<step>``, made a valid training job name prefix.

    Underscores (legal in step names, not in job names) become dashes, and the
    result is cut so the SDK's timestamp still fits in 63 characters.
    """
    raw = re.sub(r"[^a-zA-Z0-9-]+", "-", f"{pipeline}-{step}")
    raw = re.sub(r"-{2,}", "-", raw).strip("-")
    return raw[:MAX_JOB_PREFIX].rstrip("-")


#: Options that name a local file the SDK uploads with the step.
FILE_OPTIONS = ("dependencies", "pre_execution_script")


def local_file(value: Any, root: Path | None) -> Path | None:
    """The local file a file option names, resolved against the notebook's folder (None: not a file)."""
    if not isinstance(value, str) or not value or value in ("auto", "auto_capture") or value.startswith("s3://"):
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() or root is None else root / path
