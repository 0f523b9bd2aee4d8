"""LoginGuard: argon2 off the loop, throttling per IP and per account, verification cache."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from pochta.accounts import Accounts
from pochta.accounts.login import LoginGuard, LoginPolicy, TooManyFailures

D = "example.test"
BOB = f"bob@{D}"
EVE = f"eve@{D}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    with Accounts.open(tmp_path / "accounts.sqlite", hasher=hasher) as acc:
        acc.add_domain(D)
        acc.add_user(BOB, "right")
        acc.add_user(EVE, "eves")
        yield acc


@pytest.fixture
def clock() -> Clock:
    return Clock()


def guard(clock: Clock, **policy: float) -> LoginGuard:
    return LoginGuard(LoginPolicy(**policy), clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def test_credential_stamp_follows_the_password(accounts: Accounts) -> None:
    stamp = accounts.credential_stamp(BOB)
    assert stamp is not None and len(stamp) == 32
    assert accounts.credential_stamp("BOB@EXAMPLE.TEST") == stamp
    assert accounts.credential_stamp(EVE) != stamp
    assert accounts.credential_stamp(f"nobody@{D}") is None
    assert accounts.credential_stamp("not an address") is None
    accounts.set_password(BOB, "new")
    assert accounts.credential_stamp(BOB) != stamp


async def test_right_and_wrong_passwords(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock)
    user = await g.authenticate(accounts, BOB, "right", "192.0.2.1")
    assert user is not None and user.address == BOB
    assert await g.authenticate(accounts, BOB, "wrong", "192.0.2.1") is None
    assert await g.authenticate(accounts, f"nobody@{D}", "x", "192.0.2.1") is None
    assert await g.authenticate(accounts, "garbage", "x", "192.0.2.1") is None
    assert clock.slept == []


async def test_argon2_runs_off_the_event_loop(accounts: Accounts, clock: Clock) -> None:
    seen: list[str] = []
    original = accounts.authenticate

    def spy(address: str, password: str):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return original(address, password)

    accounts.authenticate = spy  # type: ignore[method-assign]
    await guard(clock).authenticate(accounts, BOB, "right", "192.0.2.1")
    assert seen and seen[0] != threading.current_thread().name


async def test_failures_are_delayed_then_refused(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock, free_failures=2, refuse_after=5, base_delay=1.0, max_delay=3.0)
    for _ in range(2):
        assert await g.authenticate(accounts, BOB, "wrong", "192.0.2.1") is None
    assert clock.slept == []
    for _ in range(3):
        assert await g.authenticate(accounts, BOB, "wrong", "192.0.2.1") is None
    assert clock.slept == [1.0, 2.0, 3.0]  # doubling, capped
    before = g.verifications
    with pytest.raises(TooManyFailures) as info:
        await g.authenticate(accounts, BOB, "right", "192.0.2.1")
    assert g.verifications == before  # refused without checking the password
    assert 0 < info.value.retry_after <= 600
    # The window slides: once the failures are old enough, logins work again.
    clock.now += 601
    assert await g.authenticate(accounts, BOB, "right", "192.0.2.1") is not None


async def test_account_is_throttled_across_client_addresses(
    accounts: Accounts, clock: Clock
) -> None:
    g = guard(clock, free_failures=1, refuse_after=3, base_delay=0.5)
    for i in range(3):
        await g.authenticate(accounts, BOB, "wrong", f"192.0.2.{i + 1}")
    with pytest.raises(TooManyFailures):
        await g.authenticate(accounts, BOB, "right", "198.51.100.7")
    # Another account from a fresh address is untouched.
    assert await g.authenticate(accounts, EVE, "eves", "198.51.100.7") is not None


async def test_client_is_throttled_across_accounts(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock, free_failures=1, refuse_after=3, base_delay=0.5)
    for i in range(3):
        await g.authenticate(accounts, f"user{i}@{D}", "guess", "2001:db8::1")
    # Same /64: the same client as far as throttling goes.
    with pytest.raises(TooManyFailures):
        await g.authenticate(accounts, EVE, "eves", "2001:db8::ffff")
    assert await g.authenticate(accounts, EVE, "eves", "2001:db8:1::1") is not None
    assert g.failures("ip:2001:db8::/64") == 3


async def test_success_clears_the_account_but_not_the_ip(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock)
    for _ in range(3):
        await g.authenticate(accounts, BOB, "wrong", "192.0.2.1")
    assert await g.authenticate(accounts, BOB, "right", "192.0.2.1") is not None
    assert g.failures(f"user:{BOB}") == 0
    assert g.failures("ip:192.0.2.1") == 3


async def test_a_burst_of_guesses_is_cut_off_at_the_limit(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock, free_failures=2, refuse_after=4, base_delay=0.1, max_parallel=1)
    results = await asyncio.gather(
        *(g.authenticate(accounts, BOB, f"wrong{i}", "192.0.2.9") for i in range(6)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, TooManyFailures)]
    assert len(refused) == 2  # the 5th and 6th find 4 failures when their turn comes
    assert g.verifications == 4  # and cost no argon2


async def test_parallel_right_logins_are_not_slowed(accounts: Accounts, clock: Clock) -> None:
    """A client opening several connections at once logs in on all of them at once,
    and argon2 runs once for them all (single flight)."""
    g = guard(clock, free_failures=2, refuse_after=4, base_delay=0.1)
    results = await asyncio.gather(
        *(g.authenticate(accounts, BOB, "right", "192.0.2.9") for _ in range(10))
    )
    assert all(user is not None for user in results)
    assert clock.slept == []
    assert g.verifications == 1


async def test_cache_skips_argon2_for_repeated_logins(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock, cache_ttl=300)
    assert await g.authenticate(accounts, BOB, "right", "192.0.2.1") is not None
    assert g.verifications == 1
    for ip in ("192.0.2.1", "192.0.2.2"):
        assert await g.authenticate(accounts, "Bob@Example.Test", "right", ip) is not None
    assert g.verifications == 1
    # A wrong password is never a cache hit.
    assert await g.authenticate(accounts, BOB, "Right", "192.0.2.1") is None
    assert g.verifications == 2
    clock.now += 301  # expired
    assert await g.authenticate(accounts, BOB, "right", "192.0.2.1") is not None
    assert g.verifications == 3


async def test_cache_is_invalidated_by_a_password_change(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock)
    assert await g.authenticate(accounts, BOB, "right", "192.0.2.1") is not None
    accounts.set_password(BOB, "changed")
    assert await g.authenticate(accounts, BOB, "right", "192.0.2.1") is None
    assert await g.authenticate(accounts, BOB, "changed", "192.0.2.1") is not None
    accounts.del_user(BOB)
    assert await g.authenticate(accounts, BOB, "changed", "192.0.2.1") is None


async def test_cache_never_holds_the_password(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock)
    await g.authenticate(accounts, BOB, "right", "192.0.2.1")
    (key,) = g._cache
    assert b"right" not in key and len(key) == 32


async def test_tables_are_bounded(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock, max_tracked=10, cache_size=1)
    for i in range(30):
        await g.authenticate(accounts, f"u{i}@{D}", "x", f"192.0.2.{i}")
    assert len(g._failures) <= 10
    await g.authenticate(accounts, BOB, "right", "198.51.100.1")
    await g.authenticate(accounts, EVE, "eves", "198.51.100.1")
    assert len(g._cache) == 1


async def test_parallel_verifications_are_bounded(accounts: Accounts, clock: Clock) -> None:
    g = guard(clock, max_parallel=1)
    running = 0
    peak = 0
    original = accounts.authenticate

    def spy(address: str, password: str):  # type: ignore[no-untyped-def]
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return original(address, password)
        finally:
            running -= 1

    accounts.authenticate = spy  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(g.authenticate(accounts, BOB, "right", f"192.0.2.{i}") for i in range(4)),
        g.authenticate(accounts, EVE, "eves", "192.0.2.9"),
    )
    assert all(r is not None for r in results)
    assert peak == 1
