"""What each name a step reads is bound to, through a real IPython shell: the rules users hit.

Each case runs the cells in the kernel (as a user does) and checks the graph; the
last test runs a pipeline locally and compares what the last step computes with
what the kernel computed running the same cells top to bottom.
"""

from __future__ import annotations

import pytest


def inputs(shell, step):
    return {name: (i.kind, i.step or i.statement) for name, i in shell.graph().step(step).inputs.items()}


def errors(shell):
    return [(p.step, p.line, p.message) for p in shell.graph().report.errors]


def test_a_module_imported_in_one_step_is_imported_again_in_the_next_never_shipped(shell):
    shell.configure()
    shell.run("%%step a\nimport math\nfrom statistics import mean as avg\nr = math.sqrt(16)")
    shell.run("%%step b\ns = math.floor(r) + avg([1, 2])")
    graph = shell.graph()
    assert inputs(shell, "b") == {
        "math": ("import", "import math"),
        "avg": ("import", "from statistics import mean as avg"),
        "r": ("step", "a"),
    }
    assert graph.step("a").outputs == ["r"]  # the modules are not outputs


def test_a_name_rebound_by_except_as_is_still_an_output(shell):
    shell.configure()
    shell.run("%%step a\nerr = None\ntry:\n    v = int('3')\nexcept ValueError as err:\n    v = 0")
    shell.run("%%step b\nmsg = repr(err) + str(v)")
    assert inputs(shell, "b") == {"err": ("step", "a"), "v": ("step", "a")}
    assert set(shell.graph().step("a").outputs) == {"err", "v"}


def test_a_conditional_del_keeps_the_name_an_output(shell):
    shell.configure()
    shell.run("%pipeline param flag=False")
    shell.run("%%step a\nx = 1")
    shell.run("%%step b\nif flag:\n    del x")
    shell.run("%%step c\nz = x + 1")
    assert inputs(shell, "c") == {"x": ("step", "b")}
    assert not errors(shell)


def test_reading_a_name_a_step_deleted_is_an_error(shell):
    shell.configure()
    shell.run("%%step a\nx = 1")
    shell.run("%%step b\ny = x * 2\ndel x")
    shell.run("x = 5")  # a stale kernel value must not hide it either... unless a cell really rebinds it
    assert not errors(shell)  # this ordinary cell rebinds x: c captures it
    shell.run("%pipeline remove b")
    shell.run("%%step b --defer\ny = x * 2\ndel x")
    shell.run("%%step c --defer\nz = x")
    found = [e for e in errors(shell) if e[0] == "c"]
    assert found and "reads 'x', which step 'b' deletes (its line 3)" in found[0][2]


def test_an_ordinary_cell_that_deletes_a_step_output_is_seen(shell):
    shell.configure()
    shell.run("%%step a\nx = 1")
    shell.run("del x")
    shell.run("%%step c --defer\nz = x")
    assert any("ordinary cell" in m and "deletes" in m for _, _, m in errors(shell))


@pytest.mark.parametrize(
    "body, keyword, line",
    [
        ("x = 1\nreturn x", "return", 3),
        ("for r in range(3):\n    yield r", "yield", 3),
        ("import asyncio\nv = await asyncio.sleep(0)", "await", 3),
    ],
)
def test_return_yield_await_at_the_top_of_a_step_are_refused_with_the_line(shell, body, keyword, line):
    shell.configure()
    shell.run(f"%%step --defer a\n{body}")
    found = [e for e in errors(shell) if keyword in e[2]]
    assert found == [("a", line, found[0][2])]
    assert "top level of a %%step cell" in found[0][2]


def test_ipythons_builtin_wrappers_are_builtins_and_its_own_names_are_errors(shell):
    shell.configure()
    wrapper = shell.ip.user_ns["open"]  # what IPython puts there: functools.wraps(io.open), __module__ "io"
    assert wrapper is not open and wrapper.__wrapped__ is open
    shell.run("%%step --defer a\nwith open('x.txt') as f:\n    text = f.read()\nexit_code = 0 if text else exit")
    assert inputs(shell, "a") == {}  # open and exit are the job's own builtins
    shell.run("%%step --defer b\ndisplay(text)")
    assert any(step == "b" and "IPython's `display`" in m for step, _, m in errors(shell))


