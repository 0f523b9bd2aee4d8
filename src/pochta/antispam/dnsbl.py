"""DNS block lists of client addresses (RFC 5782).

Design note
-----------
A DNSxL publishes one name per listed address below its zone: the IPv4
octets in reverse order (RFC 5782 §2.1), or the 32 nibbles of an IPv6
address in reverse order (§2.4), e.g. ``2.0.0.127.zen.example`` for
127.0.0.2. An A record there means "listed", and its value is a return code
the list defines; a TXT record at the same name gives the reason (§2.1).

What counts as a listing:

* only A values inside 127.0.0.0/8 (the convention of §2.3). Anything else
  is not a list answer at all -- typically a resolver that rewrites NXDOMAIN
  into the address of a search page -- and is ignored;
* inside 127/8, 127.0.0.1 is ignored: §5 says a list MUST NOT contain it,
  and several lists answer it to say "query refused";
* 127.255.255.0/24 is ignored too: Spamhaus uses these codes to say "your
  query was refused" (public resolver, over quota, malformed query). They
  list nothing, and believing them would block all mail. They are logged
  at WARNING because the operator has to fix something.

A DNS error (timeout, SERVFAIL) skips that zone for this check, with a log
line: a broken list must never block mail, and a 4xx answer on every
message because one list is down would be worse than letting through a
little spam.

Results are cached per (address, zone), negative answers included, for
``cache_ttl`` seconds (the lists' own TTLs are usually longer; a short
local TTL keeps delistings effective quickly). An error is remembered for
a shorter ``min(cache_ttl, ERROR_TTL)``, so a list that times out does not
cost a timeout on every RCPT of a busy client. Concurrent checks of the
same (address, zone) share one lookup. The cache is an LRU bounded by
``max_cache`` entries.

Every zone is asked, loopback and private addresses included: the test
entry 127.0.0.2 (§5) is how an operator checks that a list works.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address

from pochta.dns.records import DNSError
from pochta.dns.resolver import Resolver

__all__ = ["DNSBL", "ERROR_TTL", "Listing", "query_name"]

log = logging.getLogger("pochta.antispam.dnsbl")

#: Longest time a failed lookup is remembered (seconds).
ERROR_TTL = 30.0
#: The conventional range of list answers (RFC 5782 §2.3).
_LIST_ANSWERS = IPv4Network("127.0.0.0/8")
#: Answers that report a problem with the query, not a listing (see module note).
_ERROR_ANSWERS = (IPv4Network("127.0.0.1/32"), IPv4Network("127.255.255.0/24"))
#: Longest reason text kept from TXT records.
MAX_TEXT = 512


@dataclass(frozen=True, slots=True)
class Listing:
    """One zone that lists the client."""

    zone: str
    codes: tuple[str, ...]
    """The 127.0.0.x answers that count (RFC 5782 §2.3), as dotted quads."""
    text: str = ""
    """The TXT reason (RFC 5782 §2.1), several records joined by "; "; "" if none."""


def _client(ip: str | IPv4Address | IPv6Address) -> IPv4Address | IPv6Address:
    """The address as the list knows it: ValueError if ``ip`` is not an address."""
    address = ip if isinstance(ip, IPv4Address | IPv6Address) else ip_address(ip.strip())
    if isinstance(address, IPv6Address):
        # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d; the
        # list knows it by its IPv4 address.
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        # A zone index (fe80::1%eth0) is local to this host, not part of the address.
        return IPv6Address(int(address))
    return address


def query_name(ip: str | IPv4Address | IPv6Address, zone: str) -> str:
    """The name to look up for ``ip`` in ``zone`` (RFC 5782 §2.1 and §2.4)."""
    address = _client(ip)
    if isinstance(address, IPv4Address):
        labels = reversed(str(address).split("."))
    else:
        labels = reversed(address.exploded.replace(":", ""))
    return ".".join(labels) + "." + zone


def _printable(text: str) -> str:
    """TXT reasons end up in SMTP replies and logs: no control characters."""
    return "".join(" " if unicodedata.category(c)[0] == "C" else c for c in text)


def _normalize_zone(zone: str) -> str:
    return zone.strip().rstrip(".").lower()


_CacheValue = tuple[float, "Listing | None"]


class DNSBL:
    """Asks DNS block lists about client addresses, with a small cache.

    Safe for any number of concurrent tasks on one event loop.
    """

    def __init__(
        self,
        resolver: Resolver,
        *,
        cache_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        max_cache: int = 10000,
    ) -> None:
        self.resolver = resolver
        self.cache_ttl = cache_ttl
        self.clock = clock
        self.max_cache = max(1, max_cache)
        self._cache: OrderedDict[tuple[str, str], _CacheValue] = OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Future[_CacheValue]] = {}

    async def check(
        self, ip: str | IPv4Address | IPv6Address, zones: Sequence[str]
    ) -> list[Listing]:
        """The listings of ``ip`` in ``zones``, in the order of ``zones``.

        All zones are asked concurrently; a zone that fails is left out
        (see the module note). Something that is not an IP address is
        listed nowhere (logged): a filter must not turn a caller's odd peer
        string into an error in the SMTP dialogue.
        """
        try:
            address = _client(ip)
        except ValueError:
            log.warning("DNSBL check skipped: %r is not an IP address", ip)
            return []
        wanted: list[str] = []
        for zone in zones:
            name = _normalize_zone(zone)
            if name and name not in wanted:
                wanted.append(name)
        results = await asyncio.gather(*(self._one(address, zone) for zone in wanted))
        return [listing for listing in results if listing is not None]

    async def _one(self, address: IPv4Address | IPv6Address, zone: str) -> Listing | None:
        key = (str(address), zone)
        cached = self._cache.get(key)
        if cached is not None:
            if cached[0] > self.clock():
                self._cache.move_to_end(key)
                return cached[1]
            del self._cache[key]
        future = self._pending.get(key)
        if future is None:
            # The lookup runs as its own task, so a caller that is cancelled
            # (the client hung up) does not cancel it for the others waiting.
            future = asyncio.ensure_future(self._lookup(address, zone))
            self._pending[key] = future
            future.add_done_callback(lambda done: self._store(key, done))
        return (await asyncio.shield(future))[1]

    def _store(self, key: tuple[str, str], done: asyncio.Future[_CacheValue]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if done.cancelled() or done.exception() is not None:
            return
        self._cache[key] = done.result()
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_cache:
            self._cache.popitem(last=False)

    async def _lookup(self, address: IPv4Address | IPv6Address, zone: str) -> _CacheValue:
        name = query_name(address, zone)
        try:
            answer = await self.resolver.a(name)
        except DNSError as exc:
            log.warning("DNSBL %s skipped for %s: %s", zone, address, exc)
            return self.clock() + min(self.cache_ttl, ERROR_TTL), None
        codes: list[str] = []
        for value in answer.records:
            if value not in _LIST_ANSWERS:
                log.info("DNSBL %s: ignoring non-list answer %s for %s", zone, value, address)
            elif any(value in net for net in _ERROR_ANSWERS):
                log.warning(
                    "DNSBL %s refused the query for %s (answer %s): check the resolver "
                    "and the list's usage terms",
                    zone,
                    address,
                    value,
                )
            elif str(value) not in codes:
                codes.append(str(value))
        if not codes:
            return self.clock() + self.cache_ttl, None
        text = await self._reason(name, zone)
        log.info("DNSBL %s lists %s: %s %s", zone, address, ",".join(codes), text)
        return self.clock() + self.cache_ttl, Listing(zone, tuple(codes), text)

    async def _reason(self, name: str, zone: str) -> str:
        """The TXT reason; asked only once listed, to spare the list's servers."""
        try:
            answer = await self.resolver.txt(name)
        except DNSError as exc:
            # The listing stands without its reason.
            log.info("DNSBL %s: no reason text for %s: %s", zone, name, exc)
            return ""
        texts: list[str] = []
        for record in answer.records:
            text = _printable(record.text).strip()
            if text and text not in texts:
                texts.append(text)
        return "; ".join(texts)[:MAX_TEXT]
