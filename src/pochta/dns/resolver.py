"""The one resolver interface every Pochta package uses, and helpers built on it.

Design note
-----------
DESIGN.md: "only dns resolves names". Code that needs DNS takes a
:class:`Resolver` argument and never calls ``socket.getaddrinfo``, dnspython
or the system resolver itself; so SPF, DKIM, DMARC, MX routing and client
discovery are functions of (resolver, inputs), and a unit test swaps in
:class:`~pochta.dns.mock.DictResolver`. Two implementations exist:
:class:`~pochta.dns.client.StubResolver` (dnspython, asks the configured
recursive name servers) and ``DictResolver`` (answers from a dict, injects
failures).

Contract of every method: the name is a host or domain name (A-labels or
U-labels, with or without the final dot); the result is an
:class:`~pochta.dns.records.Answer` -- empty with ``nxdomain`` for a name that
does not exist, empty without it for NODATA -- or an exception:
:class:`~pochta.dns.records.TemporaryDNSError` (timeout, SERVFAIL) or
:class:`~pochta.dns.records.PermanentDNSError`. A CNAME at the queried name
is followed (RFC 1034 §3.6.2); names inside records (MX exchanges, SRV
targets) are returned as published, not resolved further.
"""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

from pochta.dns.records import (
    MX,
    SRV,
    TLSA,
    TXT,
    Answer,
    DNSError,
    IPAddress,
)

__all__ = ["Resolver", "host_addresses", "tlsa_name"]


class Resolver(Protocol):
    """Asynchronous DNS lookups returning typed records."""

    async def mx(self, domain: str) -> Answer[MX]:
        """MX records of ``domain`` (RFC 1035 §3.3.9; RFC 5321 §5.1 uses them)."""
        ...

    async def a(self, name: str) -> Answer[IPv4Address]:
        """IPv4 addresses of ``name`` (RFC 1035 §3.4.1)."""
        ...

    async def aaaa(self, name: str) -> Answer[IPv6Address]:
        """IPv6 addresses of ``name`` (RFC 3596 §2)."""
        ...

    async def txt(self, name: str) -> Answer[TXT]:
        """TXT records of ``name`` (RFC 1035 §3.3.14): SPF, DKIM keys, DMARC, MTA-STS."""
        ...

    async def srv(self, name: str) -> Answer[SRV]:
        """SRV records of ``name``, e.g. ``_imaps._tcp.example.org`` (RFC 2782, RFC 6186 §3)."""
        ...

    async def tlsa(self, name: str) -> Answer[TLSA]:
        """TLSA records of ``name``, e.g. ``_25._tcp.mx.example.org`` (RFC 6698 §3)."""
        ...

    async def ptr(self, address: str | IPAddress) -> Answer[str]:
        """Names of an IP address via in-addr.arpa / ip6.arpa (RFC 1035 §3.5, RFC 3596 §2.5)."""
        ...


def tlsa_name(host: str, port: int, protocol: str = "tcp") -> str:
    """The TLSA owner name of a service: ``_25._tcp.mx.example.org`` (RFC 6698 §3)."""
    return f"_{port}._{protocol}.{host.rstrip('.')}"


async def host_addresses(resolver: Resolver, name: str) -> Answer[IPAddress]:
    """A and AAAA of ``name`` asked together; IPv6 addresses first (RFC 6724 order).

    The answer is ``nxdomain`` only if both lookups said so. If one family
    fails and the other has addresses, the addresses win (a broken AAAA
    server must not stop IPv4 delivery); if neither has any, the first
    error is raised.
    """
    results = await asyncio.gather(resolver.aaaa(name), resolver.a(name), return_exceptions=True)
    records: list[IPAddress] = []
    errors: list[DNSError] = []
    nxdomain = True
    authentic = True
    for result in results:
        if isinstance(result, DNSError):
            errors.append(result)
            nxdomain = False
            authentic = False
            continue
        if isinstance(result, BaseException):
            raise result
        records.extend(result.records)
        nxdomain = nxdomain and result.nxdomain
        authentic = authentic and result.authentic
    if not records and errors:
        raise errors[0]
    return Answer(name, "A/AAAA", tuple(records), nxdomain=nxdomain, authentic=authentic)
