"""Typed DNS records, the ``Answer`` every lookup returns, and the DNS errors.

Design note
-----------
Callers never see dnspython objects: a lookup returns an :class:`Answer` of
small frozen records (``MX``, ``SRV``, ``TXT``, ``TLSA``, IP addresses, names).
Names are lower case, without the trailing dot; the root name (the null MX of
RFC 7505 §3, the "service not available" SRV target of RFC 2782) is ``""``.

An ``Answer`` separates the two kinds of "nothing", because mail routing
depends on the difference (RFC 5321 §5.1): ``nxdomain`` true means the name
does not exist (RCODE 3, RFC 1035 §4.1.1); an empty answer with ``nxdomain``
false means the name exists but has no records of that type (NODATA, RFC 2308
§2.2), after which an MTA falls back to the implicit MX. Both are ordinary
results, not exceptions. ``authentic`` carries the AD bit (RFC 4035 §3.2.3):
true only if the recursive resolver validated the answer with DNSSEC, which
DANE (RFC 7672 §2.2) requires before it may use TLSA records.

Failures are exceptions with a verdict a queue can act on (``temporary``):
:class:`TemporaryDNSError` for timeouts, SERVFAIL and unreachable name
servers (retry later, RFC 5321 §4.5.4.1); :class:`PermanentDNSError` for
lookups that can never succeed (a syntactically invalid name, YXDOMAIN, a
malformed answer).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Generic, TypeVar

from pochta.errors import UserFacingError

__all__ = [
    "MX",
    "SRV",
    "TLSA",
    "TXT",
    "Answer",
    "DNSError",
    "IPAddress",
    "PermanentDNSError",
    "TemporaryDNSError",
    "order_srv",
]

IPAddress = IPv4Address | IPv6Address

R = TypeVar("R")


class DNSError(UserFacingError):
    """A lookup failed; ``str()`` is one line naming the name, type and reason."""

    temporary: bool = False

    def __init__(self, name: str, rtype: str, reason: str) -> None:
        kind = "temporarily" if self.temporary else "permanently"
        super().__init__(f"DNS lookup of {rtype} {name or '.'} failed {kind}: {reason}")
        self.name = name
        self.rtype = rtype
        self.reason = reason


class TemporaryDNSError(DNSError):
    """Timeout, SERVFAIL, no name server reachable: try again later (RFC 2308 §7)."""

    temporary = True


class PermanentDNSError(DNSError):
    """The lookup cannot succeed as asked: invalid name, YXDOMAIN, malformed data."""

    temporary = False


@dataclass(frozen=True, slots=True, order=True)
class MX:
    """RFC 1035 §3.3.9; ``exchange == ""`` is a null MX (RFC 7505 §3).

    Records sort by preference (then name), the order RFC 5321 §5.1 tries them in.
    """

    preference: int
    exchange: str

    @property
    def is_null(self) -> bool:
        """True for ``MX 0 .``: the domain accepts no mail at all (RFC 7505 §3)."""
        return self.exchange == ""


@dataclass(frozen=True, slots=True)
class SRV:
    """RFC 2782; ``target == ""`` means the service is decidedly not available."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class TXT:
    """RFC 1035 §3.3.14: one record is several character-strings of at most 255 octets."""

    strings: tuple[bytes, ...]

    @property
    def joined(self) -> bytes:
        """The strings concatenated without separator (RFC 7208 §3.3, RFC 6376 §3.6.2.2)."""
        return b"".join(self.strings)

    @property
    def text(self) -> str:
        """``joined`` as text; bytes that are not UTF-8 become U+FFFD."""
        return self.joined.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class TLSA:
    """RFC 6698 §2.1: certificate usage, selector, matching type, association data."""

    usage: int
    selector: int
    mtype: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Answer(Generic[R]):
    """The records of one lookup; iterable, and false when empty.

    ``name`` and ``rtype`` are what was asked (after CNAMEs were followed,
    ``records`` belong to the canonical name; that is invisible here on purpose).
    """

    name: str
    rtype: str
    records: tuple[R, ...] = ()
    nxdomain: bool = False
    """The name does not exist (RCODE NXDOMAIN); ``records`` is then empty."""
    authentic: bool = False
    """The resolver set AD: the answer was DNSSEC-validated (RFC 4035 §3.2.3)."""

    def __iter__(self) -> Iterator[R]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __bool__(self) -> bool:
        return bool(self.records)


def order_srv(records: Sequence[SRV], rng: random.Random | None = None) -> list[SRV]:
    """SRV records in the order a client should try them (RFC 2782, "Usage rules").

    Lowest priority first; within one priority a weighted random order (a
    record with weight 0 has a small chance). Records whose target is ``""``
    ("service not available") are left out; if that leaves nothing, nothing
    is returned.
    """
    rng = rng or random.Random()
    usable = [r for r in records if r.target]
    result: list[SRV] = []
    for priority in sorted({r.priority for r in usable}):
        # Weight-0 records first, so that they are picked only when the random
        # point is exactly 0 (RFC 2782 gives them "a very small chance").
        group = sorted((r for r in usable if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                pick = group[0]
            else:
                point = rng.uniform(0, total)
                running = 0
                pick = group[-1]
                for record in group:
                    running += record.weight
                    if running >= point:
                        pick = record
                        break
            result.append(pick)
            group.remove(pick)
    return result
