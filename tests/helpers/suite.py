"""The suite's own rules, as a pytest plugin (``tests/conftest.py`` loads it; ``tests/test_suite.py`` plants
a violation of each):

- with ``SMSTEP_REQUIRE_ALL=1`` (``.ci/run`` sets it), a test that skips fails, unless its reason is one
  of :data:`ALLOWED_SKIPS` (code this Python cannot parse): a missing browser, second user or library
  must not leave the run green;
- the tests the SageMaker SDK line changes are marked ``sdk_line`` by directory (:data:`SDK_LINE`), and
  the SDK v2 run runs only those; a test marked ``primary_line`` (a long stress test whose fix has a unit test
  on both lines) runs in the v3 run only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Skip reasons that are not a missing part: the case needs a newer Python than the one under test.
ALLOWED_SKIPS = ("needs a newer Python to parse", "needs Python 3.12")
#: The directories (under tests/, and notebooks/ for nbval) whose tests the SDK line changes.
SDK_LINE = ("sdk", "local", "remote", "notebooks", "test_cli.py")
TESTS = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).resolve()
        try:
            first = path.relative_to(TESTS).parts[0]
        except ValueError:
            first = path.parent.name  # notebooks/*.ipynb (nbval)
        if first in SDK_LINE and item.get_closest_marker("primary_line") is None:
            item.add_marker(pytest.mark.sdk_line)


def _required(report) -> None:
    """A skipped test or module whose reason is not allowed fails (with ``SMSTEP_REQUIRE_ALL=1``)."""
    if report.skipped and os.environ.get("SMSTEP_REQUIRE_ALL") == "1":
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        if not any(allowed in reason for allowed in ALLOWED_SKIPS):
            report.outcome = "failed"
            report.longrepr = (
                f"a required test skipped ({reason}); SMSTEP_REQUIRE_ALL=1 counts that as a "
                "failure: install what it needs (bash scripts/setup.sh all)"
            )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _required(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    report = yield  # a module that skips as a whole (pytest.importorskip at its top)
    _required(report)
    return report
