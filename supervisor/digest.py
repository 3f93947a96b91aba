"""SHA-256 from the interpreter's built-in module where it has one, not `hashlib`.

`hashlib` loads the OpenSSL bindings (`_hashlib`): ~3 ms for every client command that
names a stack file and ~1 MiB resident in the running supervisor, for digests of a few
hundred bytes that the built-in module computes as well.
"""

from __future__ import annotations

try:
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - Python 3.12 and later name it _sha2
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]
    except ImportError:  # an interpreter built without it
        from hashlib import sha256


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 digest of `data`."""
    digest: str = sha256(data).hexdigest()
    return digest
