"""The bench payload: a fixed size, and the publish time survives the round trip."""

from __future__ import annotations

import pytest

from realchat.loadtest.fanout.payload import PAYLOAD_BYTES, PayloadError, Stamp, decode, encode


def test_a_payload_is_exactly_the_size_asked_and_decodes_to_its_stamp() -> None:
    text = encode("run1.realchat.direct.50", 1234, 987654321012345)
    assert len(text) == PAYLOAD_BYTES
    assert decode(text) == Stamp("run1.realchat.direct.50", 1234, 987654321012345)


def test_a_head_longer_than_the_payload_is_refused_not_truncated() -> None:
    with pytest.raises(PayloadError):
        encode("t" * 90, 1, 10**18)


def test_a_tag_holding_the_separator_is_refused() -> None:
    with pytest.raises(PayloadError):
        encode("a|b", 1, 1)


@pytest.mark.parametrize("text", ["hello", "a|b|c", "tag|x|1|", "tag|1|now|xx"])
def test_foreign_text_is_not_taken_for_a_payload(text: str) -> None:
    with pytest.raises(PayloadError):
        decode(text)
