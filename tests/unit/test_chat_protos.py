"""The chat service's own datetime -> Timestamp conversion agrees with protobuf's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from realchat.chat.protos import timestamp

CASES = [
    datetime(2026, 12, 6, 4, 30, 1, 123456, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(1901, 3, 4, 5, 6, 7, 1, tzinfo=UTC),
    datetime(2400, 2, 29, 23, 0, 0, 500000, tzinfo=timezone(timedelta(hours=-7))),
]


@pytest.mark.parametrize("value", CASES, ids=str)
def test_timestamp_matches_from_datetime(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value)
    assert timestamp(value) == expected
    assert timestamp(value).ToDatetime(tzinfo=UTC) == value
