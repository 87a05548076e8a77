"""Compare a step's declared environment with the one the local runner runs it in.

On SageMaker the container's bootstrap installs the step's ``dependencies``
file and runs its ``pre_execution_commands`` before calling the function. The
local runner runs every step in the current Python environment and never
installs anything, so it checks instead: each requirement against the installed
distributions (with ``packaging``), each ``pip install`` in the pre-execution
commands likewise, and it names the commands it did not run. The findings are
warnings: the step still runs, and fails on its own if something is missing.
"""

from __future__ import annotations

import importlib.metadata
import shlex
from pathlib import Path

_PIP_OPTIONS_WITH_VALUE = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-c",
    "--constraint",
    "--trusted-host",
    "--target",
    "-t",
    "--prefix",
    "--root",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--progress-bar",
    "--cache-dir",
    "--src",
    "--upgrade-strategy",
}


def check_requirement(line: str) -> str | None:
    """A warning if the requirement is not met by the installed distributions, else None."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(line)
    except InvalidRequirement:
        return f"could not check '{line}' (not a plain requirement)"
    if req.marker is not None and not req.marker.evaluate():
        return None
    if req.url:
        return f"could not check '{line}' (installed from a URL on SageMaker)"
    try:
        version = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        return f"'{req.name}' is required ('{line}') but is not installed here"
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        return f"'{line}' is required but {req.name} {version} is installed here"
    return None


def check_requirements_text(text: str) -> list[str]:
    """Check a requirements.txt body; options and nested files are reported as unchecked."""
    warnings = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-"):
            warnings.append(f"could not check '{line}' (pip option or nested requirements file)")
            continue
        found = check_requirement(line)
        if found:
            warnings.append(found)
    return warnings


def check_conda_environment(text: str) -> list[str]:
    """Check a conda environment.yml: pip entries fully, conda entries by name only."""
    try:
        import yaml

        env = yaml.safe_load(text) or {}
    except Exception as exc:  # noqa: BLE001
        return [f"could not read the conda environment file: {exc}"]
    warnings = []
    for dep in env.get("dependencies", []) or []:
        if isinstance(dep, dict):
            for pip_line in dep.get("pip", []) or []:
                found = check_requirement(str(pip_line))
                if found:
                    warnings.append(found)
            continue
        name = str(dep).split("=")[0].split("<")[0].split(">")[0].strip()
        if name in ("python", "pip", ""):
            continue
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            warnings.append(f"conda package '{dep}' is required but '{name}' is not installed here")
    return warnings


def check_pre_execution_script(text: str) -> list[str]:
    """Check the ``pip install``s of a pre-execution script; name the commands not run."""
    warnings = []
    not_run = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            not_run.append(line)
            continue
        packages = _pip_install_arguments(words)
        if packages is None:
            not_run.append(line)
            continue
        for item in packages:
            if item.startswith("-r"):
                warnings.append(f"could not check '{line}' (requirements file)")
                continue
            found = check_requirement(item)
            if found:
                warnings.append(found + f" (from pre-execution command '{line}')")
    if not_run:
        warnings.append("pre-execution commands not run locally: " + "; ".join(f"'{c}'" for c in not_run))
    return warnings


def _pip_install_arguments(words: list[str]) -> list[str] | None:
    """The requirement arguments of a pip/conda install command, or None if it is not one."""
    if not words:
        return None
    i = 0
    if words[0] in ("uv",) and words[1:2] == ["pip"]:
        i = 2
    elif words[0].startswith("python") and words[1:3] == ["-m", "pip"]:
        i = 3
    elif words[0] in ("pip", "pip3"):
        i = 1
    elif words[0] in ("conda", "mamba", "micromamba"):
        i = 1
    else:
        return None
    if words[i : i + 1] != ["install"]:
        return None
    conda = words[0] in ("conda", "mamba", "micromamba")
    out: list[str] = []
    rest = words[i + 1 :]
    j = 0
    while j < len(rest):
        word = rest[j]
        if word in ("-r", "--requirement"):
            out.append("-r " + (rest[j + 1] if j + 1 < len(rest) else ""))
            j += 2
            continue
        if word in _PIP_OPTIONS_WITH_VALUE or (conda and word in ("-c", "--channel", "-n", "--name", "-p")):
            j += 2
            continue
        if word.startswith("-"):
            j += 1
            continue
        out.append(_conda_to_pip(word) if conda else word)
        j += 1
    return out


def _conda_to_pip(spec: str) -> str:
    name, sep, version = spec.partition("=")
    if not sep:
        return spec
    return f"{name}=={version.lstrip('=')}"


def check_dependencies_dir(folder: Path, dependency_file: str | None) -> list[str]:
    """Check what the SDK uploaded to the step's ``pre_exec_script_and_dependencies`` channel."""
    warnings: list[str] = []
    candidates = [folder / dependency_file] if dependency_file else sorted(folder.glob("*"))
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if path.name == "pre_exec.sh":
            continue
        if path.suffix == ".txt":
            warnings += check_requirements_text(text)
        elif path.suffix in (".yml", ".yaml"):
            warnings += check_conda_environment(text)
    script = folder / "pre_exec.sh"
    if script.is_file():
        warnings += check_pre_execution_script(script.read_text(errors="replace"))
    return warnings
