"""A final step returns only data, headless as in the kernel.

A final step returns every variable it assigns. ``f`` after ``with open(path, "w") as f:`` (the
commonest way to write a metrics file), a lock or a client cannot be pickled; the build leaves such
values out where the kernel holds them, and, where it cannot see them (a headless build, ``--defer``),
the job leaves them out itself and says so in its log. Either way the step's results are what one
kernel computed, and the two builds agree.
"""

from __future__ import annotations

import os
import runpy

import nbformat
import pytest

from jupyter_smstep.ipython.notebook import load_workspace

from helpers.constants import IMAGE, ROLE

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

CONFIG = f"%pipeline config --name finals --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"
CELLS = [
    "%load_ext jupyter_smstep",
    CONFIG,
    "%%step prepare\nrows = [3, 4, 5]",
    "%%step train\nimport json, os, tempfile, threading\nlock = threading.Lock()\nscore = sum(rows) / len(rows)\n"
    "path = os.path.join(tempfile.mkdtemp(), 'metrics.json')\nwith open(path, 'w') as f:\n"
    "    json.dump({'score': score}, f)",
]


def write_notebook(tmp_path, cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / "finals.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_final_step_returns_only_data_headless_and_live(shell, tmp_path):
    headless = load_workspace(write_notebook(tmp_path, CELLS))
    node = headless.graph().step("train")
    assert node.outputs == ["lock", "score", "path", "f"] and node.unchecked == node.outputs  # nothing seen
    result = headless.run_local(runs_dir=tmp_path / "headless")
    assert result.succeeded, result.to_json()
    from_headless = result.outputs("train")
    log = open(result.steps["train"].log_path).read()
    assert "leaves 'f' (TextIOWrapper) out of its outputs" in log and "leaves 'lock' (lock)" in log

    for source in CELLS[1:]:  # the same cells in a kernel: the build sees the values and leaves them out
        shell.run(source)
    live = shell.graph().step("train")
    assert live.outputs == ["score", "path"] and live.unchecked == []
    warned = {p.message.split("'")[1] for p in shell.graph().report.warnings if "final step leaves" in p.message}
    assert warned == {"lock", "f"}
    live_result, _ = shell.run_local(tmp_path / "live")
    assert live_result.succeeded, live_result.to_json()

    kernel = shell.ip.user_ns
    assert from_headless["score"] == live_result.outputs("train")["score"] == kernel["score"] == 4.0
    assert set(from_headless) == set(live_result.outputs("train")) == {"score", "path"}


def test_the_helpers_never_shadow_a_notebook_value_of_the_same_name(shell, tmp_path):
    """`types`, `io` and `json` are names the helpers import; a step reading the notebook's own values
    of those names gets them, in the build and in the export."""
    shell.run(CONFIG)
    shell.run("types = ['a', 'b']\nio = 'not the module'")
    shell.run(
        "%%step --defer final --save kinds=s3://smstep-results/kinds.json\n"
        "kinds = list(types) + [io]\nwith open(os.devnull, 'w') as f:\n    f.write('x')"
    )
    shell.ip.user_ns["os"] = os
    node = shell.graph().step("final")
    assert node.unchecked  # --defer: the build saw none of its values
    result, _ = shell.run_local(tmp_path / "runs")
    assert result.succeeded, result.to_json()
    assert result.outputs("final") == {"kinds": ["a", "b", "not the module"]}

    path = tmp_path / "finals.py"
    shell.run(f"%pipeline export {path}")
    text = path.read_text()
    assert "return _smstep_plain('final', {'kinds': kinds, 'f': f}, ('kinds', 'f'))" in text
    module = runpy.run_path(str(path), run_name="exported-module")
    assert module["types"] == ["a", "b"] and module["io"] == "not the module"
    assert module["_smstep_plain"]("s", {"kinds": [1], "f": open(os.devnull)}, ("kinds", "f")) == {"kinds": [1]}
