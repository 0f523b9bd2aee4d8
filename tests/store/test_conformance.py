"""The store contract, run against every backend (see ``conftest.store``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import pytest

from pochta.mime import analyze
from pochta.store import (
    ANSWERED,
    ARCHIVE,
    DELETED,
    DRAFTS,
    FLAGGED,
    INBOX,
    JUNK,
    SEEN,
    SENT,
    TRASH,
    Changes,
    InvalidMailboxName,
    MailboxExists,
    MailboxNotEmpty,
    MailboxNotFound,
    MaildirStore,
    MessageNotFound,
    Notice,
    Recipient,
    Store,
    StoreError,
    StoreMode,
    UserNotFound,
    Watch,
)
from tests.store.conftest import ALICE, BOB

MSG = b"From: a@example.org\r\nTo: alice@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


async def append_n(store: Store, n: int, name: str = INBOX) -> list[int]:
    box = store.mailboxes(ALICE)
    return [(await box.append(name, MSG + b"%d\r\n" % i)).uid for i in range(n)]


# Users and default mailboxes ---------------------------------------------------


async def test_default_mailboxes_with_special_use(store: Store) -> None:
    boxes = await store.mailboxes(ALICE).list()
    assert [b.name for b in boxes] == [INBOX, "Archive", "Drafts", "Junk", "Sent", "Trash"]
    uses = {b.name: b.special_use for b in boxes}
    assert uses == {
        INBOX: frozenset(),
        "Drafts": {DRAFTS},
        "Sent": {SENT},
        "Trash": {TRASH},
        "Junk": {JUNK},
        "Archive": {ARCHIVE},
    }
    assert all(b.subscribed for b in boxes)
    assert len({b.uidvalidity for b in boxes}) == len(boxes)
    assert all(b.uidnext == 1 and b.highestmodseq >= 1 for b in boxes)


async def test_create_user_is_idempotent(store: Store) -> None:
    box = store.mailboxes(ALICE)
    await box.append(INBOX, MSG)
    before = await box.list()
    await store.create_user(ALICE)
    assert await box.list() == before
    assert len(await box.messages(INBOX)) == 1


async def test_unknown_user(store: Store) -> None:
    nobody = store.mailboxes("nobody@example.test")
    with pytest.raises(UserNotFound):
        await nobody.list()
    with pytest.raises(UserNotFound):
        await nobody.append(INBOX, MSG)
    with pytest.raises(UserNotFound):
        await store.reindex("nobody@example.test")


@pytest.mark.parametrize("user", ["nodomain", "@x", "a@", "../x@y", "a@..", "a/b@c", "a\0@b"])
async def test_create_user_rejects_unsafe_names(store: Store, user: str) -> None:
    with pytest.raises(StoreError):
        await store.create_user(user)


async def test_delete_user(store: Store) -> None:
    await store.mailboxes(BOB).append(INBOX, MSG)
    await store.delete_user(BOB)
    with pytest.raises(UserNotFound):
        await store.mailboxes(BOB).list()
    with pytest.raises(UserNotFound):
        await store.deliver(MSG, [Recipient(BOB)])
    await store.delete_user(BOB)  # already gone: no error
    assert len(await store.mailboxes(ALICE).list()) == 6


# Append and read ----------------------------------------------------------------

BODIES = {
    "crlf": MSG,
    "lf-only": b"Subject: lf\n\nbare\nnewlines\n",
    "8bit": "Subject: Привет\r\n\r\nТекст письма, ünïcödé.\r\n".encode(),
    "binary": bytes(range(256)) * 4,
    "empty": b"",
    "no-final-newline": b"Subject: x\r\n\r\nend",
}


@pytest.mark.parametrize("data", BODIES.values(), ids=BODIES.keys())
async def test_append_read_byte_exact(store: Store, data: bytes) -> None:
    box = store.mailboxes(ALICE)
    result = await box.append(INBOX, data)
    assert await box.read(INBOX, result.uid) == data
    (info,) = await box.messages(INBOX)
    assert info.size == len(data)
    meta = await box.meta(INBOX, [result.uid])
    assert meta[result.uid].to_json() == analyze(data).to_json()


async def test_append_result_and_uid_order(store: Store) -> None:
    box = store.mailboxes(ALICE)
    status = await box.status(INBOX)
    results = [await box.append(INBOX, MSG) for _ in range(3)]
    assert [r.uid for r in results] == [1, 2, 3]
    assert {r.uidvalidity for r in results} == {status.uidvalidity}
    assert [m.uid for m in await box.messages(INBOX)] == [1, 2, 3]
    after = await box.status(INBOX)
    assert after.uidnext == 4
    assert after.uidvalidity == status.uidvalidity
    assert after.highestmodseq > status.highestmodseq


async def test_append_flags_and_internal_date(store: Store) -> None:
    box = store.mailboxes(ALICE)
    when = dt.datetime(2020, 2, 29, 13, 45, 7, 123456, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    uid = (await box.append("Sent", MSG, [SEEN, "\\answered", "$Forwarded"], when)).uid
    (info,) = await box.messages("Sent")
    assert info.uid == uid
    assert info.flags == {SEEN, ANSWERED, "$Forwarded"}
    assert info.internal_date == when.replace(microsecond=0)
    assert info.internal_date.utcoffset() == dt.timedelta(hours=3)
    naive = dt.datetime(2021, 1, 2, 3, 4, 5)
    uid2 = (await box.append("Sent", MSG, (), naive)).uid
    info2 = (await box.messages("Sent"))[-1]
    assert info2.uid == uid2 and info2.internal_date == naive.replace(tzinfo=dt.UTC)


async def test_append_to_missing_mailbox(store: Store) -> None:
    with pytest.raises(MailboxNotFound) as err:
        await store.mailboxes(ALICE).append("Nope", MSG)
    assert err.value.code == "NONEXISTENT"


async def test_read_missing_message(store: Store) -> None:
    box = store.mailboxes(ALICE)
    with pytest.raises(MessageNotFound) as err:
        await box.read(INBOX, 42)
    assert err.value.code == "NONEXISTENT"
    assert await box.meta(INBOX, [42]) == {}


async def test_inbox_is_case_insensitive(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uid = (await box.append("inbox", MSG)).uid
    assert await box.read("InBoX", uid) == MSG
    assert (await box.status("INBOX")).messages == 1


# Flags, MODSEQ, UNCHANGEDSINCE -----------------------------------------------------


async def test_store_add_remove_replace(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uids = await append_n(store, 3)
    result = await box.store(INBOX, uids[:2], [SEEN, "$Label1"], StoreMode.ADD)
    assert [i.uid for i in result.updated] == uids[:2]
    assert all(i.flags == {SEEN, "$Label1"} for i in result.updated)
    assert result.modified == ()
    result = await box.store(INBOX, [uids[0]], ["\\SEEN"], StoreMode.REMOVE)
    assert result.updated[0].flags == {"$Label1"}
    result = await box.store(INBOX, uids, [FLAGGED, "Work"], StoreMode.REPLACE)
    assert all(i.flags == {FLAGGED, "Work"} for i in result.updated)
    infos = {i.uid: i.flags for i in await box.messages(INBOX)}
    assert infos == {uid: {FLAGGED, "Work"} for uid in uids}


async def test_store_modseq(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uids = await append_n(store, 2)
    start = (await box.status(INBOX)).highestmodseq
    result = await box.store(INBOX, uids, [SEEN], StoreMode.ADD)
    modseqs = {i.modseq for i in result.updated}
    assert len(modseqs) == 1 and modseqs.pop() > start
    high = (await box.status(INBOX)).highestmodseq
    assert high == result.updated[0].modseq
    # A STORE that changes nothing does not bump MODSEQ.
    again = await box.store(INBOX, uids, [SEEN], StoreMode.ADD)
    assert [i.uid for i in again.updated] == uids
    assert (await box.status(INBOX)).highestmodseq == high
    # \Recent cannot be stored; it is ignored, not an error.
    await box.store(INBOX, uids, ["\\Recent"], StoreMode.ADD)
    assert (await box.status(INBOX)).highestmodseq == high


async def test_store_unchanged_since(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uids = await append_n(store, 3)
    before = (await box.status(INBOX)).highestmodseq
    await box.store(INBOX, [uids[1]], [FLAGGED], StoreMode.ADD)
    result = await box.store(INBOX, uids, [SEEN], StoreMode.ADD, unchanged_since=before)
    assert result.modified == (uids[1],)
    assert [i.uid for i in result.updated] == [uids[0], uids[2]]
    flags = {i.uid: i.flags for i in await box.messages(INBOX)}
    assert flags[uids[1]] == {FLAGGED}
    zero = await box.store(INBOX, uids, [DELETED], StoreMode.ADD, unchanged_since=0)
    assert zero.modified == tuple(uids) and zero.updated == ()


async def test_store_ignores_unknown_uids_and_rejects_bad_flags(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uids = await append_n(store, 1)
    result = await box.store(INBOX, [*uids, 99], [SEEN], StoreMode.ADD)
    assert [i.uid for i in result.updated] == uids
    for bad in ("\\Bogus", "two words", "", "par(en"):
        with pytest.raises(StoreError):
            await box.store(INBOX, uids, [bad], StoreMode.ADD)


# Expunge and changes ------------------------------------------------------------------


async def test_expunge_and_tombstones(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uids = await append_n(store, 5)
    since = (await box.status(INBOX)).highestmodseq
    await box.store(INBOX, [uids[0], uids[2], uids[4]], [DELETED], StoreMode.ADD)
    assert await box.expunge(INBOX, [uids[2], uids[4], uids[1]]) == [uids[2], uids[4]]
    assert [m.uid for m in await box.messages(INBOX)] == [uids[0], uids[1], uids[3]]
    changes = await box.changes(INBOX, since)
    assert changes.vanished == (uids[2], uids[4])
    assert [m.uid for m in changes.changed] == [uids[0]]  # flagged, not expunged
    assert changes.highestmodseq == (await box.status(INBOX)).highestmodseq
    assert await box.expunge(INBOX) == [uids[0]]
    assert await box.expunge(INBOX) == []
    assert (await box.changes(INBOX, since)).vanished == (uids[0], uids[2], uids[4])
    assert (await box.changes(INBOX, changes.highestmodseq)).vanished == (uids[0],)
    status = await box.status(INBOX)
    assert status.uidnext == uids[-1] + 1 and status.messages == 2
    with pytest.raises(MessageNotFound):
        await box.read(INBOX, uids[2])


async def test_remove_exact_uids_whatever_their_flags(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uids = await append_n(store, 4)
    since = (await box.status(INBOX)).highestmodseq
    await box.store(INBOX, [uids[3]], [DELETED], StoreMode.ADD)
    # uids[3] is flagged \Deleted but not asked for: it stays (POP3 must not
    # expunge what an IMAP client only flagged); an unknown UID is skipped.
    assert await box.remove(INBOX, [uids[2], uids[0], 999_999]) == [uids[0], uids[2]]
    assert [m.uid for m in await box.messages(INBOX)] == [uids[1], uids[3]]
    assert (await box.changes(INBOX, since)).vanished == (uids[0], uids[2])
    assert await box.remove(INBOX, [uids[0]]) == []
    with pytest.raises(MessageNotFound):
        await box.read(INBOX, uids[0])
    if isinstance(store, MaildirStore):
        inbox = Path(store.layout.root) / "example.test" / "alice"
        for _ in range(100):  # files go after the reply, off the critical path
            left = [p for d in ("new", "cur") for p in (inbox / d).iterdir()]
            if len(left) == 2:
                break
            await asyncio.sleep(0.02)
        assert len(left) == 2


async def test_stamp_moves_with_every_change(store: Store) -> None:
    box = store.mailboxes(ALICE)
    before = box.stamp()
    assert box.stamp() == before  # reading changes nothing
    await box.status(INBOX)
    assert box.stamp() == before
    uid = (await box.append(INBOX, MSG)).uid
    after_append = box.stamp()
    assert after_append != before
    await box.store(INBOX, [uid], [SEEN], StoreMode.ADD)
    assert box.stamp() != after_append


async def test_changes_since(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uids = await append_n(store, 3)
    status = await box.status(INBOX)
    mark = status.highestmodseq
    assert await box.changes(INBOX, mark) == Changes(
        mark, (), (), status.uidvalidity, status.uidnext
    )
    await box.store(INBOX, [uids[1]], [SEEN], StoreMode.ADD)
    new = (await box.append(INBOX, MSG)).uid
    changes = await box.changes(INBOX, mark)
    assert [m.uid for m in changes.changed] == [uids[1], new]
    assert changes.vanished == ()
    assert [m.uid for m in (await box.changes(INBOX, 0)).changed] == [*uids, new]


# Copy and move --------------------------------------------------------------------------


async def test_copy(store: Store) -> None:
    box = store.mailboxes(ALICE)
    when = dt.datetime(2019, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
    uids = [(await box.append(INBOX, MSG + bytes([i]), [SEEN, "$K"], when)).uid for i in range(3)]
    archive = await box.status("Archive")
    result = await box.copy(INBOX, [uids[2], uids[0], 77], "Archive")
    assert result.uidvalidity == archive.uidvalidity
    assert result.source_uids == (uids[0], uids[2])
    assert result.dest_uids == (1, 2)
    copied = await box.messages("Archive")
    assert [m.uid for m in copied] == [1, 2]
    assert all(m.flags == {SEEN, "$K"} and m.internal_date == when for m in copied)
    assert await box.read("Archive", 2) == MSG + bytes([2])
    assert len(await box.messages(INBOX)) == 3
    empty = await box.copy(INBOX, [99], "Archive")
    assert (empty.source_uids, empty.dest_uids) == ((), ())
    with pytest.raises(MailboxNotFound):
        await box.copy(INBOX, uids, "Nope")


async def test_move(store: Store) -> None:
    box = store.mailboxes(ALICE)
    uids = await append_n(store, 3)
    await box.store(INBOX, [uids[1]], [FLAGGED], StoreMode.ADD)
    since = (await box.status(INBOX)).highestmodseq
    result = await box.move(INBOX, [uids[1], uids[2]], "Trash")
    assert result.source_uids == (uids[1], uids[2])
    assert result.dest_uids == (1, 2)
    assert [m.uid for m in await box.messages(INBOX)] == [uids[0]]
    assert (await box.changes(INBOX, since)).vanished == (uids[1], uids[2])
    moved = await box.messages("Trash")
    assert moved[0].flags == {FLAGGED}
    assert await box.read("Trash", 2) == MSG + b"2\r\n"


async def test_move_within_same_mailbox(store: Store) -> None:
    box = store.mailboxes(ALICE)
    (uid,) = await append_n(store, 1)
    result = await box.move(INBOX, [uid], INBOX)
    assert result.dest_uids == (uid + 1,)
    assert [m.uid for m in await box.messages(INBOX)] == [uid + 1]
    assert await box.read(INBOX, uid + 1) == MSG + b"0\r\n"


# Mailbox management ----------------------------------------------------------------------


async def test_create_with_parents(store: Store) -> None:
    box = store.mailboxes(ALICE)
    info = await box.create("Projects/2024/Q1", frozenset({FLAGGED}))
    assert info.name == "Projects/2024/Q1" and info.special_use == {FLAGGED}
    names = [b.name for b in await box.list()]
    assert {"Projects", "Projects/2024", "Projects/2024/Q1"} <= set(names)
    assert names[0] == INBOX and names[1:] == sorted(names[1:])
    with pytest.raises(MailboxExists) as err:
        await box.create("Projects/2024")
    assert err.value.code == "ALREADYEXISTS"
    with pytest.raises(MailboxExists):
        await box.create("inbox")
    assert (await box.create("Trailing/")).name == "Trailing"
    with pytest.raises(StoreError) as bad_use:
        await box.create("X", frozenset({"\\Bogus"}))
    assert bad_use.value.code == "USEATTR"


async def test_create_unicode_and_dots(store: Store) -> None:
    box = store.mailboxes(ALICE)
    for name in ("Entwürfe", "a.b", "日本語/メール", "50% & more", "~x", ".hidden"):
        if "%" in name:
            with pytest.raises(InvalidMailboxName):
                await box.create(name)
            continue
        await box.create(name)
        uid = (await box.append(name, MSG)).uid
        assert await box.read(name, uid) == MSG
    names = {b.name for b in await box.list()}
    assert {"Entwürfe", "a.b", "日本語", "日本語/メール", "~x", ".hidden"} <= names


async def test_delete(store: Store) -> None:
    box = store.mailboxes(ALICE)
    await box.create("Old/Child")
    await box.append("Old/Child", MSG)
    with pytest.raises(MailboxNotEmpty) as err:
        await box.delete("Old")
    assert err.value.code == "INUSE"
    await box.delete("Old/Child")
    await box.delete("Old")
    assert "Old" not in {b.name for b in await box.list()}
    with pytest.raises(MailboxNotFound):
        await box.delete("Old")
    with pytest.raises(StoreError) as inbox:
        await box.delete("inbox")
    assert inbox.value.code == "CANNOT"


async def test_recreated_mailbox_gets_new_uidvalidity(store: Store) -> None:
    box = store.mailboxes(ALICE)
    first = await box.create("Temp")
    await box.append("Temp", MSG)
    await box.delete("Temp")
    second = await box.create("Temp")
    assert second.uidvalidity != first.uidvalidity
    assert second.uidnext == 1
    assert await box.messages("Temp") == []


async def test_rename_with_children(store: Store) -> None:
    box = store.mailboxes(ALICE)
    await box.create("Work/Reports")
    before = await box.status("Work/Reports")
    uid = (await box.append("Work/Reports", MSG, [SEEN])).uid
    await box.rename("Work", "Archive/Work 2024")
    names = {b.name for b in await box.list()}
    assert "Work" not in names and "Work/Reports" not in names
    assert {"Archive/Work 2024", "Archive/Work 2024/Reports"} <= names
    after = await box.status("Archive/Work 2024/Reports")
    assert after.uidvalidity == before.uidvalidity and after.messages == 1
    assert await box.read("Archive/Work 2024/Reports", uid) == MSG
    await box.rename("Archive/Work 2024/Reports", "Deep/Er/Reports")
    assert "Deep/Er" in {b.name for b in await box.list()}
    with pytest.raises(MailboxNotFound):
        await box.rename("Work", "Elsewhere")
    with pytest.raises(MailboxExists):
        await box.rename("Deep", "Sent")
    with pytest.raises(MailboxExists):
        await box.rename("Deep", "INBOX")
    with pytest.raises(InvalidMailboxName):
        await box.rename("Deep", "Deep/Inside")


async def test_rename_inbox_moves_messages(store: Store) -> None:
    """RFC 9051 §6.3.6: INBOX stays, empty; its messages move; its children do not."""
    box = store.mailboxes(ALICE)
    await box.create("INBOX/Child")
    uids = await append_n(store, 2)
    await box.store(INBOX, [uids[0]], [SEEN], StoreMode.ADD)
    inbox = await box.status(INBOX)
    await box.rename("inbox", "Old Mail")
    after = await box.status(INBOX)
    assert after.messages == 0 and after.uidvalidity == inbox.uidvalidity
    assert after.uidnext == inbox.uidnext
    old = await box.messages("Old Mail")
    assert len(old) == 2 and old[0].flags == {SEEN}
    assert await box.read("Old Mail", old[1].uid) == MSG + b"1\r\n"
    assert "INBOX/Child" in {b.name for b in await box.list()}
    assert (await box.changes(INBOX, inbox.highestmodseq)).vanished == tuple(uids)


async def test_subscribe(store: Store) -> None:
    box = store.mailboxes(ALICE)
    created = await box.create("Lists")
    assert not created.subscribed
    await box.subscribe("Lists", True)
    assert (await box.status("Lists")).subscribed
    await box.subscribe("Lists", False)
    assert not {b.name: b for b in await box.list()}["Lists"].subscribed
    with pytest.raises(MailboxNotFound):
        await box.subscribe("Nope", True)


BAD_NAMES = ["", "a//b", "/a", "a/", "x\x00y", "x\ry", "x\ny", "../x", "..", ".", "a/../b"]
BAD_NAMES += ["a/./b", "*", "a%b", "x\x7fy", "\ud800", "a" * 300]


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_bad_names(store: Store, tmp_path: Path, name: str) -> None:
    box = store.mailboxes(ALICE)
    before = _tree(tmp_path)
    for call in (
        lambda: box.status(name),
        lambda: box.append(name, MSG),
        lambda: box.rename(INBOX, name),
        lambda: box.delete(name),
        lambda: box.create(name) if name != "a/" else box.create(name + "/"),
    ):
        with pytest.raises(InvalidMailboxName) as err:
            await call()
        assert err.value.code == "CANNOT"
    with pytest.raises(InvalidMailboxName):
        await store.deliver(MSG, [Recipient(ALICE, name)])
    assert _tree(tmp_path) == before  # nothing was written anywhere


def _tree(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {str(p.relative_to(root)) for p in root.rglob("*") if "index.sqlite" not in p.name}


async def test_names_stay_inside_the_user_dir(store: Store, tmp_path: Path) -> None:
    """Names that look like paths are just names; nothing appears outside alice's dir."""
    box = store.mailboxes(ALICE)
    outside = _tree(tmp_path)
    for name in ("..x", "x..", "a\\..\\b", "~", "$HOME", "%2e%2e".replace("%", "&")):
        await box.create(name)
        await box.append(name, MSG)
    if isinstance(store, MaildirStore):
        mine = "data/mail/example.test/alice/"
        now = {p for p in _tree(tmp_path) if not p.startswith(mine)}
        assert now == {p for p in outside if not p.startswith(mine)}
        folders = [p for p in (tmp_path / mine).iterdir() if p.name.startswith(".")]
        assert len(folders) == 5 + 6


