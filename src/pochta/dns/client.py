"""The real resolver: dnspython's asynchronous stub resolver behind :class:`Resolver`.

Design note
-----------
Pochta is a stub resolver (RFC 1034 §5.3.1): it sends recursive queries to
the name servers of ``[dns].nameservers`` (``"127.0.0.1:5353"``, any port) or,
when that list is empty, to those of the system's ``/etc/resolv.conf``. Each
query asks for DNSSEC status (the AD bit, RFC 6840 §5.7) with EDNS0 and a
1232-octet UDP payload (the DNS flag day 2020 size), falls back to TCP when
an answer is truncated (RFC 7766 §5), and is bounded: ``timeout`` seconds per
server try, ``lifetime`` seconds for the whole lookup. An LRU cache honours
the records' TTLs (RFC 2308 §5 for negative answers). The AD bit is only as
trustworthy as the path to the resolver: point ``[dns].nameservers`` at a
validating resolver on loopback before relying on DANE.

Mapping of outcomes (see ``pochta.dns.records``):

* NOERROR with records -> ``Answer`` with records;
* NOERROR without records (NODATA) -> empty ``Answer``;
* NXDOMAIN -> empty ``Answer`` with ``nxdomain=True``;
* timeout, SERVFAIL, REFUSED, no name server reachable ->
  :class:`TemporaryDNSError`;
* a name that is not a valid DNS name, YXDOMAIN, an unparsable or otherwise
  wrong answer -> :class:`PermanentDNSError`.

Nothing here blocks the event loop after construction; the constructor
reads ``/etc/resolv.conf`` once when no name servers are given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TypeVar

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.name
import dns.nameserver
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.MX import MX as _MXRdata
from dns.rdtypes.ANY.PTR import PTR as _PTRRdata
from dns.rdtypes.ANY.TLSA import TLSA as _TLSARdata
from dns.rdtypes.ANY.TXT import TXT as _TXTRdata
from dns.rdtypes.IN.A import A as _ARdata
from dns.rdtypes.IN.AAAA import AAAA as _AAAARdata
from dns.rdtypes.IN.SRV import SRV as _SRVRdata

from pochta.config import DNSSettings, HostPort
from pochta.dns.records import (
    MX,
    SRV,
    TLSA,
    TXT,
    Answer,
    IPAddress,
    PermanentDNSError,
    TemporaryDNSError,
)
from pochta.errors import UserFacingError

__all__ = ["DEFAULT_LIFETIME", "DEFAULT_TIMEOUT", "DNSConfigError", "StubResolver"]

#: Seconds to wait for one name server's reply before trying the next.
DEFAULT_TIMEOUT = 3.0
#: Seconds a whole lookup may take, all servers and retries included.
DEFAULT_LIFETIME = 10.0
#: EDNS0 UDP payload size advertised (https://dnsflagday.net/2020/).
EDNS_PAYLOAD = 1232
#: Entries kept in the answer cache.
CACHE_SIZE = 10_000

T = TypeVar("T")


class DNSConfigError(UserFacingError):
    """No name servers: ``[dns].nameservers`` is empty and resolv.conf has none."""


def _text(name: dns.name.Name) -> str:
    """A name as Pochta spells it: lower case, no final dot, the root as ``""``."""
    if name == dns.name.root:
        return ""
    return name.to_text(omit_final_dot=True).lower()


def to_name(name: str, rtype: str) -> dns.name.Name:
    text = name.strip()
    if not text or text == ".":
        raise PermanentDNSError(name, rtype, "empty name")
    try:
        return dns.name.from_text(text)
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise PermanentDNSError(name, rtype, f"not a valid DNS name ({exc})") from None


class StubResolver:
    """A :class:`~pochta.dns.resolver.Resolver` that asks recursive name servers."""

    def __init__(
        self,
        nameservers: Sequence[HostPort] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lifetime: float = DEFAULT_LIFETIME,
        cache: bool = True,
    ) -> None:
        if nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(hp.host, hp.port) for hp in nameservers
            ]
        else:
            try:
                resolver = dns.asyncresolver.Resolver(configure=True)
            except dns.resolver.NoResolverConfiguration as exc:
                raise DNSConfigError(
                    f"no name servers: [dns].nameservers is empty and the system has none ({exc})"
                ) from None
        resolver.timeout = timeout
        resolver.lifetime = lifetime
        resolver.flags = dns.flags.RD | dns.flags.AD
        resolver.use_edns(0, 0, EDNS_PAYLOAD)
        if cache:
            resolver.cache = dns.resolver.LRUCache(CACHE_SIZE)
        self._resolver = resolver

    @classmethod
    def from_settings(
        cls,
        settings: DNSSettings,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lifetime: float = DEFAULT_LIFETIME,
        cache: bool = True,
    ) -> StubResolver:
        """The resolver ``[dns]`` describes (system resolvers when its list is empty)."""
        return cls(settings.nameservers, timeout=timeout, lifetime=lifetime, cache=cache)

    @property
    def nameservers(self) -> list[str]:
        """The servers asked, as ``address:port`` text (for reports and logs)."""
        servers = []
        for ns in self._resolver.nameservers:
            if isinstance(ns, dns.nameserver.Nameserver):
                servers.append(f"{ns.answer_nameserver()}:{ns.answer_port()}")
            else:
                servers.append(str(ns))
        return servers

    async def _query(
        self,
        name: str,
        rtype: str,
        convert: Callable[[dns.rdata.Rdata], T],
        qname: dns.name.Name | None = None,
    ) -> Answer[T]:
        if qname is None:
            qname = to_name(name, rtype)
        try:
            answer = await self._resolver.resolve(
                qname, rtype, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            return Answer(_text(qname), rtype, (), nxdomain=True)
        except dns.exception.Timeout:
            lifetime = self._resolver.lifetime
            raise TemporaryDNSError(name, rtype, f"no answer within {lifetime:g} s") from None
        except dns.resolver.NoNameservers as exc:
            raise TemporaryDNSError(name, rtype, _no_nameservers_reason(exc)) from None
        except dns.resolver.YXDOMAIN:
            raise PermanentDNSError(name, rtype, "YXDOMAIN (name too long after DNAME)") from None
        except dns.exception.DNSException as exc:
            raise PermanentDNSError(name, rtype, str(exc) or type(exc).__name__) from None
        except OSError as exc:
            raise TemporaryDNSError(name, rtype, f"network error: {exc}") from None
        authentic = bool(answer.response.flags & dns.flags.AD)
        records: list[T] = []
        if answer.rrset is not None:
            try:
                records = [convert(rdata) for rdata in answer.rrset]
            except (TypeError, ValueError) as exc:
                raise PermanentDNSError(name, rtype, f"malformed answer: {exc}") from None
        return Answer(_text(qname), rtype, tuple(records), authentic=authentic)

    async def mx(self, domain: str) -> Answer[MX]:
        return await self._query(domain, "MX", _mx)

    async def a(self, name: str) -> Answer[IPv4Address]:
        return await self._query(name, "A", _a)

    async def aaaa(self, name: str) -> Answer[IPv6Address]:
        return await self._query(name, "AAAA", _aaaa)

    async def txt(self, name: str) -> Answer[TXT]:
        return await self._query(name, "TXT", _txt)

    async def srv(self, name: str) -> Answer[SRV]:
        return await self._query(name, "SRV", _srv)

    async def tlsa(self, name: str) -> Answer[TLSA]:
        return await self._query(name, "TLSA", _tlsa)

    async def ptr(self, address: str | IPAddress) -> Answer[str]:
        try:
            qname = dns.reversename.from_address(str(ip_address(address)))
        except ValueError:
            raise PermanentDNSError(str(address), "PTR", "not an IP address") from None
        return await self._query(str(address), "PTR", _ptr, qname)


def _no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    """Name each server's failure (SERVFAIL, REFUSED, unreachable) in one line."""
    errors = exc.kwargs.get("errors") or []
    parts = []
    for error in errors[:3]:
        server, _tcp, _port, err, response = (list(error) + [None] * 5)[:5]
        if response is not None and hasattr(response, "rcode"):
            what = dns.rcode.to_text(response.rcode())
        else:
            what = str(err) or type(err).__name__
        parts.append(f"{server}: {what}")
    return "no name server answered: " + ("; ".join(parts) if parts else "all failed")


