"""A cached result is reused only while everything its step really read is unchanged.

Each case runs a notebook headless (``smstep run``'s path), changes one thing the step read
by itself (a data file through every way of building its path, a host environment variable,
a module outside the notebook's folder, a package's version, a module that a shipped module
imports), runs again, and checks that the step ran again, said which read changed, and
computed what a kernel computes now; a third run with nothing changed reuses it. What cannot
be pinned (the clock, unseeded randomness) is never reused, unless the step says so.
"""

from __future__ import annotations

import json
import os
import sys

import nbformat
import pytest

from jupyter_smstep.ipython.notebook import load_workspace

from helpers.constants import IMAGE, ROLE

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

CONFIG = f"%pipeline config --name reads --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"


def notebook(folder, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ("%load_ext jupyter_smstep", CONFIG, *cells)]
    path = folder / "reads.ipynb"
    nbformat.write(nb, path)
    return path


def run(path, folder):
    result = load_workspace(path).run_local(runs_dir=folder / "runs")
    assert result.succeeded, result.to_json()
    return result


def again_after(path, folder, change, step="use"):
    """(first, second, third): a run, a run after ``change()``, a run with nothing changed."""
    first = run(path, folder)
    assert first.steps[step].cached_from is None and first.steps[step].reads
    change()
    second = run(path, folder)
    third = run(path, folder)
    assert second.steps[step].cached_from is None, second.steps[step].reads
    assert third.steps[step].cached_from == second.run_id
    return first, second, third


#: Ways a notebook builds a data file's path: (the ordinary cell's code, the expression the step opens)
STYLES = {
    "os.path.join": ("import os\nDATA = os.path.abspath('data')", "os.path.join(DATA, 'train.csv')"),
    "f-string": ("import os\nDATA = os.path.abspath('data')", "f'{DATA}/train.csv'"),
    "pathlib": ("from pathlib import Path\nDATA = Path('data').absolute()", "DATA / 'train.csv'"),
    "constant": ("import os\nDATA = os.path.abspath('data/train.csv')", "DATA"),
    "helper": ("import os\nBASE = os.path.abspath('data')\ndef where():\n    return BASE + '/train.csv'", "where()"),
}


@pytest.mark.parametrize("style", list(STYLES))
def test_a_data_file_read_however_its_path_is_built(tmp_path, style):
    setup, expression = STYLES[style]
    (tmp_path / "data").mkdir()
    data = tmp_path / "data" / "train.csv"
    data.write_text("1\n2\n")
    path = notebook(
        tmp_path, setup, f"%%step use\nimport os\nwith open({expression}) as f:\n    rows = f.read().split()"
    )
    first, second, _ = again_after(path, tmp_path, lambda: data.write_text("1\n2\n3\n"))
    assert first.outputs("use") == {"rows": ["1", "2"]} and second.outputs("use") == {"rows": ["1", "2", "3"]}
    assert first.steps["use"].reads["files"] == ["data/train.csv"]
    assert [
        w for w in second.steps["use"].warnings if w == f"runs again: data/train.csv changed since run {first.run_id}"
    ]


def test_a_file_touched_but_unchanged_is_still_reused(tmp_path):
    data = tmp_path / "numbers.txt"
    data.write_text("7")
    path = notebook(tmp_path, f"%%step use\nvalue = int(open({str(data)!r}).read())")
    first = run(path, tmp_path)
    os.utime(data, ns=(1, 1))
    assert run(path, tmp_path).steps["use"].cached_from == first.run_id  # hashed: the same bytes


def test_a_host_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTEBOOK_TEST_MODE", "fast")
    path = notebook(tmp_path, "%%step use\nimport os\nmode = os.environ.get('NOTEBOOK_TEST_MODE')")
    first, second, _ = again_after(path, tmp_path, lambda: monkeypatch.setenv("NOTEBOOK_TEST_MODE", "slow"))
    assert (first.outputs("use"), second.outputs("use")) == ({"mode": "fast"}, {"mode": "slow"})
    assert (
        f"runs again: the environment variable NOTEBOOK_TEST_MODE changed since run {first.run_id}"
        in second.steps["use"].warnings
    )
    assert json.dumps(second.steps["use"].reads).count("slow") == 0  # the record holds no value


def test_a_module_outside_the_notebooks_folder_and_a_module_it_imports(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "reads_outer.py").write_text("from reads_inner import BASE\ndef f(x):\n    return x + BASE\n")
    (outside / "reads_inner.py").write_text("BASE = 1\n")
    folder = tmp_path / "project"
    folder.mkdir()
    # on the step's path as PYTHONPATH puts it there in a kernel (the worker's interpreter started earlier)
    path = notebook(
        folder,
        f"%%step use\nimport sys\nsys.path.insert(0, {str(outside)!r})\nimport reads_outer\nvalue = reads_outer.f(1)",
    )
    first, second, _ = again_after(path, folder, lambda: (outside / "reads_inner.py").write_text("BASE = 10\n"))
    assert (first.outputs("use"), second.outputs("use")) == ({"value": 2}, {"value": 11})
    assert str(outside / "reads_inner.py") in first.steps["use"].reads["modules"]
    for name in ("reads_outer", "reads_inner"):
        sys.modules.pop(name, None)


