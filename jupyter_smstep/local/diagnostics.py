"""A failed step in the user's terms: their exception and traceback, not the SDK's.

The forked step process writes what went wrong to ``error.json`` (see
:mod:`.worker_entry`): in which phase (loading the code or the inputs, the
function itself, pickling the outputs), the exception and both tracebacks.
:func:`explain_failure` turns that, the exit status and the log into one line
for tables and a full text for the panel; :func:`point_at_sources` maps
cloudpickle's ``<dynamic-code>`` frames back to the user's file and lines with
the step function the runner was handed.
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

from jupyter_smstep.local.worker import log_tail


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _disk_full(diag: dict) -> bool:
    text = " ".join(str(diag.get(k) or "") for k in ("type", "message", "cause", "traceback"))
    return "No space left on device" in text or "[Errno 28]" in text or "ENOSPC" in text


def explain_failure(step: str, returncode: int, diag: dict | None, log_path: Path) -> tuple[str, str]:
    """(one-line summary, full error text) for a failed attempt, in the user's terms."""
    log_hint = f"(log: {log_path})"
    if diag is None:
        tail = log_tail(log_path, 20)
        if returncode < 0:
            sig = -returncode
            try:
                sig_name = signal.Signals(sig).name
            except ValueError:
                sig_name = f"signal {sig}"
            hint = " - usually the machine ran out of memory" if sig == signal.SIGKILL else ""
            summary = f"the step's process was killed by {sig_name}{hint}"
        elif returncode == 0:
            summary = (
                "the step's process exited without writing its results (did the step call sys.exit() "
                "or os._exit()?); SageMaker would mark the step Succeeded and fail the steps that read it"
            )
        else:
            summary = f"the step's process exited with status {returncode} (did the step call sys.exit?)"
        return summary, f"step '{step}' failed: {summary} {log_hint}\n{tail}".rstrip()
    phase = diag.get("phase")
    exc_line = f"{diag.get('type')}: {diag.get('message')}".rstrip(": ")
    if phase != "function" and _disk_full(diag):
        summary = "the disk is full: the step's results could not be written"
        return summary, (
            f"step '{step}': {summary} ({exc_line}). Free space where the run folder is, or set "
            f"--runs-dir to a larger disk {log_hint}"
        )
    if phase == "function":
        user_tb = (diag.get("user_traceback") or diag.get("traceback") or "").rstrip()
        variable = diag.get("variable")
        if diag.get("type") == "NameError" and variable:
            explanation = (
                f"step '{step}' reads '{variable}', which does not exist when the step runs: it was neither "
                "passed to the step nor captured with it. Define it in an earlier step or in this cell, "
                "or import it inside the step."
            )
            return f"NameError: '{variable}' is not defined when the step runs", f"{explanation}\n{user_tb}"
        return exc_line, user_tb
    if phase == "output":
        bad = diag.get("unpicklable") or []
        if bad:
            parts = ", ".join(
                (f"output '{key}'" if key is not None else "its return value") + f" ({kind}: {reason})"
                for key, kind, reason in bad
            )
        else:
            parts = f"its return value ({diag.get('cause') or exc_line})"
        summary = f"returned a value that cannot be pickled: {parts}"
        explanation = (
            f"step '{step}' {summary}. A step's outputs are pickled to S3 for the steps that read them; "
            "return plain data instead (close files, clients and connections inside the step, return "
            "what they hold or a path)."
        )
        return summary, explanation
    if phase in ("load_function", "load_arguments"):
        what = "its code" if phase == "load_function" else "its inputs"
        cause = diag.get("cause") or exc_line
        summary = f"could not load {what} in the step's process: {cause}"
        fix = ""
        if "ModuleNotFoundError" in cause or "No module named" in cause:
            fix = (
                " The step runs in a fresh process, like a SageMaker container: a module that is only "
                "importable from the notebook's folder must be shipped with the step, and packages must "
                "be in the image or the step's dependencies."
            )
        return summary, f"step '{step}' {summary}.{fix}\n(the SDK's traceback is in {log_path})"
    if phase == "resolve_inputs":
        summary = f"could not read the outputs of an upstream step: {diag.get('cause') or exc_line}"
        return summary, f"step '{step}' {summary}\n(the SDK's traceback is in {log_path})"
    sdk_traceback = diag.get("traceback", "").rstrip()
    return exc_line, f"step '{step}' failed in the SageMaker entry point {log_hint}:\n{sdk_traceback}"


_DYNAMIC_FRAME = re.compile(r'^(\s*)File "<dynamic-code>", line (\d+), in (.+)$')


def point_at_sources(text: str | None, func: Any) -> str | None:
    """Rewrite ``File "<dynamic-code>"`` frames of the step's own code to its file and line."""
    if not text or func is None or "<dynamic-code>" not in text:
        return text
    import linecache
    import types

    codes = []
    stack = [getattr(func, "__code__", None)]
    while stack:
        code = stack.pop()
        if not isinstance(code, types.CodeType):
            continue
        lines = [line for _, _, line in code.co_lines() if line is not None]
        if lines:
            codes.append((code.co_name, code.co_filename, min(lines + [code.co_firstlineno]), max(lines)))
        stack.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    out = []
    for line in text.splitlines():
        match = _DYNAMIC_FRAME.match(line)
        if match:
            indent, number, name = match.group(1), int(match.group(2)), match.group(3)
            hit = next((c for c in codes if c[0] == name and c[2] <= number <= c[3]), None)
            if hit is not None:
                out.append(f'{indent}File "{hit[1]}", line {number}, in {name}')
                source = linecache.getline(hit[1], number).strip()
                if source:
                    out.append(f"{indent}  {source}")
                continue
        out.append(line)
    return "\n".join(out)
