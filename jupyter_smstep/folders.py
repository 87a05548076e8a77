"""Where jupyter_smstep keeps what is the user's and outlives a run: the cache folder.

``SMSTEP_CACHE_DIR`` moves it (the tests do); otherwise it is the platform's user cache folder
(platformdirs: ``~/.cache/jupyter_smstep`` on Linux). Prices (``remote.pricing``) and the warm
worker's own logs (``local.worker``) live there.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def cache_dir() -> Path:
    override = os.environ.get("SMSTEP_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("jupyter_smstep"))


def data_dir() -> Path:
    """The user's jupyter_smstep data folder (``SMSTEP_DATA_DIR``, else the platform's): the content-addressed
    staging of step payloads and requirements files (``sdk.content``, ``sdk.requirements``)."""
    override = os.environ.get("SMSTEP_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("jupyter_smstep"))


def private_folder(path: Path) -> Path:
    """``path`` and every missing folder above it, created 0700 whatever the umask (only their owner may list
    or enter them, and nobody else may put anything in them). Raises OSError as mkdir does."""
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            continue
        os.chmod(folder, 0o700)  # the umask may have taken bits away; it never adds group or other bits back
    return path


def write_whole(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` whole or not at all: a reader never sees half a file, two writers never mix
    their bytes, and a full or read-only disk leaves nothing behind (the OSError is raised)."""
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        if isinstance(content, bytes):
            partial.write_bytes(content)
        else:
            partial.write_text(content)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


def untrusted(path: Path, top: Path) -> str | None:
    """Why ``path`` cannot be trusted, as ssh's StrictModes decides (None when it can): it and every folder
    above it up to ``top`` must be owned by this user (or root) and writable by nobody else; ``top`` itself
    may be writable by others only with the sticky bit (as /tmp), which keeps them from renaming what is
    ours. Another user who could write there could plant a pickle that runs as us."""
    if not hasattr(os, "geteuid"):
        return None
    me = os.geteuid()
    path, top = path.absolute(), top.absolute()
    chain = [path, *path.parents]
    if top in chain:
        chain = chain[: chain.index(top) + 1]
    for folder in chain:
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"{folder} cannot be examined ({exc.strerror})"
        if info.st_uid not in (me, 0):
            return f"{folder} belongs to another user (uid {info.st_uid})"
        if info.st_mode & 0o022 and not (folder == top and info.st_mode & 0o1000):
            return f"{folder} may be written by other users (mode {info.st_mode & 0o7777:o})"
        if os.path.islink(folder) and folder != top:
            return f"{folder} is a symbolic link"
    return None
