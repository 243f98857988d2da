"""Where requests may go: the internal-address rules.

An internal address (loopback, private, link-local, cloud metadata, ...; see `is_internal`) is
reached only where the config's own URLs live (`AddressGuard`). The transports
(`listener.fetch.transport`) apply the guard to the resolved address they then connect to, and
the Fetcher checks IP literals before a request is made.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

__all__ = ["AddressGuard", "BlockedAddress", "IPAddress", "is_internal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address a gateway connects to (NAT64).
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


@functools.lru_cache(maxsize=4096)
def is_internal(ip: IPAddress) -> bool:
    """Whether `ip` is not on the public internet: loopback, private (10/8, 172.16/12,
    192.168/16, fc00::/7), link-local and cloud metadata (169.254/16, fe80::/10), shared
    (100.64/10), unspecified (0.0.0.0, ::), reserved, multicast, or an IPv6 address wrapping
    one of those (::ffff:127.0.0.1, 6to4, NAT64)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return is_internal(embedded)
    return not ip.is_global or ip.is_multicast


@functools.lru_cache(maxsize=4096)  # every request asks, mostly about the same few hosts
def ip_of(text: str) -> IPAddress | None:
    """The IP address `text` is written as (no brackets, an IPv6 zone dropped), or None."""
    try:
        return ipaddress.ip_address(text.strip("[]").partition("%")[0])
    except ValueError:
        return None


class BlockedAddress(OSError):
    """A request would have reached an internal address the config does not use."""

    def __init__(self, host: str, addresses: Sequence[str]) -> None:
        shown = ", ".join(addresses[:3])
        where = host if ip_of(host) is not None else f"{host} ({shown})"
        super().__init__(
            f"not fetched: {where} is an internal address that no configured source uses "
            "(a link or redirect from a feed may not reach it)"
        )


class AddressGuard:
    """Which internal addresses (see `is_internal`) requests may reach: those of the config.

    Public addresses are always allowed. An internal one only where the config's own URLs live:
    a host named in the config may be reached at whatever it resolves to (and those addresses
    then count as the config's for every URL), an IP address written in the config may be
    reached by any URL. Everything else that leads to an internal address (a feed's comment
    link, a thread URL from an API, a redirect to another host) is refused before connecting, so
    no byte of what answers there is read, let alone stored.

    The check is made on the resolved address the connection then goes to (the transports'
    resolver and network backend, below), not on the name, so a name that resolves to 10.0.0.1,
    or that resolves differently the second time (DNS rebinding), gets nowhere.
    """

    def __init__(self, urls: Iterable[str] = ()) -> None:
        self._hosts: set[str] = set()
        self._addresses: set[IPAddress] = set()
        for url in urls:
            self.allow_url(url)

    def allow_url(self, url: str) -> None:
        """Let requests reach the host of `url`, a URL from the config, wherever it lives."""
        try:
            host = urlsplit(url).hostname
        except ValueError:
            return
        if not host:
            return
        ip = ip_of(host)
        if ip is not None:
            self._addresses.add(ip)
        else:
            self._hosts.add(host.lower().rstrip("."))

    def permits(self, host: str, address: str) -> bool:
        """Whether a request for `host` may connect to `address` (an IP address)."""
        ip = ip_of(address)
        if ip is None:
            return False
        if not is_internal(ip) or ip in self._addresses:
            return True
        if host.lower().rstrip(".") in self._hosts:
            self._addresses.add(ip)  # the config's host lives here: so may its links
            return True
        return False

    def allowed(self, host: str, addresses: Sequence[str]) -> list[str]:
        """The `addresses` a request for `host` may connect to; BlockedAddress when none."""
        ok = [a for a in addresses if self.permits(host, a)]
        if addresses and not ok:
            log.debug("refused to connect to %s: internal address %s", host, addresses[0])
            raise BlockedAddress(host, addresses)
        return ok

    def check_literal(self, host: str) -> None:
        """For a URL whose host is an IP address: raise BlockedAddress unless it may be reached
        (a name is checked once resolved, by the transport)."""
        ip = ip_of(host)
        if ip is not None:
            self.allowed(host, [str(ip)])
