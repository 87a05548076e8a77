"""The local step cache: a succeeded step's results, found again by its content key.

When a step succeeds, :meth:`StepCache.record` writes ``runs_dir/cache/<key>.json``:
the run and the step it came from, and the SHA-256 and size of every file of
its results (``payload.pkl``, ``metadata.json``, ``results.json``) in that
run's S3 folder. A later run whose step has the same key
(:mod:`jupyter_smstep.core.keys`) gets those files instead of starting a
process: :meth:`StepCache.lookup` checks every one against what was recorded,
and anything missing or different makes the entry unusable (the step runs, and
the run says why), never trusted.

What the key does not cover, the step's process records while it runs (:mod:`.recorder`):
the files and folders its code read, the modules and packages it imported, the
environment variables it read, and what cannot be pinned (the network, the clock,
unseeded randomness). The record keeps them, and a result is reused only when every
one still holds (:mod:`.reads`); otherwise the step runs and the run says which read
changed. A result without such a record is never reused.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.core.keys import file_sha256
from jupyter_smstep.folders import private_folder, untrusted, write_whole
from jupyter_smstep.local import reads as reads_mod
from jupyter_smstep.local.s3.store import PARTIAL


@dataclass(frozen=True)
class Entry:
    key: str
    run_id: str
    step: str
    files: dict[str, Path]  # relative name -> the verified file in the earlier run
    reads: dict = field(default_factory=dict)  # what the step read then, all of it unchanged since (.reads)
    upstream: dict = field(default_factory=dict)  # upstream step -> the SHA-256 of the result it read then
    payload_sha256: str = ""  # of its own result

    def __hash__(self) -> int:
        return hash(self.key)


@dataclass(frozen=True)
class Unusable:
    run_id: str
    why: str


class StepCache:
    """Results of earlier runs under one runs folder, by step key."""

    def __init__(
        self,
        runs_dir: Path,
        root: Path | None = None,
        reuse_anyway: frozenset[str] = frozenset(),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``root``: the notebook's folder (reads are shown relative to it, and the runs folder is trusted only
        if it and every folder up to it is this user's alone); ``reuse_anyway``: steps whose result may be
        reused although they read something that cannot be pinned (``%%step --reuse always``)."""
        self.runs_dir = Path(runs_dir)
        self.root = root
        self.reuse_anyway = reuse_anyway
        self.environ = environ  # what the steps' processes get (a kernel's: without what its cells set)
        self._refused: str | None | bool = False  # not checked yet
        self.folder = self.runs_dir / "cache"
        # lookups verified during this run (each file hashed once per run, however often it is asked)
        self._looked_up: dict[str, Entry | Unusable | None] = {}

    def _entry_path(self, key: str) -> Path:
        if not key or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a step key: {key!r}")
        return self.folder / f"{key}.json"

    def refused(self) -> str | None:
        """Why this runs folder's cache is not to be trusted at all (another user could write it), or None."""
        if self._refused is False:
            top = (
                self.root
                if self.root is not None and self.runs_dir.absolute().is_relative_to(Path(self.root).absolute())
                else self.runs_dir.absolute().parent
            )
            why = untrusted(self.folder, top)
            self._refused = (
                (
                    f"the cache {self.folder} is not safe to use: {why}; another user could plant a result "
                    f"there that runs as you (fix: remove {self.runs_dir}, or keep the notebook in a folder "
                    "only you can write, e.g. chmod go-w)"
                )
                if why
                else None
            )
        return self._refused if isinstance(self._refused, str) else None

    def lookup(self, key: str) -> Entry | Unusable | None:
        """The verified entry for ``key``; :class:`Unusable` (with why) when one exists but cannot be used."""
        if key not in self._looked_up:
            refused = self.refused()
            self._looked_up[key] = Unusable("?", refused) if refused else self._verify(key)
        return self._looked_up[key]

    def _verify(self, key: str) -> Entry | Unusable | None:
        path = self._entry_path(key)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return Unusable("?", f"its cache record {path} cannot be read ({exc})")
        malformed = _malformed(record, key, self.runs_dir)
        if malformed:
            return Unusable(
                str(record.get("run_id", "?")) if isinstance(record, dict) else "?",
                f"its cache record {path} is not to be trusted: {malformed}",
            )
        run_id = str(record["run_id"])
        base = self.runs_dir / run_id / "s3" / record["folder"]
        recorded = dict(record["files"])
        files: dict[str, Path] = {}
        for name, (size, sha) in recorded.items():
            file = base / name
            if not file.is_file():  # (_malformed refused names with a /)
                return Unusable(run_id, f"{file} is missing (was run {run_id} deleted?)")
            if file.stat().st_size != size or file_sha256(file) != sha:
                return Unusable(run_id, f"{file} differs from what run {run_id} wrote")
            files[name] = file
        step = str(record.get("step", ""))
        recorded_reads = record.get("reads")
        if not reads_mod.valid(recorded_reads):
            return Unusable(run_id, f"run {run_id} did not record what the step read")
        moved = reads_mod.changed(recorded_reads, run_id, self.root, step in self.reuse_anyway, self.environ)
        if moved:
            return Unusable(run_id, moved)
        upstream = record.get("upstream") if isinstance(record.get("upstream"), dict) else {}
        return Entry(key, run_id, step, files, recorded_reads, upstream, str(recorded["payload.pkl"][1]))

    def record(
        self,
        key: str,
        run_id: str,
        step: str,
        results: Path,
        known: dict[str, str] | None = None,
        reads: dict | None = None,
        upstream: dict[str, str | None] | None = None,
    ) -> None:
        """Remember the results folder ``results`` (inside ``runs_dir/run_id/s3``) of a succeeded step;
        ``known`` gives the SHA-256 of files the caller already hashed (the payload); ``reads``: what the
        step read (:mod:`.reads`), without which nothing is recorded."""
        if reads is None:
            return
        s3_root = self.runs_dir / run_id / "s3"
        try:
            folder = results.relative_to(s3_root)
        except ValueError:
            return  # not inside the run's S3 mirror: nothing to point at
        known = known or {}
        files = {
            p.name: [p.stat().st_size, known.get(p.name) or file_sha256(p)]
            for p in sorted(results.iterdir())
            if p.is_file()
        }
        if "payload.pkl" not in files:
            return
        if self.refused():
            return
        path = self._entry_path(key)
        private_folder(path.parent)  # a record says which pickles to trust: nobody else may write here
        write_whole(
            path,
            json.dumps(
                {
                    "key": key,
                    "run_id": run_id,
                    "step": step,
                    "folder": folder.as_posix(),
                    "files": files,
                    "reads": reads,
                    "upstream": upstream or {},
                },
                indent=1,
            ),
        )

    # -- whole definitions: a run whose every step is cached needs no build (no SDK import) ---------
    def record_definition(self, pipeline_key: str, run_id: str, pipeline: str) -> None:
        """Remember that run ``run_id``'s ``definition.json`` is the definition for ``pipeline_key``."""
        if self.refused():
            return
        source = self.runs_dir / run_id / "definition.json"
        path = self._entry_path(pipeline_key).with_suffix(".definition.json")
        private_folder(path.parent)
        write_whole(path, json.dumps({"run_id": run_id, "pipeline": pipeline, "sha256": file_sha256(source)}))

    def definition(self, pipeline_key: str) -> tuple[dict, str] | None:
        """The recorded definition for ``pipeline_key`` and the pipeline's name, verified against its hash;
        None if none is usable."""
        if self.refused():
            return None
        try:
            record = json.loads(self._entry_path(pipeline_key).with_suffix(".definition.json").read_text())
            source = self.runs_dir / str(record["run_id"]) / "definition.json"
            if "/" in str(record["run_id"]) or file_sha256(source) != record["sha256"]:
                return None
            definition = json.loads(source.read_text())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (definition, str(record.get("pipeline", ""))) if isinstance(definition, dict) else None


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _malformed(record: Any, key: str, runs_dir: Path) -> str | None:
    """What is wrong with a cache record (None: it has the documented shape and names a run of this user's)."""
    if not isinstance(record, dict):
        return f"it is a {type(record).__name__}, not a record"
    if record.get("key") != key:
        return "it is the record of another key"
    run_id = record.get("run_id")
    if not isinstance(run_id, str) or not run_id or "/" in run_id or run_id.startswith("."):
        return "its run_id names no run folder"
    run = runs_dir / run_id
    try:
        info = os.lstat(run)
    except OSError:
        return f"its run {run_id} is gone"
    if not hasattr(os, "geteuid") or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        return f"its run folder {run} is not this user's alone"
    folder = record.get("folder")
    if not isinstance(folder, str) or ".." in Path(folder).parts or Path(folder).is_absolute():
        return "its folder is not inside the run's S3"
    files = record.get("files")
    if (
        not isinstance(files, dict)
        or not files
        or not all(
            isinstance(n, str)
            and "/" not in n
            and isinstance(v, list)
            and len(v) == 2
            and isinstance(v[0], int)
            and isinstance(v[1], str)
            and _SHA256.fullmatch(v[1])
            for n, v in files.items()
        )
    ):
        return "its files are not (size, sha256) pairs"
    return None


