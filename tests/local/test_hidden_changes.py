"""Changes the step's syntax does not show reach the next step, headless as in the kernel.

Each case runs the same cells in one shell top to bottom (what the kernel computes), then runs the
pipeline locally from the kernel and from the saved notebook (headless), and compares what the later
step received:

- a notebook helper doing in-place arithmetic on its parameter (``arr -= arr.mean()``), through a
  second helper;
- a random generator that one step advances and the next draws from;
- a function from a module beside the notebook that changes its argument in place, imported by name
  and called through the module.
"""

from __future__ import annotations

import os

import nbformat
import pytest

from jupyter_smstep.ipython.notebook import load_workspace

from helpers.constants import IMAGE, ROLE

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

CONFIG = f"%pipeline config --name hidden --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"


def same_everywhere(shell, tmp_path, cells: list[str], step: str, names: list[str]) -> dict:
    """Run ``cells`` in the kernel, then locally from the kernel and headless; ``step``'s ``names`` must agree."""
    for source in cells[1:]:
        shell.run(source)
    kernel = {n: shell.ip.user_ns[n] for n in names}
    live, _ = shell.run_local(tmp_path / "live")
    assert live.succeeded, live.to_json()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / "hidden.ipynb"
    nbformat.write(nb, path)
    headless = load_workspace(path).run_local(runs_dir=tmp_path / "headless")
    assert headless.succeeded, headless.to_json()
    for result in (live, headless):
        got = result.outputs(step)
        assert {n: got[n] for n in names} == kernel, (result.run_dir, got, kernel)
    return kernel


def test_a_helper_doing_in_place_arithmetic_on_its_parameter(shell, tmp_path):
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "def centre(arr):\n    arr -= arr.mean()\n\ndef normalise(arr):\n    centre(arr)\n    arr /= arr.std()",
        "%%step load\nimport numpy as np\nvalues = np.array([1.0, 2.0, 3.0, 10.0])",
        "%%step scale\nnormalise(values)",
        "%%step report\nlargest = float(values.max())",
    ]
    kernel = same_everywhere(shell, tmp_path, cells, "report", ["largest"])
    assert kernel["largest"] == pytest.approx(6 / 12.5**0.5)  # centred, then divided by its deviation


def test_a_generator_advanced_by_one_step_draws_on_in_the_next(shell, tmp_path):
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "import numpy as np\nrng = np.random.default_rng(7)",
        "%%step first\nnoise_a = rng.normal(size=3).tolist()",
        "%%step second\nnoise_b = rng.normal(size=3).tolist()\nsame = noise_b == noise_a",
    ]
    kernel = same_everywhere(shell, tmp_path, cells, "second", ["noise_b", "same"])
    assert kernel["same"] is False


@pytest.mark.parametrize(
    "module, style", [("prep_from", "from prep_from import clean\n"), ("prep_import", "import prep_import\n")]
)
def test_a_function_beside_the_notebook_that_changes_its_argument(shell, tmp_path, monkeypatch, module, style):
    (tmp_path / f"{module}.py").write_text(
        "def _drop(frame):\n    frame.pop()\n\ndef clean(frame):\n    _drop(frame)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    shell.workspace.root = tmp_path
    call = "clean(rows)" if style.startswith("from") else f"{module}.clean(rows)"
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        style,
        "%%step load\nrows = [1, 2, 3, 4, 5]",
        f"%%step tidy\n{call}",
        "%%step count\nn = len(rows)",
    ]
    with open(os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"], "w") as config:  # the module travels
        config.write(
            "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n"
            "        IncludeLocalWorkDir: true\n"
        )
    kernel = same_everywhere(shell, tmp_path, cells, "count", ["n"])
    assert kernel == {"n": 4}


@pytest.mark.parametrize(
    "change",
    [
        # handson-ml3's end-to-end chapter: the kernel's RMSE was 22177.3, the pipeline's 21849.1, exit 0
        "for set_ in (train_set, test_set):\n    set_.drop('income_cat', axis=1, inplace=True)",
        "frames = [train_set, test_set]\nfor frame in frames:\n    frame.drop(columns='income_cat', inplace=True)",
        "for i, frame in enumerate((train_set, test_set)):\n    frame.pop('income_cat')",
        "a, b = train_set, test_set\nfor f in (a, b):\n    del f['income_cat']",
        "by_name = {'train': train_set, 'test': test_set}\nfor f in by_name.values():\n    drop_it(f)",
    ],
)
def test_a_change_through_an_alias_reaches_the_next_step(shell, tmp_path, change):
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "import pandas as pd\ndef drop_it(frame):\n    frame.drop(columns='income_cat', inplace=True)",
        "%%step split\ntrain_set = pd.DataFrame({'x': [1.0, 2.0, 3.0], 'income_cat': [1, 2, 3]})\n"
        "test_set = pd.DataFrame({'x': [4.0], 'income_cat': [2]})",
        f"%%step drop_income_cat\n{change}",
        "%%step fit\ncolumns = sorted(train_set.columns) + sorted(test_set.columns)",
    ]
    kernel = same_everywhere(shell, tmp_path, cells, "fit", ["columns"])
    assert kernel["columns"] == ["x", "x"]


