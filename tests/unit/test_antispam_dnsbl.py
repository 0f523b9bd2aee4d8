"""DNS block list checks (RFC 5782) against a DictResolver."""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.antispam.dnsbl import DNSBL, Listing, query_name
from pochta.dns.mock import DictResolver
from pochta.dns.records import Answer, TemporaryDNSError

ZONE = "zen.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def listed_resolver() -> DictResolver:
    return DictResolver(
        {
            # RFC 5782 §5: the test entry 127.0.0.2 of every IPv4 list.
            f"2.0.0.127.{ZONE}": {"A": ["127.0.0.2"], "TXT": ["Listed: see https://zen.test/"]},
            "2.0.0.127.other.test": {"A": ["127.0.0.4", "127.0.0.10"]},
        }
    )


def a_queries(resolver: DictResolver) -> list[str]:
    return [name for name, rtype in resolver.queries if rtype == "A"]


async def test_listed_with_reason() -> None:
    dnsbl = DNSBL(listed_resolver())
    listings = await dnsbl.check("127.0.0.2", [ZONE])
    assert listings == [Listing(ZONE, ("127.0.0.2",), "Listed: see https://zen.test/")]


async def test_listed_without_txt_and_several_codes() -> None:
    dnsbl = DNSBL(listed_resolver())
    listings = await dnsbl.check(IPv4Address("127.0.0.2"), ["other.test"])
    assert listings == [Listing("other.test", ("127.0.0.4", "127.0.0.10"), "")]


async def test_not_listed_is_nxdomain() -> None:
    resolver = listed_resolver()
    dnsbl = DNSBL(resolver)
    assert await dnsbl.check("192.0.2.1", [ZONE]) == []
    # TXT is only asked once the address is listed.
    assert resolver.queries == [(f"1.2.0.192.{ZONE}", "A")]


async def test_zones_asked_together_in_order() -> None:
    dnsbl = DNSBL(listed_resolver())
    listings = await dnsbl.check("127.0.0.2", ["other.test", "clean.test", ZONE.upper() + "."])
    assert [listing.zone for listing in listings] == ["other.test", ZONE]


async def test_duplicate_and_empty_zones_asked_once() -> None:
    resolver = listed_resolver()
    dnsbl = DNSBL(resolver)
    listings = await dnsbl.check("127.0.0.2", [ZONE, "", ZONE + ".", " Zen.Test "])
    assert len(listings) == 1
    assert a_queries(resolver) == [f"2.0.0.127.{ZONE}"]


def test_query_names() -> None:
    assert query_name("192.0.2.99", "bl.test") == "99.2.0.192.bl.test"
    # RFC 5782 §2.4: 32 nibbles, least significant first.
    name = query_name("2001:db8:1:2::ab", "bl.test")
    assert name == ("b.a.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.test")
    # An IPv4 client seen through a dual-stack socket is its IPv4 address.
    assert query_name("::ffff:192.0.2.99", "bl.test") == "99.2.0.192.bl.test"
    # A zone index is not part of the address.
    assert query_name("fe80::1%eth0", "bl.test").startswith("1.0.0.0.")
    with pytest.raises(ValueError):
        query_name("not-an-ip", "bl.test")


@given(st.ip_addresses())
def test_query_name_has_one_label_per_octet_or_nibble(address: IPv4Address | IPv6Address) -> None:
    labels = query_name(address, "z.test").split(".")[:-2]
    if isinstance(address, IPv6Address) and address.ipv4_mapped is None:
        assert len(labels) == 32
        assert "".join(reversed(labels)) == address.exploded.replace(":", "")
    else:
        expected = address.ipv4_mapped if isinstance(address, IPv6Address) else address
        assert labels == list(reversed(str(expected).split(".")))


async def test_ipv6_listing() -> None:
    address = "2001:db8::2"
    resolver = DictResolver({query_name(address, ZONE): {"A": ["127.0.0.2"]}})
    dnsbl = DNSBL(resolver)
    assert await dnsbl.check(IPv6Address(address), [ZONE]) == [Listing(ZONE, ("127.0.0.2",), "")]
    assert await dnsbl.check("2001:db8::3", [ZONE]) == []