#: A producer this run does not take from the cache: a step reading it cannot be reused (its values may differ)
RUNS_AGAIN = object()


def why_not_reused(
    found: Entry | Unusable | None, upstream: Mapping[str, Any], runs_dir: Path, saves: list[dict[str, Any]]
) -> str | None:
    """Why a step's cached result cannot be taken (None: it can). The one decision, for the workspace (what to
    upload) and the runner (what to start).

    ``found``: the cache's answer for the step's key. ``upstream``: each step it depends on -> the SHA-256 of that
    step's result in this run (:data:`RUNS_AGAIN` when it is not known yet): it must be the result the cached one
    read. ``saves``: its ``--save`` values, whose objects must still be in the run it reuses.
    """
    if found is None:
        return "no earlier result with this key"
    if isinstance(found, Unusable):
        return found.why
    for dep, now in upstream.items():
        if now is RUNS_AGAIN or now != found.upstream.get(dep, "not recorded"):
            return f"step {dep}'s result differs from the one run {found.run_id} read"
    return missing_saved_object(runs_dir, found.run_id, saves)


def reusable(
    cache: StepCache,
    keys: dict[str, str],
    depends_on: dict[str, list[str]],
    saves: dict[str, list[dict[str, Any]]] | None = None,
) -> frozenset[str]:
    """The steps (of ``keys``: step -> key, in an order where producers come first) whose cached results a run
    can take together (:func:`why_not_reused` for each, its producers taken with the very result it read)."""
    taken: dict[str, Entry] = {}
    for step, key in keys.items():
        entry = cache.lookup(key)
        upstream = {d: taken[d].payload_sha256 if d in taken else RUNS_AGAIN for d in depends_on.get(step, [])}
        if (
            isinstance(entry, Entry)
            and why_not_reused(entry, upstream, cache.runs_dir, (saves or {}).get(step, [])) is None
        ):
            taken[step] = entry
    return frozenset(taken)