def test_a_helper_defined_and_called_in_a_step_reads_the_value_before_the_step_rebinds_it(shell, tmp_path):
    """Kaggle Titanic, with the tool's own fix followed (the helper moved into the step): the function reads
    `combined` when it is called, before the cell rebinds it; that earlier value is the step's input."""
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "import pandas as pd",
        "%%step load\ncombined = pd.DataFrame({'Name': ['Braund, Mr. Owen', 'Heikkinen, Miss. Laina']})",
        "%%step titles\ndef get_titles():\n    out = combined.copy()\n"
        "    out['Title'] = out['Name'].str.extract(r', (\\w+)\\.', expand=False)\n    return out\n"
        "combined = get_titles()",
        "%%step report\ntitles = combined['Title'].tolist()",
    ]
    kernel = same_everywhere(shell, tmp_path, cells, "report", ["titles"])
    assert kernel["titles"] == ["Mr", "Miss"]
    assert shell.graph().step("titles").inputs["combined"].step == "load"


def test_a_variable_a_cell_sets_reaches_no_job_live_or_headless_and_is_said(shell, tmp_path, monkeypatch):
    """A cell's os.environ change is the kernel's alone: a SageMaker job starts without it, so the local run's
    steps do too, in a kernel as headless, whenever the run's warm worker started. What the machine had before
    the kernel (here: the test's own environment) is the host's, and a step gets it."""
    monkeypatch.setenv("HOST_LEVEL", "host")
    monkeypatch.delenv("CELL_LEVEL", raising=False)
    cells = [
        "%load_ext jupyter_smstep",
        CONFIG,
        "import os\nos.environ['CELL_LEVEL'] = 'cell'\nos.environ['HOST_LEVEL'] = 'changed'",
        "%%step read\nimport os\nseen = (os.environ.get('CELL_LEVEL'), os.environ.get('HOST_LEVEL'))",
    ]
    try:
        for source in cells[1:]:
            shell.run(source)
        warned = [str(p) for p in shell.graph().report.problems if "set the environment variable(s)" in str(p)]
        assert len(warned) == 1 and "CELL_LEVEL, HOST_LEVEL: only the kernel has them" in warned[0], warned
        live, _ = shell.run_local(tmp_path / "live")
        assert live.outputs("read")["seen"] == (None, "host")
        again, _ = shell.run_local(tmp_path / "live")  # what the job gets did not change: reused
        assert again.steps["read"].cached_from == live.run_id
    finally:  # what the cell did to this process, undone, as a fresh CLI process starts
        os.environ.pop("CELL_LEVEL", None)
        os.environ["HOST_LEVEL"] = "host"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, tmp_path / "env.ipynb")
    headless = load_workspace(tmp_path / "env.ipynb").run_local(runs_dir=tmp_path / "headless")
    assert headless.outputs("read")["seen"] == (None, "host")
