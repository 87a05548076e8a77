"""``IncludeLocalWorkDir``: every step of a local run works in the notebook folder's files, as on SageMaker.

The SDK hands the first step the uploaded archive itself (``.../sm_rf_user_ws/<build>/workspace.zip``)
and every later step its folder; the local runner used to look for ``workspace.zip`` inside both, so
the first step ran in an empty folder without a word. What each step computes is compared with what
the kernel computed, top to bottom.
"""

from __future__ import annotations

import os
import zipfile

import pytest

from jupyter_smstep.errors import SmstepError

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

CONFIG = (
    "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n"
    "        IncludeLocalWorkDir: true\n"
)


def test_every_step_gets_the_notebook_folders_files(shell, tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helper.py").write_text("def twice(x):\n    return 2 * x\n")
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    shell.workspace.root = folder
    shell.notebook(
        "workdir",
        [
            "%%step first\nimport os\nimport helper\nn = helper.twice(3)\nfirst_files = sorted(os.listdir('.'))",
            "%%step second\nimport os\nimport helper\nm = helper.twice(n)\n"
            "files = {'first': first_files, 'second': sorted(os.listdir('.'))}",
        ],
    )
    ns = shell.ip.user_ns
    assert (ns["n"], ns["m"]) == (6, 12)

    result, _ = shell.run_local(tmp_path / "runs")
    assert result.succeeded, result.to_json()
    second = result.outputs("second")
    assert second["m"] == ns["m"]
    assert "helper.py" in second["files"]["first"] and "helper.py" in second["files"]["second"]


def test_a_workspace_channel_without_its_archive_is_an_error_not_an_empty_folder(tmp_path):
    from jupyter_smstep.local.container import Container
    from jupyter_smstep.local.definition import Resolver
    from jupyter_smstep.local.s3 import LocalS3

    with LocalS3(tmp_path / "s3", region="us-east-1") as s3:
        container = Container(tmp_path, s3, Resolver({}, {}))
        base = f"s3://{s3.bucket}/p/sm_rf_user_ws/20261201"
        with pytest.raises(SmstepError) as info:
            container._stage_workspace("train", base, tmp_path / "input", tmp_path / "template")
        assert "train" in str(info.value) and "has no workspace.zip" in str(info.value)

        archive = tmp_path / "workspace.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("sagemaker_remote_function_workspace/helper.py", "X = 1\n")
        s3.client().upload_file(str(archive), s3.bucket, "p/sm_rf_user_ws/20261201/workspace.zip")
        for uri in (base, base + "/workspace.zip"):  # a later step's folder, the first step's archive
            template = tmp_path / "t" / uri.rsplit("/", 1)[-1]
            container._stage_workspace("train", uri, template / "input", template)
            assert (template / "sagemaker_remote_function_workspace" / "helper.py").read_text() == "X = 1\n"


def test_one_working_folder_the_notebooks_when_smstep_runs_it_from_another(tmp_path, monkeypatch, capsys):
    """`smstep run proj/nb.ipynb` from the parent: the job gets proj's files (what the key hashes and what a
    kernel started beside the notebook imports), not the current directory's; an edit there runs it again."""
    import json
    import sys

    import nbformat

    from jupyter_smstep import cli
    from helpers.constants import IMAGE, ROLE

    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    (tmp_path / "wd_helper.py").write_text("VALUE = 'the parent folder'\n")  # a decoy where smstep is started
    project = tmp_path / "proj"
    project.mkdir()
    (project / "wd_helper.py").write_text("VALUE = 'the notebook folder'\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in [
            "%load_ext jupyter_smstep",
            f"%pipeline config --name workdir --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large",
            "%%step use\nimport wd_helper\nvalue = wd_helper.VALUE",
        ]
    ]
    nbformat.write(nb, project / "nb.ipynb")
    monkeypatch.chdir(tmp_path)

    def run() -> str:
        sys.modules.pop("wd_helper", None)
        capsys.readouterr()
        assert cli.main(["run", "proj/nb.ipynb", "--json", "--runs-dir", str(tmp_path / "runs")]) == 0
        return json.loads(capsys.readouterr().out)["steps"]["use"]

    first = run()
    assert first["outputs"]["value"] == "'the notebook folder'"
    (project / "wd_helper.py").write_text("VALUE = 'edited'\n")
    second = run()
    assert not second.get("cached") and second["outputs"]["value"] == "'edited'"


def _project(tmp_path, *cells):
    import nbformat

    from helpers.constants import IMAGE, ROLE

    project = tmp_path / "churn"
    project.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in [
            "%load_ext jupyter_smstep",
            f"%pipeline config --name churn --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large",
            *cells,
        ]
    ]
    nbformat.write(nb, project / "churn.ipynb")
    return project


def _workspace_files(run_dir) -> set[str]:
    archives = sorted(run_dir.rglob("workspace.zip"))
    assert archives, "no workspace was shipped"
    with zipfile.ZipFile(archives[0]) as z:
        return {n.split("/", 1)[1] for n in z.namelist() if not n.endswith("/")}


