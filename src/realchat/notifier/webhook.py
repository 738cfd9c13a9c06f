"""The HTTP call to the operator's push gateway: one POST per notification, its idempotency key
in a header as well as in the body, and an HMAC of the body when a secret is configured."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import aiohttp
import structlog

from realchat.notifier import metrics
from realchat.notifier.decision import WebhookVerdict, webhook_verdict

log = structlog.get_logger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
SIGNATURE_HEADER = "X-RealChat-Signature"


def signature(secret: bytes, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`: what a push gateway recomputes to know the call
    came from RealChat."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class WebhookResult:
    verdict: WebhookVerdict
    #: What went wrong, for the row and the log; empty when accepted.
    error: str = ""


class Webhook:
    def __init__(
        self, http: aiohttp.ClientSession, url: str, secret: bytes | None, timeout_s: float
    ) -> None:
        self._http = http
        self._url = url
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def post(self, key: str, body: bytes) -> WebhookResult:
        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        started = time.perf_counter()
        try:
            async with self._http.post(
                self._url, data=body, headers=headers, timeout=self._timeout
            ) as reply:
                await reply.read()
                status: int | None = reply.status
                error = "" if reply.ok else f"HTTP {reply.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, error = None, repr(exc)
        metrics.WEBHOOK_LATENCY.observe(time.perf_counter() - started)
        verdict = webhook_verdict(status)
        if verdict is not WebhookVerdict.ACCEPTED:
            log.warning("push webhook failed", key=key, verdict=verdict.value, error=error)
        return WebhookResult(verdict, error)