# Delivery -------------------------------------------------------------------------------


async def test_deliver_several_users_and_duplicates(store: Store) -> None:
    rcpts = [
        Recipient(ALICE),
        Recipient(BOB),
        Recipient(ALICE, "inbox"),  # same mailbox again: stored once
        Recipient(ALICE, "Junk", frozenset({"$Junk"})),
        Recipient(BOB, "NoSuchBox"),  # falls back to INBOX, which bob already gets
    ]
    delivered = await store.deliver(MSG, rcpts)
    assert [(d.user, d.mailbox) for d in delivered] == [
        (ALICE, INBOX),
        (BOB, INBOX),
        (ALICE, "Junk"),
    ]
    alice, bob = store.mailboxes(ALICE), store.mailboxes(BOB)
    assert len(await alice.messages(INBOX)) == 1
    assert len(await bob.messages(INBOX)) == 1
    (junk,) = await alice.messages("Junk")
    assert junk.flags == {"$Junk"}
    for d in delivered:
        box = store.mailboxes(d.user)
        assert d.uidvalidity == (await box.status(d.mailbox)).uidvalidity
        assert await box.read(d.mailbox, d.uid) == MSG


async def test_deliver_to_missing_mailbox_lands_in_inbox(store: Store) -> None:
    (d,) = await store.deliver(MSG, [Recipient(ALICE, "Gone", frozenset({SEEN}))])
    assert d.mailbox == INBOX
    (info,) = await store.mailboxes(ALICE).messages(INBOX)
    assert info.flags == {SEEN}


