"""The SageMaker SDK's own defaults file, config.yaml, read the way the SDK reads it (admin, then user,
``SAGEMAKER_ADMIN_CONFIG_OVERRIDE`` / ``SAGEMAKER_USER_CONFIG_OVERRIDE``), with PyYAML.

Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

#: Where the ``@step`` defaults live in config.yaml
REMOTE_FUNCTION = ("SageMaker", "PythonSDK", "Modules", "RemoteFunction")


# --------------------------------------------------------------------------- config.yaml
def config_paths(environ: Mapping[str, str] | None = None) -> list[Path]:
    """The admin then the user config file, as the SDK looks them up."""
    env = os.environ if environ is None else environ
    admin = env.get("SAGEMAKER_ADMIN_CONFIG_OVERRIDE", "/etc/xdg/sagemaker/config.yaml")
    user = env.get(
        "SAGEMAKER_USER_CONFIG_OVERRIDE",
        str(Path(env.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "sagemaker" / "config.yaml"),
    )
    paths = []
    for raw in (admin, user):
        if raw.startswith("s3://"):
            continue  # an S3 config location is read by the SDK itself at compile time
        path = Path(raw).expanduser()
        if path.is_dir():
            path = path / "config.yaml"
        paths.append(path)
    return paths


def load_sdk_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Merged SageMaker config (user over admin). Missing files are fine; bad YAML is an error."""
    merged: dict[str, Any] = {}
    env = os.environ if environ is None else environ
    for path in config_paths(environ):
        if not path.is_file():
            if any(env.get(f"SAGEMAKER_{k}_CONFIG_OVERRIDE") == str(path) for k in ("USER", "ADMIN")):
                from jupyter_smstep.errors import SmstepError

                raise SmstepError(
                    f"the SageMaker config file {path} (named by an environment variable) does not exist",
                    fix="fix SAGEMAKER_USER_CONFIG_OVERRIDE / SAGEMAKER_ADMIN_CONFIG_OVERRIDE, or unset it",
                )
            continue
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            from jupyter_smstep.errors import SmstepError

            raise SmstepError(
                f"{path} is not valid YAML: {exc}", fix="fix or remove the SageMaker config file"
            ) from None
        _deep_merge(merged, data)
    return merged


def _deep_merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def remote_function_config(config: Mapping[str, Any], *path: str) -> Any:
    """The value at ``SageMaker.PythonSDK.Modules.RemoteFunction.<path>`` of a config.yaml, or None."""
    node: Any = config
    for part in REMOTE_FUNCTION + path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
