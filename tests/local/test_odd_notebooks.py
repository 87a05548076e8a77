"""Notebooks shaped oddly but still notebooks: no step vanishes, nothing is taken for what it is not.

- two step cells sharing one cell id (merged notebooks) are both steps, with a word;
- a code cell without ``source`` is refused by name, not read as an empty cell;
- a cell tagged ``parameters`` that assigns a DataFrame: that name is no pipeline parameter but a
  captured value, with a word, and the pipeline computes what the kernel does.
"""

from __future__ import annotations

import json
import os

import nbformat
import pytest

from jupyter_smstep.errors import SmstepError
from jupyter_smstep.ipython.notebook import load_workspace

from helpers.constants import IMAGE, ROLE

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

CONFIG = f"%pipeline config --name odd --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"


def write(tmp_path, cells, name="odd.ipynb"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) if isinstance(c, str) else c for c in cells]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_two_step_cells_sharing_an_id_are_two_steps_and_said(tmp_path):
    cells = ["%load_ext jupyter_smstep", CONFIG, "%%step first\na = 1", "%%step second\nb = a + 1"]
    path = write(tmp_path, cells)
    data = json.loads(path.read_text())
    data["cells"][3]["id"] = data["cells"][2]["id"]  # as a merge of two notebooks leaves it
    path.write_text(json.dumps(data))
    workspace = load_workspace(path)
    graph = workspace.graph()
    assert [s.name for s in graph.steps] == ["first", "second"]
    (warning,) = [p for p in graph.report.warnings if "share the cell id" in p.message]
    assert "cells #3 and #4" in warning.message and "both are kept" in warning.message
    result = workspace.run_local(runs_dir=tmp_path / "runs")
    assert result.succeeded and result.outputs("second") == {"b": 2}


def test_a_code_cell_without_source_is_refused_by_name(tmp_path):
    path = write(tmp_path, ["%load_ext jupyter_smstep", CONFIG, "%%step first\na = 1"])
    data = json.loads(path.read_text())
    del data["cells"][2]["source"]
    path.write_text(json.dumps(data))
    with pytest.raises(SmstepError, match="code cell #3 has no source"):
        load_workspace(path)


def test_a_parameters_cell_assigning_a_frame_captures_it_with_a_word(shell, tmp_path):
    tagged = nbformat.v4.new_code_cell(
        "import pandas as pd\nrate = 0.5\nframe = pd.DataFrame({'x': [1, 2, 3]})", metadata={"tags": ["parameters"]}
    )
    cells = ["%load_ext jupyter_smstep", CONFIG, tagged, "%%step total\ns = float(frame['x'].sum() * rate)"]
    workspace = load_workspace(write(tmp_path, cells))
    graph = workspace.graph()
    assert graph.parameters == {"rate": 0.5}  # the float is a parameter, the frame is not
    assert graph.step("total").inputs["frame"].kind == "value"
    (warning,) = [p for p in graph.report.warnings if "tagged parameters" in p.message]
    assert "'frame' is a DataFrame" in warning.message and "captured" in warning.message
    result = workspace.run_local(runs_dir=tmp_path / "runs")
    assert result.succeeded, result.to_json()
    for source in (CONFIG, tagged.source, cells[3]):  # one kernel, top to bottom
        shell.run(source)
    assert result.outputs("total") == {"s": shell.ip.user_ns["s"]} == {"s": 3.0}


@pytest.mark.parametrize(
    ("write_line", "read_line"),
    [
        ("joblib.dump(model, 'model.pkl')", "model = joblib.load('./model.pkl')"),
        ("joblib.dump(model, MODEL_PATH)", "model = joblib.load(MODEL_PATH)"),
        ("with open('out/model.json', 'w') as f:\n    f.write(str(model))", "model = open('out/model.json').read()"),
        ("pd.DataFrame(model, index=[0]).to_csv(MODEL_PATH)", "model = pd.read_csv(MODEL_PATH)"),
    ],
)
def test_a_file_one_step_writes_and_a_later_step_reads_is_refused_naming_both_lines(tmp_path, write_line, read_line):
    """A Kubeflow-style notebook passes a model through a file: in the kernel one folder holds it, as steps
    each job has its own. Refused by the headless build, before any job runs."""
    (tmp_path / "out").mkdir()
    path = write(
        tmp_path,
        [
            "%load_ext jupyter_smstep",
            CONFIG,
            "import joblib\nimport pandas as pd\nMODEL_PATH = 'out/model.bin'",
            f"%%step train\nmodel = {{'w': 1}}\n{write_line}",
            f"%%step serve\n{read_line}\nready = True",
        ],
    )
    graph = load_workspace(path).graph()
    found = [p for p in graph.report.errors if "which step 'train' writes (its line 3)" in p.message]
    assert found and found[0].step == "serve" and found[0].line == 2, graph.report.problems
    assert "pass the object as a variable" in found[0].fix


def test_a_later_step_that_writes_the_same_file_again_is_no_reader(tmp_path):
    path = write(
        tmp_path,
        [
            "%load_ext jupyter_smstep",
            CONFIG,
            "import pandas as pd",
            "%%step first\ndf = pd.DataFrame({'a': [1]})\ndf.to_csv('out.csv')",
            "%%step second\ndf2 = df.assign(b=2)\ndf2.to_csv('out.csv')",
        ],
    )
    assert not [p for p in load_workspace(path).graph().report.errors if "writes (its line" in p.message]