def test_a_final_step_leaves_out_what_is_not_data(shell, tmp_path):
    shell.configure()
    path = tmp_path / "data.txt"
    path.write_text("hello")
    shell.ip.user_ns["path"] = str(path)
    shell.run("%%step a\nimport threading\nfh = open(path)\ndata = fh.read()\nlock = threading.Lock()")
    graph = shell.graph()
    assert graph.step("a").outputs == ["data"]
    notes = [p.message for p in graph.report.warnings if p.step == "a"]
    assert any("leaves 'fh' (TextIOWrapper)" in n for n in notes) and any("'lock'" in n for n in notes)
    shell.run("%pipeline remove a")
    shell.run("%%step a --outputs fh,data\nfh = open(path)\ndata = fh.read()")
    assert shell.graph().step("a").outputs == ["fh", "data"]  # --outputs insists


def test_the_pipeline_computes_what_the_kernel_computed(shell, tmp_path):
    """Maybe-unbound names and re-imported modules, run locally, against the kernel's own run."""
    shell.configure()
    cells = [
        "%pipeline param text=3",
        "%%step a\nimport math\nerr = None\ntry:\n    v = int(text)\nexcept ValueError as err:\n    v = -1\n"
        "root = math.sqrt(81)",
        "%%step b\nlabel = type(err).__name__\nout = math.floor(root) + v",
    ]
    for source in cells:
        shell.run(source)
    kernel = {"label": shell.ip.user_ns["label"], "out": shell.ip.user_ns["out"]}
    assert kernel == {"label": "NoneType", "out": 12}  # no exception: err is still None
    shell.ip.user_ns["err"] = ValueError("a stale kernel value the pipeline must not use")
    assert inputs(shell, "b")["err"] == ("step", "a")
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs")
    assert result.succeeded, {n: s.error for n, s in result.steps.items()}
    assert result.outputs("b") == kernel


def test_global_at_the_top_of_a_step_is_refused(shell):
    shell.configure()
    shell.run("total = 1")
    shell.run("%%step --defer a\nglobal total\ntotal = total + 1")
    assert any(e[0] == "a" and e[1] == 2 and "`global`" in e[2] for e in errors(shell))


# --------------------------------------------------------------------------- mutation the syntax does not show
MUTATION_CASES = {
    "notebook-function": (
        "def scale_in_place(xs, k):\n    for i in range(len(xs)):\n        xs[i] *= k",
        "scale_in_place(values, 10)",
    ),
    "through-another-function": ("def inner(v):\n    v.append(4)\ndef outer(w):\n    inner(w)", "outer(values)"),
    "keyword-argument": ("def fill(xs=None, n=0):\n    xs.extend(range(n))", "fill(n=2, xs=values)"),
    "user-method-changing-self": (
        "class Tally:\n    def __init__(self):\n        self.n = 0\n    def bump(self, k):\n        self.n += k",
        "values.bump(5)",
    ),
    "random-shuffle": ("import random", "random.shuffle(values)"),
    "rng-shuffle": ("import random\nrng = random.Random(3)", "rng.shuffle(values)"),
    "heapq": ("import heapq", "heapq.heappush(values, 0)"),
    "bisect": ("import bisect", "bisect.insort(values, 3)"),
}


@pytest.mark.parametrize("case", MUTATION_CASES, ids=list(MUTATION_CASES))
def test_inputs_changed_through_calls_are_outputs(shell, case):
    helper, call = MUTATION_CASES[case]
    shell.configure()
    shell.run(helper)
    first = "values = Tally()" if "Tally" in helper else "values = [5, 1, 2]"
    shell.run(f"%%step a --defer\n{first}")
    shell.run(f"%%step b --defer\n{call}")
    shell.run("%%step c --defer\nseen = values")
    graph = shell.graph()
    assert "values" in graph.step("b").outputs, graph.step("b").outputs
    assert graph.step("c").inputs["values"].step == "b"


def test_a_function_that_only_reads_its_argument_changes_nothing(shell):
    shell.configure()
    shell.run("def total(xs):\n    return sum(xs)")
    shell.run("%%step a --defer\nvalues = [1, 2]")
    shell.run("%%step b --defer\nt = total(values)")
    shell.run("%%step c --defer\nseen = values")
    graph = shell.graph()
    assert graph.step("b").outputs == ["t"] and graph.step("c").inputs["values"].step == "a"


