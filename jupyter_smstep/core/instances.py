"""Which instance type a step needs, from what a local run measured.

A local run measures each step's peak resident memory and CPU seconds
(:mod:`jupyter_smstep.local.scheduler`). :func:`suggest` compares them with the
specs of the step's instance type and of the others SageMaker offers: the
smallest type of the step's own family, and the smallest general-purpose one
(``ml.m5``), that hold the peak times :data:`HEADROOM` and the cores it used.
The specs come from ``data/instance_specs.json``, written by
``scripts/instance_specs.py`` from EC2's ``DescribeInstanceTypes`` (its source
and date are in the file): SageMaker's ``ml.X`` is EC2's ``X``.

A local run on a sample of the data measures a lower bound: every suggestion
says so. Pure: no AWS call.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Iterable, Mapping

#: The measured peak is multiplied by this before comparing with an instance's memory.
HEADROOM = 1.5
#: General-purpose sizes SageMaker training offers.
GENERAL = ("ml.m5.large", "ml.m5.xlarge", "ml.m5.2xlarge", "ml.m5.4xlarge", "ml.m5.12xlarge", "ml.m5.24xlarge")
SPECS_FILE = Path(__file__).resolve().parents[1] / "data" / "instance_specs.json"


@dataclass(frozen=True)
class Spec:
    name: str  # ml.m5.large
    vcpus: int
    memory_mib: int
    gpus: int

    @property
    def family(self) -> str:
        return self.name.split(".")[1]

    def describe(self) -> str:
        gpus = f", {self.gpus} GPU" if self.gpus else ""
        return f"{self.name} ({self.vcpus} vCPU, {self.memory_mib / 1024:g} GiB{gpus})"


@dataclass(frozen=True)
class Specs:
    types: Mapping[str, Spec]
    source: str

    def get(self, name: str) -> Spec | None:
        return self.types.get(name)


@functools.cache
def shipped() -> Specs:
    data = json.loads(SPECS_FILE.read_text())
    types = {f"ml.{name}": Spec(f"ml.{name}", *row) for name, row in data["types"].items()}
    return Specs(types, f"{data['source']}, {data['date']}")


@dataclass(frozen=True)
class Suggestion:
    step: str
    current: Spec | None
    peak_bytes: int
    cores: float
    same_family: Spec | None
    general: Spec | None
    too_small: bool
    note: str  # one line, e.g. "train: peak 1.3 GiB, 1.0 core — ml.m5.2xlarge (...) → ml.m5.large (...) fits"

    @property
    def already_smallest(self) -> bool:
        """The step has the smallest instance type that fits what the run measured: nothing to do."""
        if self.current is None or self.too_small:
            return False
        current = self.current
        return not any(
            s is not None and _size_order(s) < _size_order(current) for s in (self.same_family, self.general)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_type": self.current.name if self.current else None,
            "peak_bytes": self.peak_bytes,
            "cores": round(self.cores, 2),
            "fits_same_family": self.same_family.name if self.same_family else None,
            "fits_general_purpose": self.general.name if self.general else None,
            "too_small": self.too_small,
            "note": self.note,
        }


def _size_order(spec: Spec) -> tuple[int, int]:
    return (spec.memory_mib, spec.vcpus)


def suggest(
    step: str, instance_type: str, resources: Mapping[str, float], specs: Specs | None = None
) -> Suggestion | None:
    """The suggestion for one step, or None when the run did not measure its memory."""
    if "peak_rss_bytes" not in resources:
        return None
    specs = specs or shipped()
    peak = int(resources["peak_rss_bytes"])
    wall = float(resources.get("wall_s") or 0.0)
    cores = float(resources.get("cpu_s") or 0.0) / wall if wall > 0 else 0.0
    need_mib = peak * HEADROOM / 2**20
    need_cpus = max(1, math.ceil(cores - 0.1))
    current = specs.get(instance_type)
    gpus = current.gpus if current else 0

    def fits(spec: Spec) -> bool:
        return spec.memory_mib >= need_mib and spec.vcpus >= need_cpus and spec.gpus >= gpus

    family = [s for s in specs.types.values() if current and s.family == current.family and fits(s)]
    same = min(family, key=_size_order) if family else None
    general_pool = [specs.types[n] for n in GENERAL if n in specs.types and fits(specs.types[n])] if not gpus else []
    general = min(general_pool, key=_size_order) if general_pool else None
    used = f"{step}: peak {_gib(peak)}, {cores:.1f} core{'s' if round(cores, 1) != 1 else ''}"
    too_small = current is not None and peak > current.memory_mib * 2**20
    if current is None:
        note = f"{used} — the specs ({specs.source}) do not know {instance_type!r}" + (
            f"; {general.describe()} fits" if general else ""
        )
    elif too_small:
        bigger = same or general
        note = f"{used} — more than {current.describe()} holds: the job would run out of memory" + (
            f"; {bigger.describe()} fits" if bigger else ""
        )
    else:
        better = [s for s in (same, general) if s is not None and _size_order(s) < _size_order(current)]
        note = (
            f"{used} — {current.describe()} → " + " or ".join(dict.fromkeys(s.describe() for s in better)) + " fits"
            if better
            else f"{used} — {current.describe()} is the smallest that fits"
        )
    note += f" (with {HEADROOM:g}× headroom; a local run on less data than production's is a lower bound)"
    return Suggestion(step, current, peak, cores, same, general, too_small, note)


def summary_lines(suggestions: Iterable[Suggestion]) -> list[str]:
    """What a run's measurements say, one line per step that should change (a warning first when it
    would run out of memory), and one line for all the steps that already have the smallest type."""
    found = list(suggestions)
    fine = [s for s in found if s.already_smallest]
    lines = [("warning: " if s.too_small else "") + s.note for s in found if not s.already_smallest]
    if len(fine) == 1:
        lines.append(fine[0].note)
    elif fine:
        low, high = min(s.peak_bytes for s in fine), max(s.peak_bytes for s in fine)
        peaks = _gib(low) if _gib(low) == _gib(high) else f"{_gib(low)}–{_gib(high)}"
        kinds = sorted({s.current.name for s in fine if s.current is not None})
        which = f"{kinds[0]}, " if len(kinds) == 1 else ""
        lines.append(
            f"{', '.join(s.step for s in fine)}: each has {which}the smallest instance type that fits (peak "
            f"{peaks}; with {HEADROOM:g}× headroom, and a local run on less data than production's is a "
            "lower bound)"
        )
    return lines


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
