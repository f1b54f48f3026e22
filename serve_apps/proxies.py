"""Who sent a request: the peer that connected, and behind trusted proxies the client they name.

``X-Forwarded-For`` is a list any client can write. It is read only when the peer (the ASGI
``client``) is a trusted proxy (``serve.trusted_proxies``), and then as nginx's
``real_ip_recursive`` reads it: from the right, skipping trusted proxies, the first address that
is not one is the client. Only the last ``MAX_HOPS`` entries are looked at, and an entry that is
not an IP address ends the walk at the address after it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK = ("127.0.0.0/8", "::1")  # where Redblue's own HAProxy and Serve's proxy connect from
MAX_HOPS = 16
MAX_ADDRESS_CHARS = 64  # longer than any IP address in text (an IPv6 one with a zone is ~60)


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """The networks ``values`` name (addresses or CIDRs; host bits allowed, as in 10.1.2.3/8).

    Raises ValueError naming the first value that is neither.
    """
    parsed = []
    for value in values:
        try:
            parsed.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8, ::1)"
            ) from None
    return tuple(parsed)


@functools.lru_cache(maxsize=1024)  # a replica sees the same few peers and proxies again and again
def _address(text: str) -> Address | None:
    if not text or len(text) > MAX_ADDRESS_CHARS:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class Proxies:
    """The trusted proxies, and the client a request comes from."""

    def __init__(self, trusted: Sequence[str] = LOOPBACK) -> None:
        self.networks = networks(trusted)

    def trusts(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded: Sequence[bytes]) -> str:
        """The client's address: ``peer``, or, when ``peer`` is a trusted proxy, the right-most
        address of the ``X-Forwarded-For`` values (in header order) that is not one."""
        address = _address(peer)
        if not forwarded or address is None or not self.trusts(address):
            return peer
        client = peer
        hops = b",".join(forwarded).decode("latin-1").rsplit(",", MAX_HOPS)
        for hop in reversed(hops[-MAX_HOPS:]):
            address = _address(hop.strip())
            if address is None:
                break
            client = str(address)
            if not self.trusts(address):
                break
        return client
