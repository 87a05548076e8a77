"""``--save NAME=S3URI``: a local run writes each value into its embedded S3 in the suffix's format; read back,
each equals what the kernel computed. Bad ``--save`` values are refused before anything runs."""

from __future__ import annotations

import json
import os
import runpy
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

NOTEBOOK = [
    "import numpy as np\nimport pandas as pd",
    "%%step prepare --save frame=s3://smstep-results/{pipeline}/{step}/frame.parquet "
    "--save table=s3://smstep-results/table.csv --save weights=s3://smstep-results/{execution_id}/weights.npy\n"
    "frame = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})\ntable = frame.copy()\n"
    "weights = np.arange(6, dtype='float64').reshape(2, 3)",
    "%%step fit --save model=s3://smstep-results/models/model.joblib --save metrics=s3://smstep-results/m.json "
    "--save note=s3://smstep-results/note.txt --save raw\n"
    "model = {'coef': weights.sum(), 'rows': len(frame)}\nmetrics = {'rmse': 0.5, 'n': len(table)}\n"
    "note = 'fitted'\nraw = [1, 2, 3]",
]


@pytest.fixture
def notebook(shell):
    shell.run("%pipeline config --save-root s3://smstep-results/root")
    return shell.notebook("saver", NOTEBOOK)


def test_a_local_run_writes_each_value_in_its_format_and_lists_it(notebook, tmp_path):
    result, _ = notebook.run_local(tmp_path / "runs")
    assert result.succeeded, result.to_json()
    ns = notebook.ip.user_ns
    saved = {s["name"]: s for step in result.saved.values() for s in step}
    assert set(saved) == {"frame", "table", "weights", "model", "metrics", "note", "raw"}
    assert saved["frame"]["uri"] == "s3://smstep-results/saver/prepare/frame.parquet"
    assert saved["weights"]["uri"] == f"s3://smstep-results/{result.run_id}/weights.npy"
    assert saved["raw"]["uri"] == "s3://smstep-results/root/saver/fit/raw.json"  # under the root, by type
    pd.testing.assert_frame_equal(pd.read_parquet(saved["frame"]["path"]), ns["frame"])
    pd.testing.assert_frame_equal(pd.read_csv(saved["table"]["path"]), ns["table"])
    assert np.array_equal(np.load(saved["weights"]["path"]), ns["weights"])
    assert joblib.load(saved["model"]["path"]) == ns["model"]
    assert json.loads(open(saved["metrics"]["path"]).read()) == ns["metrics"]
    assert open(saved["note"]["path"]).read() == ns["note"]
    assert json.loads(open(saved["raw"]["path"]).read()) == ns["raw"]
    assert result.to_json()["saved"] == result.saved
    again, _ = notebook.run_local(tmp_path / "runs")  # a saving step writes each run: never reused
    assert again.steps["prepare"].cached_from is None and again.saved.keys() == result.saved.keys()


def test_a_suffix_the_value_does_not_fit_fails_the_step_naming_both(shell, tmp_path):
    shell.notebook("unfit", ["%%step make --save rows=s3://smstep-results/rows.npy\nrows = [1, 2]"])
    result, _ = shell.run_local(tmp_path / "runs")
    assert not result.succeeded
    error = result.steps["make"].error
    assert "--save rows: rows is a builtins.list, which .npy cannot hold (a numpy array)" in error


def test_a_save_the_cell_did_not_assign_on_its_path_says_so_with_the_fix(shell, tmp_path):
    from jupyter_smstep.core import codegen
    from jupyter_smstep.sdk import saving

    assert saving._UNASSIGNED == codegen.UNASSIGNED  # the step passes what the save recognises
    shell.notebook(
        "unassigned",
        ["FLAG = False", "%%step make --save x=s3://smstep-results/x.json --defer\nif FLAG:\n    x = 1\ny = 2"],
    )
    result, _ = shell.run_local(tmp_path / "runs")
    error = result.steps["make"].error
    assert not result.succeeded and "UnboundLocalError" not in error
    assert (
        "NameError: --save x: the cell did not assign 'x' on the path it took, so there is nothing to save "
        "(fix: assign x on every path, e.g. x = None before the if, or drop --save x)"
    ) in error


def test_graph_json_and_the_export_show_the_saves(notebook, tmp_path):
    doc = {s["name"]: s for s in notebook.graph().to_json()["steps"]}
    assert doc["prepare"]["saves"][0] == {
        "name": "frame",
        "uri": "s3://smstep-results/saver/prepare/frame.parquet",
        "format": "parquet",
    }
    assert doc["fit"]["saves"][-1]["format"] == "by type"
    path = tmp_path / "saver.py"
    notebook.run(f"%pipeline export {path}")
    text = path.read_text()
    assert "def _smstep_save(" in text
    assert (
        "_smstep_save('weights', locals().get('weights', '<jupyter_smstep: not assigned>'), "
        "'s3://smstep-results/{execution_id}/weights.npy', 'npy', _smstep_execution_id)"
    ) in text
    runpy.run_path(str(path), run_name="exported-module")  # it builds (no definition asked)


