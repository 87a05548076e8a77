"""What a pipeline will cost before it is submitted: measured time x real on-demand prices.

Per step, the instance-hours are the local run's measured wall time plus
:data:`STARTUP_BILLABLE_S`, times the instance count: a lower bound (a local run
is usually on less data, and on a laptop's cores). The hourly price comes from
the AWS Price List API (``remote.pricing``) or from a file the user gives
(``--prices FILE``, :func:`parse_prices_file`); never from anywhere else. When
no price is known for a step, the estimate has its instance-hours only and says
why. Pure.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Mapping

from jupyter_smstep.errors import SmstepError

#: Billed seconds a training job adds to its code's own time: the SDK's bootstrap in the container
#: (runtime scripts, environment checks) after the image is pulled. Provisioning is not billed; the
#: image download and `pip install` of a step's dependencies are and may add minutes, so this is a floor.
STARTUP_BILLABLE_S = 60.0
#: AWS: "Managed Spot Training can optimize the cost of training models up to 90% over on-demand".
SPOT_SAVING_UP_TO = 0.9

PRICES_FORMAT = '{"region": "us-east-1", "currency": "USD", "hourly": {"ml.m5.large": 0.115, ...}}'


@dataclass(frozen=True)
class Prices:
    region: str
    currency: str
    hourly: Mapping[str, float]  # instance type -> price per instance-hour
    source: str  # "AWS Price List API (fetched …)", "prices.json"


@dataclass(frozen=True)
class StepCost:
    step: str
    instance_type: str
    instance_count: int
    measured_s: float
    hours: float
    hourly: float | None
    spot: bool

    @property
    def cost(self) -> float | None:
        return None if self.hourly is None else self.hours * self.hourly

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
            "measured_s": round(self.measured_s, 3),
            "instance_hours": round(self.hours, 5),
            "hourly": self.hourly,
            "cost": None if self.cost is None else round(self.cost, 6),
            "spot": self.spot,
        }


@dataclass(frozen=True)
class Estimate:
    steps: list[StepCost]
    prices: Prices | None
    why_no_prices: str = ""  # when prices is None, or some types are not priced
    unmeasured: list[str] = field(default_factory=list)  # steps the run did not measure (cached, failed)

    @property
    def total(self) -> float | None:
        costs = [s.cost for s in self.steps]
        return None if not costs or any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def lines(self) -> list[str]:
        currency = self.prices.currency if self.prices else ""
        out = []
        for s in self.steps:
            price = f" × {s.hourly:.4f} {currency}/h = {s.cost:.4f} {currency}" if s.cost is not None else " (no price)"
            spot = f"; with spot up to {SPOT_SAVING_UP_TO:.0%} less" if s.spot else ""
            out.append(
                f"  {s.step}: {s.instance_count} × {s.instance_type}, {s.measured_s:.1f} s measured + "
                f"{STARTUP_BILLABLE_S:g} s start-up = {s.hours:.4f} instance-hours{price}{spot}"
            )
        total = self.total
        hours = sum(s.hours for s in self.steps)
        head = (
            f"estimated cost: at least {total:.4f} {currency} ({hours:.4f} instance-hours, "
            f"prices from {self.prices.source})"
            if total is not None and self.prices
            else f"estimated: at least {hours:.4f} instance-hours (no cost: {self.why_no_prices})"
        )
        tail = [f"  not measured (cached or not run): {', '.join(self.unmeasured)}"] if self.unmeasured else []
        return [head, *out, *tail, "  a lower bound: the local run's data and machine, not production's"]

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "currency": self.prices.currency if self.prices else None,
            "prices_source": self.prices.source if self.prices else None,
            "why_no_prices": self.why_no_prices or None,
            "startup_billable_s": STARTUP_BILLABLE_S,
            "steps": {s.step: s.to_json() for s in self.steps},
            "unmeasured": self.unmeasured,
        }


def estimate(measured: Mapping[str, Mapping[str, Any]], prices: Prices | None, why_no_prices: str = "") -> Estimate:
    """``measured``: step -> {"instance_type", "instance_count", "wall_s" (None: not measured), "spot"}."""
    steps, unmeasured = [], []
    missing: list[str] = []
    for name, m in measured.items():
        if m.get("wall_s") is None:
            unmeasured.append(name)
            continue
        count = int(m.get("instance_count") or 1)
        hours = (float(m["wall_s"]) + STARTUP_BILLABLE_S) / 3600 * count
        hourly = prices.hourly.get(m["instance_type"]) if prices else None
        if prices is not None and hourly is None:
            missing.append(m["instance_type"])
        steps.append(StepCost(name, m["instance_type"], count, float(m["wall_s"]), hours, hourly, bool(m.get("spot"))))
    if missing:
        source = prices.source if prices else "the prices"
        why_no_prices = f"{source} has no price for {', '.join(sorted(set(missing)))}"
    return Estimate(steps, prices, why_no_prices, unmeasured)


class _Duplicate(ValueError):
    def __init__(self, key: str, values: tuple[Any, Any]) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and out[key] != value:
            raise _Duplicate(key, (out[key], value))
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _price(value: Any) -> bool:
    """A price per hour: a finite number of at least 0 that a float holds (not 10**400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def parse_prices_file(path: str | Path, region: str | None = None) -> Prices:
    """A prices file (:data:`PRICES_FORMAT`); every problem is an error naming the file and the fix."""
    path = Path(path)
    fix = f"write it as {PRICES_FORMAT}"
    try:
        data = json.loads(path.read_text(), object_pairs_hook=_one_value_per_key, parse_constant=_no_constant)
    except OSError as exc:
        raise SmstepError(f"cannot read the prices file {path}: {exc}", fix=fix) from None
    except _Duplicate as exc:
        raise SmstepError(
            f"the prices file {path} gives {exc.key!r} two values ({exc.values[0]!r} and {exc.values[1]!r})",
            fix=f"keep one price for {exc.key!r}",
        ) from None
    except RecursionError:
        raise SmstepError(f"the prices file {path} is nested too deeply to be a prices file", fix=fix) from None
    except ValueError as exc:
        raise SmstepError(f"the prices file {path} is not JSON: {exc}", fix=fix) from None
    if not isinstance(data, dict) or not isinstance(data.get("hourly"), dict) or not data["hourly"]:
        raise SmstepError(f'the prices file {path} has no "hourly" object of instance types', fix=fix)
    bad = [k for k, v in data["hourly"].items() if not _price(v) or not k.startswith("ml.")]
    if bad:
        raise SmstepError(
            f"the prices file {path}: {', '.join(map(repr, bad))} is not an ml.* type with a "
            "finite price per hour of at least 0",
            fix=fix,
        )
    file_region = data.get("region")
    if region and file_region and file_region != region:
        raise SmstepError(
            f"the prices file {path} is for {file_region}, the pipeline runs in {region}",
            fix="give the prices of the pipeline's region",
        )
    return Prices(
        str(file_region or region or "?"),
        str(data.get("currency", "USD")),
        {k: float(v) for k, v in data["hourly"].items()},
        str(path),
    )
