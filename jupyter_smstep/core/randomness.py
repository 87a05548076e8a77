"""Seeded global random state: the same code draws other numbers in a job than in the kernel.

A notebook seeds a library's global random state once (``np.random.seed(42)`` at the top) and
later cells draw from it (``np.random.normal(...)``, ``random.shuffle(xs)``). In the kernel each
draw continues the one seeded sequence; in a pipeline each step is a new process whose state is
unseeded, so the step's numbers, and everything computed from them, differ from the kernel's,
without an error. This module finds, statically, which cells seed a library's global state and
where a step draws from it; :mod:`.graph` warns when a step draws from a state an earlier cell
seeded and the step does not seed itself first.

Libraries and calls known here: the ``random`` module's functions, ``numpy.random``'s legacy
functions, ``torch``'s sampling functions, and their seeding calls; a generator object
(``np.random.default_rng(seed)``, ``random.Random(seed)``) carries its own state and is never a
global draw. Draws inside functions the step calls are not followed.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: Calls (by resolved dotted name) that seed a library's global state -> the library.
SEEDS = {
    "random.seed": "random",
    "random.setstate": "random",
    "numpy.random.seed": "numpy",
    "numpy.random.set_state": "numpy",
    "torch.manual_seed": "torch",
    "torch.random.manual_seed": "torch",
    "torch.set_rng_state": "torch",
    "tensorflow.random.set_seed": "tensorflow",
    "tensorflow.keras.utils.set_random_seed": "tensorflow",
}
_RANDOM_DRAWS = {
    "random",
    "randint",
    "randrange",
    "choice",
    "choices",
    "shuffle",
    "sample",
    "uniform",
    "gauss",
    "normalvariate",
    "lognormvariate",
    "expovariate",
    "vonmisesvariate",
    "gammavariate",
    "betavariate",
    "paretovariate",
    "weibullvariate",
    "triangular",
    "getrandbits",
    "randbytes",
    "binomialvariate",
}
#: numpy.random attributes that are not draws from the global state.
_NUMPY_NOT_DRAWS = {
    "seed",
    "set_state",
    "get_state",
    "default_rng",
    "RandomState",
    "Generator",
    "SeedSequence",
    "BitGenerator",
    "PCG64",
    "PCG64DXSM",
    "MT19937",
    "Philox",
    "SFC64",
}
_TORCH_DRAWS = {
    "rand",
    "randn",
    "randint",
    "randperm",
    "rand_like",
    "randn_like",
    "randint_like",
    "normal",
    "bernoulli",
    "multinomial",
    "poisson",
}


@dataclass(frozen=True)
class Use:
    library: str  # "random", "numpy", "torch", "tensorflow"
    call: str  # the call as written, e.g. "np.random.normal"
    line: int  # 1-based, in the cell body


def aliases(import_statements: Iterable[str]) -> dict[str, str]:
    """Name -> dotted module or object path, from normalised import statements (``import numpy as np``
    gives ``np -> numpy``; ``from numpy import random as npr`` gives ``npr -> numpy.random``)."""
    found: dict[str, str] = {}
    for statement in import_statements:
        try:
            tree = ast.parse(statement)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        found[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        found[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    found[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return found


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _draw_library(resolved: str) -> str | None:
    module, _, function = resolved.rpartition(".")
    if module == "random" and function in _RANDOM_DRAWS:
        return "random"
    if module == "numpy.random" and function not in _NUMPY_NOT_DRAWS and not function.startswith("_"):
        return "numpy"
    if module == "torch" and function in _TORCH_DRAWS:
        return "torch"
    return None


@functools.lru_cache(maxsize=512)
def _calls(source: str) -> tuple[tuple[str, int], ...]:
    """The dotted calls of a cell's own code (``np.random.normal`` ...), not inside its functions or
    classes (which run when called): (as written, line). Cached by source, as the analysis is."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ()
    found = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Call):
            written = _dotted(node.func)
            if written is not None:
                found.append((written, node.lineno))
        stack.extend(ast.iter_child_nodes(node))
    return tuple(sorted(found, key=lambda c: c[1]))


def uses(source: str, names: Mapping[str, str]) -> tuple[list[Use], list[Use]]:
    """The (seeds, draws) of global random state in a cell's own code (not inside its functions or
    classes, which run when called), in line order. ``names`` maps the cell's visible import names to
    what they import (:func:`aliases`)."""
    seeds: list[Use] = []
    draws: list[Use] = []
    for written, line in _calls(source):
        root, _, rest = written.partition(".")
        if root not in names:
            continue
        resolved = names[root] + (f".{rest}" if rest else "")
        if resolved in SEEDS:
            seeds.append(Use(SEEDS[resolved], written, line))
        else:
            library = _draw_library(resolved)
            if library is not None:
                draws.append(Use(library, written, line))
    return seeds, draws
