"""The notebook's rules on resolved settings: each value's type and range, the role, the image (and its Python),
the limits SageMaker documents, and the pipeline-wide ones (one role, an image for every step).

Pure: no IPython, no sagemaker. What the service's own models say is :mod:`jupyter_smstep.sdk.rules`'.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_smstep.core.secrets import SECRET_NAME
from jupyter_smstep.core.settings import (
    DEFAULT,
    FILE_OPTIONS,
    KERNEL_IMAGE,
    MAX_JOB_PREFIX,
    ParameterRef,
    Resolved,
    local_file,
)
from jupyter_smstep.errors import Problem, Report


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
