"""How a kernel value is re-created inside a step by an import, rather than captured by value.

Pure: no IPython, no sagemaker (it reads ``sys.modules``; it imports nothing).
"""

from __future__ import annotations

import ast
import builtins
import sys
import types
from typing import Any


def import_statement(var: str, value: Any, written: str | None = None) -> str | None:
    """How to re-create ``value`` by import inside the step, or None to capture it by value.

    ``written`` is the import the notebook's cell wrote for ``var``: kept when it gives this very
    object (``from sklearn.ensemble import RandomForestClassifier``, not the private module the class
    says it lives in, which another version of the library may not have)."""
    if written and imports_this(written, var, value):
        return written
    if isinstance(value, types.ModuleType):
        name = value.__name__
        if name == var:
            return f"import {name}"
        if "." in name and name.split(".")[0] == var:
            return f"import {name}"
        return f"import {name} as {var}"
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", "")
        if not module or module == "__main__" or module == "builtins" or "." in qualname or "<" in qualname:
            return None
        mod = sys.modules.get(module)
        if mod is None or getattr(mod, qualname, None) is not value:
            return None
        return f"from {module} import {qualname}" + ("" if qualname == var else f" as {var}")
    return None


def imports_this(statement: str, var: str, value: Any) -> bool:
    """Whether the one-name import ``statement`` binds ``var`` to ``value`` in this process (no import runs)."""
    try:
        (node,) = ast.parse(statement).body
    except (SyntaxError, ValueError):
        return False
    if not isinstance(node, (ast.Import, ast.ImportFrom)) or len(node.names) != 1:
        return False
    alias = node.names[0]
    if (alias.asname or alias.name.split(".")[0]) != var:
        return False
    if isinstance(node, ast.Import):
        found = sys.modules.get(alias.name if alias.asname else alias.name.split(".")[0])
    elif node.level or not node.module:
        return False
    else:
        found = getattr(sys.modules.get(node.module), alias.name, None)
    return found is value


def is_builtin(var: str, value: Any) -> bool:
    """Whether the namespace's ``var`` is Python's builtin itself, or IPython's wrapper of it.

    IPython's ``open`` (``_modified_open``) is made with ``functools.wraps(io.open)``: its
    ``__module__`` says ``io``, its ``__wrapped__`` is the builtin."""
    builtin = getattr(builtins, var, None)
    if value is builtin or (builtin is not None and getattr(value, "__wrapped__", None) is builtin):
        return True
    module = getattr(value, "__module__", None) or type(value).__module__
    return isinstance(module, str) and module.split(".")[0] == "IPython"
