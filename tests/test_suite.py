"""The suite's own rules catch what they are for (``helpers.suite``): each planted in a small pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

PLANTED = """
import sys
import pytest

def test_needs_a_browser():
    pytest.skip("playwright is not installed")

@pytest.mark.skipif(True, reason="the case's code needs a newer Python to parse")
def test_newer_syntax():
    pass
"""


MODULE = """
import pytest

pytest.importorskip("a_library_nobody_installed")


def test_never_runs():
    pass
"""


def run(tmp_path: Path, require: bool, source: str = PLANTED) -> subprocess.CompletedProcess:
    (tmp_path / "test_planted.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "SMSTEP_REQUIRE_ALL": "1" if require else "0"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "helpers.suite",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "test_planted.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_required_test_that_skips_fails_the_run_and_says_what_is_missing(tmp_path):
    done = run(tmp_path, require=True)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 skipped" in done.stdout
    assert "a required test skipped (Skipped: playwright is not installed)" in done.stdout


def test_a_required_module_that_skips_whole_fails_the_run(tmp_path):
    done = run(tmp_path, require=True, source=MODULE)
    assert done.returncode == 2 and "1 error" in done.stdout, done.stdout  # it stops at collection
    assert "a required test skipped (Skipped: could not import 'a_library_nobody_installed'" in done.stdout


def test_without_the_rule_a_skip_is_a_skip(tmp_path):
    done = run(tmp_path, require=False)
    assert done.returncode == 0 and "2 skipped" in done.stdout, done.stdout
    done = run(tmp_path, require=False, source=MODULE)
    assert done.returncode == 5 and "1 skipped" in done.stdout, done.stdout  # 5: no test ran


def test_the_sdk_v2_run_collects_only_the_sdk_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "sdk_line and not browser",
            "tests",
        ],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    files = {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}
    assert {
        "tests/sdk/test_build.py",
        "tests/local/test_runner.py",
        "tests/remote/test_submit.py",
        "tests/test_cli.py",
    } <= files, done.stdout[-2000:]
    assert not [f for f in files if f.startswith(("tests/core/", "tests/ipython/", "tests/panel/", "tests/browser/"))]
    assert "tests/local/test_fan_in.py" not in files  # primary_line: the v3 run only


def test_every_pre_commit_hook_is_a_check_ci_makes():
    """A hook that CI does not run would pass locally and be forgotten (or the reverse): each hook's command,
    without pre-commit's own file options, is one .ci/run runs."""
    import yaml

    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    ci = (REPO / ".ci" / "run").read_text()
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {h["id"] for h in hooks} >= {"ruff", "ruff-format", "mypy", "eslint-prettier"}
    for hook in hooks:
        command = " ".join(w for w in hook["entry"].split() if w != "--force-exclude")
        assert command in ci, f"pre-commit hook {hook['id']} runs {command!r}, which .ci/run does not"
