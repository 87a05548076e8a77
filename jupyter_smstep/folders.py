"""Where jupyter_smstep keeps what is the user's and outlives a run: the cache folder.

``SMSTEP_CACHE_DIR`` moves it (the tests do); otherwise it is the platform's user cache folder
(platformdirs: ``~/.cache/jupyter_smstep`` on Linux). Prices (``remote.pricing``) and the warm
worker's own logs (``local.worker``) live there.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    override = os.environ.get("SMSTEP_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("jupyter_smstep"))
