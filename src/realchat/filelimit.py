"""The process's limit on open files, raised as far as it goes: every WebSocket is a descriptor,
so a gateway (or a load client) holds at most this many connections."""

from __future__ import annotations

import contextlib
import resource


def raise_file_limit(wanted: int = 65536) -> int:
    """Soft limit up to the hard one (and the hard one up to `wanted`, where allowed: root with
    CAP_SYS_RESOURCE); the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
    target = hard if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
