"""Notebook order is the truth: a step gets the values its cell saw when the notebook runs top to bottom.

An exploratory cell after a step (``threshold = 0.3``, ``scores.append(...)``, a helper defined
again) must not reach the step: not headless (``smstep``, where every ordinary cell has run before
the build), not in a kernel (where the kernel's values moved on after the step cell ran). Each case
runs the same cells in one shell top to bottom (what the kernel computes) and compares the value
the local run's step returned with it.
"""

from __future__ import annotations

import os

import nbformat
import pytest

from jupyter_smstep.ipython.notebook import load_workspace

from helpers.constants import IMAGE, ROLE

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

CONFIG = f"%pipeline config --name order --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"
CELLS = [
    "%load_ext jupyter_smstep",
    CONFIG,
    "threshold = 0.5\nscores = [0.1, 0.35, 0.4, 0.45, 0.6, 0.7, 0.8, 0.9]\nweights = {'a': 1}\n"
    "def scale(x):\n    return x * weights['a']",
    "%%step evaluate\npositives = sum(1 for s in scores if s > threshold)\nscaled = scale(positives)\n"
    "seen = len(scores)",
    # exploration after the step: none of it may reach the step
    "threshold = 0.3\nscores.append(0.95)\nweights['a'] = 100\ndef scale(x):\n    return -x",
    "%%step report\ntotal = positives + scaled\ncount = seen",
]


def write_notebook(tmp_path, cells, name="order.ipynb"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def kernel_values(shell, cells, names):
    """What one kernel computes running ``cells`` top to bottom (the step cells run in it too)."""
    for source in cells[1:]:
        shell.run(source)
    return {n: shell.ip.user_ns[n] for n in names}


def test_a_later_cell_does_not_reach_an_earlier_step_headless_or_live(shell, tmp_path):
    kernel = kernel_values(shell, CELLS, ["positives", "scaled", "seen", "total", "count"])
    assert kernel == {
        "positives": 4,
        "scaled": 4,
        "seen": 8,
        "total": 8,
        "count": 8,
    }  # the step cell saw 0.5 and 8 scores

    live = shell.graph()
    assert not live.report.errors, live.report.errors
    moved = {p.message.split("'")[1] for p in live.report.warnings if "changed in the kernel after" in p.message}
    # said, in the kernel, with the cell that did it ('weights' is no input: scale's pickle holds it as it was)
    assert moved == {"threshold", "scores", "scale"}
    warning = next(p for p in live.report.warnings if p.message.startswith("'threshold' changed"))
    assert "ordinary cell" in warning.message and "run step 'evaluate' again" in warning.fix
    result, _ = shell.run_local(tmp_path / "live")
    assert result.succeeded, result.to_json()
    assert {**result.outputs("evaluate"), **result.outputs("report")} == kernel

    headless = load_workspace(write_notebook(tmp_path, CELLS))
    graph = headless.graph()
    assert not graph.report.errors, graph.report.errors
    assert not [p for p in graph.report.warnings if "changed after" in p.message]  # headless: nothing moved
    result = headless.run_local(runs_dir=tmp_path / "headless")
    assert result.succeeded, result.to_json()
    assert {**result.outputs("evaluate"), **result.outputs("report")} == kernel


def test_the_key_is_of_the_value_the_step_saw(shell, tmp_path):
    """A later cell's rebinding changes neither the step's key nor what it is reused for."""
    from jupyter_smstep.sdk import content_keys

    kernel_values(shell, CELLS[:4], [])
    before = content_keys.step_keys(shell.graph(), shell.ip.user_ns)["evaluate"]
    shell.run(CELLS[4])
    after = content_keys.step_keys(shell.graph(), shell.ip.user_ns)["evaluate"]
    assert after.key == before.key
    shell.run(CELLS[3])  # the step cell again: now it sees 0.3 and nine scores
    again = content_keys.step_keys(shell.graph(), shell.ip.user_ns)["evaluate"]
    assert again.key != before.key
    result, _ = shell.run_local(tmp_path / "runs")
    assert result.outputs("evaluate")["positives"] == shell.ip.user_ns["positives"] == 8


def test_a_name_only_a_later_cell_defines_is_an_error_naming_that_cell(shell, tmp_path):
    cells = ["%load_ext jupyter_smstep", CONFIG, "%%step early\nvalue = limit * 2", "limit = 3"]
    graph = load_workspace(write_notebook(tmp_path, cells)).graph()
    (error,) = [p for p in graph.report.errors if "'limit'" in p.message]
    assert "not defined yet where this step stands" in error.message and "ordinary cell" in error.message
    assert "NameError" in error.message and error.step == "early" and error.line == 2
    assert "move" in error.fix


def test_a_large_value_changed_in_place_after_the_step_is_refused(shell, tmp_path, monkeypatch):
    """A value too large to copy is kept by reference and fingerprinted: changed later, the build refuses."""
    from jupyter_smstep.sdk import snapshot

    monkeypatch.setattr(snapshot, "CAP", 64)  # every list below is "large"
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "big = list(range(100))",
        "%%step use\ntotal = sum(big)",
        "big.append(10**6)",
    ]
    graph = load_workspace(write_notebook(tmp_path, cells)).graph()
    (error,) = [p for p in graph.report.errors if "'big'" in p.message]
    assert "changed in place after this step's cell saw it" in error.message and "ordinary cell" in error.message
    assert "big = big.copy()" in error.fix
    fine = load_workspace(write_notebook(tmp_path, cells[:-1], "fine.ipynb")).graph()
    assert not fine.report.errors, fine.report.errors


