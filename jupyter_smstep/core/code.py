"""What a function's compiled code says about it, read from its code objects (no run, no source).

- :func:`global_names`: the global names a code object and the code nested in it read;
- :func:`by_value`: whether pickling ships a function with its globals and closure (a notebook's function,
  a nested one) or as an importable reference;
- :func:`reachable`: a function and the by-value functions it reads, as pickling takes them along;
- :func:`clock_reads`: calls that read the clock without a Python function the step's recorder could wrap
  (``datetime.now()``, ``date.today()``, ``pd.Timestamp.now()``, ``np.datetime64('now')``): C methods whose
  class cannot be patched. The recorder sees ``time.time()`` as it runs; these are found here.
"""

from __future__ import annotations

import dis
import sys
import types
from collections.abc import Iterator

#: ``X.now()``, ``X.today()``, ``X.utcnow()`` on these classes (module or alias before them does not matter).
_CLOCK_CLASSES = frozenset({"datetime", "date", "Timestamp"})
_CLOCK_METHODS = frozenset({"now", "today", "utcnow"})
#: ``X('now')`` / ``X('today')``: constructors that read the clock when given these words.
_CLOCK_CONSTRUCTORS = frozenset({"datetime64", "Timestamp", "to_datetime"})
_LOADS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_ATTR", "LOAD_METHOD", "LOAD_DEREF", "LOAD_FAST"})


def nested(code: types.CodeType) -> Iterator[types.CodeType]:
    """``code`` and every code object compiled inside it (functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from nested(const)


def global_names(code: types.CodeType) -> set[str]:
    """The global names ``code`` and the code nested in it read."""
    return {name for c in nested(code) for name in c.co_names}


def by_value(fn: types.FunctionType) -> bool:
    """Whether pickling (cloudpickle) ships ``fn`` by value, with the globals it reads and its closure: a
    notebook's function or a nested one. An importable module function travels as a reference."""
    if fn.__module__ in (None, "__main__"):  # pickling ships __main__'s functions by value, as a notebook's
        return True
    module = sys.modules.get(fn.__module__)
    return module is None or getattr(module, "__dict__", None) is not fn.__globals__ or "<locals>" in fn.__qualname__


def reachable(fn: types.FunctionType, limit: int = 500) -> Iterator[types.FunctionType]:
    """``fn`` and the by-value functions it reads through its globals and closure, each once."""
    seen: set[int] = set()
    todo = [fn]
    while todo and len(seen) < limit:
        current = todo.pop()
        if id(current) in seen or not by_value(current):
            continue
        seen.add(id(current))
        yield current
        names = global_names(current.__code__)
        todo += [v for n, v in current.__globals__.items() if n in names and isinstance(v, types.FunctionType)]
        for cell in current.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, types.FunctionType):
                todo.append(value)


def clock_reads(fn: types.FunctionType) -> list[str]:
    """The clock reads in ``fn`` and the functions it takes along, as ``datetime.now()``, in code order."""
    found: dict[str, None] = {}
    for function in reachable(fn):
        for code in nested(function.__code__):
            previous: dis.Instruction | None = None
            for ins in dis.get_instructions(code):
                if previous is not None and previous.opname in _LOADS:
                    if (
                        ins.opname in ("LOAD_ATTR", "LOAD_METHOD")
                        and ins.argval in _CLOCK_METHODS
                        and previous.argval in _CLOCK_CLASSES
                    ):
                        found[f"{previous.argval}.{ins.argval}()"] = None
                    elif (
                        ins.opname == "LOAD_CONST"
                        and ins.argval in ("now", "today")
                        and previous.argval in _CLOCK_CONSTRUCTORS
                    ):
                        found[f"{previous.argval}({ins.argval!r})"] = None
                if ins.opname not in ("PRECALL", "CACHE", "PUSH_NULL", "NOP"):
                    previous = ins
    return list(found)
