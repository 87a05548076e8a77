"""Instance specs from EC2 ``DescribeInstanceTypes`` (SageMaker's ``ml.X`` is EC2's ``X``), when AWS answers."""

from __future__ import annotations

import os
from typing import Any
from collections.abc import Iterable

from jupyter_smstep.core.instances import GENERAL, Spec, Specs, shipped


def describe(instance_types: Iterable[str], client: Any = None) -> tuple[Specs, str]:
    """Specs of ``instance_types``, their family's other sizes and the general-purpose ones, from EC2;
    the shipped table (and why) when EC2 cannot be asked."""
    table = shipped()
    wanted = set(instance_types)
    families = {t.split(".")[1] for t in wanted if t.count(".") == 2}
    names = sorted(n[3:] for n in table.types if n.split(".")[1] in families) + [n[3:] for n in GENERAL]
    names += [t[3:] for t in wanted if t.startswith("ml.")]
    try:
        if client is None:
            import boto3
            from botocore.config import Config

            region = boto3.session.Session().region_name or os.environ.get("AWS_REGION") or None  # as the AWS CLI
            client = boto3.client(
                "ec2",
                region_name=region,
                config=Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"}),
            )
        found: dict[str, Spec] = {}
        unique = sorted(set(names))
        for start in range(0, len(unique), 100):  # the API takes up to 100 names a call
            kwargs: dict[str, Any] = {"InstanceTypes": unique[start : start + 100]}
            try:
                pages = list(client.get_paginator("describe_instance_types").paginate(**kwargs))
            except Exception as exc:  # noqa: BLE001
                if "InvalidInstanceType" not in str(exc):
                    raise
                pages = []  # a name EC2 does not know (e.g. a SageMaker-only size): the table has the rest
            for page in pages:
                for t in page.get("InstanceTypes", []):
                    gpus = sum(g.get("Count", 0) for g in t.get("GpuInfo", {}).get("Gpus", []))
                    name = f"ml.{t['InstanceType']}"
                    found[name] = Spec(name, t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"], gpus)
    except Exception as exc:  # noqa: BLE001 - offline, no credentials, denied
        return table, f"EC2 DescribeInstanceTypes could not be asked ({type(exc).__name__}: {exc})"
    merged = dict(table.types)
    merged.update(found)
    return Specs(merged, "EC2 DescribeInstanceTypes" + (f" and {table.source}" if len(found) < len(merged) else "")), ""
