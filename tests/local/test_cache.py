"""The local cache through a real shell: a step with an unchanged key reuses an earlier run's verified results."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

NOTEBOOK = [
    "%pipeline param epochs=10",
    "import math\nWEIGHTS = [1, 2, 3]\ndef load():\n    return list(range(10))",
    "%%step preprocess\ndf = load()",
    "%%step train\nmodel = sum(df) * epochs + sum(WEIGHTS)",
    "%%step evaluate\nscore = model - math.sqrt(4)",
]


@pytest.fixture
def notebook(shell):
    return shell.notebook("cached", NOTEBOOK)


def run(shell, tmp_path, **kwargs):
    result, events = shell.run_local(tmp_path / "runs", **kwargs)
    assert result.succeeded, result.to_json()
    return result, events


def cached(result) -> dict[str, str | None]:
    return {name: step.cached_from for name, step in result.steps.items()}


def test_an_unchanged_rerun_reuses_every_step_without_starting_a_process(notebook, tmp_path):
    first, _ = run(notebook, tmp_path)
    assert cached(first) == {"preprocess": None, "train": None, "evaluate": None}
    second, events = run(notebook, tmp_path)
    assert cached(second) == dict.fromkeys(first.steps, first.run_id)
    assert all(step.attempts == 0 and step.log_path is None for step in second.steps.values())
    assert not any(e.state == "running" for e in events if e.step)
    timings = json.loads((second.run_dir / "run.json").read_text())["timings"]
    assert "reuse_definition" in timings and "build_definition" not in timings  # no SDK build at all
    assert json.loads((second.run_dir / "definition.json").read_text()) == first.definition
    # what the kernel computed top to bottom, and what the first run computed
    assert second.outputs("evaluate") == first.outputs("evaluate") == {"score": notebook.ip.user_ns["score"]}
    doc = second.to_json()
    assert doc["steps"]["train"]["cached"] is True and doc["steps"]["train"]["cached_from"] == first.run_id
    assert doc["steps"]["train"]["key"] == first.steps["train"].key


def test_a_changed_cell_runs_that_step_and_reuses_the_rest(notebook, tmp_path):
    first, _ = run(notebook, tmp_path)
    notebook.run("%%step evaluate\nscore = model - math.sqrt(9)")
    second, _ = run(notebook, tmp_path)
    assert cached(second) == {"preprocess": first.run_id, "train": first.run_id, "evaluate": None}
    assert second.outputs("evaluate")["score"] == notebook.ip.user_ns["score"] == 453.0
    uploaded = {
        p.relative_to(second.run_dir / "s3").parts[2] for p in (second.run_dir / "s3").rglob("function/payload.pkl")
    }
    assert uploaded == {"evaluate"}  # a reused step's code is not even uploaded to the run's S3


def test_a_captured_value_changed_in_place_reruns_its_readers_once_their_cell_sees_it(notebook, tmp_path):
    first, _ = run(notebook, tmp_path)
    notebook.run("WEIGHTS.append(100)")  # after the step: run top to bottom, the step still sees [1, 2, 3]
    second, _ = run(notebook, tmp_path)
    assert cached(second) == dict.fromkeys(first.steps, first.run_id)
    assert second.outputs("train")["model"] == notebook.ip.user_ns["model"] == 45 * 10 + 6
    notebook.run(NOTEBOOK[3])  # the step cell again: it sees the longer list
    third, _ = run(notebook, tmp_path)
    assert cached(third) == {"preprocess": first.run_id, "train": None, "evaluate": None}
    assert third.outputs("train")["model"] == notebook.ip.user_ns["model"] == 45 * 10 + 106


def test_a_parameter_override_reruns_the_steps_that_read_it(notebook, tmp_path):
    first, _ = run(notebook, tmp_path)
    second, _ = run(notebook, tmp_path, parameters={"epochs": 3})
    assert cached(second) == {"preprocess": first.run_id, "train": None, "evaluate": None}
    third, _ = run(notebook, tmp_path, parameters={"epochs": 3})
    assert cached(third) == dict.fromkeys(first.steps, second.run_id) | {"preprocess": first.run_id}


def test_a_corrupted_cache_entry_is_run_again_and_said_so(notebook, tmp_path):
    first, _ = run(notebook, tmp_path)
    from jupyter_smstep.local.results import local_path

    payload = local_path(first.run_dir, first.steps["train"].output_uri) / "payload.pkl"
    payload.write_bytes(payload.read_bytes()[:-1] + b"\0")
    second, events = run(notebook, tmp_path)
    assert cached(second) == {"preprocess": first.run_id, "train": None, "evaluate": first.run_id}
    warnings = [e.message for e in events if e.kind == "warning" and e.step == "train"]
    assert warnings and "differs from what run" in warnings[0] and warnings[0].startswith("runs again: ")
    assert second.outputs("train")["model"] == notebook.ip.user_ns["model"]


def test_a_deleted_earlier_run_is_run_again_and_a_malformed_record_is_not_trusted(notebook, tmp_path):
    import shutil

    first, _ = run(notebook, tmp_path)
    shutil.rmtree(first.run_dir / "s3")
    record = tmp_path / "runs" / "cache" / f"{first.steps['train'].key}.json"
    record.write_text("{not json")
    second, events = run(notebook, tmp_path)
    assert cached(second) == dict.fromkeys(first.steps)
    messages = " ".join(e.message or "" for e in events if e.kind == "warning")
    assert "was run" in messages and "deleted" in messages and "cannot be read" in messages


def test_no_cache_and_from_force_steps_to_run(notebook, tmp_path, capsys):
    first, _ = run(notebook, tmp_path)
    everything, _ = run(notebook, tmp_path, cache=False)
    assert cached(everything) == dict.fromkeys(first.steps)
    forced, _ = run(notebook, tmp_path, from_step="train")
    assert forced.steps["preprocess"].cached_from is not None
    assert cached(forced)["train"] is None and cached(forced)["evaluate"] is None
    error = notebook.error(f"%pipeline run --runs-dir {tmp_path / 'runs'} --from trian")
    assert "--from 'trian' names no step" in error and "did you mean train?" in error
    notebook.run(f"%pipeline run --runs-dir {tmp_path / 'runs'} --json")
    out = capsys.readouterr().out
    doc = json.loads(out[out.index("{\n") :])  # after the progress display's text
    assert all(step["cached"] for step in doc["steps"].values())


def test_pull_loads_the_outputs_of_cached_steps(notebook, tmp_path):
    run(notebook, tmp_path)
    second, _ = run(notebook, tmp_path)
    notebook.ip.user_ns.pop("score")
    notebook.run("%pipeline pull evaluate")
    assert notebook.ip.user_ns["score"] == second.outputs("evaluate")["score"]


def test_show_says_which_steps_changed_since_the_last_run_and_why(notebook, tmp_path, capsys, monkeypatch):
    run(notebook, tmp_path)
    notebook.run("WEIGHTS.append(7)")
    capsys.readouterr()
    notebook.run("%pipeline show --text")  # the step keeps what its cell saw, and says the kernel moved on
    out = capsys.readouterr().out
    assert "'WEIGHTS' changed in the kernel after this step's cell ran (ordinary cell" in out
    notebook.run(NOTEBOOK[3])  # the step cell sees the new list
    capsys.readouterr()
    notebook.run("%pipeline show --text")
    out = capsys.readouterr().out
    run_id = notebook.workspace.last_run.run_id
    assert f"same since local run {run_id}" in out.split("step train")[0]  # preprocess
    assert f"changed since local run {run_id}: captured value 'WEIGHTS' changed" in out
    assert f"changed since local run {run_id}: upstream step train changed" in out
    from jupyter_smstep.panel import html as panel_html
    from jupyter_smstep.panel.state import PanelState

    state = PanelState()
    state.set_graph(notebook.workspace.graph(keys=True), None, 0)
    details = panel_html.step_details(state, "train", {}, {})
    assert "smstep-changes" in details and "captured value &#x27;WEIGHTS&#x27; changed" in details


def test_a_local_data_file_is_a_warning_and_part_of_the_key(shell, tmp_path):
    (tmp_path / "rows.csv").write_text("1\n2\n3\n")
    shell.configure(name="reads-file")
    shell.workspace.root = tmp_path
    shell.run("%%step peek --defer\nhead = open('rows.csv').read()[:1]")
    shell.run(f"%%step load --defer\nrows = [int(x) for x in open({str(tmp_path / 'rows.csv')!r}).read().split()]")
    problems = {p.step: p for p in shell.workspace.graph().report.problems}
    assert "names the local file 'rows.csv'" in problems["peek"].message and problems["peek"].line == 2
    assert "nor does a local run" in problems["peek"].message and "upload it to S3" in problems["peek"].fix
    assert "a local run finds it on this machine" in problems["load"].message
    shell.run("%pipeline remove peek")
    first, _ = run(shell, tmp_path)
    (tmp_path / "rows.csv").write_text("1\n2\n3\n4\n")
    second, _ = run(shell, tmp_path)
    assert second.steps["load"].cached_from is None  # the file changed: never a stale result
    assert second.outputs("load") == {"rows": [1, 2, 3, 4]}


def test_a_local_folder_joined_with_file_names_is_a_warning(shell, tmp_path):
    """Kale's titanic example: `path = "data/"` then `pd.read_csv(path + "train.csv")`; no literal names a
    file, but "data/" names a folder beside the notebook that no job has."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("a\n1\n")
    shell.configure(name="reads-folder")
    shell.workspace.root = tmp_path
    shell.run("%%step load --defer\npath = 'data/'\nrows = open(path + 'train.csv').read()")
    shell.run("%%step other --defer\nlabel = 'data'\nunit = 'km/h'")  # a word, a unit: no folder with a slash
    problems = [p for p in shell.workspace.graph().report.warnings if "names the local" in p.message]
    assert [(p.step, p.line) for p in problems] == [("load", 2)]
    assert "names the local folder 'data/'" in problems[0].message and "upload it to S3" in problems[0].fix


def test_run_folders_and_cache_records_are_the_users_only(notebook, tmp_path):
    first, _ = run(notebook, tmp_path)
    assert first.run_dir.stat().st_mode & 0o077 == 0
    assert (tmp_path / "runs" / "cache").stat().st_mode & 0o077 == 0


def test_a_saved_object_key_never_reaches_outside_the_runs_s3(tmp_path):
    from jupyter_smstep.local.cache import missing_saved_object, saved_object

    spec = {"name": "y", "uri": "s3://bucket/../../../../etc/passwd", "format": ".txt"}
    with pytest.raises(ValueError, match="is not a key of the run's S3"):
        saved_object(tmp_path, "r1", spec)
    assert "is not a key of the run's S3" in (missing_saved_object(tmp_path, "r1", [spec]) or "")
