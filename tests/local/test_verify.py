"""``smstep verify`` and ``%pipeline verify``: the pipeline's values against the kernel's, shown.

A fresh real kernel runs each notebook top to bottom; the pipeline runs locally; every output of
every step is compared. Equal notebooks exit 0 (the example, a scikit-learn notebook); a cell that
sets ``os.environ`` for a step, and unseeded randomness, are differences with their cause (exit 1);
bad input exits 2.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from jupyter_smstep import cli

from helpers.constants import IMAGE, ROLE

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

ROOT = Path(__file__).resolve().parents[2]
CONFIG = f"%pipeline config --name verify --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"


def write(folder: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ("%load_ext jupyter_smstep", CONFIG, *cells)]
    path = folder / "verify.ipynb"
    nbformat.write(nb, path)
    return path


def verify(path: Path, capsys, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(["verify", str(path), "--json", *extra])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def test_the_example_notebook_is_all_equal(tmp_path, capsys):
    shutil.copy(ROOT / "notebooks" / "abalone.ipynb", tmp_path)
    code, report = verify(tmp_path / "abalone.ipynb", capsys)
    assert code == 0 and report["differs"] == 0 and report["not comparable"] == 0, report
    assert report["equal"] >= 5 and set(report["steps"]) == {"preprocess", "train", "evaluate"}


def test_a_scikit_learn_notebook_is_all_equal_fitted_models_included(tmp_path, capsys):
    path = write(
        tmp_path,
        "from sklearn.datasets import load_iris\nfrom sklearn.model_selection import train_test_split\n"
        "from sklearn.ensemble import RandomForestClassifier\nfrom sklearn.preprocessing import StandardScaler",
        "%%step prepare\nX, y = load_iris(return_X_y=True)\n"
        "X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)\n"
        "scaler = StandardScaler().fit(X_train)\nX_train = scaler.transform(X_train)",
        "%%step fit\nmodel = RandomForestClassifier(n_estimators=20, random_state=0).fit(X_train, y_train)",
        "%%step score\naccuracy = float(model.score(scaler.transform(X_test), y_test))",
    )
    code, report = verify(path, capsys)
    assert code == 0 and report["differs"] == 0, {
        s: {n: v for n, v in d.items() if v["verdict"] != "equal"} for s, d in report["steps"].items()
    }
    assert report["steps"]["fit"]["model"] == {"verdict": "equal"}
    assert report["steps"]["score"]["accuracy"] == {"verdict": "equal"}


def test_an_environment_variable_set_by_a_cell_is_a_difference_with_its_cause(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MODE", raising=False)
    path = write(
        tmp_path,
        "import os\nos.environ['MODE'] = 'full'",
        "%%step train\nimport os\nmode = os.environ.get('MODE', 'quick')\nepochs = 10 if mode == 'full' else 1",
    )
    capsys.readouterr()
    code = cli.main(["verify", str(path), "--json"])
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "set the environment variable(s) MODE: only the kernel has them" in captured.err  # said before it runs
    assert "MODE" not in os.environ  # the headless build's cells did not change this process
    assert code == 1 and report["differs"] == 2, report
    epochs = report["steps"]["train"]["epochs"]
    assert epochs["verdict"] == "differs" and "kernel 10, pipeline 1" in epochs["detail"]
    assert "environment variable(s) MODE" in epochs["likely_cause"] and "only in the kernel" in epochs["likely_cause"]


def test_unseeded_randomness_is_a_difference_with_its_cause(tmp_path, capsys):
    path = write(tmp_path, "import numpy as np", "%%step sample\nnoise = np.random.rand(5)")
    code, report = verify(path, capsys, "--rtol", "1e-6")
    assert code == 1, report
    noise = report["steps"]["sample"]["noise"]
    assert noise["verdict"] == "differs" and "first differs at [0]" in noise["detail"]
    assert "largest absolute difference" in noise["detail"]
    assert "unseeded randomness (numpy.random.rand())" in noise["likely_cause"]
    assert "seed it inside the step (np.random.seed(0))" in noise["likely_cause"]


def test_a_library_drawing_unseeded_is_a_difference_with_its_cause(tmp_path, capsys):
    path = write(tmp_path, "%%step sample\nfrom sklearn.utils import shuffle\norder = shuffle(list(range(50)))")
    code, report = verify(path, capsys)
    assert code == 1, report
    order = report["steps"]["sample"]["order"]
    assert order["verdict"] == "differs", order
    assert "numpy's global generator, drawn by a library" in order["likely_cause"], order
    assert "random_state=0 on the library's call, or np.random.seed(0)" in order["likely_cause"]


def test_bad_input_exits_2(tmp_path, capsys):
    path = write(tmp_path, "%%step s\nx = 1")
    assert cli.main(["verify", str(path), "--rtol", "-1"]) == 2
    assert "tolerances are numbers of at least 0" in capsys.readouterr().err
    broken = write(tmp_path, "raise ValueError('stop here')", "%%step s\nx = 1")
    assert cli.main(["verify", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "cell #3 failed" in err and "ValueError: stop here" in err and "Traceback" not in err


def test_in_a_kernel_the_values_each_step_cell_left_are_compared(shell, tmp_path, capsys):
    shell.notebook(
        "live", ["rows = [3, 1, 2]", "%%step order\nrows.sort()\nfirst = rows[0]", "rows.append(0)"]
    )  # exploration after the step: the step's value is as it left it
    capsys.readouterr()
    shell.run(f"%pipeline verify --json --runs-dir {tmp_path / 'runs'}")
    out = capsys.readouterr().out  # the progress display's lines, then the JSON
    report = json.loads(out[out.index("{\n") :])
    assert report["steps"]["order"] == {"rows": {"verdict": "equal"}, "first": {"verdict": "equal"}}, report
