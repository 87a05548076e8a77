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

CONFIG = ("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n"
          "        IncludeLocalWorkDir: true\n")


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
    shell.notebook("workdir", [
        "%%step first\nimport os\nimport helper\nn = helper.twice(3)\nfirst_files = sorted(os.listdir('.'))",
        "%%step second\nimport os\nimport helper\nm = helper.twice(n)\n"
        "files = {'first': first_files, 'second': sorted(os.listdir('.'))}",
    ])
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
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "%load_ext jupyter_smstep",
        f"%pipeline config --name workdir --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large",
        "%%step use\nimport wd_helper\nvalue = wd_helper.VALUE"]]
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