async def test_deliver_unknown_user_writes_nothing(store: Store) -> None:
    with pytest.raises(UserNotFound):
        await store.deliver(MSG, [Recipient(ALICE), Recipient("ghost@example.test")])
    assert await store.mailboxes(ALICE).messages(INBOX) == []
    with pytest.raises(UserNotFound):
        await store.deliver(MSG, [Recipient("../../etc@x")])
    assert await store.deliver(MSG, []) == []


async def test_concurrent_deliveries_group_commit(store: Store) -> None:
    commits = store.commit_count if isinstance(store, MaildirStore) else 0
    results = await asyncio.gather(
        *(store.deliver(MSG + b"%d" % i, [Recipient(ALICE)]) for i in range(200))
    )
    uids = [r[0].uid for r in results]
    assert sorted(uids) == list(range(1, 201))
    box = store.mailboxes(ALICE)
    assert (await box.status(INBOX)).messages == 200
    assert await box.read(INBOX, uids[57]) == MSG + b"57"
    if isinstance(store, MaildirStore):
        assert store.commit_count - commits < 200


async def test_status_counters(store: Store) -> None:
    box = store.mailboxes(ALICE)
    sizes = []
    for i in range(4):
        data = MSG + b"x" * i
        sizes.append(len(data))
        await box.append(INBOX, data, [SEEN] if i < 2 else [])
    await box.store(INBOX, [1, 3], [DELETED], StoreMode.ADD)
    status = await box.status(INBOX)
    assert (status.messages, status.unseen, status.deleted) == (4, 2, 2)
    assert status.size == sum(sizes)
    assert status.uidnext == 5
    empty = await box.status("Drafts")
    assert (empty.messages, empty.unseen, empty.deleted, empty.size) == (0, 0, 0, 0)
    with pytest.raises(MailboxNotFound):
        await box.status("Nope")


