"""Local delivery from the queue: local users, and aliases that forward elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import FAST_HASHER

from pochta.accounts import Accounts
from pochta.queue.local import LocalDeliverer
from pochta.store.interface import INBOX
from pochta.store.memory import MemoryStore

MESSAGE = b"From: alice@one.test\r\nSubject: hi\r\n\r\nbody\r\n"


class Queue:
    """Records what the deliverer enqueues; optionally fails."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.queued: list[tuple[str, list[str], bytes]] = []

    async def enqueue(self, mail_from: str, rcpts: list[str], data: bytes) -> str:
        if self.fail:
            raise OSError("disk full")
        self.queued.append((mail_from, rcpts, data))
        return f"Q{len(self.queued)}"


@pytest.fixture
def accounts(tmp_path: Path) -> Accounts:
    acc = Accounts.open(tmp_path / "accounts.sqlite", hasher=FAST_HASHER)
    acc.add_domain("one.test")
    acc.add_user("alice@one.test", "pw")
    acc.add_alias("fwd@one.test", "bob@two.test")
    acc.add_alias("mixed@one.test", "alice@one.test")
    acc.add_alias("mixed@one.test", "carol@three.test")
    return acc


async def inbox_count(store: MemoryStore, user: str) -> int:
    return (await store.mailboxes(user).status(INBOX)).messages


async def test_remote_alias_target_is_queued_with_the_original_sender(accounts: Accounts) -> None:
    store, queue = MemoryStore(), Queue()
    await store.create_user("alice@one.test")
    local = LocalDeliverer(accounts, store, forward=queue.enqueue)
    outcomes = await local.deliver(
        "one.test", "alice@one.test", ["fwd@one.test", "mixed@one.test"], MESSAGE
    )
    assert outcomes["fwd@one.test"].delivered and "Q1" in outcomes["fwd@one.test"].text
    assert outcomes["mixed@one.test"].delivered
    # One copy for both remote targets; no Return-Path (the final hop adds it).
    assert queue.queued == [("alice@one.test", ["bob@two.test", "carol@three.test"], MESSAGE)]
    assert await inbox_count(store, "alice@one.test") == 1


async def test_without_a_queue_remote_only_alias_is_unknown(accounts: Accounts) -> None:
    store = MemoryStore()
    outcomes = await LocalDeliverer(accounts, store).deliver(
        "one.test", "", ["fwd@one.test", "nobody@one.test"], MESSAGE
    )
    assert outcomes["fwd@one.test"].code == 550
    assert outcomes["nobody@one.test"].reply() == "550 5.1.1 No such user here"


async def test_queue_failure_is_temporary_for_the_alias(accounts: Accounts) -> None:
    store = MemoryStore()
    await store.create_user("alice@one.test")
    local = LocalDeliverer(accounts, store, forward=Queue(fail=True).enqueue)
    outcomes = await local.deliver("one.test", "", ["mixed@one.test"], MESSAGE)
    # The local copy went in, the remote one did not: the worse outcome is
    # kept so the queue retries (a duplicate locally, never a loss remotely).
    assert outcomes["mixed@one.test"].code == 451
    assert await inbox_count(store, "alice@one.test") == 1


async def test_looping_message_is_refused(accounts: Accounts) -> None:
    queue = Queue()
    local = LocalDeliverer(accounts, MemoryStore(), forward=queue.enqueue)
    looping = b"Received: from x by y; id 1\r\n" * 99 + MESSAGE
    outcomes = await local.deliver("one.test", "", ["fwd@one.test"], looping)
    assert outcomes["fwd@one.test"].reply().startswith("554 5.4.6")
    assert queue.queued == []