def test_mutation_through_a_notebook_function_reaches_the_next_step_as_in_the_kernel(shell, tmp_path):
    shell.configure()
    cells = [
        "def scale_in_place(xs, k):\n    for i in range(len(xs)):\n        xs[i] *= k",
        "%%step load\nvalues = [1, 2, 3, 4, 5, 6]",
        "%%step scale\nscale_in_place(values, 10)\nmarker = 5",
        "%%step report\ntotal = sum(values) + marker",
    ]
    for source in cells:
        shell.run(source)
    assert shell.ip.user_ns["total"] == 215
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs")
    assert result.succeeded, {n: s.error for n, s in result.steps.items()}
    assert result.outputs("report") == {"total": 215}  # not 21 + 5 = 26 from the unscaled list


def test_an_input_changed_by_a_call_no_rule_knows_is_caught_when_the_cell_runs(shell, capsys):
    np = pytest.importorskip("numpy")
    shell.configure()
    shell.ip.user_ns["lib"] = __import__("types").SimpleNamespace(normalize_=lambda a: np.divide(a, a.max(), out=a))
    shell.run("%%step a\nimport numpy as np\narr = np.arange(1.0, 5.0)")
    shell.run("%%step b\nlib.normalize_(arr)\nflag = True")  # np.divide(..., out=a): no rule sees it
    shell.run("%%step c\nseen = arr.sum()")
    graph = shell.graph()
    assert "arr" in graph.step("b").outputs and graph.step("c").inputs["arr"].step == "b"
    err = capsys.readouterr().err
    assert "step 'b' changed arr in place" in err and "%pipeline outputs arr" in err
    assert any("a headless build (smstep) cannot see this" in p.message for p in graph.report.warnings)
    shell.run("%pipeline outputs arr")  # the fix it suggests: every build returns it, and the warning goes
    graph = shell.graph()
    assert not any("cannot see this" in p.message for p in graph.report.warnings)
    assert "arr" in graph.step("b").outputs and graph.step("c").inputs["arr"].step == "b"
    shell.workspace.registry.step("b").changed_in_kernel = ()  # what a headless build knows: the export alone
    graph = shell.graph()
    assert "arr" in graph.step("b").outputs and graph.step("c").inputs["arr"].step == "b"


