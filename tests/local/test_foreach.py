"""``%%step --foreach``: one job per item, run in parallel locally, equal to what one kernel computes.

The kernel runs the cell once per item and binds lists (or the ``--select``-ed iteration's values); the
pipeline expands the cell into one step per item plus a gather step under the cell's name. ``smstep
verify`` runs the notebook top to bottom in a fresh kernel and compares every step, iterations included.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from jupyter_smstep import cli
from jupyter_smstep.local.runner import cores

from helpers.constants import IMAGE, ROLE

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the local runner forks")

CONFIG = f"%pipeline config --name sweep --role {ROLE} --image-uri {IMAGE} --instance-type ml.m5.large"
SWEEP = [
    "from sklearn.datasets import load_diabetes\nfrom sklearn.linear_model import Ridge\nalphas = [0.01, 1.0, 100.0]",
    "%%step data\nX, y = load_diabetes(return_X_y=True)",
    "%%step fit --foreach alpha=alphas\nmodel = Ridge(alpha=alpha).fit(X[:300], y[:300])\n"
    "r2 = float(model.score(X[300:], y[300:]))",
    "%%step report\nbest = alphas[r2.index(max(r2))]\ncoefs = [m.coef_.round(3).tolist() for m in model]",
]


def write(folder: Path, *cells: str, name: str = "sweep.ipynb") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in ("%load_ext jupyter_smstep", CONFIG, *cells)]
    path = folder / name
    nbformat.write(nb, path)
    return path


def verify(path: Path, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    code = cli.main(["verify", str(path), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_a_three_model_sweep_runs_in_parallel_and_equals_the_kernel_top_to_bottom(tmp_path, capsys):
    code, report = verify(write(tmp_path, *SWEEP), capsys)
    assert code == 0, report
    assert report["differs"] == 0 and report["not comparable"] == 0, report
    assert set(report["steps"]) == {"data", "fit-0", "fit-1", "fit-2", "fit", "report"}
    # each iteration compared with its own item of the kernel's lists, and the gather with the lists
    assert set(report["steps"]["fit-2"]) == {"model", "r2"}


def test_iterations_overlap_and_max_concurrency_chains_them_in_lanes(shell, tmp_path):
    shell.notebook("sweep", SWEEP[:3])
    result, _ = shell.run_local(tmp_path / "runs")
    fits = [result.steps[f"fit-{i}"] for i in range(3)]
    assert result.succeeded
    if cores() > 1:  # the runner starts every ready step up to the cores: two iterations ran at once
        assert fits[1].started < fits[0].ended and fits[0].started < fits[1].ended
    shell.run(
        "%%step fit --foreach alpha=alphas --max-concurrency 1\n"
        "model = Ridge(alpha=alpha).fit(X[:300], y[:300])\nr2 = float(model.score(X[300:], y[300:]))"
    )
    graph = shell.graph()
    assert graph.step("fit-1").order_only == ["fit-0"] and graph.step("fit-2").order_only == ["fit-1"]
    result, _ = shell.run_local(tmp_path / "runs", cache=False)
    fits = [result.steps[f"fit-{i}"] for i in range(3)]
    assert fits[0].ended <= fits[1].started and fits[1].ended <= fits[2].started
    assert graph.to_json()["steps"][1]["foreach"] == {
        "step": "fit",
        "var": "alpha",
        "source": "alphas",
        "count": 3,
        "max_concurrency": 1,
        "index": 0,
        "item": 0.01,
    }
    assert graph.to_json()["steps"][4]["foreach"]["items"] == [0.01, 1.0, 100.0]


def test_the_kernel_binds_lists_and_the_loop_name_is_gone_after(shell):
    shell.run("items = [1, 2, 3]\nbase = [10]")
    shell.run("%%step grow --foreach n=items\nbase.append(n)\ntotal = sum(base)\nlabel = f'n={n}'")
    ns = shell.ip.user_ns
    # each iteration starts from the list its cell saw, as each job gets it pickled: 11, 12, 13, not 11, 13, 16
    assert ns["total"] == [11, 12, 13] and ns["label"] == ["n=1", "n=2", "n=3"]
    assert "n" not in ns


def test_verify_in_the_kernel_compares_each_iteration_with_its_item_of_the_lists(shell, tmp_path, capsys):
    shell.notebook("sweep", SWEEP[:3])
    capsys.readouterr()
    shell.run(f"%pipeline verify --json --runs-dir {tmp_path / 'runs'}")
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{") :])  # after the progress display
    assert report["differs"] == 0 and report["not comparable"] == 0, report
    assert set(report["steps"]) == {"data", "fit-0", "fit-1", "fit-2", "fit"}


def test_a_cell_that_changes_a_captured_value_equals_the_kernel(tmp_path, capsys):
    path = write(
        tmp_path,
        "items = [1, 2, 3]\nbase = [10]",
        "%%step grow --foreach n=items\nbase.append(n)\ntotal = sum(base)",
        "%%step after\nboth = list(zip(items, total))",
    )
    code, report = verify(path, capsys)
    assert code == 0 and report["differs"] == 0 and report["not comparable"] == 0, report


@pytest.mark.parametrize(("pick", "expected"), [("max", 2), ("min", 0)])
def test_select_gives_the_iteration_whose_value_is_largest_or_smallest(shell, tmp_path, pick, expected):
    shell.notebook(
        "pick",
        [
            "items = [5, 1, 9, 9, 2]\nimport math",
            f"%%step score --foreach x=items --select {pick}:neg\nneg = -abs(x - 9) if x != 5 else -99\nwho = x",
            "%%step after\nchosen = who",
        ],
    )
    ns = shell.ip.user_ns
    # max: -abs(x-9) is 0 for both 9s, and the first (item 2) wins the tie; min: item 0 (-99)
    assert ns["who"] == [5, 1, 9, 9, 2][expected]
    result, _ = shell.run_local(tmp_path / "runs")
    assert result.succeeded, result.error
    assert result.outputs("score")["who"] == ns["who"] and result.outputs("after")["chosen"] == ns["who"]
    assert set(result.outputs("score")) == {"who"} and set(result.outputs("score-4")) == {"who", "neg"}


def test_adding_an_item_runs_one_more_job(shell, tmp_path):
    shell.notebook("grow", ["items = [1, 2]", "%%step sq --foreach n=items\nsq = n * n", "%%step total\nt = sum(sq)"])
    first, _ = shell.run_local(tmp_path / "runs")
    assert first.outputs("total")["t"] == 5
    shell.run("items = [1, 2, 3]")
    shell.run("%%step sq --foreach n=items\nsq = n * n")
    shell.run("%%step total\nt = sum(sq)")
    second, _ = shell.run_local(tmp_path / "runs")
    reused = {name for name, step in second.steps.items() if step.cached_from == first.run_id}
    assert reused == {"sq-0", "sq-1"}, reused  # the new item's job ran, and the gather, and what reads it
    assert second.succeeded and second.outputs("total")["t"] == 14


def test_one_failed_iteration_fails_the_step(shell, tmp_path):
    shell.notebook("fails", ["items = [1, 0, 2]"])
    shell.error("%%step inv --foreach n=items\nr = 1 / n")  # the kernel stops at item 1 too
    result, _ = shell.run_local(tmp_path / "runs")
    assert not result.succeeded
    assert result.steps["inv-1"].state == "failed" and "ZeroDivisionError" in (result.steps["inv-1"].error or "")
    assert result.steps["inv"].state != "succeeded"


def errors(shell) -> list[str]:
    return [f"{p.step}: {p.message} | {p.fix}" for p in shell.graph().report.errors]


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["items = list(range(101))", "%%step big --foreach n=items --defer\nr = n"], "101 items, more than 100"),
        (["items = []", "%%step none --foreach n=items\nr = n"], "'items' is empty"),
        (["items = [1]", "%%step c0 --foreach n=items --max-concurrency 0\nr = n"], "--max-concurrency 0: must be"),
        (["items = [1]", "%%step c51 --foreach n=items --max-concurrency 51\nr = n"], "--max-concurrency 51: must be"),
        (
            ["%%step fit-1\nx = 1", "items = [1, 2]", "%%step fit --foreach n=items\nr = n + x"],
            "step 'fit-1' has a name this --foreach step's pipeline takes",
        ),
        (
            ["%%step fit-gather\nx = 1", "items = [1, 2]", "%%step fit --foreach n=items\nr = n + x"],
            "step 'fit-gather' has a name this --foreach step's pipeline takes",
        ),
        (["items = [1, 2]", "%%step sel --foreach n=items --select max:auc\nr = n"], "does not assign 'auc'"),
        (
            ["%%step make\nitems = [1, 2]", "%%step use --foreach n=items\nr = n"],
            "--foreach n=items: the items come from step 'make'",
        ),
        (["%pipeline param items=[1,2]", "%%step use --foreach n=items --defer\nr = n"], "is a pipeline parameter"),
        (["items = 'abc'", "%%step chars --foreach n=items --defer\nr = n"], "once per character"),
        (["items = {1, 2}", "%%step unordered --foreach n=items --defer\nr = n"], "a set, which has no order"),
        (["items = [1, 2]", "%%step saved --foreach n=items --save r\nr = n"], "every iteration would write the same"),
    ],
)
def test_each_fan_out_mistake_is_refused_before_anything_is_built(shell, cells, expected):
    shell.configure(name="mistakes", save_root="s3://bucket/saves")
    for cell in cells:
        shell.run(cell, ok=False)
    found = errors(shell)
    assert any(expected in e for e in found), found


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("--foreach a=items --foreach b=items", "--foreach is given twice"),
        ("--select max:auc", "--select needs --foreach"),
        ("--foreach a=items --max-concurrency 2 --select best:auc", "expected max:NAME or min:NAME"),
        ("--foreach items", "expected VAR=ITEMS"),
    ],
)
def test_a_malformed_fan_out_line_is_refused_at_the_cell(shell, line, expected):
    shell.run("items = [1, 2]")
    assert expected in shell.error(f"%%step s {line}\nr = 1")


def test_a_fan_out_under_when_runs_all_its_iterations_in_the_branch_or_none(shell, tmp_path):
    shell.notebook(
        "gated",
        [
            "items = [1, 2]",
            "%%step gate\nok = 0",
            '%%step sq --foreach n=items --when "ok == 1"\nsq = n * n',
            "%%step total\nt = sum(sq)",
        ],
    )
    graph = shell.graph()
    assert graph.conditions[0].steps == ["sq-0", "sq-1", "sq", "total"]
    result, _ = shell.run_local(tmp_path / "runs")
    assert {n: s.state for n, s in result.steps.items() if n not in ("gate",) and not n.startswith("when-")} == {
        "sq-0": "skipped",
        "sq-1": "skipped",
        "sq": "skipped",
        "total": "skipped",
    }


def _for_each(items, concurrency=2, body_depends=()):
    item = {"Get": "ForEach.CurrentItem"}
    body = {
        "Name": "fit",
        "Type": "Training",
        "DependsOn": list(body_depends),
        "Arguments": {"OutputDataConfig": {"S3OutputPath": {"Std:Join": {"On": "/", "Values": ["s3://b/p", item]}}}},
    }
    each = {"Name": "fit-foreach", "Type": "ForEach", "DependsOn": ["data"]}
    each["Arguments"] = {"IterableItems": items, "MaxConcurrency": concurrency, "ForEachBody": [body]}
    return each


def test_the_runner_runs_a_for_each_as_its_children_and_names_the_gather_back():
    from jupyter_smstep.local.definition import as_run

    read = "Steps.fit-foreach.IterationOutputs[2].fit.OutputDataConfig.S3OutputPath"
    gather = {"Name": "fit-gather", "Type": "Training", "DependsOn": ["fit-foreach"], "Arguments": {"x": {"Get": read}}}
    report = {"Name": "report", "Type": "Training", "DependsOn": ["fit-gather"], "Arguments": {}}
    ran = as_run({"Steps": [{"Name": "data", "Type": "Training"}, _for_each([0, 1, 2]), gather, report]})
    steps = {s["Name"]: s for s in ran["Steps"]}
    assert list(steps) == ["data", "fit-0", "fit-1", "fit-2", "fit", "report"]
    # the item in place of CurrentItem; MaxConcurrency 2: two lanes, the third child after the first
    assert steps["fit-2"]["Arguments"]["OutputDataConfig"]["S3OutputPath"]["Std:Join"]["Values"] == ["s3://b/p", 2]
    assert steps["fit-0"]["DependsOn"] == ["data"] and steps["fit-2"]["DependsOn"] == ["data", "fit-0"]
    assert steps["fit"]["Arguments"]["x"] == {"Get": "Steps.fit-2.OutputDataConfig.S3OutputPath"}
    assert steps["fit"]["DependsOn"] == ["fit-0", "fit-1", "fit-2"] and steps["report"]["DependsOn"] == ["fit"]


@pytest.mark.parametrize(
    ("each", "expected"),
    [
        (_for_each({"Get": "Parameters.items"}), "expands a ForEach over literal items only"),
        (_for_each([0, {"Get": "Steps.data.OutputDataConfig.S3OutputPath"}]), "literal items only"),
        ({**_for_each([0]), "Arguments": {"IterableItems": [0], "ForEachBody": []}}, "has 0 body steps"),
    ],
)
def test_a_for_each_the_runner_cannot_expand_is_refused_by_name(each, expected):
    from jupyter_smstep.errors import SmstepError
    from jupyter_smstep.local.definition import parse_steps

    with pytest.raises(SmstepError, match=expected) as caught:
        parse_steps({"Steps": [{"Name": "data", "Type": "Training"}, each]})
    assert caught.value.problems[0].step == "fit-foreach"


def test_a_read_of_the_for_each_s_own_properties_is_refused_not_left_unresolved():
    from jupyter_smstep.errors import SmstepError
    from jupyter_smstep.local.definition import as_run

    status = {"Name": "after", "Type": "Training", "Arguments": {"s": {"Get": "Steps.fit-foreach.Status"}}}
    with pytest.raises(SmstepError, match="reads Steps.fit-foreach.Status, which the local runner does not produce"):
        as_run({"Steps": [_for_each([0, 1]), status]})


def test_a_fan_out_cell_that_binds_a_captured_value_again_runs_each_item_from_the_value_it_saw(shell, tmp_path):
    """Its iterations take that value as a parameter with a default (codegen.rebound): the ForEach body
    passes only the links."""
    shell.notebook(
        "rebinds",
        ["alphas = [1, 2]\nw = 10", "%%step data\nxs = [1, 2]", "%%step fit --foreach a=alphas\nw = w * a + len(xs)"],
    )
    shell.run("%%step total\nt = sum(w)")
    result, _ = shell.run_local(tmp_path / "runs")
    assert result.succeeded and result.outputs("total") == {"t": (10 * 1 + 2) + (10 * 2 + 2)}
    assert shell.ip.user_ns["t"] == 34


def test_a_cached_definition_is_not_reused_across_foreach_as(shell, tmp_path):
    """A local run reuses the definition it built when nothing changed; --foreach-as changes the definition."""
    from jupyter_smstep.sdk import compat

    shell.notebook("sweep", SWEEP[:3])
    first, _ = shell.run_local(tmp_path / "runs")
    shell.run("%pipeline config --foreach-as steps")
    second, _ = shell.run_local(tmp_path / "runs")
    assert first.succeeded and second.succeeded
    kinds = [
        {s["Name"]: s["Type"] for s in json.loads((r.run_dir / "definition.json").read_text())["Steps"]}
        for r in (first, second)
    ]
    assert kinds[1] == {
        "data": "Training",
        "fit-0": "Training",
        "fit-1": "Training",
        "fit-2": "Training",
        "fit": "Training",
    }
    if compat.load().ForEachStep is not None:
        assert kinds[0]["fit-foreach"] == "ForEach"
    assert all(s.cached_from for s in second.steps.values())  # each step's result, reused
