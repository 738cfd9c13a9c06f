"""Credentials the local stack generates on first start and keeps in its state directory.

They never live in code or in the repository: a fresh state dir gets fresh secrets.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from realchat.auth.keys import generate_keypair


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


class StackSecrets:
    """The secrets of the stack in `state_dir`, each created the first time it is asked for."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def signing_keys(self) -> tuple[Path, Path]:
        """The auth service's token key pair (private, public)."""
        return generate_keypair(self.state_dir / "secrets")

    @property
    def internal_token(self) -> str:
        """The credential trusted RealChat processes present to the chat service."""
        return local_secret(self.state_dir, "chat-internal-token")
