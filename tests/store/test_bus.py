"""pochta.store.bus: change notices between processes on one data directory."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from pochta.store import INBOX, MaildirStore, Recipient
from pochta.store.bus import MAX_DATAGRAM, _decode, _encode
from pochta.store.interface import Notice
from tests.conftest import deliver_from_another_process
from tests.store.conftest import ALICE, BOB

MSG = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"


async def test_a_second_store_hears_of_a_delivery(maildir_store: MaildirStore) -> None:
    other = MaildirStore(maildir_store.data_dir)
    await other.open()
    try:
        box = other.mailboxes(ALICE)
        before = box.stamp()
        watch = box.watch()
        await maildir_store.deliver(MSG, [Recipient(ALICE)])
        notices = await watch.wait(timeout=2)
        assert [n.mailbox for n in notices] == [INBOX]
        assert box.stamp() != before
        # Nothing for another user's watch.
        bob = other.mailboxes(BOB).watch()
        await maildir_store.deliver(MSG, [Recipient(ALICE)])
        assert await bob.wait(timeout=0.2) == []
        watch.close()
        bob.close()
    finally:
        await other.close()


async def test_stamp_sees_a_change_confirmed_by_another_process(
    maildir_store: MaildirStore,
) -> None:
    """The sender sends before it answers: a stamp read right after the other
    store's call returned has already moved (``stamp`` drains the socket)."""
    other = MaildirStore(maildir_store.data_dir)
    await other.open()
    try:
        box = other.mailboxes(ALICE)
        before = box.stamp()
        await maildir_store.mailboxes(ALICE).append(INBOX, MSG)
        assert box.stamp() != before  # no loop turn in between
    finally:
        await other.close()


async def test_stale_sockets_are_removed(maildir_store: MaildirStore) -> None:
    directory = maildir_store.data_dir / "run" / "notify"
    stale = directory / "1-dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(stale))
    sock.close()  # the file stays: a process that died
    await maildir_store.deliver(MSG, [Recipient(ALICE)])
    assert not stale.exists()
    assert len(os.listdir(directory)) == 1  # our own


async def test_socket_removed_at_close(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "data")
    await store.open()
    directory = tmp_path / "data" / "run" / "notify"
    assert len(os.listdir(directory)) == 1
    await store.close()
    assert os.listdir(directory) == []


def test_another_process_wakes_a_watch(tmp_path: Path) -> None:
    """A real second process (as the CLI or a second server would be)."""
    data = tmp_path / "data"

    async def run() -> list[Notice]:
        store = MaildirStore(data)
        await store.open()
        try:
            await store.create_user(ALICE)
            watch = store.mailboxes(ALICE).watch()
            await asyncio.to_thread(deliver_from_another_process, data, ALICE)
            return await watch.wait(timeout=20)
        finally:
            await store.close()

    assert [n.mailbox for n in asyncio.run(run())] == [INBOX]


_NOTICES = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=40),
        st.builds(Notice, st.none() | st.text(max_size=200), st.integers(0, 2**63 - 1)),
    ),
    max_size=400,
)


@given(_NOTICES)
def test_encode_decode_round_trip(notices: list[tuple[str, Notice]]) -> None:
    payloads = _encode(notices)
    assert all(len(p) <= MAX_DATAGRAM for p in payloads)
    assert [n for p in payloads for n in _decode(p)] == notices


@given(st.binary(max_size=300))
def test_decode_never_raises(data: bytes) -> None:
    for user, notice in _decode(data):
        assert isinstance(user, str) and isinstance(notice.modseq, int)


def test_decode_survives_deep_nesting() -> None:
    assert _decode(b"[" * 100_000) == []