@pytest.mark.parametrize(
    "answers",
    [
        ["127.255.255.254"],  # Spamhaus: query via a public resolver
        ["127.255.255.252"],  # Spamhaus: typing error in the zone name
        ["127.0.0.1"],  # RFC 5782 §5: never listed; some lists say "refused"
        ["192.0.2.80"],  # an NXDOMAIN-rewriting resolver's search page
    ],
)
async def test_error_answers_are_not_listings(
    answers: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    resolver = DictResolver({f"2.0.0.127.{ZONE}": {"A": answers, "TXT": ["error"]}})
    dnsbl = DNSBL(resolver)
    with caplog.at_level(logging.INFO, logger="pochta.antispam.dnsbl"):
        assert await dnsbl.check("127.0.0.2", [ZONE]) == []
    assert any(ZONE in record.getMessage() for record in caplog.records)
    assert ("2.0.0.127." + ZONE, "TXT") not in resolver.queries


async def test_error_code_beside_real_code_keeps_real_code() -> None:
    resolver = DictResolver({f"2.0.0.127.{ZONE}": {"A": ["127.255.255.254", "127.0.0.3"]}})
    listings = await DNSBL(resolver).check("127.0.0.2", [ZONE])
    assert listings == [Listing(ZONE, ("127.0.0.3",), "")]


@pytest.mark.parametrize("failure", ["timeout", "servfail", "refused"])
async def test_dns_failure_skips_the_zone(failure: str, caplog: pytest.LogCaptureFixture) -> None:
    resolver = listed_resolver()
    resolver.zones.fail(f"2.0.0.127.{ZONE}", "A", failure)  # type: ignore[arg-type]
    dnsbl = DNSBL(resolver)
    with caplog.at_level(logging.WARNING, logger="pochta.antispam.dnsbl"):
        listings = await dnsbl.check("127.0.0.2", [ZONE, "other.test"])
    # The broken list is left out; the working one still counts.
    assert [listing.zone for listing in listings] == ["other.test"]
    assert any("skipped" in record.getMessage() for record in caplog.records)


async def test_invalid_zone_name_is_skipped() -> None:
    dnsbl = DNSBL(listed_resolver())
    assert await dnsbl.check("127.0.0.2", ["bad..zone", ZONE]) == [
        Listing(ZONE, ("127.0.0.2",), "Listed: see https://zen.test/")
    ]


async def test_txt_failure_keeps_the_listing() -> None:
    resolver = listed_resolver()
    resolver.zones.fail(f"2.0.0.127.{ZONE}", "TXT", "servfail")
    assert await DNSBL(resolver).check("127.0.0.2", [ZONE]) == [Listing(ZONE, ("127.0.0.2",), "")]


async def test_txt_control_characters_removed() -> None:
    resolver = DictResolver(
        {f"2.0.0.127.{ZONE}": {"A": ["127.0.0.2"], "TXT": ["bad\r\n550 spoofed\x00", "more"]}}
    )
    (listing,) = await DNSBL(resolver).check("127.0.0.2", [ZONE])
    assert "\r" not in listing.text and "\n" not in listing.text and "\x00" not in listing.text
    assert listing.text == "bad  550 spoofed; more"


async def test_cache_positive_and_negative_until_ttl() -> None:
    clock = Clock()
    resolver = listed_resolver()
    dnsbl = DNSBL(resolver, cache_ttl=60, clock=clock)
    for _ in range(3):
        assert len(await dnsbl.check("127.0.0.2", [ZONE])) == 1
        assert await dnsbl.check("192.0.2.1", [ZONE]) == []
    assert len(a_queries(resolver)) == 2
    clock.now += 59
    await dnsbl.check("127.0.0.2", [ZONE])
    assert len(a_queries(resolver)) == 2
    # After the TTL both are asked again; a delisting takes effect.
    clock.now += 2
    resolver.zones.delete(f"2.0.0.127.{ZONE}")
    assert await dnsbl.check("127.0.0.2", [ZONE]) == []
    await dnsbl.check("192.0.2.1", [ZONE])
    assert len(a_queries(resolver)) == 4


async def test_cache_is_per_zone() -> None:
    resolver = listed_resolver()
    dnsbl = DNSBL(resolver)
    await dnsbl.check("127.0.0.2", [ZONE])
    await dnsbl.check("127.0.0.2", [ZONE, "other.test"])
    assert a_queries(resolver) == [f"2.0.0.127.{ZONE}", "2.0.0.127.other.test"]


async def test_failure_remembered_briefly() -> None:
    clock = Clock()
    resolver = listed_resolver()
    resolver.zones.fail(f"2.0.0.127.{ZONE}", "A", "timeout")
    dnsbl = DNSBL(resolver, cache_ttl=300, clock=clock)
    assert await dnsbl.check("127.0.0.2", [ZONE]) == []
    resolver.zones.fail(f"2.0.0.127.{ZONE}", "A", None)
    assert await dnsbl.check("127.0.0.2", [ZONE]) == []
    assert len(a_queries(resolver)) == 1
    clock.now += 31
    assert len(await dnsbl.check("127.0.0.2", [ZONE])) == 1
    assert len(a_queries(resolver)) == 2


async def test_cache_bounded() -> None:
    resolver = DictResolver({})
    dnsbl = DNSBL(resolver, max_cache=3)
    for i in range(10):
        await dnsbl.check(f"192.0.2.{i}", [ZONE])
    await dnsbl.check("192.0.2.9", [ZONE])  # still cached
    assert len(a_queries(resolver)) == 10
    await dnsbl.check("192.0.2.0", [ZONE])  # evicted long ago
    assert len(a_queries(resolver)) == 11


class SlowResolver(DictResolver):
    """Answers A lookups only when ``release`` is set, counting them."""

    def __init__(self) -> None:
        super().__init__({f"2.0.0.127.{ZONE}": {"A": ["127.0.0.2"]}})
        self.release = asyncio.Event()
        self.started = 0

    async def a(self, name: str) -> Answer[IPv4Address]:
        self.started += 1
        await self.release.wait()
        return await super().a(name)


async def test_concurrent_checks_share_one_lookup() -> None:
    resolver = SlowResolver()
    dnsbl = DNSBL(resolver)
    tasks = [asyncio.ensure_future(dnsbl.check("127.0.0.2", [ZONE])) for _ in range(5)]
    await asyncio.sleep(0)
    resolver.release.set()
    results = await asyncio.gather(*tasks)
    assert all(len(r) == 1 for r in results)
    assert resolver.started == 1


async def test_cancelled_caller_does_not_cancel_lookup_for_others() -> None:
    resolver = SlowResolver()
    dnsbl = DNSBL(resolver)
    first = asyncio.ensure_future(dnsbl.check("127.0.0.2", [ZONE]))
    second = asyncio.ensure_future(dnsbl.check("127.0.0.2", [ZONE]))
    await asyncio.sleep(0)
    first.cancel()
    resolver.release.set()
    assert len(await second) == 1
    with pytest.raises(asyncio.CancelledError):
        await first
    # The answer was cached for later callers too.
    assert len(await dnsbl.check("127.0.0.2", [ZONE])) == 1
    assert resolver.started == 1


async def test_not_an_address_is_listed_nowhere(caplog: pytest.LogCaptureFixture) -> None:
    resolver = listed_resolver()
    with caplog.at_level(logging.WARNING, logger="pochta.antispam.dnsbl"):
        assert await DNSBL(resolver).check("unknown", [ZONE]) == []
    assert resolver.queries == []
    assert "not an IP address" in caplog.text


async def test_no_zones_no_queries() -> None:
    resolver = listed_resolver()
    assert await DNSBL(resolver).check("127.0.0.2", []) == []
    assert resolver.queries == []


async def test_temporary_error_type_is_what_resolver_raises() -> None:
    # Guard for the assumption the module relies on: mock failures are DNSErrors.
    resolver = listed_resolver()
    resolver.zones.fail("x.test", "A", "timeout")
    with pytest.raises(TemporaryDNSError):
        await resolver.a("x.test")