@pytest.mark.parametrize(
    "line, message, fix",
    [
        ("--save nothere=s3://b-1/x.json", "the cell never assigns 'nothere'", "assign nothere"),
        ("--save y=b-1/x.json", "is not an s3:// URI", "s3://bucket"),
        ("--save y=s3://B_1/x.json", "'B_1' is not an S3 bucket name", "lowercase"),
        ("--save y=s3://192.168.1.1/x.json", "is not an S3 bucket name (formatted as an IP address)", "another bucket"),
        ("--save y=s3://xn--b/x.json", "is not an S3 bucket name (a prefix S3 reserves)", "another bucket"),
        ("--save y=s3://logs-s3alias/x.json", "is not an S3 bucket name (a suffix S3 reserves)", "another bucket"),
        ("--save y=s3://bucket-1/a/../x.json", "the key has a '.' or '..' segment", "without . and .. segments"),
        ("--save y=s3://bucket-1/", "names a folder, not an object", "/model.joblib"),
        ("--save y=s3://bucket-1/x.xlsx", "the suffix .xlsx names no format", ".parquet"),
        ("--save y=s3://bucket-1/x", "the suffix (none) names no format", ".parquet"),
        ("--save y=s3://bucket-1/{run}/x.json", "unknown placeholder {run}", "{execution_id}"),
        ("--save y=s3://bucket-1/{x.json", "--save y=s3://bucket-1/{x.json:", "{{ }}"),
        ("--save y", "has no S3 URI and the notebook has no save root", "--save-root"),
        ("--save y=s3://bucket-1/a.json --save z=s3://bucket-1/a.json", "write the same object", "its own URI"),
    ],
)
def test_bad_saves_are_errors_on_the_step_line_before_anything_runs(shell, line, message, fix):
    shell.configure(name="bad-save")
    shell.run(f"%%step make {line}\ny = 1\nz = 2")
    errors = [p for p in shell.graph().report.errors if p.step == "make"]
    assert any(message in p.message and fix in p.fix and p.line == 1 for p in errors), errors
    assert "bad-save" not in shell.error("%pipeline run")


@pytest.mark.parametrize(
    "line, message",
    [
        ("%%step make --save 'not a name=s3://b/x.json'", "is not a variable name"),
        ("%pipeline config --save-root s3://Bad_Bucket/prefix", "is not an S3 bucket name"),
        ("%pipeline config --save-root bucket-1/prefix", "is not an s3:// URI"),
    ],
)
def test_bad_save_syntax_fails_the_cell(shell, line, message):
    assert message in shell.error(f"{line}\ny = 1" if line.startswith("%%") else line)


def test_the_kernel_writes_nothing_and_says_so_and_the_run_report_lists_the_objects(shell, tmp_path, capsys):
    shell.notebook("report", [])
    capsys.readouterr()
    shell.run("%%step make --save rows=s3://smstep-results/rows.json\nrows = [1, 2]")
    assert "--save writes when the pipeline runs, not in the kernel" in capsys.readouterr().err
    shell.run(f"%pipeline run --runs-dir {tmp_path / 'runs'}")
    out = capsys.readouterr().out
    assert "saved make.rows → s3://smstep-results/rows.json  (" in out and "/s3/smstep-results/rows.json)" in out
    from jupyter_smstep.panel import html as panel_html
    from jupyter_smstep.panel.state import PanelState

    state = PanelState()
    state.set_graph(shell.graph(), None, 0)
    assert "data-save='rows'" in panel_html.step_details(state, "make", {}, {})


def test_two_steps_saving_to_one_object_are_refused_before_anything_runs(shell):
    shell.configure(name="two-writers")
    shell.run("%%step first --save y=s3://bucket-1/out/y.json\ny = 1")
    shell.run("%%step second --save z=s3://bucket-1/out/y.json\nz = y + 1")
    shell.run("%%step third --save w=s3://bucket-1/out/{step}.json\nw = 3")  # its own object per step
    errors = [p for p in shell.graph().report.errors]
    assert [(p.step, p.line) for p in errors] == [("second", 1)], errors
    assert "which step 'first' writes too (--save y)" in errors[0].message and "{step}" in errors[0].fix


