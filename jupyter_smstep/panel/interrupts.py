"""Kernel → Interrupt stops the panel's local run, as Ctrl-C stops ``smstep run``.

The panel runs a local run in a thread, so the kernel is idle while it runs, and an idle ipykernel
ignores SIGINT (between messages it keeps ``SIG_IGN``; around each message it handles, a cell or a
button's comm message, it puts Python's handler in and the saved one back after). While a run is
registered here, SIGINT sets its stop event first, then goes where it went before: nowhere when the
kernel is idle (a cell that is executing gets its KeyboardInterrupt from Python's handler, as before).
In a kernel the handler becomes the one ipykernel puts back after each message; outside one (a script,
a plain IPython) it is installed from the main thread. It stays: with no run registered it only passes
the signal on.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

_runs: set[threading.Event] = set()
_previous: Any = None
_lock = threading.Lock()


def _on_sigint(signum: int, frame: Any) -> None:
    with _lock:
        stops = list(_runs)
    for stop in stops:
        stop.set()
    if callable(_previous):
        _previous(signum, frame)


def _install() -> bool:
    global _previous
    kernel = _kernel()
    if kernel is not None:
        # Inside one of ipykernel's message handlers (a cell, a button's comm message): the handler in force
        # now is Python's, and ipykernel puts back the one it saved when the handler ends. Ours goes there.
        if kernel.saved_sigint_handler is not _on_sigint:
            _previous, kernel.saved_sigint_handler = kernel.saved_sigint_handler, _on_sigint
        return True
    if signal.getsignal(signal.SIGINT) is _on_sigint:
        return True
    if threading.current_thread() is not threading.main_thread():
        return False
    _previous = signal.signal(signal.SIGINT, _on_sigint)
    return True


def _kernel() -> Any:
    """The running ipykernel, when there is one and it is inside a message handler."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    return kernel if hasattr(kernel, "saved_sigint_handler") else None


def watch(stop: threading.Event) -> bool:
    """From now on SIGINT (Kernel → Interrupt) sets ``stop``; returns whether it can (the handler is in)."""
    installed = _install()
    with _lock:
        _runs.add(stop)
    return installed


def unwatch(stop: threading.Event) -> None:
    with _lock:
        _runs.discard(stop)
