"""On-demand prices of SageMaker training instances, from the AWS Price List API, cached for a day.

``get_products`` (service ``AmazonSageMaker``) is asked, per instance type and
region, for the products whose usage type is training (``<REGION>-Train:ml.*``);
the price is the on-demand price per hour. Answers are kept in the user's cache
folder (``prices-<region>.json``; ``SMSTEP_CACHE_DIR`` moves it) for a day.
When the API cannot be reached (offline, no credentials, access denied) the
caller gets the reason, not a number.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from collections.abc import Iterable

from jupyter_smstep.core.cost import Prices
from jupyter_smstep.folders import cache_dir, write_whole

CACHE_SECONDS = 24 * 60 * 60
#: The Price List API answers in these regions only; its prices cover every region.
API_REGION = "us-east-1"


def fetch(region: str, instance_types: Iterable[str], client: Any = None) -> tuple[Prices | None, str]:
    """(prices, "") or (None, why not). Types known from a cache entry younger than a day are not asked again."""
    wanted = sorted(set(instance_types))
    path = cache_dir() / f"prices-{region}.json"
    cached = _read_cache(path)
    fresh = {t: p for t, (p, at) in cached.items() if time.time() - at < CACHE_SECONDS}
    missing = [t for t in wanted if t not in fresh]
    if missing:
        try:
            if client is None:
                import boto3
                from botocore.config import Config

                # offline must not mean minutes of retries: one quick attempt, then the reason
                client = boto3.client(
                    "pricing",
                    region_name=API_REGION,
                    config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"}),
                )
            for instance_type in missing:
                price = _hourly(client, region, instance_type)
                if price is not None:
                    fresh[instance_type] = price
                    cached[instance_type] = (price, time.time())
        except Exception as exc:  # noqa: BLE001 - no credentials, offline, denied: say so, never guess
            return None, f"the AWS Price List API could not be asked ({_reason(exc)})"
        _write_cache(path, cached)
    source = f"the AWS Price List API, {region}" + (" (cached)" if not missing else "")
    return Prices(region, "USD", {t: fresh[t] for t in wanted if t in fresh}, source), ""


def _hourly(client: Any, region: str, instance_type: str) -> float | None:
    filters = [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "instanceName", "Value": instance_type},
    ]
    kwargs: dict[str, Any] = {"ServiceCode": "AmazonSageMaker", "Filters": filters, "FormatVersion": "aws_v1"}
    while True:
        page = client.get_products(**kwargs)
        for item in page.get("PriceList", []):
            product = json.loads(item) if isinstance(item, str) else item
            attributes = product.get("product", {}).get("attributes", {})
            if attributes.get("instanceName") != instance_type or "-Train:" not in attributes.get("usagetype", ""):
                continue
            for term in product.get("terms", {}).get("OnDemand", {}).values():
                for dimension in term.get("priceDimensions", {}).values():
                    usd = dimension.get("pricePerUnit", {}).get("USD")
                    if usd is not None and dimension.get("unit", "").lower().startswith("hr"):
                        return float(usd)
        if not page.get("NextToken"):
            return None
        kwargs["NextToken"] = page["NextToken"]


def _reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return f"{response['Error'].get('Code')}: {response['Error'].get('Message')}"
    return f"{type(exc).__name__}: {exc}"


def _read_cache(path: Path) -> dict[str, tuple[float, float]]:
    try:
        data = json.loads(path.read_text())
        return {str(k): (float(v[0]), float(v[1])) for k, v in data.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}  # missing or damaged: ask again


def _write_cache(path: Path, entries: dict[str, tuple[float, float]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_whole(path, json.dumps({k: list(v) for k, v in entries.items()}))
    except OSError:
        pass  # a read-only cache folder costs a new request next time, nothing else