def test_a_module_beside_the_notebook_ships_by_itself_with_what_it_imports(tmp_path, monkeypatch, capsys):
    """No config.yaml: a step importing churn_models.py (which imports features/, a package) runs, started from
    another folder; the workspace holds those files and nothing else (not .smstep, not the other .py files)."""
    import json

    from jupyter_smstep import cli

    project = _project(
        tmp_path,
        "import math",
        "%%step fit\nfrom churn_models import score\nresult = score(3)",
        "%%step report\nimport churn_models\nshown = f'{result} {churn_models.NAME}'",
    )
    (project / "churn_models.py").write_text(
        "from features.scale import twice\nNAME = 'churn'\ndef score(x):\n    return twice(x) + 1\n"
    )
    (project / "features").mkdir()
    (project / "features" / "__init__.py").write_text("")
    (project / "features" / "scale.py").write_text("def twice(x):\n    return 2 * x\n")
    (project / "scratch.py").write_text("raise SystemExit('not needed by any step')\n")
    (project / ".ipynb_checkpoints").mkdir()
    (project / ".ipynb_checkpoints" / "churn_models-checkpoint.py").write_text("")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["graph", "churn/churn.ipynb", "--json"]) == 0
    ships = json.loads(capsys.readouterr().out)["ships"]
    assert ships["files"] == ["churn_models.py", "features/__init__.py", "features/scale.py"]
    assert ships["because"] == {"fit": ["churn_models"], "report": ["churn_models"]}
    assert cli.main(["run", "churn/churn.ipynb", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"]["report"]["outputs"]["shown"] == "'7 churn'"
    run_dir = project / ".smstep" / "runs" / out["run_id"]  # beside the notebook, not where smstep started
    assert run_dir.is_dir() and not (tmp_path / ".smstep").exists()
    assert _workspace_files(run_dir) == {"churn_models.py", "features/__init__.py", "features/scale.py"}


def test_ten_runs_in_a_row_keep_the_workspace_the_same_size(tmp_path, monkeypatch, capsys):
    """config.yaml's IncludeLocalWorkDir with a CustomFileFilter used to take in .smstep/runs: every run copied
    every earlier one. The workspace never holds .smstep, .git or a virtual environment."""
    import json

    from jupyter_smstep import cli

    config = tmp_path / "config.yaml"
    config.write_text(CONFIG + "        CustomFileFilter:\n          IgnoreNamePatterns: ['*.ipynb']\n")
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    project = _project(tmp_path, "%%step use\nimport os\nfiles = sorted(os.listdir('.'))")
    (project / "data.csv").write_text("a,b\n1,2\n")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "venv").mkdir()
    (project / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    monkeypatch.chdir(project)
    sizes = []
    for _ in range(10):
        capsys.readouterr()
        assert cli.main(["run", "churn.ipynb", "--json", "--no-cache"]) == 0
        run_dir = project / ".smstep" / "runs" / json.loads(capsys.readouterr().out)["run_id"]
        sizes.append(sorted(run_dir.rglob("workspace.zip"))[0].stat().st_size)
        assert _workspace_files(run_dir) == {"data.csv"}
    assert len(set(sizes)) == 1, sizes


def test_a_kernel_pulls_what_smstep_run_ran_from_another_folder(tmp_path, monkeypatch, capsys):
    """`smstep run churn/churn.ipynb` from the parent, then `%pipeline pull` in a real kernel beside the notebook:
    one runs folder, the notebook's."""
    from jupyter_smstep import cli
    from helpers.kernel import Kernel
    from helpers.constants import IMAGE, ROLE

    project = _project(tmp_path, "%%step make\nvalue = 6 * 7")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "churn/churn.ipynb"]) == 0
    monkeypatch.chdir(project)
    kernel = Kernel()
    try:
        kernel.execute("%load_ext jupyter_smstep")
        kernel.execute(f"%pipeline config --name churn --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large")
        kernel.execute("%%step make --defer\nvalue = 6 * 7")  # registered, not run: the kernel has no value
        out = kernel.execute("%pipeline pull\nprint('value is', value)")
        text = "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")
        assert "pulled value" in text and "value is 42" in text, text
    finally:
        kernel.stop()


@pytest.mark.parametrize("patterns", [None, ["*.ipynb"]])
def test_the_local_file_warning_is_said_only_when_the_file_will_not_travel(tmp_path, monkeypatch, capsys, patterns):
    """IncludeLocalWorkDir alone ships .py files: data/train.csv does not travel (warned). With a CustomFileFilter it
    does: no warning, and the run reads it as the kernel did."""
    import json

    from jupyter_smstep import cli

    extra = f"        CustomFileFilter:\n          IgnoreNamePatterns: {patterns}\n" if patterns else ""
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG + extra)
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    project = _project(tmp_path, "%%step load\nrows = open('data/train.csv').read().split()")
    (project / "data").mkdir()
    (project / "data" / "train.csv").write_text("a b c\n")
    monkeypatch.chdir(project)
    capsys.readouterr()
    assert cli.main(["graph", "churn.ipynb", "--json"]) == 0
    warned = [p for p in json.loads(capsys.readouterr().out)["problems"] if "names the local file" in p["message"]]
    assert bool(warned) == (patterns is None), warned
    if patterns:
        assert cli.main(["run", "churn.ipynb", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["steps"]["load"]["outputs"]["rows"] == "['a', 'b', 'c']"