def test_a_saving_step_is_reused_and_its_objects_are_put_again_in_the_new_run(shell, tmp_path):
    """--save on the first step used to turn the cache off for the whole pipeline (84-89 s on every run)."""
    shell.configure(name="saved-cache", save_root="s3://smstep-results/out")
    shell.run("%%step make --save rows --save table=s3://smstep-results/t.json\nrows = [1, 2]\ntable = {'a': 1}")
    shell.run("%%step total\nn = sum(rows)")
    first, _ = shell.run_local(tmp_path / "runs")
    second, events = shell.run_local(tmp_path / "runs")
    assert first.succeeded and second.succeeded
    assert {n: s.cached_from for n, s in second.steps.items()} == {"make": first.run_id, "total": first.run_id}
    objects = {(o["name"], o["uri"]) for o in second.saved["make"]}
    assert objects == {
        ("rows", "s3://smstep-results/out/saved-cache/make/rows.json"),
        ("table", "s3://smstep-results/t.json"),
    }, second.saved
    for o in second.saved["make"]:  # in this run's own S3, with the first run's bytes
        assert Path(o["path"]).is_relative_to(second.run_dir)
    assert Path(second.saved["make"][0]["path"]).read_bytes() == Path(first.saved["make"][0]["path"]).read_bytes()
    # an object of the run whose result the cache holds that is gone: the step runs again and says why
    Path(first.saved["make"][1]["path"]).unlink()
    third, events = shell.run_local(tmp_path / "runs")
    assert not third.steps["make"].cached_from and third.succeeded
    assert any("runs again: its --save" in (e.message or "") and e.step == "make" for e in events), [
        e.message for e in events if e.message
    ]


READER = (
    "%%step read --defer{after}\nimport boto3, json, time\ns3 = boto3.client('s3')\n"
    "for _ in range(200):  # waits for the object, so the run does not depend on which step starts first\n"
    "    try:\n        got = json.loads(s3.get_object(Bucket='smstep-results', Key='shared.json')['Body'].read())\n"
    "        break\n    except s3.exceptions.NoSuchKey:\n        time.sleep(0.05)"
)


def test_a_step_reading_another_steps_saved_object_without_running_after_it_is_said_and_never_reused(shell, tmp_path):
    """It names the object: a warning at the graph. It read it at run time (its own S3 key tells its reads
    apart): a warning on the step, and its result is never reused, since it depends on which step wrote
    first. On SageMaker the two would run at once. With --after, it is ordered, and reused as any step."""
    shell.notebook(
        "unordered",
        [
            "size = 5",
            "%%step write --defer --save table=s3://smstep-results/shared.json\ntable = {'n': size}",
            READER.format(after=""),
        ],
    )
    warned = [str(p) for p in shell.graph().report.problems if "names s3://smstep-results/shared.json" in str(p)]
    assert len(warned) == 1 and "fix: %%step read --after write" in warned[0], warned
    first, _ = shell.run_local(tmp_path / "runs")
    assert first.outputs("read")["got"] == {"n": 5}
    said = [w for w in first.steps["read"].warnings if "which step 'write' writes (--save)" in w]
    assert said and "(fix: %%step read --after write)" in said[0], first.steps["read"].warnings
    shell.run("size = 6")
    shell.run("%%step write --defer --save table=s3://smstep-results/shared.json\ntable = {'n': size}")
    again, _ = shell.run_local(tmp_path / "runs")
    assert again.steps["read"].cached_from is None and again.outputs("read")["got"] == {"n": 6}

    shell.notebook(
        "ordered",
        [
            "size = 5",
            "%%step write --defer --save table=s3://smstep-results/shared.json\ntable = {'n': size}",
            READER.format(after=" --after write"),
        ],
    )
    assert not [p for p in shell.graph().report.problems if "names s3://" in str(p)]
    ordered, _ = shell.run_local(tmp_path / "ordered")
    assert not [w for w in ordered.steps["read"].warnings if "--save" in w]
    assert shell.run_local(tmp_path / "ordered")[0].steps["read"].cached_from == ordered.run_id


def test_a_step_two_steps_after_the_writer_of_what_it_reads_is_ordered_but_not_reused(shell, tmp_path):
    """It runs after the writer (through another step), so nothing races and nothing is said; but a reuse
    checks a step's direct producers only, so its result is not reused: the writer's object may have changed."""
    shell.notebook(
        "indirect",
        [
            "%%step write --defer --save table=s3://smstep-results/shared.json\ntable = {'n': 1}",
            "%%step mid --defer --after write\nm = 1",
            READER.format(after=" --after mid"),
        ],
    )
    assert not [p for p in shell.graph().report.problems if "names s3://" in str(p)]
    first, _ = shell.run_local(tmp_path / "runs")
    assert first.outputs("read")["got"] == {"n": 1}
    assert not [w for w in first.steps["read"].warnings if "--save" in w], first.steps["read"].warnings
    assert (
        "s3://smstep-results/shared.json, which step 'write' writes (--save), without --after write"
        in first.steps["read"].reads["unpinned"]
    )
    assert shell.run_local(tmp_path / "runs")[0].steps["read"].cached_from is None