def saved_object(runs_dir: Path, run_id: str, spec: dict[str, Any]) -> tuple[Path, str]:
    """A ``--save`` value's object in run ``run_id``'s S3 (``{execution_id}`` is the run's id), and the suffix a
    format picked by type appended to its key."""
    from jupyter_smstep.local.definition import split_s3_uri

    bucket, key = split_s3_uri(str(spec["uri"]).replace("{execution_id}", run_id))
    store = (runs_dir / run_id / "s3").resolve()
    local = (store / bucket / key).resolve()
    if not local.is_relative_to(store):  # a key with `..` never reaches outside the run's S3
        raise ValueError(f"--save {spec.get('name')}: {spec['uri']} is not a key of the run's S3")
    if spec.get("format") == "by type":
        local = next(iter(sorted(local.parent.glob(local.name + ".*"))), local)
    return local, local.name[len(Path(key).name) :]


def missing_saved_object(runs_dir: Path, run_id: str, specs: list[dict[str, Any]]) -> str | None:
    """Why a reused step's ``--save`` objects cannot be put again from run ``run_id`` (None: they can)."""
    for spec in specs:
        try:
            old, _ = saved_object(runs_dir, run_id, spec)
        except ValueError as exc:
            return str(exc)
        if not old.is_file():
            return f"its --save {spec['name']} object of run {run_id} is gone ({old.name})"
    return None


def place(entry: Entry, results: Path) -> None:
    """Put an entry's files into ``results`` (a hard link when the file system allows, else a copy)."""
    results.mkdir(parents=True, exist_ok=True)
    for name, source in entry.files.items():
        target = results / name
        partial = target.with_name(f"{name}.{secrets.token_hex(4)}{PARTIAL}")  # listings skip it
        try:
            os.link(source, partial)
        except OSError:
            shutil.copyfile(source, partial)
        os.replace(partial, target)
