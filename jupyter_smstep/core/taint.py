"""Ordinary cells after a step: the names they compute from a step's output (``Bindings.derived``).

The kernel's copy of such a name is not what the pipeline computes: a later step that reads it is an error,
and a condition that names it too. An ordinary cell that merely reads a step's output, or rebinds a name
from it, is followed statement by statement. Called by :func:`jupyter_smstep.core.graph.build_graph`.
Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import ast
from collections.abc import Callable

from jupyter_smstep.core.analysis import analyze
from jupyter_smstep.core.model import Bindings
from jupyter_smstep.core.registry import Cell
from jupyter_smstep.errors import Report


def track_plain_cell(cell: Cell, bindings: Bindings, warned: set[str], report: Report) -> None:
    """An ordinary cell: what it binds, and which of those names it computed from a step's output (tainted by
    name, statement by statement: an import, a ``def`` or a ``class`` is never computed from data; a function
    that reads a step output when it runs gets it as its calling step's input, ``_helper_links``)."""
    analysis = cell.analysis
    assert analysis is not None

    def source_of(var: str) -> tuple[str, str] | None:
        src = bindings.writer.get(var)
        if src is not None and src.step is not None:
            return var, src.step.name
        return bindings.derived.get(var)

    used = [found for var in analysis.reads if (found := source_of(var)) is not None]
    tainted = _tainted_names(cell.source, source_of) if used else {}
    if tainted is None:  # not plain Python (a magic): every name it binds, as before
        tainted = {var: used[0] for var in analysis.outputs}
    computed = _computes_from(cell.source, source_of) if used else None
    if computed and cell.key not in warned:
        warned.add(cell.key)
        var, step = computed
        report.warn(
            f"{cell.label} uses {var!r}, an output of step '{step}': in the pipeline this cell does "
            "not run, and a later step reading what it computes would get the kernel's copy",
            fix="make it a %%step cell if the pipeline needs its result",
        )
    for var in analysis.outputs:
        bindings.bind(var, cell)
        if var in tainted:
            bindings.derived[var] = tainted[var]
        else:
            bindings.derived.pop(var, None)
    bindings.forget(analysis.deletes, cell.label)


def _statement_names(stmt: ast.stmt) -> tuple[set[str], set[str]]:
    """(names a statement reads, names it binds or changes in place: targets, and the roots of mutated values)."""
    reads = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    writes = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    for node in ast.walk(stmt):
        target = (
            node.func.value
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            else node.value
            if isinstance(node, (ast.Subscript, ast.Attribute))
            and isinstance(getattr(node, "ctx", None), (ast.Store, ast.Del))
            else None
        )
        while isinstance(target, (ast.Attribute, ast.Subscript)):
            target = target.value
        if isinstance(target, ast.Name):
            writes.add(target.id)  # `rows.append(x)`, `d[k] = v`: changed by what the statement reads
    return reads, writes


def _tainted_names(
    source: str,
    source_of: Callable[[str], tuple[str, str] | None],
) -> dict[str, tuple[str, str]] | None:
    """The names a cell computes from a step's output, statement by statement (None when it is not plain Python).
    Imports, ``def`` and ``class`` statements compute nothing from data."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    tainted: dict[str, tuple[str, str]] = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for name in _statement_names(stmt)[1] | {getattr(stmt, "name", "")}:
                tainted.pop(name, None)
            continue
        reads, writes = _statement_names(stmt)
        hit = next((found for var in sorted(reads) if (found := tainted.get(var) or source_of(var))), None)
        for name in writes:
            if hit is not None:
                tainted[name] = hit
            elif name in tainted and name not in reads:
                tainted.pop(name)  # rebound from clean values
    return tainted


def _computes_from(source: str, source_of: Callable[[str], tuple[str, str] | None]) -> tuple[str, str] | None:
    """The first step output a cell-level statement other than an import, ``def`` or ``class`` reads (a
    ``print(score)`` binds nothing, yet the cell does not run in the pipeline), as (name, step)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # not plain Python (a magic): what the cell reads
        return next((found for var in sorted(_reads_of(source)) if (found := source_of(var))), None)
    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for var in sorted(_statement_names(stmt)[0]):
            if (found := source_of(var)) is not None:
                return found
    return None


def _reads_of(source: str) -> set[str]:
    try:
        return set(analyze(source).reads)
    except SyntaxError:
        return set()
