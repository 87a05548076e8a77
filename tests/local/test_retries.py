"""SageMaker's retry rules as pure functions: a table of failures and what the service does next."""

from __future__ import annotations

import pytest

from jupyter_smstep.local.retries import Retry, RetryState, next_retry, not_retried_note

CAPACITY = {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 2, "BackoffRate": 3.0, "MaxAttempts": 2}
THROTTLE = {"ExceptionType": ["Step.THROTTLING"], "IntervalSeconds": 1, "ExpireAfterMin": 1}


def replay(failures, job_budget=0, policies=(), start=1000.0, step=1.0):
    """What each failure in turn leads to, on one step."""
    state = RetryState()
    out = []
    for i, failure in enumerate(failures):
        retry = next_retry(state, failure, job_budget, list(policies), start + i * step)
        out.append(None if retry is None else (retry.delay, retry.how))
    return out


CASES = [
    ("the step's own exception is never retried", ["AlgorithmError"], 3, [CAPACITY], [None]),
    (
        "internal error: the job's RetryStrategy, at once, then spent",
        ["SageMaker.JOB_INTERNAL_ERROR"] * 3,
        2,
        [],
        [(0.0, "RetryStrategy (retry 1 of 2)"), (0.0, "RetryStrategy (retry 2 of 2)"), None],
    ),
    (
        "capacity: the policy's interval times the backoff, up to MaxAttempts",
        ["SageMaker.CAPACITY_ERROR"] * 3,
        0,
        [CAPACITY],
        [
            (2.0, "retry policy ['SageMaker.CAPACITY_ERROR'] (retry 1 of 2)"),
            (6.0, "retry policy ['SageMaker.CAPACITY_ERROR'] (retry 2 of 2)"),
            None,
        ],
    ),
    ("a failure no policy names fails the step", ["SageMaker.RESOURCE_LIMIT"], 0, [CAPACITY], [None]),
    (
        "internal error past the job's budget falls through to a matching policy",
        ["SageMaker.JOB_INTERNAL_ERROR"] * 2,
        1,
        [{"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 5, "MaxAttempts": 1}],
        [(0.0, "RetryStrategy (retry 1 of 1)"), (5.0, "retry policy ['SageMaker.JOB_INTERNAL_ERROR'] (retry 1 of 1)")],
    ),
]


@pytest.mark.parametrize("what, failures, budget, policies, expected", CASES, ids=[c[0] for c in CASES])
def test_retry_rules(what, failures, budget, policies, expected):
    assert replay(failures, budget, policies) == expected


def test_expire_after_counts_from_the_first_failure():
    assert replay(["Step.THROTTLING"] * 3, policies=[THROTTLE], step=40.0) == [
        (1.0, "retry policy ['Step.THROTTLING'] (retry 1)"),
        (2.0, "retry policy ['Step.THROTTLING'] (retry 2)"),
        None,
    ]  # 80 s after the first failure: past ExpireAfterMin=1


def test_a_new_job_after_a_policy_retry_gets_its_own_retry_strategy():
    state = RetryState()
    policy = {"ExceptionType": ["SageMaker.CAPACITY_ERROR"], "IntervalSeconds": 1}
    assert next_retry(state, "SageMaker.JOB_INTERNAL_ERROR", 1, [policy], 0.0) == Retry(
        0.0, "RetryStrategy (retry 1 of 1)"
    )
    assert next_retry(state, "SageMaker.CAPACITY_ERROR", 1, [policy], 1.0) is not None
    assert state.job_retries == 0  # the new job may use its RetryStrategy again
    assert next_retry(state, "SageMaker.JOB_INTERNAL_ERROR", 1, [policy], 2.0) == Retry(
        0.0, "RetryStrategy (retry 1 of 1)"
    )


def test_why_an_algorithm_error_was_not_retried():
    assert "never an exception raised by the step's code" in not_retried_note("AlgorithmError", [CAPACITY])
    assert not_retried_note("AlgorithmError", []) == ""
    assert not_retried_note("SageMaker.CAPACITY_ERROR", [CAPACITY]) == ""


def test_a_full_disk_is_said_as_such_not_as_an_unpicklable_value(tmp_path):
    from jupyter_smstep.local.diagnostics import explain_failure

    log = tmp_path / "log.txt"
    log.write_text("")
    diag = {"phase": "output", "type": "OSError", "message": "[Errno 28] No space left on device", "unpicklable": []}
    summary, text = explain_failure("train", 1, diag, log)
    assert summary == "the disk is full: the step's results could not be written"
    assert "cannot be pickled" not in text and "--runs-dir" in text
    diag["message"] = "cannot pickle '_thread.lock' object"
    assert "cannot be pickled" in explain_failure("train", 1, diag, log)[0]
