"""The SDK behind one table: module paths, enum members, and an import that leaves the environment alone."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

from jupyter_smstep import sdk
from jupyter_smstep.core.settings import RETRY_TYPES
from jupyter_smstep.sdk import compat, stepargs


def test_every_module_of_the_installed_line_imports():
    for key, path in compat.modules().items():
        assert importlib.import_module(path), key


def test_the_retry_table_names_the_sdk_enum_members():
    loaded = sdk.load()
    assert set(stepargs.RETRY_MEMBERS) == set(RETRY_TYPES)
    for value, (enum, member) in stepargs.RETRY_MEMBERS.items():
        assert getattr(getattr(loaded, enum), member).value == value


def test_spec_classes_come_from_the_module_table():
    loaded = sdk.load()
    table = compat.modules()
    for cls, key in stepargs.CLASS_MODULES.items():
        assert getattr(importlib.import_module(table[key]), cls) is getattr(loaded, cls)


def test_loading_the_sdk_writes_nothing_into_the_environment(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AWS_REGION", "AWS_DEFAULT_REGION", "SAGEMAKER_SUPPRESS_V2_WARNING")
    }
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    code = (
        "import json, os; before = dict(os.environ)\n"
        "from jupyter_smstep import sdk; sdk.load()\n"
        "print(json.dumps({k: v for k, v in os.environ.items() if before.get(k) != v}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}


def test_credentials_sessions_clients_and_open_files_are_never_captured(shell, tmp_path):
    import boto3

    shell.configure()
    (tmp_path / "data.csv").write_text("a,b\n")
    shell.ip.user_ns.update(
        session=boto3.Session(
            aws_access_key_id="AKIAABCDEFGHIJKLMNOP", aws_secret_access_key="s", region_name="us-east-1"
        ),
        creds=boto3.Session(aws_access_key_id="AKIAABCDEFGHIJKLMNOP", aws_secret_access_key="s").get_credentials(),
        handle=open(tmp_path / "data.csv"),
        env_copy={"AWS_SECRET_ACCESS_KEY": "s", "HOME": "/root"},
        api_token="t0k3n",
        settings={"user": "me"},
    )
    shell.run("%%step a --defer\nx = (session, creds, handle.name, env_copy, api_token, settings)")
    problems = {(p.severity, p.message.split(",")[0]) for p in shell.graph().report.problems if p.step == "a"}
    assert ("error", "captures 'session'") in problems
    assert ("error", "captures 'creds'") in problems
    assert ("error", "captures 'handle'") in problems
    assert ("warning", "captures 'env_copy'") in problems  # holds AWS_SECRET_ACCESS_KEY
    assert ("warning", "captures 'api_token'") in problems  # named like a secret
    assert not any(m.startswith("captures 'settings'") for _, m in problems)
    shell.ip.user_ns["handle"].close()


def test_aws_region_is_honoured_as_the_aws_cli_does(monkeypatch, tmp_path):
    """botocore reads AWS_DEFAULT_REGION and the config, not AWS_REGION: the tool reads both (cost, sessions)."""
    from jupyter_smstep.sdk.compat import aws_region

    config = tmp_path / "config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert aws_region() == "eu-west-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert aws_region() == "us-west-2"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION")
    assert aws_region() is None
