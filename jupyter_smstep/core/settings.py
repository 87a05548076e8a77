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

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Mapping

import yaml

from jupyter_smstep.core.states import SETTING_SOURCES, SettingSource
from jupyter_smstep.errors import Problem, Report

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


_RF = ("SageMaker", "PythonSDK", "Modules", "RemoteFunction")

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


# --------------------------------------------------------------------------- config.yaml
def config_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The admin then the user config file, as the SDK looks them up."""
    env = os.environ if environ is None else environ
    admin = env.get("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", "/etc/xdg/sagemaker/config.yaml")
    user = env.get(
        "SAGEMAKER_USER_CONFIG_OVERRIDE",
        str(Path(env.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "sagemaker" / "config.yaml"),
    )
    paths = []
    for raw in (admin, user):
        if raw.startswith("s3://"):
            continue  # an S3 config location is read by the SDK itself at compile time
        path = Path(raw).expanduser()
        if path.is_dir():
            path = path / "config.yaml"
        paths.append(path)
    return paths


def load_sdk_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merged SageMaker config (user over admin). Missing files are fine; bad YAML is an error."""
    merged: dict[str, Any] = {}
    env = os.environ if environ is None else environ
    for path in config_paths(environ):
        if not path.is_file():
            if any(env.get(f"SAGEMAKER_{k}_CONFIG_OVERRIDE") == str(path) for k in ("USER", "ADMIN")):
                from jupyter_smstep.errors import SmstepError

                raise SmstepError(
                    f"the SageMaker config file {path} (named by an environment variable) does not exist",
                    fix="fix SAGEMAKER_USER_CONFIG_OVERRIDE / SAGEMAKER_ADMIN_CONFIG_OVERRIDE, or unset it",
                )
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            from jupyter_smstep.errors import SmstepError

            raise SmstepError(
                f"{path} is not valid YAML: {exc}", fix="fix or remove the SageMaker config file"
            ) from None
        _deep_merge(merged, data)
    return merged


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def remote_function_config(config: Mapping[str, Any], *path: str) -> Any:
    """The value at ``SageMaker.PythonSDK.Modules.RemoteFunction.<path>`` of a config.yaml, or None."""
    node: Any = config
    for part in _RF + path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


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


