from realchat.gateway.expiring import ExpiringMap


def test_an_entry_is_kept_while_recent_and_forgotten_after_keep_s() -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(keep_s=10.0)
    entries.put("a", 1, now=0.0)
    assert entries.get("a", now=5.0) == (1, 0.0)
    entries.put("a", 2, now=5.0)  # a write renews the entry
    assert entries.get("a", now=14.0) == (2, 5.0)
    assert entries.get("a", now=16.0) is None
    assert len(entries) == 0


def test_a_sweep_keeps_the_recent_entries() -> None:
    entries: ExpiringMap[str, int] = ExpiringMap(keep_s=10.0)
    entries.put("old", 1, now=0.0)
    entries.put("new", 2, now=8.0)
    assert entries.get("missing", now=12.0) is None
    assert len(entries) == 1
    assert entries.get("new", now=12.0) == (2, 8.0)
