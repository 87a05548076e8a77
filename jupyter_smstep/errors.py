r"""The errors users see, by cause, each carrying :class:`Problem`\ s with a fix.

Every problem is reported as a :class:`SmstepError` that says *what* is wrong,
*where* (cell and line) and *how to fix it*, so that the magics, the CLI and
the panel can all show it without a traceback. The class says whose move it
is, and ``smstep`` exits with its :attr:`~SmstepError.exit_code`:

- :class:`SmstepError` itself (exit 2): the notebook or the arguments are wrong;
- :class:`RunFailed` (exit 1): a step or the pipeline failed;
- :class:`ServiceError` (exit 3): AWS or the environment refused (endpoint
  unreachable, no credentials, access denied, throttled past retries, the SDK
  not installed).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from collections.abc import Iterable, Iterator

from jupyter_smstep.core.states import Severity


@dataclass(frozen=True)
class Problem:
    """One validation finding, attached to a step cell where possible."""

    message: str
    fix: str = ""
    step: str | None = None
    line: int | None = None  # 1-based line in the cell, the %%step line being line 1
    severity: Severity = "error"

    def location(self) -> str:
        parts = []
        if self.step:
            parts.append(f"step '{self.step}'")
        if self.line:
            parts.append(f"line {self.line}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}\n  fix: {self.fix}" if self.fix else text


class SmstepError(Exception):
    """The notebook or the arguments are wrong; carries every :class:`Problem` found."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem | str, fix: str = "") -> None:
        if isinstance(problems, str):
            problems = [Problem(problems, fix)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems:"]
        lines += [f"- {p}".replace("\n", "\n  ") for p in self.problems]
        return "\n".join(lines)


class BadValue(ValueError):
    """A value the user wrote that cannot be used: what is wrong and how to write it. The caller knows
    where (the cell, the line) and turns it into a :class:`Problem`."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


class RunFailed(SmstepError):
    """A step or the pipeline failed (locally or on SageMaker)."""

    exit_code = 1


class ServiceError(SmstepError):
    """AWS or the environment refused: unreachable, no credentials, access denied, throttled, SDK missing."""

    exit_code = 3


@dataclass
class Report:
    """Errors and warnings collected while validating, before anything is uploaded."""

    problems: list[Problem] = field(default_factory=list)

    def error(self, message: str, fix: str = "", step: str | None = None, line: int | None = None) -> None:
        self.problems.append(Problem(message, fix, step, line, "error"))

    def warn(self, message: str, fix: str = "", step: str | None = None, line: int | None = None) -> None:
        self.problems.append(Problem(message, fix, step, line, "warning"))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SmstepError(self.errors)


# --------------------------------------------------------------------------- AWS errors by cause
#: Error codes that mean the request was fine but the caller may not make it (exit 3).
_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
THROTTLING = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ProvisionedThroughputExceededException",
    }
)
#: Error codes that mean the request itself was wrong: an unknown execution, a bad value (exit 2).
_BAD_REQUEST = frozenset(
    {
        "ResourceNotFound",
        "ResourceNotFoundException",
        "ValidationException",
        "NoSuchBucket",
        "NoSuchKey",
        "InvalidParameterValue",
    }
)


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, nearest first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ``ClientError`` (read by duck typing: no botocore import)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return (response.get("Error") or {}).get("Code") or None
    return None


def aws_error(
    exc: BaseException, doing: str, *, denied_fix: str | None = None, not_found_fix: str | None = None
) -> SmstepError:
    """An exception from boto3 / the SDK while ``doing`` something, as an error of the right cause.

    Unreachable endpoints, missing credentials, denied access and throttling are
    :class:`ServiceError` (exit 3); a request AWS found wrong (an unknown
    execution, an invalid value) is a plain :class:`SmstepError` (exit 2). The cause is read from the AWS
    error the SDK wrapped, when it wrapped one (its upload errors keep the ``ClientError`` as their cause).
    """
    exc = next((c for c in causes(exc) if error_code(c)), exc)
    code = error_code(exc)
    name = type(exc).__name__
    text = str(exc)
    if code:
        message = ((getattr(exc, "response", {}) or {}).get("Error") or {}).get("Message") or text
        if "<html" in message.lower() or "<!doctype" in message.lower():  # a proxy's or a server's error page
            status = ((getattr(exc, "response", {}) or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
            message = f"the endpoint answered with an HTML page{f' (HTTP {status})' if status else ''}"
        detail = f"{code}: {message}"
    else:
        detail = f"{name}: {text}"
    if name in ("NoCredentialsError", "PartialCredentialsError") or "Unable to locate credentials" in text:
        return ServiceError(
            f"{doing} failed: no AWS credentials",
            fix="configure credentials (aws configure, AWS_PROFILE), or run locally with %pipeline run",
        )
    if name == "NoRegionError" or "configuration with a region" in text or "You must specify a region" in text:
        return ServiceError(
            f"{doing} failed: no AWS region is configured",
            fix="set AWS_REGION (e.g. export AWS_REGION=us-east-1), or region in ~/.aws/config",
        )
    if (
        name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError")
        or "Could not connect to the endpoint" in text
    ):
        return ServiceError(
            f"{doing} failed: cannot reach AWS ({detail})", fix="check the network, AWS_ENDPOINT_URL and the region"
        )
    if code in _DENIED:
        return ServiceError(
            f"{doing} failed: access denied ({detail})",
            fix=denied_fix or "check the credentials and the role's permissions",
        )
    if code in THROTTLING:
        return ServiceError(
            f"{doing} failed: AWS is throttling requests ({detail})",
            fix="wait a little and try again, or ask for a higher quota",
        )
    if code == "NoSuchBucket":
        bucket = ((getattr(exc, "response", {}) or {}).get("Error") or {}).get("BucketName") or "the bucket"
        return SmstepError(
            f"{doing} failed: the S3 bucket {bucket} does not exist",
            fix=not_found_fix
            or f"create it (aws s3 mb s3://{bucket}), or set S3RootUri in config.yaml to a bucket you have",
        )
    if code in _BAD_REQUEST:
        return SmstepError(f"{doing} failed: {detail}", fix=not_found_fix or "check the names, ARN and region given")
    if name == "RoleValidationError":  # SDK v3 checks the role before it creates anything
        reason, _, _ = text.partition("\n\nTo fix this")
        return SmstepError(
            f"{doing} failed: the SageMaker SDK's role check: {' '.join(reason.split())}",
            fix="give the role the permissions named and let the service assume it (its trust "
            "policy), or pass another role (--role, or RoleArn in config.yaml); "
            "SAGEMAKER_VALIDATE_ROLE=false skips the SDK's check",
        )
    if code:  # another service-side error (internal failure, unavailable)
        return ServiceError(f"{doing} failed: {detail}", fix="try again; if it persists, check the AWS service health")
    return ServiceError(f"{doing} failed: {detail}", fix="check credentials, region and AWS_ENDPOINT_URL")


def did_you_mean(word: str, choices: Iterable[str], where: str) -> str:
    """The fix for a name that is not one of ``choices``: the closest one, or where to look."""
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean {match[0]}?" if match else f"see {where} for the options"
