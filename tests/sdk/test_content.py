"""Content-addressed builds against moto: same notebook, same bytes; one changed cell, one step's uploads."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from jupyter_smstep.sdk import content_keys

NOTEBOOK = [
    "%pipeline param epochs=10",
    "import math\nSTOP = {'a', 'the', 'of'}\ndef load():\n    return list(range(10))",
    "%%step preprocess\ndf = load()",
    "%%step train\nmodel = sum(df) * epochs + math.sqrt(4) + len(STOP)",
    "%%step evaluate\nscore = model - 1",
]


def per_step() -> int:
    """Objects per step: function and arguments (payload, metadata each), and under v2 the requirements
    file in which the SDK adds its own ``sagemaker`` requirement."""
    from jupyter_smstep import sdk

    return 4 + (sdk.load().major == 2)


def build(shell, cells=NOTEBOOK):
    shell.configure(name="abalone")
    for cell in cells:
        shell.run(cell)


def count_puts(session) -> list[str]:
    """Every PutObject actually signed for sending (a skipped upload never gets that far)."""
    sent: list[str] = []
    clients = {id(c): c for c in (session.s3_client, session.s3_resource.meta.client)}
    for client in clients.values():
        client.meta.events.register(
            "before-sign.s3.PutObject", lambda request, **_: sent.append(request.url.split("?")[0])
        )
    return sent


def steps(definition):
    return {s["Name"]: s for s in definition["Steps"]}


def test_two_builds_of_an_unchanged_notebook_are_identical_bytes_and_upload_nothing_the_second_time(
    shell, session, capsys
):
    build(shell)
    puts = count_puts(session)
    first = json.dumps(shell.workspace.definition(session))
    assert len(puts) == 3 * per_step() + 4  # and the SDK's 4 bootstrap scripts, once per pipeline
    puts.clear()
    second = json.dumps(shell.workspace.definition(session))
    assert second == first
    assert puts == []
    # the payload folder is the content key, and the key is what `graph --json` shows
    capsys.readouterr()
    shell.run("%pipeline graph --json")
    graph = json.loads(capsys.readouterr().out)
    keys = {s["name"]: s["key"] for s in graph["steps"]}
    train = steps(json.loads(first))["train"]
    folder = train["Arguments"]["AlgorithmSpecification"]["ContainerArguments"]
    assert folder[folder.index("--func_step_s3_dir") + 1].startswith(keys["train"][:20] + "-")


def test_editing_one_cell_changes_that_step_and_its_dependents_only(shell, session):
    build(shell)
    before = steps(shell.workspace.definition(session))
    puts = count_puts(session)
    shell.run("%%step train\nmodel = sum(df) * epochs + math.sqrt(9) + len(STOP)")
    after = steps(shell.workspace.definition(session))
    assert after["preprocess"] == before["preprocess"]
    assert after["train"] != before["train"]
    assert after["evaluate"] != before["evaluate"]  # its upstream key changed, so its folder did
    changed = {url.split("/abalone/")[1].split("/")[0] for url in puts}
    assert changed == {"train", "evaluate"}
    assert len(puts) == 2 * per_step()


def test_a_captured_value_changed_and_seen_again_changes_the_key_of_the_steps_that_read_it(shell, session):
    build(shell)
    keys = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    shell.run("STOP.add('and')")  # after the step: the step keeps what its cell saw, and so does its key
    assert content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)["train"].key == keys["train"].key
    shell.run(NOTEBOOK[3])  # the step cell again: now it sees the changed set
    again = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    assert again["preprocess"].key == keys["preprocess"].key
    assert again["train"].key != keys["train"].key
    assert [p for p in again["train"].parts if again["train"].parts[p] != keys["train"].parts[p]] == ["capture:STOP"]
    from jupyter_smstep.core.keys import changes

    assert changes(keys["train"].parts, again["train"]) == ["captured value 'STOP' changed"]
    assert changes(keys["evaluate"].parts, again["evaluate"]) == ["upstream step train changed"]


def test_an_object_without_the_recorded_hash_is_uploaded_again_not_trusted(shell, session, aws):
    build(shell)
    shell.workspace.definition(session)
    s3 = aws.client("s3")
    listing = s3.list_objects_v2(Bucket="smstep-test", Prefix="abalone/train/")["Contents"]
    payload = next(o["Key"] for o in listing if o["Key"].endswith("function/payload.pkl"))
    s3.put_object(Bucket="smstep-test", Key=payload, Body=b"half")  # truncated, no hash metadata
    puts = count_puts(session)
    shell.workspace.definition(session)
    assert [url.split("/abalone/")[1] for url in puts] == [payload.split("abalone/")[1]]
    assert len(s3.get_object(Bucket="smstep-test", Key=payload)["Body"].read()) > 4


def test_cache_puts_a_cache_config_on_the_step_and_leaves_its_payloads_alone(shell, session):
    build(shell)
    before = steps(shell.workspace.definition(session))
    shell.run("%pipeline config --cache P30D")
    shell.run("%%step train --cache pt12h\nmodel = sum(df) * epochs + math.sqrt(4) + len(STOP)")
    after = steps(shell.workspace.definition(session))
    assert after["preprocess"]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    assert after["train"]["CacheConfig"] == {"Enabled": True, "ExpireAfter": "PT12H"}
    assert "CacheConfig" not in before["train"]
    assert {k: v for k, v in after["train"].items() if k != "CacheConfig"} == before["train"]


@pytest.mark.parametrize("bad", ["30d", "P", "PT", "P1H", "P1.5D", "forever"])
def test_an_invalid_cache_duration_is_an_error_naming_the_fix(shell, bad):
    error = shell.error(f"%%step train --cache {bad}\nx = 1")
    assert "is not an ISO 8601 duration" in error and "--cache P30D" in error


DIGEST_SOURCE = textwrap.dedent("""
    import sys
    from jupyter_smstep.sdk.content_keys import digest
    namespace = {"__name__": "__main__"}
    exec(compile(sys.argv[1], sys.argv[2], "exec"), namespace)
    print(digest(namespace["helper"]), digest(namespace["Model"]), digest(namespace["Model"]()),
          digest(namespace["WORDS"]))
