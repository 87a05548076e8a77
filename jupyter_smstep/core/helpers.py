"""What the notebook's functions bring into a step: the ones it calls that change their arguments in place
(also those of modules beside the notebook, read from their source), and the ones that read a step's output when
they run.

Pure: no IPython, no sagemaker. :mod:`.graph` asks it for each step.
"""

from __future__ import annotations

import functools
import sys
import types
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core.code import global_names
from jupyter_smstep.core.analysis import CallSite, FunctionInfo, analyze, mutated_through_calls
from jupyter_smstep.core.plain import match_type
from jupyter_smstep.errors import Report
from jupyter_smstep.core.model import RANDOM_STATES, Bindings, Input, StepNode
from jupyter_smstep.core.registry import Cell, Registry


def hidden_changes(
    cell: Cell,
    node: StepNode,
    values: Mapping[str, Any],
    functions: dict[str, FunctionInfo],
    methods: dict[str, FunctionInfo],
    registry: Registry,
    namespace: Mapping[str, Any],
    root: Path | None,
    report: Report,
) -> dict[str, int]:
    """The inputs ``node`` changes without its code showing it (through calls, aliases, a generator it draws
    from, ``%pipeline outputs``, or as seen in the kernel): each is an output too. name -> line."""
    assert cell.analysis is not None
    calls, known = beside(cell, node, values, functions, root)
    changed = mutated_through_calls(calls, known, methods)
    aliases = cell.analysis.aliases
    for var, line in list(changed.items()):  # `fill(s)` inside `for s in (a, b)` changes a and b
        for other in aliases.get(var, ()):
            changed.setdefault(other, line)
    hidden = {v: line for v, line in changed.items() if v in node.inputs and node.inputs[v].kind != "import"}
    for inp in node.captured:  # drawing from a generator advances it: the next step draws on from there
        if inp.name in values and match_type(values[inp.name], RANDOM_STATES):
            hidden.setdefault(inp.name, inp.line)
    for inp in node.inputs.values():
        if inp.kind == "step" and inp.name in namespace and match_type(namespace[inp.name], RANDOM_STATES):
            hidden.setdefault(inp.name, inp.line)
    for var in sorted(registry.exports & set(node.inputs)):
        if node.inputs[var].kind != "import":  # declared: every step that reads it returns it too
            hidden.setdefault(var, node.inputs[var].line)
    for var in cell.changed_in_kernel:
        if var in node.inputs and var not in hidden:
            hidden[var] = node.inputs[var].line
            report.warn(
                f"changed {var!r} in place when it ran in the kernel (its code does not show it): "
                "an output now; a headless build (smstep) cannot see this",
                fix=f"add a cell `%pipeline outputs {var}` so every build returns it",
                step=node.name,
                line=node.inputs[var].line + 1,
            )
    return hidden


def helper_links(
    inputs: dict[str, Input], namespace: Mapping[str, Any], bindings: Bindings, step: str, report: Report
) -> dict[str, tuple[str, ...]]:
    """A notebook function the step calls that reads a step's output when it runs (``def predict(x): return
    model.predict(x)``): that output becomes the step's input, and the function reads it (``StepNode.
    helper_globals``) instead of the kernel's copy. One an ordinary cell computed from a step output is an
    error, as when the step reads it itself."""
    found: dict[str, tuple[str, ...]] = {}
    for inp in [i for i in inputs.values() if i.kind == "value"]:
        value = namespace.get(inp.name)
        if not isinstance(value, types.FunctionType) or value.__module__ != "__main__":
            continue
        needs = []
        for var in sorted(reachable_globals(value)):
            src = bindings.writer.get(var)
            if src is not None and src.step is not None:
                needs.append(var)
                if var not in inputs:
                    inputs[var] = Input(var, "step", inp.line, step=src.step.name)
            elif var in bindings.derived:
                src_var, src_step = bindings.derived[var]
                report.error(
                    f"calls {inp.name}(), which reads {var!r} when it runs; an ordinary cell computed "
                    f"{var!r} from {src_var!r}, an output of step '{src_step}': the pipeline cannot use "
                    "the kernel's copy",
                    fix=f"make that ordinary cell a %%step cell, or move its code into step '{step}'",
                    step=step,
                    line=inp.line + 1,
                )
        if needs:
            found[inp.name] = tuple(needs)
    return found


def reachable_globals(function: types.FunctionType) -> set[str]:
    """The global names a notebook function may read when it runs, through the notebook functions it calls too
    (their globals are one dict once pickled together, so the calling step sets them once)."""
    names: set[str] = set()
    todo, seen = [function], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        found = global_names(current.__code__)
        names |= found
        todo += [
            v
            for n in found
            if isinstance(v := current.__globals__.get(n), types.FunctionType) and v.__module__ == "__main__"
        ]
    return names


def beside(
    cell: Cell, node: StepNode, values: Mapping[str, Any], functions: dict[str, FunctionInfo], root: Path | None
) -> tuple[tuple[CallSite, ...], dict[str, FunctionInfo]]:
    """The step's calls and the functions they may reach, with those of modules beside the notebook
    (``from prep import clean; clean(df)``, ``import prep; prep.clean(df)``): their source is read, so a
    function there that changes its argument in place makes that argument an output, as a notebook
    function does."""
    assert cell.analysis is not None
    calls = cell.analysis.calls
    if root is None:
        return calls, functions
    known = dict(functions)
    extra: list[CallSite] = []
    for inp in node.imports:
        value = values.get(inp.name)
        if isinstance(value, types.ModuleType):
            found = module_functions(value, root)
            if found:
                for call in calls:
                    if call.receiver == inp.name and call.method in found:
                        name = f"{inp.name}.{call.method}"
                        known[name] = found[call.method]
                        extra.append(CallSite(name, None, None, call.args, call.kwargs, call.line))
                known.update({n: f for n, f in found.items() if n not in known})
        elif isinstance(value, types.FunctionType):
            found = module_functions(sys.modules.get(value.__module__), root)
            if found and value.__name__ in found:
                known.update({n: f for n, f in found.items() if n not in functions})
                known[inp.name] = found[value.__name__]
    return calls + tuple(extra), known


def module_functions(module: Any, root: Path) -> dict[str, FunctionInfo] | None:
    """What the functions of ``module`` do to their parameters, when its source is a file under ``root``."""
    file = getattr(module, "__file__", None)
    if not file or not str(file).endswith(".py"):
        return None
    path = Path(file).resolve()
    try:
        path.relative_to(root.resolve())
        stat = path.stat()
    except (ValueError, OSError):
        return None
    if "site-packages" in path.parts or any(part.startswith(".") for part in path.parts[len(root.parts) :]):
        return None
    return functions_of(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=128)
def functions_of(path: str, mtime_ns: int, size: int) -> dict[str, FunctionInfo] | None:
    try:
        analysis = analyze(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    return dict(analysis.functions)
