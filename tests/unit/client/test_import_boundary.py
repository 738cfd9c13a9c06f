"""The SDK is installed beside applications, not services: importing it loads none of the
services' code or drivers (the retry schedule it shares with them, `realchat.backoff`, is
standard library only)."""

from __future__ import annotations

import subprocess
import sys


def test_the_sdk_loads_no_server_code_or_driver() -> None:
    probe = (
        "import sys, realchat.client; "
        "drivers = {'asyncpg', 'confluent_kafka', 'grpc', 'redis'} "
        "& {m.split('.')[0] for m in sys.modules}; "
        "ours = {m for m in sys.modules if m.startswith('realchat.')}; "
        "foreign = sorted(m for m in ours if m.split('.')[1] not in "
        "('client', 'contract', 'backoff')); "
        "assert not drivers and not foreign, (drivers, foreign)"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
