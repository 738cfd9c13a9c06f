"""The load test's labels for WebSocket closes: the contract's names, so its report says what the
server meant (a slow consumer cut off, a drain) without a table of its own to drift."""

from __future__ import annotations

from realchat.contract.close_codes import CloseCode
from realchat.loadtest.worker_client import close_reason


def test_a_close_is_labelled_by_the_contracts_name_for_its_code() -> None:
    assert close_reason(CloseCode.SLOW_CONSUMER) == "slow_consumer"
    assert close_reason(CloseCode.GOING_AWAY) == "going_away"
    assert close_reason(CloseCode.UNAUTHORIZED) == "unauthorized"
    assert close_reason(1000) == "server_closed"


def test_a_code_outside_the_contract_and_no_code_at_all_say_so() -> None:
    assert close_reason(4999) == "close_4999"
    assert close_reason(None) == "abnormal"
