"""Files passed between steps: one step writes a local path that a later step reads.

In the kernel ``joblib.dump(model, "model.pkl")`` in one cell and ``joblib.load("model.pkl")`` in a later
one share the notebook's folder. As steps, each runs in its own container (and, locally, in its own
folder), so the file never reaches the reader: a ``FileNotFoundError`` after paying for the first job,
or, worse, a stale copy that happens to be there. The build sees the path, as a literal or a captured
string constant, in a writing call of one step and anywhere in a later one, and refuses it, naming both
lines.

Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

#: Calls that write their path argument (``joblib.dump(obj, PATH)``, ``df.to_csv(PATH)``, ``np.save(PATH, a)``)
WRITERS = frozenset(
    {
        "dump",
        "save",
        "savez",
        "savez_compressed",
        "savetxt",
        "savefig",
        "save_model",
        "to_csv",
        "to_parquet",
        "to_pickle",
        "to_json",
        "to_feather",
        "to_excel",
        "to_hdf",
        "to_netcdf",
        "write_text",
        "write_bytes",
        "copy",
        "copyfile",
        "move",
        "imwrite",
        "torch_save",
    }
)
_WRITE_MODES = ("w", "a", "x")


def written_paths(source: str, constants: Mapping[str, Any]) -> dict[str, int]:
    """Local paths ``source`` writes: (path, line in the body) for each string (or captured string constant) passed to
    a writing call or to ``open(..., "w")``; ``Path("x").write_text(...)`` too."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, int] = {}

    def text(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and isinstance(constants.get(node.id), str):
            return str(constants[node.id])
        if isinstance(node, ast.Call) and _name(node.func) in ("Path", "PurePath") and node.args:
            return text(node.args[0])
        return None

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = _name(node.func)
        candidates: list[ast.expr] = []
        if called == "open":
            mode = (
                node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            )
            if isinstance(mode, ast.Constant) and isinstance(mode.value, str) and mode.value[:1] in _WRITE_MODES:
                candidates = node.args[:1]
        elif called in WRITERS:
            candidates = list(node.args) + [k.value for k in node.keywords]
            if isinstance(node.func, ast.Attribute):
                candidates.append(node.func.value)  # Path("x").write_text(...)
        for candidate in candidates:
            path = text(candidate)
            if path is not None and _looks_local(path):
                found.setdefault(path, node.lineno)
    return found


def _name(func: ast.expr) -> str | None:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None


def _looks_local(path: str) -> bool:
    """A relative or absolute file path on this machine (not a URI, not a bare word)."""
    if not path or "://" in path or "\n" in path or len(path) > 1024:
        return False
    return "/" in path or "." in path.rsplit("/", 1)[-1]