""")


def _digests(source: str, filename: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", DIGEST_SOURCE, source, filename],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "random", "PATH": "/usr/bin:/bin"},
    )
    return out.stdout.split()


def test_digests_do_not_depend_on_the_kernel_the_value_was_defined_in():
    source = (
        "WORDS = {'a', 'the', 'of', 'and'}\nclass Model:\n    def fit(self):\n        return Model, WORDS\n"
        "def helper(x):\n    return x + len(WORDS)\n"
    )
    first = _digests(source, "/tmp/ipykernel_1/123.py")
    assert _digests(source, "/tmp/ipykernel_2/456.py") == first  # another kernel, another hash seed
    changed = _digests(source.replace("return Model, WORDS", "return Model, len(WORDS)"), "/tmp/x.py")
    assert changed[0] == first[0] and changed[3] == first[3]  # helper and WORDS untouched
    assert changed[1] != first[1] and changed[2] != first[2]  # the class and its instances changed


def test_a_requirements_file_is_part_of_the_key_and_the_build_leaves_it_as_written(shell, session, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy\n")
    build(shell, NOTEBOOK[:3] + [f"%%step train --dependencies {requirements}\nmodel = sum(df) * epochs"])
    first = steps(shell.workspace.definition(session))["train"]
    assert requirements.read_text() == "numpy\n"  # v2 would append its own requirement to the file
    assert steps(shell.workspace.definition(session))["train"] == first
    keys = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    requirements.write_text("numpy==2.0\n")
    again = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    from jupyter_smstep.core.keys import changes

    assert changes(keys["train"].parts, again["train"]) == ["the file of dependencies changed"]
    assert steps(shell.workspace.definition(session))["train"] != first


def test_a_module_beside_the_notebook_is_part_of_the_key_of_the_steps_that_import_it(shell, tmp_path, monkeypatch):
    (tmp_path / "smstep_helpers_k.py").write_text(
        "from smstep_helpers_k2 import BASE\ndef f(x):\n    return x + BASE\n"
    )
    (tmp_path / "smstep_helpers_k2.py").write_text("BASE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    shell.workspace.root = tmp_path
    build(shell, NOTEBOOK[:3] + ["import smstep_helpers_k\n", "%%step train\nmodel = smstep_helpers_k.f(len(df))"])
    keys = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns, tmp_path)
    assert "local-sources" in keys["train"].parts and "local-sources" not in keys["preprocess"].parts
    (tmp_path / "smstep_helpers_k2.py").write_text("BASE = 2\n")  # imported by the imported module
    again = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns, tmp_path)
    from jupyter_smstep.core.keys import changes

    assert changes(keys["train"].parts, again["train"]) == ["the .py files beside the notebook changed"]
    assert again["preprocess"].key == keys["preprocess"].key


def test_the_version_of_an_imported_package_is_part_of_the_key(shell, monkeypatch):
    build(shell, NOTEBOOK[:2] + ["import json\nimport yaml", "%%step preprocess\ndf = yaml.safe_load(json.dumps([1]))"])
    keys = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    import importlib.metadata

    installed = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda d: "0.0-other" if d == "PyYAML" else installed(d))
    again = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    from jupyter_smstep.core.keys import changes

    assert changes(keys["preprocess"].parts, again["preprocess"]) == ["the version of an imported package changed"]


def test_include_local_workdir_puts_the_notebooks_sources_in_every_steps_key(shell, tmp_path):
    import os

    (tmp_path / "anything.py").write_text("X = 1\n")
    with open(os.environ["SAGEMAKER_USER_CONFIG_OVERRIDE"], "w") as config:
        config.write(
            "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      RemoteFunction:\n"
            "        IncludeLocalWorkDir: true\n"
        )
    shell.workspace.root = tmp_path
    build(shell)
    keys = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns, tmp_path)
    assert all("local-sources" in key.parts for key in keys.values())


def test_a_final_step_has_one_key_whether_or_not_the_kernel_ran_its_cell(shell):
    """``smstep`` builds headless (the final step's values unseen: its job checks them) and the kernel after
    the cell ran (the build checks them): both return the same values, so both give the same key; otherwise
    a CLI submit's execution would look changed to the kernel, and their caches would never meet."""
    shell.notebook(
        "final",
        [
            "%%step make\nimport io\nrows = [1, 2]\nbuf = io.StringIO()",
            "%%step report\ntotal = sum(rows)\nhandle = open('/dev/null')",
        ],
    )
    seen = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    assert "handle" not in shell.workspace.graph().steps[-1].outputs  # left out by the build: not data
    for name in ("total", "handle"):
        del shell.ip.user_ns[name]
    unseen = content_keys.step_keys(shell.workspace.graph(), shell.ip.user_ns)
    assert shell.workspace.graph().steps[-1].unchecked == ["total", "handle"]
    assert unseen["report"].key == seen["report"].key and unseen["make"].key == seen["make"].key
