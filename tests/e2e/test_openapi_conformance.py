"""The OpenAPI document describes the API that is served: Schemathesis, with all its checks,
generates requests from the document the gateway serves (`/v1/openapi.json`) and checks every
answer against it (status declared, body and headers as declared, requests valid by the
document accepted, invalid ones refused, 405 with `Allow`, no 5xx).

The run is bounded (the coverage phase's cases, which the document determines, and a few fuzzed
examples per operation: about 750 requests) and derandomized (deterministic generation): the
same document and server give the same cases every time. `schemathesis.toml` beside this file
holds the one setting that differs from Schemathesis' defaults, and why.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from realchat.contract.routes import ROUTES
from tests.e2e.conftest import RealChat
from tests.support.client import register

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Fuzzed cases per operation, beyond the coverage phase's boundary and negative cases.
MAX_EXAMPLES = 5
RUN_TIMEOUT_S = 240
CONFIG = Path(__file__).with_name("schemathesis.toml")

#: Logging out revokes the token every other operation is called with: run on its own.
REVOKES_THE_TOKEN = "revoke_tokens"


async def conforms(
    realchat: RealChat, http: aiohttp.ClientSession, workdir: Path, selection: str
) -> int:
    """Run `st run` with all checks on the operations `selection` picks, as a new user; assert
    it found nothing; the number of operations it tested."""
    user = await register(http, realchat.base_url, "conformance")
    command = [
        str(Path(sys.executable).parent / "st"),
        f"--config-file={CONFIG}",
        "run",
        f"{realchat.base_url}/v1/openapi.json",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES}",
        "--generation-deterministic",
        "--phases=examples,coverage,fuzzing",
        "--continue-on-failure",
        f"--header=Authorization: Bearer {user.token}",
        "--no-color",
        selection,
    ]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    raw, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    output = raw.decode(errors="replace")
    assert process.returncode == 0, output[-8000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested is not None, output[-3000:]
    return int(tested.group(1))


async def test_every_operation_answers_as_the_document_says(
    realchat: RealChat, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    selection = f"--exclude-operation-id={REVOKES_THE_TOKEN}"
    tested = await conforms(realchat, http, tmp_path, selection)
    # Every operation but logging out and the document itself (Schemathesis leaves that out).
    assert tested == len(ROUTES) - 2


async def test_logging_out_answers_as_the_document_says(
    realchat: RealChat, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    selection = f"--include-operation-id={REVOKES_THE_TOKEN}"
    assert await conforms(realchat, http, tmp_path, selection) == 1
