"""A real ipykernel subprocess, driven the way JupyterLab drives it (shell and iopub channels)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

#: the tests folder, on the kernel's path (as it was for the comm tests that first drove a kernel)
TESTS = Path(__file__).resolve().parents[1]


class Kernel:
    """A real ipykernel subprocess, driven the way JupyterLab drives it."""

    def __init__(self) -> None:
        from jupyter_client.manager import start_new_kernel

        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
        self.km, self.kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=60)

    def stop(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)

    def _send(self, msg_type: str, content: dict, metadata: dict | None = None) -> list[dict]:
        """Send a shell message; return the iopub messages it caused (until the kernel is idle again)."""
        msg = self.kc.session.msg(msg_type, content, metadata=metadata or {})
        self.kc.shell_channel.send(msg)
        msg_id = msg["header"]["msg_id"]
        seen = []
        while True:
            reply = self.kc.get_iopub_msg(timeout=60)
            if reply["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append(reply)
            if reply["msg_type"] == "status" and reply["content"]["execution_state"] == "idle":
                return seen

    def execute(self, code: str, cell_id: str | None = None) -> list[dict]:
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        seen = self._send("execute_request", content, {"cellId": cell_id} if cell_id else None)
        errors = [m["content"] for m in seen if m["msg_type"] == "error"]
        assert not errors, errors
        return seen

    def open_comm(self) -> tuple[str, list[dict]]:
        comm_id = uuid.uuid4().hex
        seen = self._send(
            "comm_open", {"comm_id": comm_id, "target_name": "jupyter_smstep", "data": {"type": "request_state"}}
        )
        return comm_id, seen
