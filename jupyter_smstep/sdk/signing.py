"""A stable signing key per user and pipeline: derived with HMAC from a random secret kept in the user's data
folder (``signing.key``, mode 0600). v2 signs with an HMAC key, v3 with an ECDSA P-256 key that signs
deterministically (RFC 6979), so the same bytes get the same signature.
"""

from __future__ import annotations


import functools
import os
import secrets
from pathlib import Path
from typing import Any


SECRET_FILE = "signing.key"


# ---------------------------------------------------------------------------- signing
@functools.cache
def user_secret(folder: Path) -> bytes:
    path = folder / SECRET_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    except OSError:
        return secrets.token_bytes(32)  # unreadable: this process signs with its own key (uploads again)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    except OSError:
        return secrets.token_bytes(32)
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


class DeterministicSigner:
    """An ECDSA P-256 private key that signs deterministically (RFC 6979), for v3's payload signatures."""

    def __init__(self, material: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self._ec = ec
        self._key = ec.derive_private_key(int.from_bytes(material, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1())

    def sign(self, data: bytes, algorithm: Any) -> bytes:
        return self._key.sign(data, self._ec.ECDSA(algorithm.algorithm, deterministic_signing=True))

    def public_key(self) -> Any:
        return self._key.public_key()
