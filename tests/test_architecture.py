"""The layers, checked over the package's AST (every import, at module level or inside a function).

- ``core/`` is pure: the standard library, PyYAML, ``core`` itself and ``errors``;
- only ``sdk/`` imports sagemaker (and the local runner's forked worker, which runs
  the SDK's entry point in a process of its own and imports nothing of ours);
- the layers below the user-facing ones never print: ``core/``, ``sdk/``, ``local/``
  (but the worker's own process) and ``remote/`` return or raise, and the views
  (``text``, ``panel``, ``ipython``, ``cli``) decide what the user sees.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jupyter_smstep"
STDLIB = set(sys.stdlib_module_names)


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "labextension" not in p.parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative imports are not used; resolve them anyway
                base = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[: -node.level])
                found.append((node.lineno, f"{base}.{node.module}" if node.module else base))
            else:
                found.append((node.lineno, node.module or ""))
    return found


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def test_the_walk_sees_the_package():
    names = {rel(p) for p in modules()}
    assert {
        "core/graph.py",
        "sdk/build.py",
        "local/runner.py",
        "remote/monitor.py",
        "ipython/magics.py",
        "panel/widget.py",
        "cli.py",
    } <= names


def test_core_is_pure():
    bad = []
    for path in modules():
        if not rel(path).startswith("core/"):
            continue
        for line, name in imports(path):
            top = name.split(".")[0]
            allowed = (
                top in STDLIB
                or top == "yaml"
                or name.startswith("jupyter_smstep.core")
                or name == "jupyter_smstep.errors"
            )
            if not allowed:
                bad.append(f"{rel(path)}:{line} imports {name}")
    assert not bad, "core/ must import only the standard library, yaml, core and errors:\n" + "\n".join(bad)


def test_errors_depend_on_nothing_but_the_kinds():
    names = {name for _, name in imports(PACKAGE / "errors.py")}
    assert {n for n in names if n.startswith("jupyter_smstep")} <= {"jupyter_smstep.core.states"}
    assert all(n.split(".")[0] in STDLIB or n.startswith("jupyter_smstep") for n in names)


def test_only_sdk_imports_sagemaker():
    bad = []
    for path in modules():
        if rel(path).startswith("sdk/") or rel(path) == "local/worker_entry.py":
            continue
        for line, name in imports(path):
            if name.split(".")[0] == "sagemaker":
                bad.append(f"{rel(path)}:{line} imports {name}")
    assert not bad, "only jupyter_smstep/sdk/ may import sagemaker:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["worker_entry.py", "recorder.py"])
def test_the_forked_worker_imports_nothing_of_ours(module):
    names = [name for _, name in imports(PACKAGE / "local" / module)]
    assert not [n for n in names if n.startswith("jupyter_smstep")]


QUIET = ("core/", "sdk/", "local/", "remote/")
#: Code that runs as part of a step's job, where its output is the job's log: the forked worker, and the
#: self-contained helpers compiled into steps.
JOB_CODE = ("local/worker_entry.py", "core/plain.py", "sdk/saving.py")


@pytest.mark.parametrize("layer", QUIET)
def test_lower_layers_never_print(layer):
    bad = []
    for path in modules():
        if not rel(path).startswith(layer) or rel(path) in JOB_CODE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                bad.append(f"{rel(path)}:{node.lineno}")
    assert not bad, f"{layer} must not print (return the text, or raise): " + ", ".join(bad)


def test_the_architecture_test_would_catch_a_violation(tmp_path, monkeypatch):
    """The checks above are not vacuous: a core module importing boto3 and printing is caught."""
    fake = tmp_path / "jupyter_smstep"
    (fake / "core").mkdir(parents=True)
    (fake / "core" / "bad.py").write_text("import boto3\n\ndef f():\n    from sagemaker import x\n    print(x)\n")
    (fake / "errors.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    with pytest.raises(AssertionError, match="core/bad.py:1 imports boto3"):
        test_core_is_pure()
    with pytest.raises(AssertionError, match="core/bad.py:4 imports sagemaker"):
        test_only_sdk_imports_sagemaker()
    with pytest.raises(AssertionError, match="core/bad.py:5"):
        test_lower_layers_never_print("core/")


def test_the_layers_hold(capsys):
    """import-linter's contracts in pyproject.toml: each layer imports only its own and the ones below; core
    imports no SDK, AWS, IPython or widgets; only sdk imports sagemaker (others reach it through sdk)."""
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(PACKAGE.parent / "pyproject.toml"), no_cache=True)
    assert code == 0, capsys.readouterr().out[-3000:]


def test_architecture_md_names_every_module():
    """The map stays true: a module added without a word in ARCHITECTURE.md fails here (eight had gone missing)."""
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    missing = [rel(p) for p in modules() if p.stem != "__init__" and f"`{p.stem}`" not in text]
    assert not missing, f"ARCHITECTURE.md does not name: {', '.join(missing)}"


def import_circles(package: str) -> list[tuple[str, str]]:
    """Pairs of the package's modules that import each other, directly or through others (imports made only for
    type checking left out: they never run)."""
    import grimp

    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    found = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if (
                imported != module
                and imported.startswith(package + ".")
                and graph.find_shortest_chain(importer=imported, imported=module)
            ):
                found.add(tuple(sorted((module, imported))))
    return sorted(found)


def test_no_import_circle():
    assert import_circles("jupyter_smstep") == []


def test_the_circle_check_would_catch_one(tmp_path, monkeypatch):
    pkg = tmp_path / "planted_circle"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from planted_circle import b\n")
    (pkg / "b.py").write_text("from planted_circle import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_circles("planted_circle") == [("planted_circle.a", "planted_circle.b")]
