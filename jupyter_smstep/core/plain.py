"""What is not data: values a step cannot hand to another process (files, locks, clients, modules...).

A final step returns the variables it assigns, so that a run's results can be pulled; a value
that is not data (``f`` after ``with open(path, "w") as f:``, a lock, a boto3 client) would fail
the whole step with a pickling error about something the user never meant to return. The build
leaves such values out where it sees them (the cell ran in the kernel). Where it cannot (a
headless build, ``--defer``), the same test runs in the job: this file's source is compiled into
such a step (and written into the export), so it must stay self-contained, the standard library
only, and :func:`_smstep_plain` decides there, saying in the job's log what it left out.
(Annotations are strings: the job's Python never evaluates them, whatever its version.)
"""

import io
import socket
import sys
import threading
import types


def not_data_kinds() -> "tuple[type, ...]":
    """The classes that are never a step's output: they cannot travel to another process, or mean
    nothing there. Made where they are used (the lock classes cannot be pickled by reference)."""
    return (
        types.ModuleType,
        types.GeneratorType,
        types.AsyncGeneratorType,
        types.CoroutineType,
        io.IOBase,
        socket.socket,
        threading.Thread,
        type(threading.Lock()),
        type(threading.RLock()),
        threading.Event,
        threading.Condition,
        threading.Semaphore,
    )


#: AWS credentials and what holds them, by (module, class name or None for any class of the module):
#: recognised without importing boto3. Never data, and never captured into a step (``sdk.capture``).
CREDENTIAL_TYPES: "dict[tuple[str, str | None], str]" = {
    ("boto3.session", "Session"): "a boto3 session (it holds credentials)",
    ("botocore.session", "Session"): "a botocore session (it holds credentials)",
    ("botocore.credentials", None): "AWS credentials",
    ("botocore.client", None): "a boto3 client",
}
#: Other types recognised by their module and name that are not data.
NOT_DATA_NAMES: "dict[tuple[str, str | None], str]" = {
    **CREDENTIAL_TYPES,
    ("boto3.resources.base", None): "a boto3 resource",
    ("sqlite3", "Connection"): "a database connection",
    ("sqlite3", "Cursor"): "a database cursor",
}


def match_type(value: "object", table: "dict[tuple[str, str | None], str]") -> "tuple[str, str] | None":
    """``(module.Class, description)`` when ``value``'s class (or a base) is in ``table``, else None."""
    for klass in type(value).__mro__:
        module, name = getattr(klass, "__module__", "") or "", klass.__name__
        description = table.get((module, name)) or table.get((module, None))
        if description:
            return f"{module}.{name}", description
    return None


def not_data(value: "object", kinds: "tuple[type, ...] | None" = None) -> "str | None":
    """Why ``value`` is not plain data (an open file, a client, a lock...), or None."""
    if isinstance(value, kinds or not_data_kinds()):
        return type(value).__name__
    found = match_type(value, NOT_DATA_NAMES)
    return found[0] if found else None


def _smstep_plain(step: "str", outputs: "dict[str, object]", unchecked: "tuple[str, ...]") -> "dict[str, object]":
    """A final step's outputs without the values among ``unchecked`` (names the build could not see)
    that are not data; each one left out is said in the job's log."""
    kept: dict[str, object] = {}
    kinds = not_data_kinds()
    for name, value in outputs.items():
        why = not_data(value, kinds) if name in unchecked else None
        if why is None:
            kept[name] = value
        else:
            print(
                f"jupyter_smstep: step {step!r} leaves {name!r} ({why}) out of its outputs: it is not data "
                "another process can use (return what it holds instead, or insist with --outputs)",
                file=sys.stderr,
            )
    return kept
