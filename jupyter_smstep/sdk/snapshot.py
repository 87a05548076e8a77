"""What a step cell saw: its values as they were when the notebook reached it.

The rule (notebook order is the truth): a step gets the value its cell saw when
the notebook runs top to bottom, not what a later exploratory cell rebinds,
appends or redefines. So when a ``%%step`` cell is recorded (headless, when the
build reaches it; in a kernel, just before it runs), :func:`take` keeps the
values it reads:

- a value that cannot change (numbers, strings, bytes, ``None``, tuples of
  them), a module, or a function or class an import gives back: the object
  itself;
- anything else up to :data:`CAP` pickled bytes, with a notebook function's
  globals and a notebook class's body among it: a copy, pickled once with
  ``cloudpickle`` (all the cell's values in one pickle, so two names for one
  object stay one object) and unpickled on first use;
- a larger value, or one that cannot be pickled: the object itself and its
  fingerprint (:mod:`jupyter_smstep.core.fingerprint`). When a later cell
  changes it in place, :meth:`Snapshot.changed_in_place` says so, and the
  build refuses rather than ship the changed value.

A :class:`Snapshot` is a read-only mapping from name to value, which the graph
lays over the kernel's namespace for that one step (``core.graph``). Names the
cell read that did not exist yet are kept too (:attr:`Snapshot.unbound`): run
top to bottom, the cell raised ``NameError`` there.
"""

from __future__ import annotations

import builtins
import copy
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jupyter_smstep.core.fingerprint import fingerprint

#: Pickled bytes copied per step cell at most; larger values are kept by reference and fingerprinted.
CAP = 32 * 1024 * 1024
_ATOMS = (int, float, complex, bool, str, bytes, type(None), range, types.BuiltinFunctionType)


def _immutable(value: Any, depth: int = 0) -> bool:
    if isinstance(value, _ATOMS):
        return True
    if isinstance(value, (tuple, frozenset)) and depth < 3 and len(value) <= 10_000:
        return all(_immutable(v, depth + 1) for v in value)
    return False


def _importable(value: Any) -> bool:
    """A module, or a function or class that its module gives back by name: the step imports it."""
    if isinstance(value, types.ModuleType):
        return True
    if isinstance(value, (types.FunctionType, type)):
        import sys

        module = getattr(value, "__module__", None)
        qualname = getattr(value, "__qualname__", "")
        return (
            bool(module)
            and module != "__main__"
            and "<" not in qualname
            and getattr(sys.modules.get(module or ""), qualname, None) is value
        )
    return False


def _estimated_bytes(value: Any) -> int:
    """A cheap lower bound of a value's size (arrays and frames), to skip pickling what is surely too large."""
    try:
        if hasattr(value, "memory_usage") and hasattr(value, "shape"):
            usage = value.memory_usage(deep=False)
            return int(usage.sum() if hasattr(usage, "sum") else usage)
        return int(getattr(value, "nbytes", 0) or 0)
    except Exception:  # noqa: BLE001 - an odd object: measure it by pickling
        return 0