def test_fingerprints_see_in_place_changes_and_skip_what_they_cannot_hash():
    from jupyter_smstep.core import fingerprint

    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    values = {
        "a": np.arange(10.0),
        "df": pd.DataFrame({"x": [1, 2]}),
        "l": [1, 2],
        "f": len,
        "lock": __import__("threading").Lock(),
    }
    before = fingerprint.fingerprints(values, values)
    assert set(before) == {"a", "df", "l"}  # a function is never compared, a lock cannot be pickled
    values["a"][3] = -1
    values["df"].loc[0, "x"] = 9
    values["l"].append(3)
    assert sorted(fingerprint.changed(before, values)) == ["a", "df", "l"]
    assert fingerprint.changed(fingerprint.fingerprints(values, values), values) == []
    big = np.zeros(fingerprint.CAP // 8 + 1000)  # over the cap: first, middle and last thirds are hashed
    fp = fingerprint.fingerprint(big)
    big[0] = 1
    assert fingerprint.fingerprint(big) != fp


def test_a_step_output_named_like_a_builtin_is_a_link_even_when_the_step_never_ran(shell):
    shell.configure()
    shell.run("%%step a --defer\nmax = 5\nlist = [1]")
    shell.run("%%step b --defer\ny = max + len(list)")
    assert inputs(shell, "b") == {"max": ("step", "a"), "list": ("step", "a")}


def test_a_name_imported_in_an_ordinary_cell_is_imported_in_the_step_as_the_cell_wrote_it(shell, monkeypatch):
    """`from os.path import join` gives posixpath.join, and sklearn's classes live in private modules
    (`sklearn.ensemble._forest`): the step imports what the notebook wrote, which another version of
    the library still has, when it is the same object."""
    shell.configure()
    shell.run("from os.path import join\nfrom json import JSONDecoder\nimport os.path as osp")
    shell.run("%%step --defer a\npath = join('a', 'b')\ndecoder = JSONDecoder()\nhere = osp.sep")
    statements = {name: i.statement for name, i in shell.graph().step("a").inputs.items()}
    assert statements == {
        "join": "from os.path import join",
        "JSONDecoder": "from json import JSONDecoder",
        "osp": "import os.path as osp",
    }
    import sys
    import types

    fake = types.ModuleType("smstep_fake_module")
    monkeypatch.setitem(sys.modules, "smstep_fake_module", fake)
    fake.f = lambda: 1
    shell.run("from smstep_fake_module import f")
    fake.f = lambda: 2  # the written import no longer gives the kernel's object: it is captured by value
    shell.run("%%step --defer b\nn = f()")
    assert inputs(shell, "b") == {"f": ("value", None)}


def test_a_change_the_build_sees_by_itself_raises_no_alarm_when_the_cell_runs(shell, capsys):
    pd = pytest.importorskip("pandas")
    shell.configure()
    shell.ip.user_ns["pd"] = pd
    shell.run("def fill(df):\n    df.fillna(0, inplace=True)")
    shell.run("%%step load\nraw = pd.DataFrame({'a': [1.0, None]})")
    shell.run("%%step fix\nfill(raw)\nn = len(raw)")  # the helper's body shows the change: the graph sees it
    shell.run("%%step use\ntotal = raw['a'].sum() + n")
    err = capsys.readouterr().err
    assert "changed raw in place" not in err and "%pipeline outputs raw" not in err, err
    graph = shell.graph()
    assert "raw" in graph.step("fix").outputs and graph.step("use").inputs["raw"].step == "fix"
    assert not any("cannot see this" in p.message for p in graph.report.warnings)


def test_taint_is_by_name_not_by_cell(shell, tmp_path):
    """rasbt / scikit-learn gallery shapes: an import beside a print of a step's value, a helper that reads a step's
    model when it is called, and a cell where only one of two names is computed from a step's output."""
    shell.configure()
    shell.run("%%step fit\nmodel = {'w': 3}\ny_test = [1, 2, 4]")
    shell.run(
        "from statistics import mean\nTHRESHOLD = 0.5\nscaled = [v * 2 for v in y_test]\n"
        "def predict(x):\n    return model['w'] * x\nprint(mean(y_test))"
    )
    shell.run("%%step score\npreds = [predict(v) for v in y_test]\nm = mean(preds) > THRESHOLD")
    graph = shell.graph()
    assert not graph.report.errors, graph.report.errors
    score = graph.step("score")
    assert score.inputs["model"].step == "fit" and score.helper_globals == {"predict": ("model",)}
    assert score.inputs["mean"].kind == "import" and score.inputs["THRESHOLD"].kind == "value"
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs")
    assert result.succeeded, {n: s.error for n, s in result.steps.items()}
    assert result.outputs("score")["preds"] == shell.ip.user_ns["preds"] == [3, 6, 12]
    shell.run("def predict_all(xs):\n    return [predict(x) for x in xs]")  # model is read one call further
    shell.run("%%step score_all\nall_preds = predict_all(y_test)")
    assert shell.graph().step("score_all").inputs["model"].step == "fit"
    result = shell.workspace.run_local(runs_dir=tmp_path / "runs")
    assert result.outputs("score_all")["all_preds"] == shell.ip.user_ns["all_preds"] == [3, 6, 12]
    shell.run("%%step uses_scaled\ntotal = sum(scaled)")  # the one name the cell computed from y_test
    errors = [p.message for p in shell.graph().report.errors]
    # the error names the cell that computed it, and the fix names that cell too
    assert any("reads 'scaled', which ordinary cell #4 computed from 'y_test'" in m for m in errors), errors


def test_a_helper_reading_a_name_the_step_itself_rebinds_is_warned(shell):
    shell.configure()
    shell.run("%%step fit\nmodel = {'w': 3}")
    shell.run("def predict(x):\n    return model['w'] * x")
    shell.run("%%step refit\nmodel = {'w': 5}\npreds = [predict(v) for v in (1, 2)]")
    warned = [p for p in shell.graph().report.warnings if "calls predict(), which reads 'model'" in p.message]
    assert warned and warned[0].step == "refit" and warned[0].line == 2 and "as an argument" in warned[0].fix
