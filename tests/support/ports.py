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


#: Blocks of 100 ports below Linux's ephemeral range (32768-60999 by default): a port chosen
#: there can be taken by any outgoing connection between the check and the bind (a Kafka node
#: failed to start with "Address already in use" that way). 25000-29999 is left out: the shared
#: test stack's fixed ports live there.
_BLOCKS = [*range(20000, 25000, 100), *range(30000, 32700, 100)]


def free_port_block(offsets: tuple[int, ...] = (0, 1, 10, 11, 20, 21)) -> int:
    """A base port such that base+offset is free for every offset (Kafka uses base+10n, +1)."""
    assert max(offsets) < 100, "a block is 100 ports"
    for _ in range(200):
        base = random.choice(_BLOCKS)
        if all(_free(base + o) for o in offsets):
            return base
    raise RuntimeError("no free port block found")
