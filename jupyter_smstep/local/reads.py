"""What a step read while it ran (:mod:`.recorder` writes it), and whether it all still holds.

A cached result is reused only when every recorded read still holds
(:func:`changed` answers with the first that does not, in the user's words):

- a file or a module's source: the same size and modification time, or else the
  same SHA-256 (a file touched but not changed still holds);
- a folder: the same names in it;
- an installed distribution: the same version;
- an environment variable: the same value (compared by SHA-256; the record holds
  no value) in the environment the next job gets, which is this process's;
- anything that cannot be pinned (the network, the clock, unseeded randomness):
  never holds, unless the step says its result may be reused anyway.

Checks are cheap on an unchanged re-run: a ``stat`` per file, a hash only for a
file whose size or time moved.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core.keys import file_sha256

#: The parts of a record, each a mapping (``unpinned``: a list).
PARTS = ("files", "folders", "modules", "packages", "env")


def load(path: Path) -> dict[str, Any] | None:
    """The record the step's process wrote, or None (no record: the result is not cached)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not valid(data):
        return None
    return data


def valid(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and all(isinstance(data.get(p, {}), dict) for p in PARTS)
        and isinstance(data.get("unpinned", []), list)
    )


def keep_env(data: dict[str, Any], container_names: set[str]) -> dict[str, Any]:
    """Leave out the variables the job's container sets itself (its paths, its run's credentials): only the
    environment the job inherits decides whether the result still holds."""
    env = {
        k: v
        for k, v in data.get("env", {}).items()
        if k not in container_names and not k.startswith(("AWS_", "SMSTEP_"))
    }
    return {**data, "env": env}


def changed(
    data: dict[str, Any],
    since: str,
    root: Path | None = None,
    reuse_anyway: bool = False,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """Why the result of run ``since`` no longer holds (the first read that moved), or None. ``environ``: the
    environment the step's next run would get (default: this process's)."""
    environ = os.environ if environ is None else environ
    if data.get("unpinned") and not reuse_anyway:
        return (
            f"it read {', '.join(data['unpinned'])} in run {since}, which cannot be pinned "
            "(%%step --reuse always says its result may be reused anyway)"
        )
    for kind in ("modules", "files"):
        for path, (size, mtime, sha) in data.get(kind, {}).items():
            why = _file_moved(Path(path), size, mtime, sha)
            if why:
                return f"{_shown(path, root)} {why} since run {since}"
    for path, listing in data.get("folders", {}).items():
        try:
            now = hashlib.sha256("\0".join(sorted(os.listdir(path))).encode("utf-8", "replace")).hexdigest()
        except OSError:
            now = None
        if now != listing:
            return f"the folder {_shown(path, root)} changed since run {since}"
    for dist, version in data.get("packages", {}).items():
        now = _version(dist)
        if now != version:
            return f"the package {dist} is {now or 'not installed'} (was {version}) since run {since}"
    for name, digest in data.get("env", {}).items():
        value = environ.get(name)
        now = None if value is None else hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()
        if now != digest:
            return f"the environment variable {name} changed since run {since}"
    return None


def summary(data: dict[str, Any] | None, root: Path | None = None) -> dict[str, Any]:
    """What ``graph``/``run --json`` and the panel show of a step's reads."""
    if not data:
        return {}
    return {
        "files": [_shown(p, root) for p in data.get("files", {})],
        "folders": [_shown(p, root) for p in data.get("folders", {})],
        "modules": [_shown(p, root) for p in data.get("modules", {})],
        "packages": dict(data.get("packages", {})),
        "env": sorted(data.get("env", {})),
        "unpinned": list(data.get("unpinned", [])),
    }


def _file_moved(path: Path, size: int, mtime: int, sha: str | None) -> str | None:
    try:
        stat = path.stat()
    except OSError:
        return "is gone"
    if stat.st_size == size and stat.st_mtime_ns == mtime:
        return None
    if stat.st_size != size or sha is None:
        return "changed"
    try:
        return None if file_sha256(path) == sha else "changed"
    except OSError:
        return "cannot be read"


def _shown(path: str, root: Path | None) -> str:
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return path


def _version(dist: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except Exception:  # noqa: BLE001 - not installed any more
        return None
