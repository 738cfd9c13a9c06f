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
import sys
from pathlib import Path

import aiohttp
import pytest

from realchat.contract.routes import ROUTES
from tests.e2e.conftest import RealChat
from tests.support.client import User, register

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Fuzzed cases per operation, beyond the coverage phase's boundary and negative cases.
MAX_EXAMPLES = 5
RUN_TIMEOUT_S = 240
CONFIG = Path(__file__).with_name("schemathesis.toml")

#: Logging out revokes the token every other operation is called with: run on its own.
REVOKES_THE_TOKEN = "revoke_tokens"


async def schemathesis(base_url: str, user: User, *selection: str) -> tuple[int, str]:
    """One `st run` with all checks; its exit code and output."""
    command = [
        str(Path(sys.executable).parent / "st"),
        f"--config-file={CONFIG}",
        "run",
        f"{base_url}/v1/openapi.json",
        "--checks=all",
        f"--max-examples={MAX_EXAMPLES}",
        "--generation-deterministic",
        "--phases=examples,coverage,fuzzing",
        "--continue-on-failure",
        f"--header=Authorization: Bearer {user.token}",
        "--no-color",
        *selection,
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_every_operation_answers_as_the_document_says(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    user = await register(http, realchat.base_url, "conformance")
    code, output = await schemathesis(
        realchat.base_url, user, f"--exclude-operation-id={REVOKES_THE_TOKEN}"
    )
    assert code == 0, output[-8000:]
    # Every operation but logging out and the document itself (Schemathesis leaves that out).
    assert f"Tested: {len(ROUTES) - 2}" in output, output[-3000:]


async def test_logging_out_answers_as_the_document_says(
    realchat: RealChat, http: aiohttp.ClientSession
) -> None:
    user = await register(http, realchat.base_url, "conformance")
    code, output = await schemathesis(
        realchat.base_url, user, f"--include-operation-id={REVOKES_THE_TOKEN}"
    )
    assert code == 0, output[-8000:]
    assert "Tested: 1" in output, output[-3000:]
