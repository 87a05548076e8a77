"""What a step's own code read while it ran, recorded in the step's process (standard library only).

Loaded by path into the warm worker (like :mod:`.worker_entry`, it imports nothing of
jupyter_smstep) and started in each step's process before the SDK's entry point runs
the step. A read counts when the user's code is on the stack: the step's cell, the
notebook's helpers, a module beside the notebook or an editable package, directly or
through a library (``pd.read_csv`` is the user's read; the SDK reading its own config
before the step starts is not). What it records:

- files opened for reading and folders listed (Python's audit hooks: ``open``,
  ``os.listdir``, ``os.scandir``): path, size, modification time, and a SHA-256 for
  files up to :data:`HASH_CAP` bytes; files the step wrote itself, and the run's own
  folder, are left out. A file in the step's working folder that came from the
  notebook's folder (IncludeLocalWorkDir) is recorded as the notebook's file;
- modules: every ``import`` the user's code runs (a wrapped ``__import__``, which also
  sees imports that the warm worker had already done) and every class an unpickled
  upstream value needs (``pickle.find_class``): a module from a file outside the
  Python installation by that file's hash, an installed one by its distribution's
  version;
- environment variables, by the SHA-256 of the value read (never the value);
- what cannot be pinned: a network connection, a direct read of the clock
  (``time.time()``, ``time.time_ns()``), a draw from an unseeded random generator (``random``,
  ``numpy.random``'s global state, ``default_rng()`` without a seed), each called by the user's
  code itself (a library that seeds its own generator is not the user's randomness). A library
  that draws from ``random``'s or numpy's global generator with no seed set (scikit-learn's
  ``random_state=None``) is seen at the end: the generator's state moved since the step
  started. (The clock reads no wrapper sees, ``datetime.now()``, are found in the step's code
  by the runner: ``core/code.py``.)

At the end, :meth:`Recorder.write` puts it all in ``reads.json`` beside the step's log;
the runner keeps it with the cached result (:mod:`.reads` checks it before a reuse).
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import sys
import threading
import types
from collections.abc import Mapping
from typing import Any

#: Files larger than this are pinned by size and modification time only.
HASH_CAP = 256 * 1024 * 1024
_WATCHED = frozenset({"open", "os.listdir", "os.scandir", "socket.connect", "pickle.find_class"})
#: What runs every step (the SDK's entry point and what it unpickles with): not the step's own reads.
_INFRASTRUCTURE = frozenset({"sagemaker", "cloudpickle", "boto3", "botocore", "s3transfer", "tblib", "urllib3"})
#: Standard-library modules between a reader of the environment and ``os.environ``.
_ENV_PLUMBING = ("os.py", "_collections_abc.py", "<frozen os>", "<frozen _collections_abc>")


class Recorder:
    def __init__(self, ignore: list[str], workdir: str, root: str | None) -> None:
        # each folder as given and as the file system resolves it: paths are compared as opened (no realpath
        # per read), so both spellings must match
        self.ignore = tuple({os.path.join(f(p), "") for p in ignore if p for f in (os.path.abspath, os.path.realpath)})
        self.workdirs = tuple({os.path.join(f(workdir), "") for f in (os.path.abspath, os.path.realpath)})
        self.root = os.path.realpath(root) if root else None
        self.library = tuple(
            sorted(
                {
                    os.path.join(f(p), "")
                    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(__file__))
                    for f in (os.path.abspath, os.path.realpath)
                }
            )
        )
        self.files: dict[str, list] = {}
        self.folders: dict[str, None] = {}
        self.written: set[str] = set()
        self.modules: dict[str, None] = {}
        self.env: dict[str, str | None] = {}
        self.unpinned: dict[str, None] = {}
        self._busy = threading.local()
        self._numpy_watched = False
        self._seeded = {"random": False, "numpy": False}
        #: the global generators' states when the step started (numpy's: when numpy.random was loaded): a
        #: state that moved with no seed set was drawn from, by the user's code or a library's under it
        self._started: dict[str, Any] = {}

    # -- who is reading ------------------------------------------------------------
    def _user_frame(self, depth: int = 2, direct: bool = False, skip: tuple[str, ...] = ()) -> str | None:
        """``file:line`` of the user's code on the stack (the nearest one; with ``direct``, only the caller,
        past frames of files whose names end with one of ``skip``). ``<string>`` is the warm worker's own
        ``python -c``, at the bottom of every step's stack; the step's code is ``<dynamic-code>`` or a file."""
        frame: types.FrameType | None = sys._getframe(depth)
        while frame is not None:
            name = frame.f_code.co_filename
            if not name.startswith(("<frozen", "<string>")) and name != __file__ and not name.startswith(self.library):
                return f"{name}:{frame.f_lineno}"
            if direct and not (skip and name.endswith(skip)):
                return None
            frame = frame.f_back
        return None

    def _guarded(self, fn, *args):
        if getattr(self._busy, "on", False):
            return None
        self._busy.on = True
        try:
            return fn(*args)
        finally:
            self._busy.on = False

    # -- the audit hook ------------------------------------------------------------
    def hook(self, event: str, args: tuple) -> None:
        if event in _WATCHED:
            self._guarded(self._event, event, args)

    def _event(self, event: str, args: tuple) -> None:
        if event == "pickle.find_class":
            if str(args[0]).split(".")[0] not in _INFRASTRUCTURE:
                self.modules[str(args[0])] = None
            return
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return
            path = os.fsdecode(path)
            if path.startswith(self.library) or self._user_frame(4) is None:  # a library's own file: no stack walk
                return
            path = os.path.abspath(path)
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            )
            if writing:
                self.written.add(path)
            elif path not in self.written:
                self._file(path)
        elif event in ("os.listdir", "os.scandir"):
            path = args[0] if args else "."
            if isinstance(path, (str, bytes, os.PathLike)) and self._user_frame(4) is not None:
                self._folder(os.path.abspath(os.fsdecode(path)))
        elif event == "socket.connect" and self._user_frame(4) is not None:
            address = args[1] if len(args) > 1 else "?"
            if not self._local_s3(address):
                self.unpinned[f"a network connection ({address})"] = None

    def _local_s3(self, address) -> bool:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or ""
        return (
            isinstance(address, tuple)
            and len(address) >= 2
            and f":{address[1]}" in endpoint
            and str(address[0]) in ("127.0.0.1", "::1", "localhost")
        )

    def _outside(self, path: str) -> str | None:
        """``path`` as recorded: the notebook's file for one staged in the working folder, None to leave out."""
        for workdir in self.workdirs:
            if path.startswith(workdir):
                original = os.path.join(self.root, path[len(workdir) :]) if self.root else ""
                return original if original and os.path.exists(original) else None
        if path.startswith((*self.ignore, "/proc/", "/dev/", "/sys/")):
            return None
        if path.startswith(self.library):
            return None
        return path

    def _file(self, path: str) -> None:
        path = self._outside(path) or ""
        if path and path not in self.files:
            try:
                stat = os.stat(path)
            except OSError:
                return
            if stat.st_mode & 0o170000 == 0o100000:  # a regular file
                self.files[path] = [stat.st_size, stat.st_mtime_ns]

    def _folder(self, path: str) -> None:
        path = self._outside(path) or ""
        if path and os.path.isdir(path):
            self.folders[path] = None

    # -- imports, the environment, the clock, randomness -------------------------
    def install(self) -> None:
        sys.addaudithook(self.hook)
        original_import = builtins.__import__
        recorder = self

        def recording_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
            module = original_import(name, globals, locals, fromlist, level)
            importer = str((globals or {}).get("__file__") or "")
            if (
                level == 0
                and not importer.startswith(recorder.library)
                and name.split(".")[0] not in _INFRASTRUCTURE
                and not getattr(recorder._busy, "on", False)
                and recorder._guarded(recorder._user_frame, 3)
            ):
                recorder.modules[name] = None
                for item in fromlist or ():
                    recorder.modules[f"{name}.{item}"] = None
            if not recorder._numpy_watched and "numpy.random" in sys.modules:  # loaded by the user or a library
                recorder.watch_numpy()
            return module

        builtins.__import__ = recording_import
        environ = os.environ

        class RecordingEnviron(type(environ)):  # type: ignore[misc]
            def __getitem__(self, key):
                try:
                    value = super().__getitem__(key)
                except KeyError:
                    recorder._env(key, None)
                    raise
                recorder._env(key, value)
                return value

        environ.__class__ = RecordingEnviron
        self._watch_clock_and_randomness()

    def _env(self, key: str, value: str | None) -> None:
        # read by the user's code itself (os.environ[...], os.getenv, os.environ.get), not a library's settings
        if (
            not getattr(self._busy, "on", False)
            and key not in self.env
            and self._guarded(self._user_frame, 4, True, _ENV_PLUMBING)
        ):
            self.env[key] = None if value is None else hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()

    def _watch_clock_and_randomness(self) -> None:
        import random
        import time

        recorder = self
        seeded = self._seeded

        def direct(what: str, fn):
            def wrapper(*args, **kwargs):
                if recorder._guarded(recorder._user_frame, 3, True):  # its caller, not a library under it
                    recorder.unpinned[what] = None
                return fn(*args, **kwargs)

            return wrapper

        for name in ("time", "time_ns"):
            setattr(time, name, direct(f"the clock (time.{name}())", getattr(time, name)))
        original_seed = random.seed

        def seed(*args, **kwargs):
            seeded["random"] = True
            return original_seed(*args, **kwargs)

        random.seed = seed
        self._started["random"] = random.getstate()
        for name in (
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
        ):
            fn = getattr(random, name)

            def draw(*args, __fn=fn, __name=name, **kwargs):
                if not seeded["random"] and recorder._guarded(recorder._user_frame, 3, True):
                    recorder.unpinned[f"unseeded randomness (random.{__name}())"] = None
                return __fn(*args, **kwargs)

            setattr(random, name, draw)

    def watch_numpy(self) -> None:
        """numpy's global random state and ``default_rng()`` (called when the step starts, if numpy is loaded)."""
        np_random = sys.modules.get("numpy.random")
        if (
            np_random is None
            or self._numpy_watched
            or not all(hasattr(np_random, n) for n in ("seed", "default_rng", "rand"))
        ):
            return  # not loaded, or still loading (an import inside numpy's own): the next import tries again
        self._numpy_watched = True
        self._started["numpy"] = _numpy_state(np_random)
        recorder, seeded = self, self._seeded
        original_seed = np_random.seed

        def seed(*args, **kwargs):
            seeded["numpy"] = True
            return original_seed(*args, **kwargs)

        setattr(np_random, "seed", seed)  # noqa: B010 - numpy's module function, wrapped
        for name in (
            "rand",
            "randn",
            "randint",
            "random",
            "random_sample",
            "choice",
            "shuffle",
            "permutation",
            "normal",
            "uniform",
            "binomial",
            "poisson",
        ):
            fn = getattr(np_random, name, None)
            if fn is None:
                continue

            def draw(*args, __fn=fn, __name=name, **kwargs):
                if not seeded["numpy"] and recorder._guarded(recorder._user_frame, 3, True):
                    recorder.unpinned[f"unseeded randomness (numpy.random.{__name}())"] = None
                return __fn(*args, **kwargs)

            setattr(np_random, name, draw)
        default_rng = np_random.default_rng

        def rng(seed=None, *args, **kwargs):
            if seed is None and recorder._guarded(recorder._user_frame, 3, True):
                recorder.unpinned["unseeded randomness (numpy.random.default_rng() without a seed)"] = None
            return default_rng(seed, *args, **kwargs)

        setattr(np_random, "default_rng", rng)  # noqa: B010 - numpy's module function, wrapped

    def _global_draws(self) -> None:
        """A global generator drawn from with no seed, where no wrapped call of the user's said so: a library
        drew (scikit-learn's ``random_state=None`` takes numpy's global generator; ``random.shuffle`` inside
        a helper module)."""
        import random

        np_random = sys.modules.get("numpy.random")
        now = {
            "random": random.getstate(),
            "numpy": _numpy_state(np_random) if np_random is not None and "numpy" in self._started else None,
        }
        said = {
            "random": "unseeded randomness (random's global generator, drawn by a library)",
            "numpy": "unseeded randomness (numpy's global generator, drawn by a library: e.g. "
            "scikit-learn with random_state=None)",
        }
        for which, started in self._started.items():
            direct = f"unseeded randomness ({'numpy.random' if which == 'numpy' else 'random'}."
            if (
                not self._seeded[which]
                and now[which] != started
                and not any(u.startswith(direct) for u in self.unpinned)
            ):
                self.unpinned[said[which]] = None

    # -- the record ---------------------------------------------------------------
    def write(self, path: str) -> None:
        self._guarded(self._write, path)

    def _write(self, path: str) -> None:
        files = {}
        for name, (size, mtime) in self.files.items():
            files[name] = [size, mtime, _sha256(name) if size <= HASH_CAP else None]
        folders = {name: _listing(name) for name in self.folders}
        sources, packages = {}, {}
        dists = distributions()
        for name in sorted(self.modules):
            module = sys.modules.get(name) or sys.modules.get(name.rsplit(".", 1)[0])
            file = getattr(module, "__file__", None)
            top = name.split(".")[0]
            if not file or top in sys.stdlib_module_names:
                continue
            real = os.path.abspath(file)
            if real.startswith(self.library) or "site-packages" in real or "dist-packages" in real:
                for dist in dists.get(top, ()):
                    packages[dist] = _version(dist)
                continue
            recorded = self._outside(real)
            if recorded and os.path.isfile(recorded) and recorded not in sources:
                stat = os.stat(recorded)
                sources[recorded] = [stat.st_size, stat.st_mtime_ns, _sha256(recorded)]
        self._global_draws()
        data = {
            "files": files,
            "folders": folders,
            "modules": sources,
            "packages": packages,
            "env": self.env,
            "unpinned": list(self.unpinned),
        }
        with open(path, "w") as out:
            json.dump(data, out)


def _numpy_state(np_random: Any) -> Any:
    """numpy's global generator's state, comparable with ``==`` (its key array as bytes)."""
    name, keys, pos, has_gauss, gauss = np_random.get_state()
    return name, keys.tobytes(), pos, has_gauss, gauss


def _sha256(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _listing(path: str) -> str | None:
    try:
        return hashlib.sha256("\0".join(sorted(os.listdir(path))).encode("utf-8", "replace")).hexdigest()
    except OSError:
        return None


_DISTRIBUTIONS: list[Mapping[str, list[str]]] = []


def distributions() -> Mapping[str, list[str]]:
    """Top-level module -> the distributions that provide it: read once per process (about 0.5 s), by the warm
    worker before it forks, so a step pays nothing for it."""
    if not _DISTRIBUTIONS:
        try:
            import importlib.metadata

            _DISTRIBUTIONS.append(importlib.metadata.packages_distributions())
        except Exception:  # noqa: BLE001 - no distribution metadata: modules are pinned by file only
            _DISTRIBUTIONS.append({})
    return _DISTRIBUTIONS[0]


def _version(dist: str) -> str | None:
    try:
        import importlib.metadata

        return importlib.metadata.version(dist)
    except Exception:  # noqa: BLE001
        return None