def test_a_step_that_changes_its_own_input_gets_the_input_as_its_cell_saw_it(shell, tmp_path):
    """In a kernel the step cell runs first; the job must start from the value before that run, not after."""
    cells = ["%load_ext jupyter_smstep", CONFIG, "rows = [1, 2, 3]", "%%step grow\nrows.append(4)\ncount = len(rows)"]
    kernel = kernel_values(shell, cells, ["count"])
    assert kernel == {"count": 4}
    result, _ = shell.run_local(tmp_path / "runs")
    assert result.succeeded, result.to_json()
    assert result.outputs("grow")["count"] == 4


def test_a_step_that_rebinds_a_captured_name_reads_it_first(shell, tmp_path):
    """`data = data[data.x > 1]`, the commonest pandas line, with `data` from an ordinary cell and from a step."""
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "import pandas as pd\ndata = pd.DataFrame({'x': [0, 1, 2, 3]})\nlimit = 10",
        "%%step keep\ndata = data[data.x > 1]\nlimit = limit - len(data)\nn = len(data)",
        "%%step again\ndata = data[data.x > 2]\nm = len(data)\ntotal = n + limit",
    ]
    kernel = kernel_values(shell, cells, ["m", "total"])
    assert kernel == {"m": 1, "total": 10}
    result, _ = shell.run_local(tmp_path / "live")
    assert result.succeeded, result.to_json()
    headless = load_workspace(write_notebook(tmp_path, cells, "rebind.ipynb")).run_local(runs_dir=tmp_path / "h")
    assert headless.succeeded, headless.to_json()
    for run in (result, headless):
        assert {k: run.outputs("again")[k] for k in ("m", "total")} == kernel


def test_a_large_value_the_step_changes_in_place_is_copied_for_it_in_a_kernel(shell, tmp_path, monkeypatch):
    from jupyter_smstep.sdk import snapshot

    monkeypatch.setattr(snapshot, "CAP", 64)  # the list below is "large"
    cells = ["%load_ext jupyter_smstep", CONFIG, "big = list(range(100))", "%%step grow\nbig.append(-1)\nn = len(big)"]
    kernel = kernel_values(shell, cells, ["n"])
    graph = shell.graph()
    assert not graph.report.errors, graph.report.errors
    result, _ = shell.run_local(tmp_path / "runs")
    assert result.succeeded and result.outputs("grow")["n"] == kernel["n"] == 101