class Snapshot(Mapping[str, Any]):
    """The values one step cell read, as they were when it was recorded (see the module docstring)."""

    def __init__(
        self,
        kept: dict[str, Any],
        frozen: bytes | None,
        copied: frozenset[str],
        prints: dict[str, str | None],
        originals: dict[str, Any],
        unbound: frozenset[str],
    ) -> None:
        self._kept = kept
        self._frozen = frozen
        self._copied = copied
        self._thawed: dict[str, Any] | None = None
        self._prints = prints
        self._originals = originals  # what the names were bound to, to tell a rebinding later
        #: names the cell read that were not bound yet: run top to bottom, a NameError at this cell
        self.unbound = unbound

    # -- Mapping
    def __getitem__(self, name: str) -> Any:
        if name in self._kept:
            return self._kept[name]
        if name in self._copied:
            if self._thawed is None:
                import cloudpickle

                self._thawed = cloudpickle.loads(self._frozen or b"")
            return self._thawed[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        yield from self._kept
        yield from self._copied

    def __len__(self) -> int:
        return len(self._kept) + len(self._copied)

    def __contains__(self, name: object) -> bool:
        return name in self._kept or name in self._copied

    # -- what happened since
    @property
    def fingerprints(self) -> dict[str, str]:
        """name -> its fingerprint when the cell was recorded (for the values that have one)."""
        return {name: fp for name, fp in self._prints.items() if fp is not None}

    def copied(self, name: str) -> bool:
        return name in self._copied

    def moved(self, name: str, namespace: Mapping[str, Any]) -> bool:
        """Whether ``namespace`` no longer holds what the cell saw as ``name`` (rebound, changed or deleted)."""
        if name not in self:
            return False
        if name not in namespace:
            return True
        current, fp = namespace[name], self._prints.get(name)
        if fp is None:  # no fingerprint (a function, a class, something unpicklable): by identity
            return current is not self._originals.get(name)
        return fingerprint(current) != fp

    def changed_in_place(self, names: Iterable[str]) -> list[str]:
        """Of ``names``, those kept by reference (too large to copy) whose object has changed since."""
        out = []
        for name in names:
            fp = self._prints.get(name)
            if name in self._kept and fp is not None and fingerprint(self._kept[name]) != fp:
                out.append(name)
        return out


def take(
    names: Iterable[str], namespace: Mapping[str, Any], skip: Iterable[str] = (), changes: Iterable[str] = ()
) -> Snapshot:
    """The values of ``names`` in ``namespace`` now; ``skip``: names the graph takes from elsewhere
    (parameters), which are not kept; ``changes``: names the cell itself changes in place (``df.dropna(
    inplace=True)``), copied whatever their size, since the kernel runs the cell on them next."""
    skipped = set(skip)
    kept: dict[str, Any] = {}
    to_copy: dict[str, Any] = {}
    unbound: set[str] = set()
    for name in dict.fromkeys(names):
        if name in skipped or (name.startswith("__") and name.endswith("__")):
            continue
        if name not in namespace:
            if not hasattr(builtins, name):
                unbound.add(name)
            continue
        value = namespace[name]
        if _immutable(value) or _importable(value) or _estimated_bytes(value) > CAP:
            kept[name] = value
        else:
            to_copy[name] = value
    frozen, copied = _freeze(to_copy, kept)
    for name in set(changes) & set(kept):
        if not _immutable(kept[name]) and not _importable(kept[name]):
            try:
                kept[name] = copy.deepcopy(kept[name])  # one copy, not a pickle: a frame's copy() is a memcpy
            except Exception:  # noqa: BLE001 - kept by reference: changing it is then refused at the build
                pass
    prints = {
        name: fingerprint(namespace[name])
        for name in [*kept, *to_copy]
        if not _immutable(namespace[name]) and not _importable(namespace[name])
    }
    originals = {name: namespace[name] for name in [*kept, *to_copy]}
    return Snapshot(kept, frozen, frozenset(copied), prints, originals, frozenset(unbound))


def _freeze(values: dict[str, Any], kept: dict[str, Any]) -> tuple[bytes | None, list[str]]:
    """Pickle ``values`` together (one object under two names stays one); what cannot be pickled, or
    would take the pickle over :data:`CAP`, goes to ``kept`` by reference."""
    if not values:
        return None, []
    import cloudpickle

    try:
        data = cloudpickle.dumps(values)
        if len(data) <= CAP:
            return data, list(values)
    except Exception:  # noqa: BLE001 - one value that cannot be pickled: sort them one by one
        pass
    fits: dict[str, Any] = {}
    total = 0
    for name, value in values.items():
        try:
            size = len(cloudpickle.dumps(value))
        except Exception:  # noqa: BLE001 - kept by reference; the build reports what cannot travel
            size = CAP + 1
        if total + size <= CAP:
            fits[name] = value
            total += size
        else:
            kept[name] = value
    if fits:
        try:
            return cloudpickle.dumps(fits), list(fits)
        except Exception:  # noqa: BLE001 - pickled alone but not together: keep them by reference
            kept.update(fits)
    return None, []
