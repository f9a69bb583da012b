"""Secrets kept in files, created on first use — safely when several processes start at once.

The server's workers, the job worker and the tests may all start on a fresh `var/`: the first to
create a secret must win, and every other process must read exactly what it wrote, never a
half-written file (a failed start) nor a second, different secret (cursors or webhook signatures
that one process makes and another refuses). The content is written to a private temporary file and
then hard-linked into place, which fails if the name already exists: creation is atomic and exclusive.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The file's content, created with `make()` (mode 0600, directory 0700) if it does not exist."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(make())
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileExistsError):  # another process won: read its secret
            os.link(temporary, path)
    finally:
        os.unlink(temporary)
    return path.read_bytes()
