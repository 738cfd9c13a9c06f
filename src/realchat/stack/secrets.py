"""Credentials the local stack generates on first start and keeps in its state directory.

They never live in code or in the repository: a fresh state dir gets fresh secrets.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def secret_path(state_dir: Path, name: str) -> Path:
    """Where the secret `name` of a stack is kept."""
    return state_dir / "secrets" / name


def local_secret(state_dir: Path, name: str) -> str:
    """Return the secret `name`, creating it (owner-only file) the first time."""
    path = secret_path(state_dir, name)
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value
