"""Python source for steps: the function each ``%%step`` cell becomes.

The same generator serves the compiler (which executes it, with line numbers
mapped back to the cell so tracebacks point at the user's own lines) and
``%pipeline export`` (which writes it out as a readable module).

A step function takes its links (step outputs and parameters) as arguments,
re-imports the modules the cell uses, runs the cell's code unchanged and
returns the outputs later steps read, as a dict. Pure: no sagemaker.
"""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Iterable

from jupyter_smstep.core.model import EXECUTION_ARGS, PipelineGraph, StepNode

HEADER_LINE = 1  # line 1 of a %%step cell is the magic line; the body starts on line 2


def function_name(step: str, taken: Iterable[str] = ()) -> str:
    """A readable Python identifier for a step name (which may contain dashes)."""
    ident = re.sub(r"\W", "_", step)
    if not ident or ident[0].isdigit() or keyword.iskeyword(ident):
        ident = f"step_{ident}"
    taken = set(taken)
    while ident in taken:
        ident = f"{ident}_step"
    return ident


def arguments(node: StepNode) -> list[str]:
    """The step function's parameters: its links, then the execution's variables if it needs them."""
    return [i.name for i in node.links] + (list(EXECUTION_ARGS) if node.needs_execution else [])


def rebound(node: StepNode) -> list[str]:
    """Captured values the cell binds again (``data = data[data.x > 1]``): in a function they would be local
    from its first line, and reading them first an UnboundLocalError. They become parameters whose default
    is the captured value (``def step(..., data=data)``), so the cell reads them, then rebinds them."""
    analysis = node.cell.analysis
    if analysis is None:
        return []
    local = set(analysis.writes) | set(analysis.deletes)
    return [i.name for i in sorted(node.captured, key=lambda i: (i.line, i.name)) if i.name in local]


def prologue(node: StepNode) -> list[str]:
    """The statements before the cell's code: its imports, and ``execution`` rebuilt from the arguments
    (a plain namespace: the container has no jupyter_smstep)."""
    lines = [i.statement or "" for i in node.imports]
    for helper, names in sorted(node.helper_globals.items()):  # it reads this step's inputs, not the kernel's
        lines.append(f"{helper}.__globals__.update({', '.join(f'{n}={n}' for n in names)})")
    for inp in node.execution:
        lines.append(
            f"{inp.name} = __import__('types').SimpleNamespace(id={EXECUTION_ARGS[0]}, "
            f"start_time={EXECUTION_ARGS[1]}, pipeline_name={EXECUTION_ARGS[2]})"
        )
    return lines


def item_literal(node: StepNode) -> str | None:
    """A ``--foreach`` iteration's item as Python source (the export writes ``def fit_0(X, alpha=0.01)``), or None
    when the node is no iteration or its item has no literal form."""
    fan = node.fanout
    if fan is None or fan.index is None or fan.var not in node.inputs:
        return None
    text = repr(fan.items[fan.index])
    try:
        return text if ast.literal_eval(text) == fan.items[fan.index] else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def function_source(node: StepNode, fname: str) -> str:
    """Readable source of the step function (used by export)."""
    item = item_literal(node)
    var = node.fanout.var if item is not None and node.fanout is not None else None
    params = arguments(node) + [f"{n}={n}" for n in rebound(node) if n != var] + ([f"{var}={item}"] if var else [])
    lines = [f"def {fname}({', '.join(params)}):"]
    lines += [f"    {line}" for line in prologue(node)]
    body = node.cell.source.rstrip("\n")
    lines += [("    " + line) if line.strip() else "" for line in body.splitlines()]
    lines += ["    " + line for line in epilogue(node)]
    return "\n".join(lines) + "\n"


#: The function each --save calls at the end of the step (its source: jupyter_smstep/sdk/saving.py)
SAVE_FUNCTION = "_smstep_save"
#: What a --save gets for a name the cell did not assign on the path it took (the save says so: sdk/saving.py
#: holds the same text, as it must stay self-contained)
UNASSIGNED = "<jupyter_smstep: not assigned>"
#: What a final step's return goes through when the build could not see its values (core/plain.py)
PLAIN_FUNCTION = "_smstep_plain"
#: The preloader a step function carries (sdk.build): imports what its upstream results are made of.
PRELOAD_FUNCTION = "_smstep_preload"


def epilogue(node: StepNode) -> list[str]:
    """The statements after the cell's code: each ``--save``, then the return."""
    lines = [
        f"{SAVE_FUNCTION}({s.name!r}, locals().get({s.name!r}, {UNASSIGNED!r}), {s.uri!r}, {s.format!r}"
        + (f", {EXECUTION_ARGS[0]})" if s.per_execution else ")")
        for s in node.saves
    ]
    return lines + [return_statement(node)]


def return_statement(node: StepNode) -> str:
    if not node.outputs:
        return "return {}"
    pairs = "{" + ", ".join(f"{name!r}: {name}" for name in node.outputs) + "}"
    if node.unchecked:
        return f"return {PLAIN_FUNCTION}({node.name!r}, {pairs}, {tuple(node.unchecked)!r})"
    return "return " + pairs


def function_code(node: StepNode, fname: str, filename: str) -> ast.Module:
    """The step function as an AST whose line numbers are the cell's own.

    The cell body keeps its lines (offset by the ``%%step`` line); the imports
    and the ``def`` sit on line 1 and the ``return`` after the last line.
    """
    body = ast.parse(node.cell.source, filename=filename)
    ast.increment_lineno(body, HEADER_LINE)
    before = ast.parse("\n".join(prologue(node))).body
    last = max((getattr(n, "end_lineno", 0) or 0 for n in ast.walk(body)), default=HEADER_LINE) + 1
    after = ast.parse("\n".join(epilogue(node))).body
    for stmt in before:
        _set_lines(stmt, HEADER_LINE)
    for stmt in after:
        _set_lines(stmt, last)
    defaults = rebound(node)
    args = ast.arguments(
        posonlyargs=[],
        args=[ast.arg(arg=name) for name in arguments(node) + defaults],
        vararg=None,
        kwonlyargs=[],
        kw_defaults=[],
        kwarg=None,
        defaults=[ast.Name(id=name, ctx=ast.Load()) for name in defaults],
    )
    func = ast.FunctionDef(
        name=fname,
        args=args,
        body=before + body.body + after,
        decorator_list=[],
        returns=None,
        type_comment=None,
        lineno=HEADER_LINE,
        col_offset=0,
    )
    if hasattr(ast.FunctionDef, "type_params"):
        func.type_params = []  # type: ignore[attr-defined]  # Python 3.12+
    module = ast.Module(body=[func], type_ignores=[])
    return ast.fix_missing_locations(module)


def _set_lines(tree: ast.AST, line: int) -> None:
    for n in ast.walk(tree):
        if hasattr(n, "lineno"):  # statements, expressions, and args, aliases, handlers...
            n.lineno = line
            n.end_lineno = line  # type: ignore[attr-defined]


def function_names(graph: PipelineGraph, reserved: Iterable[str] = ()) -> dict[str, str]:
    """Step name -> function name, unique and clear of every variable the pipeline uses."""
    taken = set(reserved) | set(graph.parameters)
    for node in graph.steps:
        taken |= set(node.inputs) | set(node.outputs)
    names: dict[str, str] = {}
    for node in graph.steps:
        fname = function_name(node.name, taken)
        names[node.name] = fname
        taken.add(fname)
    return names
