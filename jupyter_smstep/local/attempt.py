"""One attempt of a step in a local run: its process, folder and log, what it printed, and what it used.

:class:`jupyter_smstep.local.scheduler.Execution` starts attempts and follows them; this holds each one's state and
reads what it left (its log, its results' sizes, its resource use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jupyter_smstep.local.definition import StepSpec
from jupyter_smstep.local.s3 import LocalS3

#: The SDK's log lines around the user's function in a step's log (``remote_function/invoke_function.py``)
_SDK_LOGGER, _SDK_INVOKES, _SDK_RETURNS = (
    "sagemaker.remote_function",
    "Invoking the function",
    "Serializing the function return",
)


@dataclass
class Attempt:
    """One attempt of a step: its process, its folder and log, its limits, and what it used."""

    number: int
    command_id: str
    folder: Path
    log_path: Path
    failure_path: Path
    diag_path: Path
    job_name: str
    output_uri: str
    exception_uri: str
    max_runtime: float | None
    pid: int | None = None
    started: float | None = None
    term_sent: float | None = None
    timed_out: bool = False
    rusage: dict = field(default_factory=dict)  # cpu_s, peak_rss_bytes of the process tree, from wait4
    container_env: frozenset[str] = frozenset()  # variables the container sets (not the host's): not reads
    caller: str = ""  # the access key this attempt signs its S3 requests with (what it read of the run's S3)
    log_offset: int = 0  # how much of log.txt has been streamed
    in_user_code: bool = False  # between the SDK's "Invoking the function" and its "Serializing the function return"

    def new_lines(self) -> list[str]:
        """The lines the step's own code printed since the last call (the SDK's lines before and after the user's
        function are left in log.txt); whole lines only, the rest is read next time."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                data = log.read(1 << 20)
        except OSError:
            return []
        end = data.rfind(b"\n") + 1
        self.log_offset += end
        lines = []
        for raw in data[:end].splitlines():
            line = raw.decode("utf-8", "replace").rstrip()
            sdk = _SDK_LOGGER in line
            if sdk and _SDK_INVOKES in line:
                self.in_user_code = True
            elif sdk and _SDK_RETURNS in line:
                self.in_user_code = False
            elif self.in_user_code:
                lines.append(line)
        return lines

    def measured(self, spec: StepSpec, ended: float, s3: LocalS3, upstream_uris: list[str]) -> dict[str, float]:
        """What the attempt used: wall and CPU time, peak memory, and the payload bytes it read (its code, its
        arguments, ``upstream_uris``: the results of the steps it depends on) and wrote."""

        def size(uri: str) -> int:
            try:
                folder = s3.path(uri)
                return sum(p.stat().st_size for p in folder.iterdir() if p.is_file()) if folder.is_dir() else 0
            except (OSError, ValueError):
                return 0

        base = (spec.option("s3_base_uri") or "").rstrip("/")
        step_dir = spec.option("func_step_s3_dir") or ""
        step = spec.option("pipeline_step_name") or spec.name  # a ForEach child reads its body step's payload
        payload_in = sum(size(f"{base}/{step}/{step_dir}/{part}") for part in ("function", "arguments"))
        payload_in += sum(size(uri) for uri in upstream_uris if uri)
        out = {
            "wall_s": round(ended - (self.started or ended), 3),
            "payload_in_bytes": payload_in,
            "payload_out_bytes": size(self.output_uri),
        }
        if self.rusage:
            out["cpu_s"] = round(float(self.rusage.get("cpu_s", 0.0)), 3)
            out["peak_rss_bytes"] = int(self.rusage.get("peak_rss_bytes", 0))
        return out
