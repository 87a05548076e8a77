"""What looks like a secret (by its name), and how a value is shown without it: masked in every view.

Pure: no IPython, no sagemaker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: A name that says its value is a secret (environment variables, captured values).
SECRET_NAME = re.compile(r"token|secret|passw(or)?d|api_?key|credential|private_?key|authorization", re.IGNORECASE)


MASK = "••••••"


_ENV_FLAG = re.compile(r"(--env|--environment-variables)(\s+|=)([A-Za-z_][A-Za-z0-9_]*)=(\S+)")


def shown_line(line: str) -> str:
    """A ``%%step`` / ``%pipeline config`` line as views show it: secret-looking ``--env`` values masked."""
    return _ENV_FLAG.sub(
        lambda m: m.group(0) if not SECRET_NAME.search(m.group(3)) else f"{m.group(1)}{m.group(2)}{m.group(3)}={MASK}",
        line,
    )


def shown(key: str, value: Any) -> Any:
    """A setting's value as views show it: environment values whose name says secret are masked."""
    if key == "environment_variables" and isinstance(value, Mapping):
        return {k: (MASK if SECRET_NAME.search(str(k)) and v else v) for k, v in value.items()}
    return value
