"""Greylisting with a fake clock and a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.antispam.greylist import (
    PURGE_INTERVAL,
    Greylist,
    GreyVerdict,
    client_network,
    normalize_sender,
)

DELAY = 300
EXPIRE = 35 * 86400


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def grey(tmp_path: Path, clock: Clock) -> AsyncIterator[Greylist]:
    greylist = Greylist(tmp_path / "antispam" / "greylist.sqlite", clock=clock)
    yield greylist
    await greylist.close()


async def check(
    greylist: Greylist,
    ip: str = "192.0.2.10",
    sender: str = "alice@one.test",
    recipient: str = "bob@two.test",
    *,
    delay: int = DELAY,
    expire: int = EXPIRE,
) -> GreyVerdict:
    return await greylist.check(ip, sender, recipient, delay=delay, expire=expire)


async def test_first_attempt_denied_then_too_soon_then_allowed(
    grey: Greylist, clock: Clock
) -> None:
    assert await check(grey) == GreyVerdict(False, "new triplet", DELAY)
    clock.now += 100
    assert await check(grey) == GreyVerdict(False, "retry too soon", 200)
    # A too-early retry does not restart the wait.
    clock.now += 199.5
    assert await check(grey) == GreyVerdict(False, "retry too soon", 1)
    clock.now += 0.5
    assert await check(grey) == GreyVerdict(True, "known triplet", 0)
    clock.now += 86400
    assert await check(grey) == GreyVerdict(True, "known triplet", 0)


async def test_other_triplets_are_separate(grey: Greylist, clock: Clock) -> None:
    await check(grey)
    clock.now += DELAY
    assert (await check(grey)).allowed
    assert not (await check(grey, sender="carol@one.test")).allowed
    assert not (await check(grey, recipient="dave@two.test")).allowed
    assert not (await check(grey, ip="198.51.100.10")).allowed


async def test_same_slash_24_shares_the_triplet(grey: Greylist, clock: Clock) -> None:
    await check(grey, ip="192.0.2.10")
    clock.now += DELAY
    # Large senders retry from another host of the same farm.
    assert (await check(grey, ip="192.0.2.200")).allowed
    assert not (await check(grey, ip="192.0.3.10")).allowed


async def test_ipv6_grouped_by_slash_64(grey: Greylist, clock: Clock) -> None:
    await check(grey, ip="2001:db8:1:2::1")
    clock.now += DELAY
    assert (await check(grey, ip="2001:db8:1:2:ffff::9")).allowed
    assert not (await check(grey, ip="2001:db8:1:3::1")).allowed


async def test_case_and_brackets_do_not_matter(grey: Greylist, clock: Clock) -> None:
    await check(grey, sender="<Alice@One.TEST>", recipient="<Bob@Two.Test>")
    clock.now += DELAY
    assert (await check(grey, sender="alice@one.test", recipient="bob@two.test")).allowed


async def test_null_sender(grey: Greylist, clock: Clock) -> None:
    assert not (await check(grey, sender="<>")).allowed
    clock.now += DELAY
    assert (await check(grey, sender="")).allowed


async def test_batv_tag_ignored(grey: Greylist, clock: Clock) -> None:
    await check(grey, sender="prvs=1234abcdef=alice@one.test")
    clock.now += DELAY
    # The next message carries a new tag but is the same sender.
    assert (await check(grey, sender="prvs=5678abcdef=alice@one.test")).allowed
    assert (await check(grey, sender="alice@one.test")).allowed


async def test_survives_restart(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "greylist.sqlite"
    first = Greylist(path, clock=clock)
    await check(first)
    await first.close()
    clock.now += DELAY
    second = Greylist(path, clock=clock)
    try:
        assert await check(second) == GreyVerdict(True, "known triplet", 0)
    finally:
        await second.close()
    third = Greylist(path, clock=clock)
    try:
        assert (await check(third)).reason == "known triplet"
    finally:
        await third.close()


async def test_allowed_triplet_expires_when_not_seen(grey: Greylist, clock: Clock) -> None:
    await check(grey, expire=1000)
    clock.now += DELAY
    assert (await check(grey, expire=1000)).allowed
    clock.now += 999
    assert (await check(grey, expire=1000)).allowed  # seen again: kept
    clock.now += 1001
    assert await check(grey, expire=1000) == GreyVerdict(False, "new triplet", DELAY)


async def test_purge_removes_old_rows(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "greylist.sqlite"
    greylist = Greylist(path, clock=clock)
    try:
        await check(greylist, ip="192.0.2.1", expire=100)
        await check(greylist, ip="198.51.100.1", expire=100)
        clock.now += PURGE_INTERVAL + 1
        await check(greylist, ip="203.0.113.1", expire=100)
    finally:
        await greylist.close()
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT network FROM triplets").fetchall()
    db.close()
    assert rows == [("203.0.113.0/24",)]


async def test_purge_keeps_rows_a_longer_expiry_still_needs(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "greylist.sqlite"
    greylist = Greylist(path, clock=clock)
    try:
        await check(greylist, ip="192.0.2.1", expire=EXPIRE)
        clock.now += PURGE_INTERVAL + 1
        # Another domain with a short expiry must not purge the first's rows.
        await check(greylist, ip="198.51.100.1", expire=100)
        clock.now += DELAY
        assert (await check(greylist, ip="192.0.2.1", expire=EXPIRE)).allowed
    finally:
        await greylist.close()


async def pass_greylisting(
    greylist: Greylist, clock: Clock, ip: str, n: int, first: int = 0
) -> None:
    """Greylist and then deliver ``n`` different triplets from ``ip``."""
    for i in range(first, first + n):
        sender = f"user{i}@one.test"
        assert not (await check(greylist, ip=ip, sender=sender)).allowed
        clock.now += DELAY
        assert (await check(greylist, ip=ip, sender=sender)).allowed
        await greylist.delivered(ip)


async def test_auto_allow_after_deliveries(tmp_path: Path, clock: Clock) -> None:
    greylist = Greylist(tmp_path / "g.sqlite", clock=clock, auto_allow_after=3)
    try:
        await pass_greylisting(greylist, clock, "192.0.2.1", 2)
        assert not (await check(greylist, ip="192.0.2.1", sender="new@one.test")).allowed
        await pass_greylisting(greylist, clock, "192.0.2.1", 1, first=2)
        verdict = await check(greylist, ip="192.0.2.77", sender="other@three.test")
        assert verdict == GreyVerdict(True, "client auto-allowed", 0)
        # Another network is not affected.
        assert not (await check(greylist, ip="192.0.3.1", sender="other@three.test")).allowed
    finally:
        await greylist.close()


async def test_delivered_counts_only_after_passing(tmp_path: Path, clock: Clock) -> None:
    greylist = Greylist(tmp_path / "g.sqlite", clock=clock, auto_allow_after=1)
    try:
        # No triplet of this network passed greylisting: nothing is counted.
        await greylist.delivered("192.0.2.1")
        await greylist.delivered("192.0.2.1")
        assert not (await check(greylist, ip="192.0.2.1")).allowed
    finally:
        await greylist.close()


async def test_auto_allowed_client_expires(tmp_path: Path, clock: Clock) -> None:
    greylist = Greylist(tmp_path / "g.sqlite", clock=clock, auto_allow_after=1)
    try:
        await pass_greylisting(greylist, clock, "192.0.2.1", 1)
        assert (await check(greylist, ip="192.0.2.1", sender="x@y.test", expire=5000)).allowed
        clock.now += 5001
        verdict = await check(greylist, ip="192.0.2.1", sender="z@y.test", expire=5000)
        assert verdict.reason == "new triplet"
    finally:
        await greylist.close()


async def test_auto_allow_off(tmp_path: Path, clock: Clock) -> None:
    greylist = Greylist(tmp_path / "g.sqlite", clock=clock, auto_allow_after=0)
    try:
        await pass_greylisting(greylist, clock, "192.0.2.1", 3)
        assert not (await check(greylist, ip="192.0.2.1", sender="new@one.test")).allowed
    finally:
        await greylist.close()


async def test_clock_going_back_does_not_extend_the_wait(grey: Greylist, clock: Clock) -> None:
    await check(grey)
    clock.now -= 10_000
    assert await check(grey) == GreyVerdict(False, "retry too soon", DELAY)
    clock.now += DELAY
    assert (await check(grey)).allowed


async def test_concurrent_checks_record_once(grey: Greylist, clock: Clock) -> None:
    verdicts = await asyncio.gather(*(check(grey) for _ in range(20)))
    assert verdicts[0].reason == "new triplet"
    assert all(v.reason in ("new triplet", "retry too soon") for v in verdicts)
    assert sum(v.reason == "new triplet" for v in verdicts) == 1
    clock.now += DELAY
    assert (await check(grey)).allowed


async def test_unusable_database_lets_mail_through(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "greylist.sqlite"
    path.write_bytes(b"this is not an SQLite database" * 100)
    greylist = Greylist(path, clock=clock)
    try:
        assert await check(greylist) == GreyVerdict(True, "greylist unavailable", 0)
        await greylist.delivered("192.0.2.1")  # logged, not raised
    finally:
        await greylist.close()


async def test_closed_refuses_work(tmp_path: Path, clock: Clock) -> None:
    greylist = Greylist(tmp_path / "g.sqlite", clock=clock)
    await check(greylist)
    await greylist.close()
    await greylist.close()  # idempotent
    with pytest.raises(RuntimeError):
        await check(greylist)


def test_client_network() -> None:
    assert client_network("192.0.2.77") == "192.0.2.0/24"
    assert client_network(" [192.0.2.77] ") == "192.0.2.0/24"
    assert client_network("::ffff:192.0.2.77") == "192.0.2.0/24"
    assert client_network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_network("fe80::1%eth0") == "fe80::/64"
    assert client_network("Not-An-IP") == "not-an-ip"


def test_normalize_sender() -> None:
    assert normalize_sender("<>") == ""
    assert normalize_sender("") == ""
    assert normalize_sender(" <Alice@Example.ORG> ") == "alice@example.org"
    assert normalize_sender("prvs=0123456789=alice@example.org") == "alice@example.org"
    assert normalize_sender("prvs=alice@example.org") == "prvs=alice@example.org"


@given(st.ip_addresses())
def test_client_network_contains_the_address(address: object) -> None:
    from ipaddress import IPv6Address, ip_address, ip_network

    network = ip_network(client_network(str(address)))
    expected = address
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        expected = address.ipv4_mapped
    assert ip_address(str(expected)) in network
    assert network.prefixlen == (24 if network.version == 4 else 64)


@given(st.text(max_size=80))
def test_client_network_total(text: str) -> None:
    assert isinstance(client_network(text), str)
    assert isinstance(normalize_sender(text), str)
