"""The token signing key pair of a local stack, made on its first start.

Like the stack's other secrets, the key is generated, never shipped: a fresh state directory gets
a fresh key, and a restart keeps the existing one (otherwise every issued token would die).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from realchat.auth.tokens import load_private_key

PRIVATE_KEY_FILE = "auth-signing-key.pem"
PUBLIC_KEY_FILE = "auth-signing-key.pub.pem"


def generate_keypair(directory: Path) -> tuple[Path, Path]:
    """(private, public) PEM paths in `directory`; creates the pair only if the private key is
    missing. The private file is owner-only (0600); the public one may be read by anyone."""
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o700)
    private_path = directory / PRIVATE_KEY_FILE
    public_path = directory / PUBLIC_KEY_FILE
    if not private_path.exists():
        _write_private_key(private_path)
    key = load_private_key(private_path, str(private_path))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not public_path.exists() or public_path.read_bytes() != public_pem:
        _write_atomically(public_path, public_pem, 0o644, replace=True)
    return private_path, public_path


def _write_private_key(path: Path) -> None:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Two stacks starting at once: the first link wins, the other keeps the winner's key.
    with contextlib.suppress(FileExistsError):
        _write_atomically(path, pem, 0o600, replace=False)


def _write_atomically(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Write to a temporary file first, so nobody ever reads a half-written key."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(temporary, mode)  # the umask may have narrowed it
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)  # fails if it exists: never overwrite a key
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
