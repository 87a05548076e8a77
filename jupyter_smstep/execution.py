"""The pipeline execution a step runs in, by one documented name.

In a notebook::

    from jupyter_smstep import execution        # in an ordinary cell

    %%step report
    path = f"s3://bucket/reports/{execution.id}.json"

``execution.id``, ``execution.start_time`` (ISO 8601, UTC) and ``execution.pipeline_name`` read:

- in the kernel: ``"interactive"``, the time this module was imported, ``"interactive"``;
- in a local run: the run's id, its start time and the pipeline's name;
- on SageMaker: the SDK's ``ExecutionVariables`` (``PIPELINE_EXECUTION_ID``, ``START_DATETIME``,
  ``PIPELINE_NAME``), passed to the step as arguments. The container needs no jupyter_smstep: the
  step gets a plain namespace with the same three attributes.

A step that reads it is never reused from the local cache: its result depends on the run.
"""

from __future__ import annotations

import datetime as _dt

id = "interactive"  # noqa: A001 - the documented name
start_time = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
pipeline_name = "interactive"

#: The step function's arguments that carry them, in this order (``core.codegen``; ``sdk.build`` and the
#: export pass ``ExecutionVariables.PIPELINE_EXECUTION_ID``, ``START_DATETIME``, ``PIPELINE_NAME``).
ATTRIBUTES = ("id", "start_time", "pipeline_name")
