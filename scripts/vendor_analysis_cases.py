"""Copy the cell-analysis test cases of marimo, soorgeon and ipyflow into tests/core/data/analysis_cases.json.

Run once per update, from clones of the three repositories (Apache-2.0, Apache-2.0, BSD-3-Clause):

    python scripts/vendor_analysis_cases.py MARIMO_CLONE SOORGEON_CLONE IPYFLOW_CLONE

Only what a test states plainly is taken: a code string (a literal, or ``cleandoc``/``dedent`` of
one) and the sets the test asserts for it. marimo: ``tests/_ast/test_visitor.py``, the first
``v.defs == {...}`` and ``v.refs == {...}`` after each code string given to a plain
``ScopedVisitor()``. soorgeon: ``tests/test_io_find_inputs_and_outputs.py``, its parametrized
``(code, inputs, outputs)`` table. ipyflow: ``core/test/test_liveness_analysis.py``, each
``compute_live_dead_symbol_refs("...")`` and the ``live`` (and ``dead``) sets asserted for it.
``tests/core/test_agreement.py`` compares jupyter_smstep's
analysis with each.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from inspect import cleandoc
from pathlib import Path
from textwrap import dedent

OUT = Path(__file__).resolve().parent.parent / "tests" / "core" / "data" / "analysis_cases.json"


def _string(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("cleandoc", "dedent")
        and len(node.args) == 1
        and not node.keywords
    ):
        inner = _string(node.args[0])
        if inner is not None:
            return cleandoc(inner) if node.func.id == "cleandoc" else dedent(inner)
    return None


def _names(node: ast.expr) -> list[str] | None:
    """A set literal of strings, or ``set()``."""
    if isinstance(node, ast.Set) and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return sorted(e.value for e in node.elts)  # type: ignore[attr-defined]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "set" and not node.args:
        return []
    return None


def _commit(clone: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _notice(clone: Path, license_file: str) -> str:
    """The copyright line of a licence file (kept with the copied cases, as the licences ask)."""
    for line in _read(clone, license_file).splitlines():
        if line.strip().lower().startswith("copyright"):
            return line.strip()
    return ""


def _read(clone: Path, path: str) -> str:
    if (clone / path).is_file():
        return (clone / path).read_text()
    return subprocess.run(
        ["git", "-C", str(clone), "show", f"HEAD:{path}"], capture_output=True, text=True, check=True
    ).stdout


def marimo_cases(clone: Path) -> list[dict]:
    path = "tests/_ast/test_visitor.py"
    tree = ast.parse(_read(clone, path))
    cases = []
    for function in tree.body:
        if not (isinstance(function, ast.FunctionDef) and function.name.startswith("test_")):
            continue
        code = None
        plain_visitor = False
        found: dict[str, list[str]] = {}
        for statement in ast.walk(function):
            if (
                isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
            ):
                name, value = statement.targets[0].id, statement.value
                if name in ("expr", "code") and code is None:
                    code = _string(value)
                elif name == "v" and isinstance(value, ast.Call):
                    plain_visitor = not value.args and not value.keywords
            elif isinstance(statement, ast.Assert) and isinstance(statement.test, ast.Compare):
                test = statement.test
                left = test.left
                if (
                    isinstance(left, ast.Attribute)
                    and isinstance(left.value, ast.Name)
                    and left.value.id == "v"
                    and left.attr in ("defs", "refs")
                    and len(test.ops) == 1
                    and isinstance(test.ops[0], ast.Eq)
                    and left.attr not in found
                ):
                    names = _names(test.comparators[0])
                    if names is not None:
                        found[left.attr] = names
        if code is not None and plain_visitor and set(found) == {"defs", "refs"}:
            cases.append({"id": f"marimo/{function.name}", "code": code, "defs": found["defs"], "refs": found["refs"]})
    return cases


def soorgeon_cases(clone: Path) -> list[dict]:
    path = "tests/test_io_find_inputs_and_outputs.py"
    tree = ast.parse(_read(clone, path))
    strings = {
        s.targets[0].id: _string(s.value)
        for s in tree.body
        if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name) and _string(s.value) is not None
    }
    cases = []
    for function in tree.body:
        if not (isinstance(function, ast.FunctionDef) and function.name == "test_find_inputs_and_outputs"):
            continue
        (decorator,) = [d for d in function.decorator_list if isinstance(d, ast.Call)]
        table, ids = decorator.args[1], next(k.value for k in decorator.keywords if k.arg == "ids")
        for row, label in zip(table.elts, ids.elts, strict=True):  # type: ignore[attr-defined]
            code, inputs, outputs = row.elts
            cases.append(
                {
                    "id": f"soorgeon/{label.value}",
                    "code": strings[code.id],
                    "inputs": _names(inputs),
                    "outputs": _names(outputs),
                }
            )
    return cases


def ipyflow_cases(clone: Path) -> list[dict]:
    path = "core/test/test_liveness_analysis.py"
    tree = ast.parse(_read(clone, path))
    cases = []
    for function in ast.walk(tree):
        if not (isinstance(function, ast.FunctionDef) and function.name.startswith("test_")):
            continue
        code = None
        found: dict[str, list[str]] = {}
        for statement in ast.walk(function):
            if (
                isinstance(statement, ast.Assign)
                and isinstance(statement.value, ast.Call)
                and isinstance(statement.value.func, ast.Name)
                and statement.value.func.id == "compute_live_dead_symbol_refs"
                and code is None
            ):
                code = _string(statement.value.args[0])
                code = dedent(code) if code is not None else None  # as the test's helper does
            elif isinstance(statement, ast.Assert) and isinstance(statement.test, ast.Compare):
                left = statement.test.left
                if isinstance(left, ast.Name) and left.id in ("live", "dead") and left.id not in found:
                    names = _names(statement.test.comparators[0])
                    if names is not None:
                        found[left.id] = names
        if code is not None and "live" in found:
            cases.append(
                {"id": f"ipyflow/{function.name}", "code": code, "live": found["live"], "dead": found.get("dead")}
            )
    return cases


def main() -> None:
    marimo, soorgeon, ipyflow = (Path(p) for p in sys.argv[1:4])
    document = {
        "about": "Cell-analysis test cases copied from marimo, soorgeon and ipyflow by "
        "scripts/vendor_analysis_cases.py; compared with jupyter_smstep's analysis in "
        "tests/core/test_agreement.py.",
        "sources": {
            "marimo": {
                "repository": "https://github.com/marimo-team/marimo",
                "commit": _commit(marimo),
                "path": "tests/_ast/test_visitor.py",
                "license": "Apache-2.0",
                "notice": _read(marimo, "tests/_ast/test_visitor.py").splitlines()[0].lstrip("# "),
            },
            "soorgeon": {
                "repository": "https://github.com/ploomber/soorgeon",
                "commit": _commit(soorgeon),
                "path": "tests/test_io_find_inputs_and_outputs.py",
                "license": "Apache-2.0",
            },
            "ipyflow": {
                "repository": "https://github.com/ipyflow/ipyflow",
                "commit": _commit(ipyflow),
                "path": "core/test/test_liveness_analysis.py",
                "license": "BSD-3-Clause",
                "notice": _notice(ipyflow, "LICENSE.txt"),
            },
        },
        "cases": marimo_cases(marimo) + soorgeon_cases(soorgeon) + ipyflow_cases(ipyflow),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{len(document['cases'])} cases -> {OUT}")


if __name__ == "__main__":
    main()
