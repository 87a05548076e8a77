"""jupyter_smstep's cell analysis against the test suites of three other tools: marimo, soorgeon, ipyflow.

``data/analysis_cases.json`` holds their cases as they state them (copied by
``scripts/vendor_analysis_cases.py``; sources, commits, licences and notices inside): marimo's
``ScopedVisitor`` defs/refs (``tests/_ast/test_visitor.py``), soorgeon's per-cell inputs/outputs
(``tests/test_io_find_inputs_and_outputs.py``) and ipyflow's live/dead names
(``core/test/test_liveness_analysis.py``). Each case must agree, or differ exactly as
listed below, each difference for a stated reason: where the other tool leaves a name out that
the kernel binds or reads, this analysis keeps it (an extra output costs a transfer, a missed one
a wrong result).

What is compared: marimo ``defs`` with the names still bound at the end of the cell
(``writes``) and marimo ``refs`` with ``reads``; soorgeon's inputs with ``reads`` minus builtins,
its outputs with the data outputs (``outputs`` minus imports, functions and classes, which are
carried into steps as code, not shipped as values); ipyflow's live names with ``reads`` and its
dead (killed) names with ``writes``.
"""

from __future__ import annotations

import ast
import builtins
import json
from pathlib import Path

import pytest

from jupyter_smstep.core.analysis import analyze

DOCUMENT = json.loads((Path(__file__).parent / "data" / "analysis_cases.json").read_text())
CASES = {case["id"]: case for case in DOCUMENT["cases"]}
BUILTINS = set(dir(builtins))

#: Cases where this analysis reads a name the other tool does not, and why reading it is right.
READS_MORE = {
    "marimo/test_mutation_generates_def": (
        {"x"},
        "`x += 5` needs the x an earlier cell made: it is an input (marimo counts only the def)",
    ),
    "marimo/test_nested_comprehension_generator_with_named_expr": (
        {"x"},
        "the outer `for x in x` evaluates x in the cell's scope before anything binds it",
    ),
    "soorgeon/for_loop_name_reference": (
        {"some_function"},
        "some_function is called and never bound in the cell: an input",
    ),
}


#: Cases where this analysis counts a name as bound at the end that the other tool does not, and why.
WRITES_MORE = {
    "ipyflow/test_walrus": (
        {"x", "z"},
        "x := x + 1 rebinds x after reading it, and z is bound when the if is taken: both "
        "are the kernel's after the cell (a name bound on some path is an output)",
    ),
}


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _loop_and_with_targets(code: str) -> set[str]:
    """Names bound by ``for`` and ``with ... as`` targets at cell level (still bound after the statement)."""
    names: set[str] = set()

    def collect(target: ast.expr) -> None:
        names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, (ast.For, ast.AsyncFor)):
                collect(statement.target)
                visit(statement.body + statement.orelse)
            elif isinstance(statement, (ast.With, ast.AsyncWith)):
                for item in statement.items:
                    if item.optional_vars is not None:
                        collect(item.optional_vars)
                visit(statement.body)
            elif isinstance(statement, (ast.If, ast.While, ast.Try)):
                visit([s for field in ("body", "orelse", "finalbody") for s in getattr(statement, field, [])])

    visit(ast.parse(code).body)
    return names


def test_the_cases_are_the_vendored_suites():
    sources = DOCUMENT["sources"]
    assert {s["license"] for s in sources.values()} == {"Apache-2.0", "BSD-3-Clause"}
    counts = {tool: sum(1 for c in CASES if c.startswith(tool + "/")) for tool in sources}
    assert counts == {"marimo": 74, "soorgeon": 70, "ipyflow": 10}
    assert set(READS_MORE) | set(WRITES_MORE) <= set(CASES)


def _marimo_cases() -> list:
    """marimo's cases; one whose code this Python cannot parse (`type X = ...`, `def f[T]()`: 3.12) is
    marked skipped, and reported so."""
    return [
        pytest.param(
            c,
            marks=pytest.mark.skipif(
                not _parses(CASES[c]["code"]), reason="the case's code needs a newer Python to parse"
            ),
        )
        for c in CASES
        if c.startswith("marimo/")
    ]


@pytest.mark.parametrize("case_id", _marimo_cases())
def test_marimo_defs_and_refs(case_id):
    case = CASES[case_id]
    code = case["code"]
    result = analyze(code)
    defs, refs = set(result.writes), set(result.reads)
    if ".sql(" in code:
        # marimo parses the SQL inside mo.sql() for the tables it reads and makes; that API is marimo's.
        assert refs <= set(case["refs"]) and defs <= set(case["defs"])
        return
    assert defs == set(case["defs"])
    expected_more, why = READS_MORE.get(case_id, (set(), ""))
    assert refs - set(case["refs"]) == expected_more, why or "reads differ from marimo's refs"
    assert set(case["refs"]) <= refs


@pytest.mark.parametrize("case_id", [c for c in CASES if c.startswith("soorgeon/")])
def test_soorgeon_inputs_and_outputs(case_id):
    case = CASES[case_id]
    code = case["code"]
    result = analyze(code)
    inputs = set(result.reads) - BUILTINS
    outputs = result.outputs - set(result.imports) - set(result.defines)
    expected_more, why = READS_MORE.get(case_id, (set(), ""))
    assert inputs - set(case["inputs"]) == expected_more, why or "inputs differ from soorgeon's"
    assert set(case["inputs"]) <= inputs
    # soorgeon drops the names a for loop or a with statement leaves bound; the kernel keeps them
    # (after `for x in range(10)`, x is 9), so a later cell that reads them must get them.
    assert set(case["outputs"]) <= outputs
    assert outputs - set(case["outputs"]) <= _loop_and_with_targets(code)


@pytest.mark.parametrize("case_id", [c for c in CASES if c.startswith("ipyflow/")])
def test_ipyflow_live_and_dead_names(case_id):
    case = CASES[case_id]
    result = analyze(case["code"])
    assert set(result.reads) == set(case["live"])
    if case["dead"] is not None:
        expected_more, why = WRITES_MORE.get(case_id, (set(), ""))
        assert set(case["dead"]) <= set(result.writes)
        assert set(result.writes) - set(case["dead"]) == expected_more, why or "writes differ from ipyflow's dead"
