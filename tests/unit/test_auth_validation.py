"""The contract's account rules (username 3-32 of [a-z0-9_.-], password 8-128 characters) at
their boundaries, and which client address per-address login limits count."""

from __future__ import annotations

import pytest

from realchat.auth.errors import InvalidInput
from realchat.auth.service import check_password, normalize_username
from realchat.forwarded import client_address, forwarded_for_upstream, trusted_networks


@pytest.mark.parametrize(
    "name",
    ["abc", "a" * 32, "a.b", "a-b", "a_b", "0123456789", "...", "x.y-z_0"],
)
def test_valid_usernames_are_kept(name: str) -> None:
    assert normalize_username(name) == name


@pytest.mark.parametrize(("given", "stored"), [("Alice", "alice"), ("BOB_1", "bob_1")])
def test_ascii_upper_case_is_folded_to_the_stored_lower_case(given: str, stored: str) -> None:
    assert normalize_username(given) == stored


@pytest.mark.parametrize(
    "name",
    [
        "",
        "ab",  # 2: one too short
        "a" * 33,  # one too long
        "al ice",
        " alice",
        "alice\n",
        "al!ce",
        "al@ce",
        "al/ce",
        "émile",
        "\u212aelvin",  # KELVIN SIGN lower-cases to an ASCII "k": still refused
        "\uff41\uff4c\uff49\uff43\uff45",  # full-width "alice"
        "al\x00ice",
    ],
)
def test_invalid_usernames_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as error:
        normalize_username(name)
    assert error.value.code == "invalid_username"
    assert error.value.status == 422


@pytest.mark.parametrize(
    "password", ["x" * 8, "x" * 128, "pässwörd", "correct horse battery staple", " " * 8]
)
def test_valid_passwords_pass(password: str) -> None:
    check_password(password)


@pytest.mark.parametrize("password", ["", "x" * 7, "x" * 129, "\ud800" * 8])
def test_invalid_passwords_are_refused(password: str) -> None:
    with pytest.raises(InvalidInput) as error:
        check_password(password)
    assert error.value.code == "invalid_password"


def test_password_length_counts_characters_not_bytes() -> None:
    check_password("ü" * 128)  # 256 bytes of UTF-8
    with pytest.raises(InvalidInput):
        check_password("ü" * 7)


TRUSTED = trusted_networks(["127.0.0.1", "10.0.0.2", "172.18.0.0/16"])


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.9", "", "203.0.113.9"),
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("127.0.0.1", "", "127.0.0.1"),
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),
        ("127.0.0.1", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # left part is the client's
        ("127.0.0.1", "198.51.100.1, 10.0.0.2", "198.51.100.1"),  # two trusted hops
        ("127.0.0.1", "not-an-address", "127.0.0.1"),
        ("127.0.0.1", "2001:db8::1", "2001:db8::1"),
        (None, "198.51.100.1", None),
        ("172.18.0.5", "198.51.100.1", "198.51.100.1"),  # a trusted network (compose's)
        ("172.19.0.5", "198.51.100.1", "172.19.0.5"),  # outside it
        ("127.0.0.1", "198.51.100.1, 172.18.3.4, 10.0.0.2", "198.51.100.1"),
    ],
)
def test_client_address_believes_forwarded_for_only_from_trusted_proxies(
    peer: str | None, forwarded_for: str, expected: str | None
) -> None:
    assert client_address(peer, forwarded_for, TRUSTED) == expected


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        ("203.0.113.9", "6.6.6.6", "203.0.113.9"),  # an untrusted peer's claim is dropped
        ("127.0.0.1", "198.51.100.1", "198.51.100.1, 127.0.0.1"),  # the balancer's is kept
        ("127.0.0.1", None, "127.0.0.1"),
    ],
)
def test_a_gateway_passes_on_only_what_trusted_peers_reported(
    peer: str, forwarded_for: str | None, expected: str
) -> None:
    assert forwarded_for_upstream(peer, forwarded_for, TRUSTED) == expected
