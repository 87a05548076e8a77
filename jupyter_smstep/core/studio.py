"""What SageMaker Studio tells a kernel about itself: its image and its space.

The SDK uses ``SAGEMAKER_INTERNAL_IMAGE_URI`` as the default step image. That
URI often has no tag, so a job could start on a newer image than the kernel's.
AWS's own Studio tools pin it with ``IMAGE_VERSION``; so do we, and we say
what we found (or that we found nothing).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping

RESOURCE_METADATA = Path("/opt/ml/metadata/resource-metadata.json")


@dataclass(frozen=True)
class KernelImage:
    uri: str | None
    note: str  # how it was found, or why not


def kernel_image(environ: Mapping[str, str] | None = None) -> KernelImage:
    env = os.environ if environ is None else environ
    for var in ("SAGEMAKER_INTERNAL_IMAGE_URI", "SM_INTERNAL_IMAGE_URI"):
        uri = env.get(var, "").strip()
        if not uri:
            continue
        version = env.get("IMAGE_VERSION", "").strip()
        last = uri.rsplit("/", 1)[-1]
        if "@" in last or ":" in last:
            return KernelImage(uri, f"from {var}")
        if version:
            return KernelImage(f"{uri}:{version}", f"from {var}, tag pinned to IMAGE_VERSION={version}")
        return KernelImage(uri, f"from {var}, untagged (IMAGE_VERSION not set): the job may use a newer image")
    return KernelImage(None, "no kernel image: not running in a SageMaker Studio kernel")


def studio_metadata(path: Path = RESOURCE_METADATA) -> dict | None:
    """Studio's documented resource metadata (DomainId, SpaceName, ...), if present."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def in_studio(environ: Mapping[str, str] | None = None, path: Path = RESOURCE_METADATA) -> bool:
    env = os.environ if environ is None else environ
    return (
        studio_metadata(path) is not None
        or bool(env.get("SAGEMAKER_INTERNAL_IMAGE_URI") or env.get("SM_INTERNAL_IMAGE_URI"))
        or env.get("SERVICE_NAME") == "SageMakerUnifiedStudio"
    )
