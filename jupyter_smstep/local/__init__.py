"""The local runner: a pipeline's definition executed on this machine as SageMaker would.

``runner`` (build against the embedded S3, run, record) drives ``definition``
(read the JSON like the service, and decide its ConditionSteps and FailSteps), ``plan`` (pure: which steps are
ready, which can no longer run and why), ``scheduler`` (the launcher: starts what the plan says, retries, limits),
``reuse`` (cached results, results taken from a SageMaker execution, the record for the next run), ``attempt``
(one attempt's process, log and measurement), ``container`` (what a step's container gets), ``retries``,
``diagnostics`` (failures in the user's terms), ``worker`` + ``worker_entry`` (the warm forking worker),
``recorder`` + ``reads`` (what a step read, and whether it still holds), ``environment`` (declared vs installed
requirements), ``results`` (the run folder), ``cache`` (earlier runs' results by step key) and ``s3`` (the
endpoint).
"""

from jupyter_smstep.local.cache import StepCache
from jupyter_smstep.local.results import (
    DEFAULT_RUNS_DIR,
    STATES,
    RunResult,
    StepEvent,
    StepResult,
    latest_run,
    list_runs,
    load_run,
)
from jupyter_smstep.local.runner import RETRYABLE_FAILURES, TERMINATION_GRACE_SECONDS, run_pipeline
from jupyter_smstep.local.s3 import LocalS3

__all__ = [
    "DEFAULT_RUNS_DIR",
    "LocalS3",
    "RETRYABLE_FAILURES",
    "RunResult",
    "STATES",
    "StepEvent",
    "StepCache",
    "StepResult",
    "TERMINATION_GRACE_SECONDS",
    "latest_run",
    "list_runs",
    "load_run",
    "run_pipeline",
]
