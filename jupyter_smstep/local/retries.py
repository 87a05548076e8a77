"""SageMaker's retry rules for a failed step, as pure functions (the scheduler applies them).

Two mechanisms, in this order, as the service applies them:

1. the training job's own ``RetryStrategy.MaximumRetryAttempts``: an internal error
   (``SageMaker.JOB_INTERNAL_ERROR``) retries the same job at once;
2. the pipeline step's ``RetryPolicies``: a failure whose type a policy names starts
   a new job after ``IntervalSeconds * BackoffRate ** n``, until ``MaxAttempts`` or
   ``ExpireAfterMin`` (counted from the first failure) is reached.

An exception raised by the step's own code is an ``AlgorithmError``, which neither
retries: the message says so when policies exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: What SageMaker's own retry mechanisms can retry (``faults=`` simulates these locally).
RETRYABLE_FAILURES = (
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "SageMaker.JOB_INTERNAL_ERROR",
    "SageMaker.CAPACITY_ERROR",
    "SageMaker.RESOURCE_LIMIT",
)


@dataclass
class RetryState:
    """What one step has used of its retries."""

    job_retries: int = 0  # RetryStrategy retries used by the current job
    policy_retries: dict[int, int] = field(default_factory=dict)  # policy index -> retries used
    first_failure: float | None = None


@dataclass(frozen=True)
class Retry:
    delay: float  # seconds until the next attempt
    how: str  # which rule retries it, for the message


def next_retry(
    state: RetryState, failure_type: str, job_budget: int, policies: list[dict[str, Any]], now: float
) -> Retry | None:
    """The retry the service would make after this failure (updating ``state``), or None: the step fails."""
    if state.first_failure is None:
        state.first_failure = now
    if failure_type == "SageMaker.JOB_INTERNAL_ERROR" and state.job_retries < job_budget:
        state.job_retries += 1
        return Retry(0.0, f"RetryStrategy (retry {state.job_retries} of {job_budget})")
    for index, policy in enumerate(policies):
        if failure_type not in policy.get("ExceptionType", []):
            continue
        used = state.policy_retries.get(index, 0)
        max_attempts = policy.get("MaxAttempts")
        expire = policy.get("ExpireAfterMin")
        if max_attempts is not None and used >= int(max_attempts):
            return None
        if expire is not None and now - state.first_failure > float(expire) * 60:
            return None
        state.policy_retries[index] = used + 1
        state.job_retries = 0
        delay = float(policy.get("IntervalSeconds", 1)) * float(policy.get("BackoffRate", 2.0)) ** used
        of = f" of {max_attempts})" if max_attempts is not None else ")"
        return Retry(delay, f"retry policy {policy.get('ExceptionType')} (retry {used + 1}{of}")
    return None


def not_retried_note(failure_type: str, policies: list[dict[str, Any]]) -> str:
    """Why a step with retry policies was not retried, when its own code raised."""
    if failure_type == "AlgorithmError" and policies:
        return (
            " (not retried: SageMaker's retry policies cover service, capacity and internal "
            "errors, never an exception raised by the step's code)"
        )
    return ""
