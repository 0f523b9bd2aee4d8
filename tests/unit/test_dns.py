"""pochta.dns: typed records, DictResolver, SRV ordering, and the real resolver.

The last part runs ``StubResolver`` (dnspython) against the loopback test DNS
server of ``tests/dnsserver.py``, serving the same zone data the
``DictResolver`` tests use, so both implementations keep one contract.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.dnsserver import DNSTestServer

from pochta.config import DNSSettings, HostPort
from pochta.dns import (
    MX,
    SRV,
    TLSA,
    TXT,
    Answer,
    DictResolver,
    PermanentDNSError,
    Resolver,
    StubResolver,
    TemporaryDNSError,
    Zones,
    host_addresses,
    order_srv,
    tlsa_name,
)
from pochta.dns.mock import coerce

ZONE: dict[str, dict[str, object]] = {
    "one.test": {
        "MX": [(20, "backup.one.test."), "10 mail.one.test"],
        "TXT": ["v=spf1 mx -all", ["part one ", "part two"]],
    },
    "mail.one.test": {"A": ["127.0.0.2", "127.0.0.3"], "AAAA": ["::1"]},
    "backup.one.test": {"A": ["127.0.0.4"]},
    "autoconfig.one.test": {"CNAME": "mail.one.test"},
    "loop1.one.test": {"CNAME": "loop2.one.test"},
    "loop2.one.test": {"CNAME": "loop1.one.test"},
    "_imaps._tcp.one.test": {"SRV": [(0, 1, 993, "mail.one.test")]},
    "_pop3._tcp.one.test": {"SRV": ["0 0 0 ."]},
    "_25._tcp.mail.one.test": {"TLSA": [(3, 1, 1, "ab" * 32)]},
    "127.0.0.2": {"PTR": "mail.one.test"},
    "nullmx.test": {"MX": [(0, ".")]},
    "big.test": {"TXT": ["x" * 1500]},
}


# ----------------------------------------------------------- both implementations


@pytest.fixture(scope="module")
def dns_server() -> Iterator[DNSTestServer]:
    with DNSTestServer(ZONE) as server:
        yield server


@pytest.fixture(params=["dict", "stub"])
def resolver(request: pytest.FixtureRequest, dns_server: DNSTestServer) -> Resolver:
    if request.param == "dict":
        return DictResolver(ZONE)
    # No cache: tests change the zones between lookups of the same name.
    return StubResolver(
        [HostPort("127.0.0.1", dns_server.port)], timeout=0.3, lifetime=0.8, cache=False
    )


async def test_mx_records_typed_and_normalized(resolver: Resolver) -> None:
    answer = await resolver.mx("ONE.test.")
    assert sorted(answer) == [MX(10, "mail.one.test"), MX(20, "backup.one.test")]
    assert answer.name == "one.test"
    assert not answer.nxdomain


async def test_nxdomain_and_nodata_are_different_empty_answers(resolver: Resolver) -> None:
    missing = await resolver.mx("nothing.one.test")
    nodata = await resolver.mx("mail.one.test")
    assert not missing and missing.nxdomain
    assert not nodata and not nodata.nxdomain


async def test_null_mx(resolver: Resolver) -> None:
    (record,) = await resolver.mx("nullmx.test")
    assert record.is_null and record.exchange == ""


async def test_addresses_and_cname(resolver: Resolver) -> None:
    assert sorted(await resolver.a("mail.one.test")) == [
        IPv4Address("127.0.0.2"),
        IPv4Address("127.0.0.3"),
    ]
    assert list(await resolver.aaaa("mail.one.test")) == [IPv6Address("::1")]
    assert sorted(await resolver.a("autoconfig.one.test")) == sorted(
        await resolver.a("mail.one.test")
    )


async def test_cname_loop_is_temporary(resolver: Resolver) -> None:
    with pytest.raises(TemporaryDNSError):
        await resolver.a("loop1.one.test")


async def test_txt_strings_kept_and_joined(resolver: Resolver) -> None:
    records = {r.text for r in await resolver.txt("one.test")}
    assert records == {"v=spf1 mx -all", "part one part two"}
    multi = [r for r in await resolver.txt("one.test") if len(r.strings) == 2]
    assert multi[0].strings == (b"part one ", b"part two")


async def test_long_txt_comes_over_tcp(resolver: Resolver) -> None:
    # 1500 octets do not fit a 512-octet UDP answer: the test server sets TC,
    # the stub resolver must retry over TCP (RFC 7766 §5).
    (record,) = await resolver.txt("big.test")
    assert record.joined == b"x" * 1500
    assert all(len(s) <= 255 for s in record.strings)


async def test_srv_and_not_available_target(resolver: Resolver) -> None:
    assert list(await resolver.srv("_imaps._tcp.one.test")) == [SRV(0, 1, 993, "mail.one.test")]
    (none,) = await resolver.srv("_pop3._tcp.one.test")
    assert none.target == "" and order_srv([none]) == []


async def test_tlsa(resolver: Resolver) -> None:
    answer = await resolver.tlsa(tlsa_name("mail.one.test", 25))
    assert list(answer) == [TLSA(3, 1, 1, bytes.fromhex("ab" * 32))]


async def test_ptr(resolver: Resolver) -> None:
    assert list(await resolver.ptr("127.0.0.2")) == ["mail.one.test"]
    assert (await resolver.ptr(IPv4Address("127.0.0.9"))).nxdomain
    with pytest.raises(PermanentDNSError):
        await resolver.ptr("not-an-ip")


@pytest.mark.parametrize("name", ["a" * 64 + ".test", "a..test", ""])
async def test_invalid_names_are_permanent(resolver: Resolver, name: str) -> None:
    with pytest.raises(PermanentDNSError) as info:
        await resolver.a(name)
    assert info.value.temporary is False
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("failure", ["servfail", "refused", "timeout"])
async def test_injected_failures_are_temporary(
    resolver: Resolver, dns_server: DNSTestServer, failure: str
) -> None:
    zones = resolver.zones if isinstance(resolver, DictResolver) else dns_server.zones
    zones.fail("broken.test", "MX", failure)  # type: ignore[arg-type]
    try:
        with pytest.raises(TemporaryDNSError) as info:
            await resolver.mx("broken.test")
    finally:
        zones.fail("broken.test", "MX", None)
    error = info.value
    assert error.temporary and error.rtype == "MX" and error.name == "broken.test"
    assert str(error).startswith("DNS lookup of MX broken.test failed temporarily: ")


async def test_authentic_bit(resolver: Resolver, dns_server: DNSTestServer) -> None:
    zones = resolver.zones if isinstance(resolver, DictResolver) else dns_server.zones
    assert not (await resolver.tlsa("_25._tcp.mail.one.test")).authentic
    zones.set_authentic("_25._tcp.mail.one.test")
    try:
        assert (await resolver.tlsa("_25._tcp.mail.one.test")).authentic
    finally:
        zones.set_authentic("_25._tcp.mail.one.test", False)


async def test_host_addresses_ipv6_first(resolver: Resolver) -> None:
    answer = await host_addresses(resolver, "mail.one.test")
    assert answer.records[0] == IPv6Address("::1")
    assert set(answer.records[1:]) == {IPv4Address("127.0.0.2"), IPv4Address("127.0.0.3")}
    assert (await host_addresses(resolver, "nothing.test")).nxdomain


# ----------------------------------------------------------------- DictResolver only


async def test_host_addresses_survive_one_failing_family() -> None:
    resolver = DictResolver({"h.test": {"A": ["127.0.0.5"]}})
    resolver.zones.fail("h.test", "AAAA", "servfail")
    assert list(await host_addresses(resolver, "h.test")) == [IPv4Address("127.0.0.5")]
    resolver.zones.fail("h.test", "A", "timeout")
    with pytest.raises(TemporaryDNSError):
        await host_addresses(resolver, "h.test")


async def test_dict_resolver_records_queries_and_live_changes() -> None:
    resolver = DictResolver()
    assert (await resolver.mx("two.test")).nxdomain
    resolver.zones.set("two.test", "MX", MX(5, "MX.Two.Test."))
    assert list(await resolver.mx("two.test")) == [MX(5, "mx.two.test")]
    resolver.zones.delete("two.test", "MX")
    assert (await resolver.mx("two.test")).nxdomain
    assert resolver.queries == [("two.test", "MX")] * 3


def test_coerce_shorthands() -> None:
    assert coerce("MX", "10 mx.test.") == MX(10, "mx.test")
    assert coerce("SRV", (1, 2, 3, "T.test")) == SRV(1, 2, 3, "t.test")
    assert coerce("TXT", b"raw") == TXT((b"raw",))
    assert coerce("TXT", "y" * 300).strings == (b"y" * 255, b"y" * 45)
    assert coerce("TLSA", (3, 1, 1, b"\x01")) == TLSA(3, 1, 1, b"\x01")
    with pytest.raises(ValueError):
        coerce("A", "::1")
    with pytest.raises(ValueError):
        coerce("NS", "x")
    with pytest.raises(ValueError):
        Zones({"x.test": {"CNAME": ["a.test", "b.test"]}})


def test_answer_is_a_sequence_like_value() -> None:
    answer = Answer("x.test", "MX", (MX(1, "a.test"),))
    assert len(answer) == 1 and bool(answer) and list(answer) == [MX(1, "a.test")]
    assert not Answer("x.test", "MX")


# --------------------------------------------------------------------- SRV order


def test_order_srv_priority_then_weight() -> None:
    records = [
        SRV(10, 0, 1, "late.test"),
        SRV(0, 60, 2, "heavy.test"),
        SRV(0, 40, 3, "light.test"),
        SRV(0, 0, 0, ""),
    ]
    firsts = [order_srv(records, random.Random(seed))[0].target for seed in range(300)]
    assert order_srv(records, random.Random(1))[-1].target == "late.test"
    assert 120 < firsts.count("heavy.test") < 240
    assert firsts.count("heavy.test") + firsts.count("light.test") == 300


srv_records = st.builds(
    SRV,
    st.integers(0, 3),
    st.integers(0, 5),
    st.integers(0, 65535),
    st.sampled_from(["", "a.test", "b.test", "c.test"]),
)


@given(st.lists(srv_records, max_size=8), st.integers(0, 2**32))
def test_order_srv_is_a_sorted_permutation_of_usable_records(records: list[SRV], seed: int) -> None:
    ordered = order_srv(records, random.Random(seed))
    usable = [r for r in records if r.target]
    assert sorted(ordered, key=repr) == sorted(usable, key=repr)
    assert [r.priority for r in ordered] == sorted(r.priority for r in ordered)


# ------------------------------------------------------------- construction


async def test_stub_resolver_caches_answers_for_their_ttl() -> None:
    with DNSTestServer(ZONE, ttl=60) as server:
        resolver = StubResolver([HostPort("127.0.0.1", server.port)], timeout=0.3, lifetime=0.8)
        for _ in range(3):
            assert await resolver.a("backup.one.test")
        assert server.queries == [("backup.one.test", "A")]
    with DNSTestServer(ZONE) as server:  # the test server's default TTL is 0: no caching
        resolver = StubResolver([HostPort("127.0.0.1", server.port)], timeout=0.3, lifetime=0.8)
        for _ in range(2):
            assert await resolver.a("backup.one.test")
            assert (await resolver.a("new.one.test")).nxdomain
        server.zones.set("new.one.test", "A", ["127.0.0.9"])
        assert list(await resolver.a("new.one.test")) == [IPv4Address("127.0.0.9")]
        assert len(server.queries) == 5


def test_stub_resolver_from_settings() -> None:
    resolver = StubResolver.from_settings(
        DNSSettings(nameservers=(HostPort("127.0.0.1", 5353), HostPort("::1", 53)))
    )
    assert resolver.nameservers == ["127.0.0.1:5353", "::1:53"]
