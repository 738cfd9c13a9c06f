"""Free loopback ports for stacks a test starts on its own (so they never collide)."""

from __future__ import annotations

import random
import socket


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(offsets: tuple[int, ...] = (0, 1, 10, 11, 20, 21)) -> int:
    """A base port such that base+offset is free for every offset (Kafka uses base+10n, +1)."""
    for _ in range(200):
        base = random.randrange(30000, 45000, 100)
        if all(_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free port block found")