def _expect(rdata: dns.rdata.Rdata, cls: type[T]) -> T:
    if not isinstance(rdata, cls):
        raise TypeError(f"unexpected record {rdata!r}")
    return rdata


def _mx(rdata: dns.rdata.Rdata) -> MX:
    record = _expect(rdata, _MXRdata)
    return MX(int(record.preference), _text(record.exchange))


def _a(rdata: dns.rdata.Rdata) -> IPv4Address:
    return IPv4Address(_expect(rdata, _ARdata).address)


def _aaaa(rdata: dns.rdata.Rdata) -> IPv6Address:
    return IPv6Address(_expect(rdata, _AAAARdata).address)


def _txt(rdata: dns.rdata.Rdata) -> TXT:
    return TXT(tuple(bytes(s) for s in _expect(rdata, _TXTRdata).strings))


def _srv(rdata: dns.rdata.Rdata) -> SRV:
    record = _expect(rdata, _SRVRdata)
    return SRV(int(record.priority), int(record.weight), int(record.port), _text(record.target))


def _tlsa(rdata: dns.rdata.Rdata) -> TLSA:
    record = _expect(rdata, _TLSARdata)
    return TLSA(int(record.usage), int(record.selector), int(record.mtype), bytes(record.cert))


def _ptr(rdata: dns.rdata.Rdata) -> str:
    return _text(_expect(rdata, _PTRRdata).target)
