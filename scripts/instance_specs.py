"""Write jupyter_smstep/data/instance_specs.json: vCPUs, memory and GPUs of the EC2 types behind SageMaker's ml.*.

    python scripts/instance_specs.py                 # from moto's copy of EC2 DescribeInstanceTypes (offline)
    python scripts/instance_specs.py --from-aws      # from EC2 DescribeInstanceTypes with your credentials

The table is what instance suggestions use when DescribeInstanceTypes cannot be called; its source and
date are written in it.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "jupyter_smstep" / "data" / "instance_specs.json"
#: The families SageMaker offers for training jobs (ml.<family>.<size>).
FAMILIES = (
    "m4",
    "m5",
    "m5d",
    "m6i",
    "m7i",
    "c4",
    "c5",
    "c5n",
    "c6i",
    "c7i",
    "r5",
    "r5d",
    "r6i",
    "r7i",
    "t3",
    "g4dn",
    "g5",
    "g6",
    "g6e",
    "p3",
    "p3dn",
    "p4d",
    "p4de",
    "p5",
    "trn1",
    "trn1n",
    "inf2",
)


def row(t: dict) -> list[int]:
    gpus = sum(g.get("Count", 0) for g in t.get("GpuInfo", {}).get("Gpus", []))
    accelerators = sum(a.get("Count", 0) for a in t.get("NeuronInfo", {}).get("NeuronDevices", []))
    return [t["VCpuInfo"]["DefaultVCpus"], t["MemoryInfo"]["SizeInMiB"], gpus + accelerators]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--from-aws", action="store_true")
    args = parser.parse_args()
    if args.from_aws:
        import boto3

        types = [
            t
            for page in boto3.client("ec2").get_paginator("describe_instance_types").paginate()
            for t in page["InstanceTypes"]
        ]
        source = "EC2 DescribeInstanceTypes"
    else:
        import moto

        path = Path(moto.__file__).parent / "ec2" / "resources" / "instance_types.json.gz"
        types = list(json.load(gzip.open(path)).values())
        source = f"moto {moto.__version__}'s copy of EC2 DescribeInstanceTypes"
    table = {t["InstanceType"]: row(t) for t in types if t["InstanceType"].split(".")[0] in FAMILIES}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps(
        {"source": source, "date": datetime.date.today().isoformat(), "columns": ["vcpus", "memory_mib", "gpus"]}
    )[:-1]
    rows = ",\n".join(f"  {json.dumps(name)}: {json.dumps(spec)}" for name, spec in sorted(table.items()))
    OUT.write_text(f'{head}, "types": {{\n{rows}\n}}}}\n')
    print(f"wrote {len(table)} types to {OUT}")


if __name__ == "__main__":
    main()
