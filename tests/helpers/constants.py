"""Constants and small helpers shared by the test modules (conftest.py holds the fixtures)."""

from __future__ import annotations

import linecache

ROLE = "arn:aws:iam::111122223333:role/SMRole"
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/smstep-test:1"
#: The @step keywords the local runner's tests give every step.
STEP_KW = dict(image_uri=IMAGE, role=ROLE, instance_type="ml.m5.large")


def s3_keys(boto_session) -> list[str]:
    s3 = boto_session.client("s3")
    keys = []
    for bucket in s3.list_buckets()["Buckets"]:
        for obj in s3.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            keys.append(f"{bucket['Name']}/{obj['Key']}")
    return keys


def cell(source: str, name: str = "cell") -> dict:
    """Functions defined like the compiler's: by value (``__main__``), with their source in linecache."""
    filename = f"<smstep-test-{name}>"
    text = source.lstrip("\n")
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    namespace: dict = {"__name__": "__main__"}
    exec(compile(text, filename, "exec"), namespace)  # noqa: S102
    return namespace
