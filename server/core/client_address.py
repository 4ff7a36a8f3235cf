"""Which address a request comes from, and the network it belongs to.

`X-Forwarded-For` is believed only when the socket peer is a configured trusted proxy
(BOXOFFICE_TRUSTED_PROXIES); anyone else could write any address there."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"  # a socket without a peer address (unix sockets, tests' fake transports)
IPV4_PREFIX, IPV6_PREFIX = 24, 64  # one home network / one customer's allocation


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs; ValueError naming the bad entry."""
    out = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {entry!r}") from None
    return tuple(out)


@lru_cache(maxsize=65536)  # a crowd's addresses come back request after request
def _address(text: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: Address, trusted: Sequence[Network]) -> bool:
    return any(addr.version == net.version and addr in net for net in trusted)


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]
) -> str:
    """The client's address. From a trusted peer, X-Forwarded-For is read from the right (each
    proxy appends the address it saw): the first hop that is not a trusted proxy is the client.
    A malformed hop stops the walk at the last trusted one, which is then the answer."""
    direct, proxy = _peer(peer, tuple(trusted))
    if proxy is None:
        return direct
    addr = proxy
    hops = [h for value in forwarded_for for h in value.split(",") if h.strip()]
    for hop in reversed(hops):
        found = _address(hop)
        if found is None:
            break
        addr = found
        if not _trusted(addr, trusted):
            break
    return str(addr)


@lru_cache(maxsize=65536)
def _peer(peer: str | None, trusted: tuple[Network, ...]) -> tuple[str, Address | None]:
    """The socket peer as the client's address, and the peer again if it is a trusted proxy
    (whose X-Forwarded-For is then read), else None."""
    addr = _address(peer) if peer else None
    if addr is None:
        return UNKNOWN, None
    return str(addr), addr if _trusted(addr, trusted) else None


def source_network(address: str) -> str:
    """The /24 (IPv4) or /64 (IPv6) an address belongs to, as a CIDR string."""
    addr = _address(address)
    if addr is None:
        return address
    prefix = IPV4_PREFIX if addr.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def is_loopback(address: str) -> bool:
    """Loopback clients are a local proxy or a load generator, never a fan: like NGINX's
    per-address zones, per-address limits and pressure leave them out."""
    addr = _address(address)
    return addr is not None and addr.is_loopback


CLIENT_ADDRESS = web.RequestKey("client_address", str)


def of_request(request: web.Request, trusted: Sequence[Network]) -> str:
    """client_address() of a request, worked out once per request."""
    known = request.get(CLIENT_ADDRESS)
    if known is None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        host = peer[0] if isinstance(peer, tuple) and peer else None
        known = client_address(host, request.headers.getall("X-Forwarded-For", []), trusted)
        request[CLIENT_ADDRESS] = known
    return known


Networks = tuple[Network, ...]
TRUSTED_PROXIES = web.AppKey[Networks]("trusted_proxies")  # parsed BOXOFFICE_TRUSTED_PROXIES


def of(request: web.Request) -> str:
    """The client address of a request, by the app's trusted proxies (the one rule for it)."""
    trusted: Networks = request.app.get(TRUSTED_PROXIES, ())
    return of_request(request, trusted)
