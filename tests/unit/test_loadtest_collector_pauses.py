"""The generator reports its own collector pauses, so a latency spike that is its own shows."""

from __future__ import annotations

import gc

from realchat.loadtest.collector_pauses import CollectorPauses


def test_the_longest_collection_of_an_interval_is_reported_once() -> None:
    pauses = CollectorPauses()
    pauses.install()
    try:
        garbage = [[n] for n in range(200_000)]  # something for a full collection to walk
        gc.collect()
        longest = pauses.take()
        assert longest > 0
        assert pauses.take() == 0  # the next interval starts from nothing
        del garbage
    finally:
        pauses.uninstall()
    gc.collect()
    assert pauses.take() == 0  # uninstalled: no longer told
