"""Test DNS data: :class:`Zones` (records in a dict) and :class:`DictResolver`.

Design note
-----------
Unit tests of anything that uses DNS (SPF, DKIM, MX routing, discovery) pass
a :class:`DictResolver` built from a plain dict::

    resolver = DictResolver({
        "one.test": {"MX": [(10, "mail.one.test")], "TXT": ["v=spf1 mx -all"]},
        "mail.one.test": {"A": ["127.0.0.2"]},
        "autoconfig.one.test": {"CNAME": "mail.one.test"},
    })
    resolver.zones.fail("two.test", "MX", "servfail")   # -> TemporaryDNSError

Values may be typed records (``MX(10, "mail.one.test")``) or the shorthands
:func:`coerce` accepts (``(10, "mail.one.test")``, ``"10 mail.one.test"``).
A name exists (NOERROR) when it has any record; otherwise a lookup answers
NXDOMAIN, as a real server would for a name with nothing below it (empty
non-terminals are not modelled). A CNAME is followed for every other type,
up to 8 links (a loop is a SERVFAIL, like BIND's).

:class:`Zones` is the plain, thread-safe data store; the loopback test DNS
server (``tests/dnsserver.py``) serves the very same structure over UDP and
TCP, so a scenario written for a unit test runs unchanged against the real
resolver. Failures injected per (name, type) -- ``"servfail"``, ``"refused"``
and ``"timeout"`` -- all become :class:`TemporaryDNSError`, as they do in
:class:`~pochta.dns.client.StubResolver` (a resolver that refuses us is a
local problem worth retrying); the test server turns them into the RCODE, or
into silence for ``"timeout"``. An invalid name (an empty label, a label over
63 octets) is a :class:`PermanentDNSError` here as there.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal, cast

from pochta.dns.client import to_name
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

__all__ = [
    "RTYPES",
    "DictResolver",
    "Failure",
    "Lookup",
    "Record",
    "Zones",
    "coerce",
    "normalize_name",
    "reverse_name",
]

Failure = Literal["servfail", "timeout", "refused"]
FAILURES: frozenset[str] = frozenset({"servfail", "timeout", "refused"})

#: The types a zone may hold; CNAME is a single name, the others lists.
RTYPES = ("A", "AAAA", "MX", "TXT", "SRV", "TLSA", "PTR", "CNAME")

#: Longest CNAME chain followed before answering SERVFAIL.
MAX_CNAME_CHAIN = 8

Record = IPv4Address | IPv6Address | MX | TXT | SRV | TLSA | str
#: Values that ``Zones.set`` takes as one record rather than a list of them.
_SINGLE = (str, bytes, IPv4Address, IPv6Address, MX, TXT, SRV, TLSA)


def normalize_name(name: str) -> str:
    """Lower case, no final dot: the key of a name in :class:`Zones`."""
    return name.strip().rstrip(".").lower()


def reverse_name(address: str | IPAddress) -> str:
    """The in-addr.arpa / ip6.arpa name of an address (RFC 1035 §3.5, RFC 3596 §2.5)."""
    return ip_address(address).reverse_pointer


def _parts(value: object, count: int, rtype: str) -> list[str]:
    if isinstance(value, str):
        parts = value.split()
    elif isinstance(value, tuple | list):
        parts = [str(v) for v in value]
    else:
        raise TypeError(f"{rtype} value {value!r} is not a record, tuple or string")
    if len(parts) != count:
        raise ValueError(f"{rtype} value {value!r} needs {count} fields")
    return parts


def _txt_strings(value: object) -> tuple[bytes, ...]:
    items = [value] if isinstance(value, str | bytes) else list(cast(Iterable[object], value))
    strings: list[bytes] = []
    for item in items:
        data = item.encode() if isinstance(item, str) else bytes(cast(bytes, item))
        # One character-string holds at most 255 octets (RFC 1035 §3.3).
        chunks = [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]
        strings.extend(chunks)
    return tuple(strings)


def coerce(rtype: str, value: object) -> Record:
    """One record of type ``rtype`` from a typed record or a shorthand.

    A/AAAA: ``"192.0.2.1"``; MX: ``(10, "mx.x")`` or ``"10 mx.x"``; TXT: a string,
    bytes, or a list of them (long ones are split into 255-octet strings); SRV:
    ``(priority, weight, port, target)`` or the same as one string; TLSA:
    ``(usage, selector, mtype, hex or bytes)``; PTR and CNAME: a name. Names in
    records are normalized; ``"."`` is the root, stored as ``""``.
    """
    rtype = rtype.upper()
    if rtype == "A":
        addr = value if isinstance(value, IPv4Address) else ip_address(str(value))
        if not isinstance(addr, IPv4Address):
            raise ValueError(f"A value {value!r} is not an IPv4 address")
        return addr
    if rtype == "AAAA":
        addr = value if isinstance(value, IPv6Address) else ip_address(str(value))
        if not isinstance(addr, IPv6Address):
            raise ValueError(f"AAAA value {value!r} is not an IPv6 address")
        return addr
    if rtype == "MX":
        if isinstance(value, MX):
            return MX(value.preference, normalize_name(value.exchange))
        pref, host = _parts(value, 2, rtype)
        return MX(int(pref), normalize_name(host))
    if rtype == "TXT":
        return value if isinstance(value, TXT) else TXT(_txt_strings(value))
    if rtype == "SRV":
        if isinstance(value, SRV):
            return SRV(value.priority, value.weight, value.port, normalize_name(value.target))
        prio, weight, port, target = _parts(value, 4, rtype)
        return SRV(int(prio), int(weight), int(port), normalize_name(target))
    if rtype == "TLSA":
        if isinstance(value, TLSA):
            return value
        if not isinstance(value, tuple | list) or len(value) != 4:
            raise ValueError(f"TLSA value {value!r} needs (usage, selector, mtype, data)")
        usage, selector, mtype, data = value
        raw = bytes.fromhex(data) if isinstance(data, str) else bytes(data)
        return TLSA(int(usage), int(selector), int(mtype), raw)
    if rtype in ("PTR", "CNAME"):
        if not isinstance(value, str):
            raise TypeError(f"{rtype} value {value!r} is not a name")
        return normalize_name(value)
    raise ValueError(f"record type {rtype!r} is not one of {', '.join(RTYPES)}")


@dataclass(frozen=True, slots=True)
class Lookup:
    """The outcome of :meth:`Zones.lookup`: records plus what a server would say."""

    records: tuple[Record, ...]
    nxdomain: bool
    authentic: bool
    cnames: tuple[tuple[str, str], ...] = ()
    """The CNAME links followed, as (owner, target), for an answer section."""
    failure: Failure | None = None


class Zones:
    """Records by name and type, safe to change while another thread reads."""

    def __init__(
        self,
        data: Mapping[str, Mapping[str, object]] | None = None,
        *,
        authentic: Iterable[str] = (),
    ) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, dict[str, tuple[Record, ...]]] = {}
        self._failures: dict[tuple[str, str], Failure] = {}
        self._authentic = {normalize_name(n) for n in authentic}
        for name, types in (data or {}).items():
            for rtype, values in types.items():
                self.set(name, rtype, values)

    def set(self, name: str, rtype: str, values: object) -> None:
        """Replace the records of one (name, type).

        ``values`` is a list of values, or one string, bytes or typed record;
        an IP address as ``name`` stands for its reverse (PTR) name.
        """
        key = self._key(name, rtype)
        rtype = rtype.upper()
        if isinstance(values, _SINGLE):
            items: list[object] = [values]
        else:
            items = list(cast(Iterable[object], values))
        records = tuple(coerce(rtype, v) for v in items)
        if rtype == "CNAME" and len(records) > 1:
            raise ValueError(f"{name}: a name has at most one CNAME (RFC 1034 §3.6.2)")
        with self._lock:
            self._records.setdefault(key, {})[rtype] = records

    def delete(self, name: str, rtype: str | None = None) -> None:
        """Remove one type of a name, or the whole name (then it is NXDOMAIN)."""
        key = self._key(name, rtype or "A")
        with self._lock:
            if rtype is None:
                self._records.pop(key, None)
                return
            types = self._records.get(key, {})
            types.pop(rtype.upper(), None)
            if not types:
                self._records.pop(key, None)

    def fail(self, name: str, rtype: str, failure: Failure | None) -> None:
        """Make lookups of (name, type) fail; ``None`` heals them."""
        if failure is not None and failure not in FAILURES:
            raise ValueError(f"failure {failure!r} is not one of {sorted(FAILURES)}")
        key = (self._key(name, rtype), rtype.upper())
        with self._lock:
            if failure is None:
                self._failures.pop(key, None)
            else:
                self._failures[key] = failure

    def set_authentic(self, name: str, authentic: bool = True) -> None:
        """Answers for ``name`` carry the AD bit (DNSSEC-validated)."""
        with self._lock:
            if authentic:
                self._authentic.add(normalize_name(name))
            else:
                self._authentic.discard(normalize_name(name))

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._records)

    def lookup(self, name: str, rtype: str) -> Lookup:
        """What a recursive resolver would answer for (name, type)."""
        rtype = rtype.upper()
        current = normalize_name(name)
        chain: list[tuple[str, str]] = []
        with self._lock:
            authentic = current in self._authentic
            while True:
                failure = self._failures.get((current, rtype))
                if failure is not None:
                    return Lookup((), False, False, tuple(chain), failure)
                types = self._records.get(current)
                if types is None:
                    return Lookup((), True, authentic, tuple(chain))
                cname = types.get("CNAME")
                if cname and rtype != "CNAME":
                    if len(chain) >= MAX_CNAME_CHAIN or any(t == cname[0] for _, t in chain):
                        return Lookup((), False, False, tuple(chain), "servfail")
                    target = cast(str, cname[0])
                    chain.append((current, target))
                    current = target
                    authentic = authentic and current in self._authentic
                    continue
                return Lookup(types.get(rtype, ()), False, authentic, tuple(chain))

    @staticmethod
    def _key(name: str, rtype: str) -> str:
        try:
            return reverse_name(name)
        except ValueError:
            return normalize_name(name)


class DictResolver:
    """A :class:`~pochta.dns.resolver.Resolver` answering from :class:`Zones`.

    ``queries`` records every (name, type) asked, for tests that assert what
    was looked up (or that nothing was).
    """

    def __init__(
        self,
        data: Mapping[str, Mapping[str, object]] | Zones | None = None,
        *,
        authentic: Iterable[str] = (),
    ) -> None:
        self.zones = data if isinstance(data, Zones) else Zones(data, authentic=authentic)
        self.queries: list[tuple[str, str]] = []

    def _answer(self, name: str, rtype: str) -> Lookup:
        self.queries.append((normalize_name(name), rtype))
        to_name(name, rtype)  # the same PermanentDNSError as the real resolver
        result = self.zones.lookup(name, rtype)
        if result.failure == "timeout":
            raise TemporaryDNSError(name, rtype, "no answer (timed out)")
        if result.failure is not None:
            raise TemporaryDNSError(name, rtype, f"name server answered {result.failure.upper()}")
        return result

    def _typed(self, name: str, rtype: str) -> Answer[Record]:
        result = self._answer(name, rtype)
        return Answer(
            normalize_name(name),
            rtype,
            result.records,
            nxdomain=result.nxdomain,
            authentic=result.authentic,
        )

    async def mx(self, domain: str) -> Answer[MX]:
        return cast(Answer[MX], self._typed(domain, "MX"))

    async def a(self, name: str) -> Answer[IPv4Address]:
        return cast(Answer[IPv4Address], self._typed(name, "A"))

    async def aaaa(self, name: str) -> Answer[IPv6Address]:
        return cast(Answer[IPv6Address], self._typed(name, "AAAA"))

    async def txt(self, name: str) -> Answer[TXT]:
        return cast(Answer[TXT], self._typed(name, "TXT"))

    async def srv(self, name: str) -> Answer[SRV]:
        return cast(Answer[SRV], self._typed(name, "SRV"))

    async def tlsa(self, name: str) -> Answer[TLSA]:
        return cast(Answer[TLSA], self._typed(name, "TLSA"))

    async def ptr(self, address: str | IPAddress) -> Answer[str]:
        try:
            name = reverse_name(address)
        except ValueError:
            raise PermanentDNSError(str(address), "PTR", "not an IP address") from None
        return cast(Answer[str], self._typed(name, "PTR"))
