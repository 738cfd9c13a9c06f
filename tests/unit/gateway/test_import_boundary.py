"""The gateway talks to the chat service over gRPC only: its process loads none of the chat
server's code (the servicer, its rules and SQL) nor the PostgreSQL driver."""

from __future__ import annotations

import subprocess
import sys

#: Imported by the gateway, they would mean a dependency on the server's side of the boundary.
SERVER_ONLY = ("asyncpg", "realchat.chat.api", "realchat.chat.service", "realchat.chat.store")


def test_the_gateways_import_closure_stops_at_the_grpc_boundary() -> None:
    probe = (
        "import sys, realchat.gateway.server; "
        f"found = sorted(m for m in sys.modules if m.split('.')[0] == 'asyncpg' "
        f"or m in {SERVER_ONLY!r}); "
        "assert not found, found"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