def validate(
    step: str | None, settings: Mapping[str, Resolved], report: Report, *, in_studio: bool, root: Path | None = None
) -> None:
    """Check resolved settings for one step; findings go to ``report``.

    ``root`` is the notebook's folder: relative file options resolve against it,
    as they do in a kernel started there.
    """
    for key in FILE_OPTIONS:
        r = settings.get(key)
        path = local_file(r.value, root) if r is not None else None
        if r is not None and path is not None and not path.is_file():
            report.error(
                f"{key} {r.value!r} (from {r.origin}) names no file ({path})",
                step=step,
                fix=f"create it, or fix the path (relative paths start at the notebook's folder, {root})",
            )
    reuse = settings.get("reuse")
    if reuse is not None and reuse.value != "always":
        report.error(
            f"--reuse {reuse.value!r}: the only value is 'always' (reuse the cached result although the "
            "step read the clock, the network or unseeded randomness)",
            fix="--reuse always, or drop it",
            step=step,
        )
    role = settings.get("role")
    if role is None and not in_studio:
        report.error(
            "no IAM role: outside SageMaker Studio the SDK cannot guess one",
            fix="set one with %pipeline config --role arn:aws:iam::ACCOUNT:role/NAME "
            "(or RoleArn in the SageMaker config.yaml)",
            step=step,
        )
    # A missing image_uri is said once for the pipeline (validate_pipeline): a local run needs none.
    itype = settings.get("instance_type")
    if itype is None:
        report.error(
            "no instance type",
            fix="set one with --instance-type ml.m5.xlarge (on the cell or with %pipeline config)",
            step=step,
        )
    prefix = settings.get("job_name_prefix")
    if prefix is not None and prefix.source != DEFAULT:
        value = str(prefix.value)
        if not re.match(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", value) or len(value) > MAX_JOB_PREFIX:
            report.error(
                f"job name prefix {value!r} is invalid",
                fix=f"use letters, digits and dashes, at most {MAX_JOB_PREFIX} characters",
                step=step,
            )
    count = settings.get("instance_count")  # the model allows 0 (for InstanceGroups, which a step never has)
    if count is not None and isinstance(count.value, int) and count.value < 1:
        report.error(
            f"instance_count must be at least 1, got {count.value} (from {count.origin})",
            step=step,
            fix="pass a positive --instance-count",
        )
    _validate_limits(step, settings, report)


#: SageMaker's documented limits for a training job that its service model cannot say (sdk.rules.LIMITS lists
#: them with their pages; every other value is checked against the model itself, by sdk.rules).
MAX_RUNTIME_SECONDS = 28 * 24 * 60 * 60  # StoppingCondition.MaxRuntimeInSeconds
#: The SDK's ``SparkConfig`` fields (the same in v2 and v3): what ``--spark-config`` may hold.
SPARK_CONFIG_FIELDS = ("submit_jars", "submit_py_files", "submit_files", "configuration", "spark_event_logs_uri")


def did_you_mean_field(word: str, fields: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(word, fields, n=1)
    return f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(fields)}"


#: A name that says its value is a secret (environment variables, captured values).
SECRET_NAME = re.compile(r"token|secret|passw(or)?d|api_?key|credential|private_?key|authorization", re.IGNORECASE)
MASK = "••••••"


_ENV_FLAG = re.compile(r"(--env|--environment-variables)(\s+|=)([A-Za-z_][A-Za-z0-9_]*)=(\S+)")


def shown_line(line: str) -> str:
    """A ``%%step`` / ``%pipeline config`` line as views show it: secret-looking ``--env`` values masked."""
    return _ENV_FLAG.sub(
        lambda m: m.group(0) if not SECRET_NAME.search(m.group(3)) else f"{m.group(1)}{m.group(2)}{m.group(3)}={MASK}",
        line,
    )


def shown(key: str, value: Any) -> Any:
    """A setting's value as views show it: environment values whose name says secret are masked."""
    if key == "environment_variables" and isinstance(value, Mapping):
        return {k: (MASK if SECRET_NAME.search(str(k)) and v else v) for k, v in value.items()}
    return value


IMAGE_URI = re.compile(r"^[^\s:/][^\s]*$")


def _validate_limits(step: str | None, settings: Mapping[str, Resolved], report: Report) -> None:
    """The rules SageMaker documents but its model cannot say (sdk.rules checks the rest against the model)."""

    def value(key: str) -> Any:
        r = settings.get(key)
        return None if r is None else r.value

    def source(key: str) -> str:
        r = settings.get(key)
        return f" (from {r.origin})" if r is not None else ""

    image = value("image_uri")
    if isinstance(image, str) and (not image.strip() or "://" in image or not IMAGE_URI.match(image)):
        report.error(
            f"image_uri {image!r}{source('image_uri')} is not an image URI",
            step=step,
            fix="use ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG (no scheme, no spaces)",
        )
    runtime = value("max_runtime_in_seconds")
    if isinstance(runtime, int) and runtime > MAX_RUNTIME_SECONDS:
        report.error(
            f"max_runtime_in_seconds {runtime}{source('max_runtime_in_seconds')} is above SageMaker's "
            f"limit of {MAX_RUNTIME_SECONDS} (28 days)",
            step=step,
            fix=f"pass at most --max-runtime-in-seconds {MAX_RUNTIME_SECONDS}",
        )
    wait = value("max_wait_time_in_seconds")
    if value("use_spot_instances"):
        limit = runtime if isinstance(runtime, int) else 24 * 60 * 60
        if not isinstance(wait, int):
            report.error(
                "spot instances need --max-wait-time-in-seconds (SageMaker waits that long for capacity "
                "and the run together)",
                step=step,
                fix=f"add --max-wait-time-in-seconds {limit} or more (at least the max runtime)",
            )
        elif wait < limit:
            report.error(
                f"max_wait_time_in_seconds {wait} is shorter than max_runtime_in_seconds {limit}: "
                "SageMaker refuses a spot job whose wait ends before its runtime",
                step=step,
                fix=f"pass --max-wait-time-in-seconds {limit} or more",
            )
    env = value("environment_variables")
    if isinstance(env, Mapping):
        nul = [str(k).replace("\x00", "\\0") for k, v in env.items() if "\x00" in str(k) or "\x00" in str(v)]
        if nul:
            report.error(
                f"environment variable(s) {', '.join(nul)} hold a NUL byte, which no process environment "
                "can carry (the job would fail to start)",
                step=step,
                fix="remove the NUL character",
            )
        secret = [str(k) for k, v in env.items() if SECRET_NAME.search(str(k)) and v]
        if secret:
            report.warn(
                f"environment variable(s) {', '.join(secret)} look like secrets: their values are written "
                "into the pipeline definition, which anyone who can describe the pipeline can read",
                step=step,
                fix="pass the name of a Secrets Manager secret or SSM parameter instead, and "
                "read the value inside the step (the job's role needs access)",
            )
    spark = value("spark_config")
    if isinstance(spark, Mapping):
        unknown = sorted(str(k) for k in spark if k not in SPARK_CONFIG_FIELDS)
        if unknown:
            report.error(
                f"--spark-config has no field {', '.join(map(repr, unknown))} (SparkConfig's fields: "
                f"{', '.join(SPARK_CONFIG_FIELDS)})",
                step=step,
                fix=did_you_mean_field(unknown[0], SPARK_CONFIG_FIELDS),
            )
    elif spark is not None and not isinstance(spark, ParameterRef):
        report.error(
            f"--spark-config is {type(spark).__name__}, not a JSON object of SparkConfig's fields",
            step=step,
            fix='e.g. --spark-config \'{"configuration": {"Classification": "spark-defaults", "Properties": {}}}\'',
        )
    tags = value("tags")
    if isinstance(tags, Mapping):
        for key in tags:
            if str(key).lower().startswith("aws:"):
                report.error(
                    f"tag {key!r} uses the prefix 'aws:', which AWS reserves",
                    step=step,
                    fix="choose a tag key without the aws: prefix",
                )


_PY_IN_IMAGE = re.compile(r"(?:^|[^a-z])py(?:thon)?-?(3)\.?(\d{1,2})(?!\d)", re.IGNORECASE)


def image_python(uri: str) -> str | None:
    """The Python version an image's tag or name advertises (``py310``, ``python3.11``), if any."""
    tail = uri.rsplit("/", 1)[-1]
    m = _PY_IN_IMAGE.search(tail)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def validate_pipeline(
    steps: Mapping[str, Mapping[str, Resolved]], report: Report, *, in_studio: bool, kernel_python: str | None = None
) -> None:
    """Checks across steps, reported once for the steps they concern (not once per step).

    - In Studio without a role: submitting will use the Studio execution role (a warning: it works,
      but the notebook does not say which role its jobs get).
    - An image whose name advertises another Python than the kernel's: the job's bootstrap refuses a
      different minor version, so the step would fail on SageMaker after the upload.
    """
    kernel_python = kernel_python or _py_minor()
    no_image = missing_image(steps, in_studio=in_studio)
    if no_image:
        problem = no_image_problem(no_image, len(steps))
        report.warn(
            problem.message + ": a local run needs none; submit, definition, export and schedule do",
            fix=problem.fix,
            step=no_image[0] if len(no_image) == 1 else None,
        )
    no_role = [name for name, s in steps.items() if "role" not in s]
    if in_studio and no_role:
        report.warn(
            f"no IAM role set{_for_steps(no_role, len(steps))}: submitting uses the Studio execution role",
            fix="set one with %pipeline config --role arn:aws:iam::ACCOUNT:role/NAME to be explicit",
            step=no_role[0] if len(no_role) == 1 else None,
        )
    by_image: dict[tuple[str, str, str], list[str]] = {}
    for name, s in steps.items():
        image = s.get("image_uri")
        if image is None or image.source == KERNEL_IMAGE or not isinstance(image.value, str):
            continue
        py = image_python(image.value)
        if py and py != kernel_python:
            by_image.setdefault((image.value, image.source, py), []).append(name)
    for (uri, source, py), names in by_image.items():
        report.warn(
            f"image {uri!r} (from {source}){_for_steps(names, len(steps))} is for Python {py} but the "
            f"kernel runs Python {kernel_python}: the job's bootstrap refuses a different minor version",
            fix=f"use an image with Python {kernel_python}, or run the notebook on a Python {py} kernel",
            step=names[0] if len(names) == 1 else None,
        )


def missing_image(steps: Mapping[str, Mapping[str, Resolved]], *, in_studio: bool) -> list[str]:
    """The steps with no image_uri where the SDK has no default for this Python (outside Studio, not 3.8/3.10)."""
    if in_studio or _py_minor() in ("3.8", "3.10"):
        return []
    return [name for name, s in steps.items() if s.get("image_uri") is None]


def no_image_problem(names: list[str], total: int) -> Problem:
    return Problem(
        f"no image_uri{_for_steps(names, total)}: outside Studio the SDK has no default image for Python {_py_minor()}",
        fix="pass --image-uri (an image with Python " + _py_minor() + " and the SageMaker SDK), "
        "e.g. %pipeline config --image-uri ACCOUNT.dkr.ecr.REGION.amazonaws.com/IMAGE:TAG",
    )


def _for_steps(names: list[str], total: int) -> str:
    if len(names) == 1:
        return ""
    if len(names) == total:
        return " for every step"
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f" for steps {shown}"


def _py_minor() -> str:
    import sys

    return f"{sys.version_info[0]}.{sys.version_info[1]}"