# Change feed --------------------------------------------------------------------------------


def _waiting(watch: Watch) -> tuple[asyncio.Task[list[Notice]], list[float]]:
    """A task blocked in ``watch.wait`` and the list its wake-up time goes to."""
    loop = asyncio.get_running_loop()
    woke: list[float] = []
    waiter = asyncio.create_task(watch.wait(timeout=5))
    waiter.add_done_callback(lambda _: woke.append(loop.time()))
    return waiter, woke


async def _assert_woken_promptly(
    waiter: asyncio.Task[list[Notice]], woke: list[float], start: float
) -> list[Notice]:
    """Woken within 100 ms of the committed change (returned to its caller at ``start``)."""
    notices = await asyncio.wait_for(waiter, 1)
    assert woke[0] - start < 0.1
    return notices


async def test_watch_wakes_on_delivery(store: Store) -> None:
    watch = store.mailboxes(ALICE).watch()
    try:
        waiter, woke = _waiting(watch)
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        (d,) = await store.deliver(MSG, [Recipient(ALICE)])
        notices = await _assert_woken_promptly(waiter, woke, loop.time())
        high = (await store.mailboxes(ALICE).status(INBOX)).highestmodseq
        assert notices == [Notice(INBOX, high)]
        assert d.uid == 1
    finally:
        watch.close()


