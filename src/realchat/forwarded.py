"""Client addresses behind proxies (`X-Forwarded-For`), for limits that count per address.

Every hop appends the address of the peer it saw; only hops made by trusted proxies (the
balancer, the gateways) can be believed, so the client's address is the right-most one that a
trusted hop reported. A client cannot choose its address by sending the header itself: the edge
replaces it (HAProxy's `set-header`), and a gateway that receives it from an untrusted peer drops
what that peer claimed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses and CIDR networks (`10.0.0.0/8`) of trusted proxies; a typo fails at start-up."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def is_trusted(address: str, trusted: Collection[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(
    peer: str | None, forwarded_for: str, trusted: Collection[Network]
) -> str | None:
    """The address a request came from: walk the hops from the right while the hop that
    reported the next one is a trusted proxy."""
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    address = peer
    while address is not None and is_trusted(address, trusted) and hops:
        try:
            address = str(ipaddress.ip_address(hops.pop()))
        except ValueError:
            break
    return address


def forwarded_for_upstream(
    peer: str | None, forwarded_for: str | None, trusted: Collection[Network]
) -> str:
    """The `X-Forwarded-For` to send on: the hops a trusted peer reported plus the peer, or
    only the peer when it is not trusted (what it claims about earlier hops is worthless)."""
    address = peer or ""
    if forwarded_for and is_trusted(address, trusted):
        return f"{forwarded_for}, {address}"
    return address