def test_an_upgraded_package_imported_inside_the_step(tmp_path, monkeypatch):
    import importlib.metadata

    path = notebook(tmp_path, "%%step use\nimport yaml\nvalue = yaml.safe_load('[1, 2]')")
    installed = importlib.metadata.version

    def upgrade():
        monkeypatch.setattr(importlib.metadata, "version", lambda d: "99.0" if d == "PyYAML" else installed(d))

    first = run(path, tmp_path)
    assert first.steps["use"].reads["packages"] == {"PyYAML": installed("PyYAML")}
    assert run(path, tmp_path).steps["use"].cached_from == first.run_id
    upgrade()  # in this process, which checks: the job's process still finds the installed version
    second = run(path, tmp_path)
    assert second.steps["use"].cached_from is None
    assert (
        f"runs again: the package PyYAML is 99.0 (was {installed('PyYAML')}) since run {first.run_id}"
        in second.steps["use"].warnings
    )


@pytest.mark.parametrize(
    "draw, read",
    [
        ("import time\nstamp = time.time()", "the clock (time.time())"),
        ("from datetime import datetime\nstamp = datetime.now()", "the clock (datetime.now())"),
        ("import datetime as dt\nday = dt.date.today()", "the clock (date.today())"),
        ("import numpy as np\nstamp = np.datetime64('now')", "the clock (datetime64('now'))"),
        (
            "from sklearn.utils import shuffle\nvalue = shuffle([1, 2, 3, 4, 5])",  # random_state=None: numpy's global
            "unseeded randomness (numpy's global generator, drawn by a library: e.g. scikit-learn with random_state=None)",
        ),
        (
            "from email.utils import make_msgid\nvalue = make_msgid()",  # random.getrandbits, inside the standard library
            "unseeded randomness (random's global generator, drawn by a library)",
        ),
        ("import random\nvalue = random.random()", "unseeded randomness (random.random())"),
        ("import numpy as np\nvalue = float(np.random.rand())", "unseeded randomness (numpy.random.rand())"),
        (
            "import numpy as np\nvalue = float(np.random.default_rng().random())",
            "unseeded randomness (numpy.random.default_rng() without a seed)",
        ),
    ],
)
def test_what_cannot_be_pinned_is_never_reused_unless_the_step_says_so(tmp_path, draw, read):
    path = notebook(tmp_path, f"%%step use\n{draw}")
    first = run(path, tmp_path)
    assert read in first.steps["use"].reads["unpinned"]  # date.today() also calls time.time()
    second = run(path, tmp_path)
    assert second.steps["use"].cached_from is None
    (said,) = [w for w in second.steps["use"].warnings if w.startswith("runs again")]
    assert read in said and "cannot be pinned" in said and "--reuse always" in said
    anyway = notebook(tmp_path, f"%%step use --reuse always\n{draw}")  # the same key: --reuse is not the result's
    assert run(anyway, tmp_path).steps["use"].cached_from == second.run_id


@pytest.mark.parametrize(
    "seeded",
    [
        "import random\nrandom.seed(3)\nvalue = random.random()\n"
        "import numpy as np\nnp.random.seed(3)\nother = float(np.random.rand())",
        "from sklearn.utils import shuffle\nvalue = shuffle([1, 2, 3, 4, 5], random_state=0)",  # a library, seeded
    ],
    ids=["the-step-seeds", "a-library-given-a-seed"],
)
def test_seeded_randomness_is_reused(tmp_path, seeded):
    path = notebook(tmp_path, f"%%step use\n{seeded}")
    first = run(path, tmp_path)
    assert first.steps["use"].reads["unpinned"] == []
    assert run(path, tmp_path).steps["use"].cached_from == first.run_id


def test_graph_json_and_the_panel_show_what_each_step_read(tmp_path, capsys):
    from jupyter_smstep import cli
    from jupyter_smstep.panel import html as panel_html
    from jupyter_smstep.panel.state import PanelState

    data = tmp_path / "numbers.txt"
    data.write_text("7")
    path = notebook(
        tmp_path,
        f"%%step use\nimport os\nvalue = int(open({str(data)!r}).read())\nmode = os.environ.get('NOTEBOOK_TEST_MODE')",
    )
    os.chdir(tmp_path)  # the runs folder smstep uses: beside the notebook
    first = load_workspace(path).run_local()
    capsys.readouterr()
    assert cli.main(["graph", str(path), "--json"]) == 0
    reads = {s["name"]: s.get("reads") for s in json.loads(capsys.readouterr().out)["steps"]}["use"]
    assert reads["files"] == ["numbers.txt"] and reads["env"] == ["NOTEBOOK_TEST_MODE"] and reads["run"] == first.run_id
    state = PanelState()
    state.set_graph(load_workspace(path).graph(keys=True), None, 0)
    details = panel_html.step_details(state, "use", {}, {})
    assert "Read when it ran" in details and "numbers.txt" in details and "NOTEBOOK_TEST_MODE" in details


def test_a_step_whose_upstream_ran_again_with_other_values_runs_again(tmp_path):
    path = notebook(tmp_path, "%%step draw\nimport random\nvalue = random.random()", "%%step use\ndoubled = value * 2")
    first = run(path, tmp_path)
    second = run(path, tmp_path)
    assert second.steps["draw"].cached_from is None  # unseeded: it runs again, and draws another number
    assert second.steps["use"].cached_from is None
    assert (
        f"runs again: step draw's result differs from the one run {first.run_id} read" in second.steps["use"].warnings
    )
    assert second.outputs("use") == {"doubled": second.outputs("draw")["value"] * 2}
