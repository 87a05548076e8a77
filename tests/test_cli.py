"""The `smstep` command on the example notebook, as CI would run it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "notebooks" / "abalone.ipynb"


def smstep_process(*args, env=None, check=True, cwd=None):
    """``smstep ARGS`` as a real process: where what the process itself does is the point."""
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_smstep.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
        cwd=cwd,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"smstep {args} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def smstep(monkeypatch, capsys):
    """``smstep ARGS`` in this process (``cli.main``, the SDK imported once for every call), with its own
    environment and folder: its exit status and what it printed, as a finished process."""
    from jupyter_smstep import cli

    def run(*args, env=None, check=True, cwd=None):
        with monkeypatch.context() as patch:
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            if cwd is not None:
                patch.chdir(cwd)
            capsys.readouterr()
            code = cli.main([str(a) for a in args])
            printed = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"smstep {args} exited {code}\n{printed.err[-3000:]}")
        return subprocess.CompletedProcess(args, code, printed.out, printed.err)

    return run


def test_graph_json_needs_no_aws(smstep):
    doc = json.loads(smstep("graph", EXAMPLE, "--json", env={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}).stdout)
    assert doc["pipeline"] == "abalone"
    steps = {s["name"]: s for s in doc["steps"]}
    assert list(steps) == ["preprocess", "train", "evaluate"]
    assert steps["preprocess"]["inputs"]["n_samples"] == {"parameter": "n_samples"}
    assert steps["preprocess"]["inputs"]["make_abalone"] == {"value": "function"}
    assert sorted(steps["preprocess"]["outputs"]) == ["test", "train"]
    assert steps["train"]["inputs"]["train"] == {"step": "preprocess"}
    assert sorted(steps["evaluate"]["depends_on"]) == ["preprocess", "train"]
    assert steps["train"]["settings"]["instance_type"] == {"value": "ml.m5.2xlarge", "source": "cell"}
    assert steps["evaluate"]["settings"]["instance_type"] == {"value": "ml.m5.xlarge", "source": "notebook"}
    assert doc["parameters"] == {"n_samples": 2000, "train_fraction": 0.8, "seed": 7}
    # the inspection cell after the steps is reported, not fatal
    assert any(p["severity"] == "warning" and "'rmse'" in p["message"] for p in doc["problems"])


def test_bad_notebook_exits_2_with_a_clear_message(smstep, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext jupyter_smstep"),
        nbformat.v4.new_code_cell(
            "%pipeline config --name p --role arn:aws:iam::111122223333:role/R "
            "--image-uri img:1 --instance-type ml.m5.large"
        ),
        nbformat.v4.new_code_cell("%%step a\ny = missing_name + 1"),
    ]
    path = tmp_path / "bad.ipynb"
    nbformat.write(nb, path)
    proc = smstep("definition", path, check=False)
    assert proc.returncode == 2
    assert "missing_name" in proc.stderr and "fix:" in proc.stderr and "Traceback" not in proc.stderr
    assert smstep("graph", tmp_path / "nope.ipynb", check=False).returncode == 2


def test_step_cell_with_a_bad_option_fails_the_build(smstep, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext jupyter_smstep"),
        nbformat.v4.new_code_cell("%%step a --instance-typo ml.m5.large\nx = 1"),
    ]
    path = tmp_path / "typo.ipynb"
    nbformat.write(nb, path)
    proc = smstep("graph", path, "--json", check=False)
    assert proc.returncode == 2
    assert "step cell #2" in proc.stderr and "unknown option --instance-typo" in proc.stderr
    assert "did you mean --instance-type" in proc.stderr


def test_export_from_the_command_line(smstep, tmp_path):
    out = tmp_path / "abalone_pipeline.py"
    smstep("export", EXAMPLE, "-o", out)
    text = out.read_text()
    compile(text, str(out), "exec")
    assert "def make_abalone(n, seed):" in text and "@step(name='train'" in text


def test_definition_and_submit_against_moto_server(smstep, moto_server):
    import boto3

    env = {"AWS_ENDPOINT_URL": moto_server}
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket="sagemaker-us-east-1-123456789012")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "sagemaker.amazonaws.com"}}
        ],
    }
    iam = boto3.client("iam", endpoint_url=moto_server)
    try:  # SDK v3 checks the role exists and trusts SageMaker
        iam.create_role(RoleName="SageMakerRole", AssumeRolePolicyDocument=json.dumps(trust))
    except iam.exceptions.EntityAlreadyExistsException:
        pass  # moto's backends are per process: another test's server may have made it
    definition = json.loads(smstep("definition", EXAMPLE, env=env).stdout)
    assert sorted(s["Name"] for s in definition["Steps"]) == ["evaluate", "preprocess", "train"]
    submitted = json.loads(smstep("submit", EXAMPLE, "-p", "seed=3", env=env).stdout)
    assert ":pipeline/abalone/execution/" in submitted["execution_arn"]
    sm = boto3.client("sagemaker", endpoint_url=moto_server)
    assert sm.describe_pipeline(PipelineName="abalone")["PipelineName"] == "abalone"


def test_unknown_parameter_is_rejected(smstep):
    proc = smstep("run", EXAMPLE, "-p", "nope=1", check=False)
    assert proc.returncode == 2 and "unknown parameter 'nope'" in proc.stderr


def test_example_runs_locally_with_correct_values(smstep, tmp_path):
    proc = smstep("run", EXAMPLE, "--json", "--runs-dir", tmp_path)
    result = json.loads(proc.stdout)
    assert result["succeeded"] is True
    assert {s: v["state"] for s, v in result["steps"].items()} == dict.fromkeys(
        ["preprocess", "train", "evaluate"], "succeeded"
    )
    assert float(result["steps"]["evaluate"]["outputs"]["rmse"]) < 1.5


def test_submit_from_the_command_line_first_says_what_the_last_local_run_measured(smstep, tmp_path, moto_server):
    from helpers.fakes import prepare_account

    prepare_account(moto_server)
    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "SMSTEP_CACHE_DIR": str(tmp_path / "cache"),
        "AWS_ENDPOINT_URL_PRICING": "http://127.0.0.1:9",
    }
    notebook = Path(shutil.copy(EXAMPLE, tmp_path / "abalone.ipynb"))  # its runs go beside it
    smstep("run", notebook, env=env, cwd=tmp_path)
    proc = smstep("submit", notebook, env=env, cwd=tmp_path)
    assert "estimated: at least" in proc.stderr and "instance-hours" in proc.stderr


def test_no_image_is_needed_until_the_service_needs_it(tmp_path, capsys):
    """The guide's own config line (no --image-uri): graph and a local run work, with one warning; definition
    refuses once, with the fix."""
    from jupyter_smstep import cli

    from helpers.constants import ROLE

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in [
            "%load_ext jupyter_smstep",
            f"%pipeline config --name noimage --role {ROLE} --instance-type ml.m5.large",
            "%%step a\nx = 1",
            "%%step b\ny = x + 1",
            "%%step c\nz = y + 1",
        ]
    ]
    path = tmp_path / "noimage.ipynb"
    nbformat.write(nb, path)
    capsys.readouterr()
    assert cli.main(["graph", str(path)]) == 0
    out = capsys.readouterr()
    assert (out.out + out.err).count("no image_uri") == 1 and "a local run needs none" in out.out + out.err
    assert cli.main(["run", str(path), "--runs-dir", str(tmp_path / "runs")]) == 0
    capsys.readouterr()
    assert cli.main(["definition", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("no image_uri for every step") == 1 and "--image-uri" in err and "Traceback" not in err


def test_the_no_region_fix_works_when_followed(tmp_path):
    """Without a region, submit says how to set one; following it (AWS_REGION, which this botocore does not read
    itself) gets past the region, with no traceback."""
    import shutil

    notebook = Path(shutil.copy(EXAMPLE, tmp_path / "abalone.ipynb"))
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    config = tmp_path / "aws-config"
    config.write_text("")
    env.update({"AWS_CONFIG_FILE": str(config), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})

    def submit(extra):
        return subprocess.run(
            [sys.executable, "-m", "jupyter_smstep.cli", "submit", str(notebook)],
            capture_output=True,
            text=True,
            env={**env, **extra},
            timeout=600,
            cwd=tmp_path,
        )

    first = submit({})
    assert first.returncode == 3 and "no AWS region is configured" in first.stderr, first.stderr[-2000:]
    assert "fix: set AWS_REGION (e.g. export AWS_REGION=us-east-1)" in first.stderr
    followed = submit({"AWS_REGION": "eu-west-1"})
    assert "region" not in followed.stderr.split("smstep: error:")[-1].split("fix:")[0]
    assert "Traceback" not in followed.stderr and followed.returncode == 3  # the port-9 endpoint: cannot reach AWS
    assert "cannot reach AWS" in followed.stderr


def test_a_data_path_in_a_constant_is_warned_and_a_failure_leads_with_the_users_line_once(smstep, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "customers.csv").write_text("a,b\n1,2\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in (
            "%load_ext jupyter_smstep",
            "%pipeline config --name churn --role arn:aws:iam::111122223333:role/R --instance-type ml.m5.large",
            "import pandas as pd\nDATA_PATH = 'data/customers.csv'",
            "%%step load\nraw = pd.read_csv(DATA_PATH)",
        )
    ]
    path = tmp_path / "churn.ipynb"
    nbformat.write(nb, path)
    graph = json.loads(smstep("graph", path, "--json").stdout)
    assert any(
        "'data/customers.csv' through DATA_PATH" in p["message"] and p["step"] == "load" and p["line"] == 2
        for p in graph["problems"]
    ), graph["problems"]
    proc = smstep("run", path, check=False, cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stderr
    assert err.count("Traceback (most recent call last)") == 1, err  # the whole traceback once, after the run
    lead = "at step 'load', cell line 2: raw = pd.read_csv(DATA_PATH)"
    assert err.count(lead) == 2 and err.index(lead) < err.index("Traceback"), err  # in the progress and first after
    assert "frames inside pandas" in err


def test_run_verbose_streams_what_the_steps_print_and_nothing_of_the_sdk(smstep, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in (
            "%load_ext jupyter_smstep",
            "%pipeline config --name chatty --role arn:aws:iam::111122223333:role/R --instance-type ml.m5.large",
            "%%step fit\nfor epoch in range(3):\n    print(f'epoch {epoch}: loss {1 / (epoch + 1):.2f}')\nw = 1",
        )
    ]
    path = tmp_path / "chatty.ipynb"
    nbformat.write(nb, path)
    loud = smstep_process("run", path, "-v", "--no-cache", cwd=tmp_path).stderr
    lines = [line.split("| ", 1)[1] for line in loud.splitlines() if "| epoch" in line]
    assert lines == ["epoch 0: loss 1.00", "epoch 1: loss 0.50", "epoch 2: loss 0.33"], loud
    assert "Invoking the function" not in loud and "botocore" not in loud
    quiet = smstep("run", path, "--no-cache", cwd=tmp_path).stderr
    assert "epoch 0" not in quiet
