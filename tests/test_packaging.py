"""The wheel ships the prebuilt lab extension, and JupyterLab sees it enabled."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    importlib.util.find_spec("jupyterlab") is None, reason="JupyterLab is installed only in the SDK v3 test environment"
)
def test_labextension_is_installed_and_enabled():
    jupyter = Path(sys.executable).parent / "jupyter"
    out = subprocess.run([str(jupyter), "labextension", "list"], capture_output=True, text=True, check=True)
    text = out.stdout + out.stderr
    line = next((ln for ln in text.splitlines() if "jupyter-smstep" in ln), "")
    assert "enabled" in line and "OK" in line, text


def test_prebuilt_extension_is_in_the_package():
    built = ROOT / "jupyter_smstep" / "labextension"
    assert (built / "package.json").is_file()
    assert any((built / "static").glob("remoteEntry.*.js"))


def test_the_version_is_written_once_and_every_package_agrees():
    import importlib.metadata
    import json

    import jupyter_smstep

    assert importlib.metadata.version("jupyter_smstep") == jupyter_smstep.__version__  # hatch reads __init__
    assert json.loads((ROOT / "labextension" / "package.json").read_text())["version"] == jupyter_smstep.__version__
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()