async def test_watch_wakes_on_flag_change_from_other_handle(store: Store) -> None:
    session1, session2 = store.mailboxes(ALICE), store.mailboxes(ALICE)
    (uid,) = await append_n(store, 1)
    watch = session1.watch()
    other_user = store.mailboxes(BOB).watch()
    try:
        waiter, woke = _waiting(watch)
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        result = await session2.store(INBOX, [uid], [SEEN], StoreMode.ADD)
        notices = await _assert_woken_promptly(waiter, woke, loop.time())
        assert notices == [Notice(INBOX, result.updated[0].modseq)]
        assert await other_user.wait(timeout=0.05) == []
        await session2.create("New")
        assert await watch.wait(timeout=1) == [Notice(None, 0)]
    finally:
        watch.close()
        other_user.close()
    assert await watch.wait(timeout=0.01) == []
    watch.close()  # idempotent


async def test_watch_coalesces_pending_notices(store: Store) -> None:
    box = store.mailboxes(ALICE)
    watch = box.watch()
    try:
        await append_n(store, 3)
        await box.append("Sent", MSG)
        notices = await watch.wait(timeout=1)
        inbox_high = (await box.status(INBOX)).highestmodseq
        sent_high = (await box.status("Sent")).highestmodseq
        assert sorted(notices, key=lambda n: str(n.mailbox)) == [
            Notice(INBOX, inbox_high),
            Notice("Sent", sent_high),
        ]
        assert await watch.wait(timeout=0.01) == []
    finally:
        watch.close()


async def test_reindex_counts_messages(store: Store) -> None:
    await append_n(store, 3)
    await append_n(store, 2, "Archive")
    assert await store.reindex(ALICE) == 5
    assert len(await store.mailboxes(ALICE).messages(INBOX)) == 3


def test_open_store_gives_maildir(tmp_path: Path) -> None:
    from pochta.store import open_store

    assert isinstance(open_store(tmp_path), MaildirStore)
    assert not os.listdir(tmp_path)  # nothing touched before open()
