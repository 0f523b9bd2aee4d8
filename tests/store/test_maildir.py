"""What only the Maildir backend promises: the files on disk and the index rebuild."""

from __future__ import annotations

import asyncio
import mailbox
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from pochta.store import (
    DELETED,
    DRAFT,
    FLAGGED,
    INBOX,
    SEEN,
    MaildirStore,
    MessageNotFound,
    Recipient,
    StoreError,
    StoreMode,
    UserNotFound,
)
from pochta.store import files as files_module
from pochta.store import jobs as jobs_module
from pochta.store import writer as writer_module
from tests.store.conftest import ALICE, BOB

MSG = b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
#: Dovecot's file name: <sec>.M<usec>P<pid>Q<n>.<host>,S=<size>[:2,<flags>]
NAME = re.compile(r"^(\d+)\.M(\d+)P(\d+)Q(\d+)\.([^/:,]+),S=(\d+)(:2,[A-Z]*)?$")


def maildir(store: MaildirStore, user: str = ALICE) -> Path:
    local, domain = user.split("@")
    return store.data_dir / "mail" / domain / local


def listing(folder: Path, sub: str) -> list[str]:
    return sorted(os.listdir(folder / sub))


async def test_layout_after_create_user(maildir_store: MaildirStore) -> None:
    root = maildir(maildir_store)
    assert {p.name for p in root.iterdir()} == {
        "cur",
        "new",
        "tmp",
        ".Drafts",
        ".Sent",
        ".Trash",
        ".Junk",
        ".Archive",
        "pochta-uidvalidity",  # highest UIDVALIDITY issued, survives losing the index
    }
    for folder in (".Sent", ".Junk"):
        assert {p.name for p in (root / folder).iterdir()} == {"cur", "new", "tmp", "maildirfolder"}
    assert (maildir_store.data_dir / "index.sqlite").exists()
    db = sqlite3.connect(maildir_store.data_dir / "index.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        db.close()


async def test_delivery_lands_in_new_then_flags_rename(maildir_store: MaildirStore) -> None:
    root = maildir(maildir_store)
    (d,) = await maildir_store.deliver(MSG, [Recipient(ALICE)])
    (name,) = listing(root, "new")
    match = NAME.match(name)
    assert match is not None and match.group(7) is None
    assert int(match.group(3)) == os.getpid() and int(match.group(6)) == len(MSG)
    assert (root / "new" / name).read_bytes() == MSG
    assert listing(root, "cur") == [] and listing(root, "tmp") == []

    box = maildir_store.mailboxes(ALICE)
    await box.store(INBOX, [d.uid], [SEEN, FLAGGED, "$Keyword", DRAFT], StoreMode.ADD)
    assert listing(root, "new") == []
    (flagged,) = listing(root, "cur")
    assert flagged == name + ":2,DFS"  # sorted letters, keywords stay in the index
    await box.store(INBOX, [d.uid], [DELETED, "\\Answered"], StoreMode.REPLACE)
    assert listing(root, "cur") == [name + ":2,RT"]
    await box.store(INBOX, [d.uid], [], StoreMode.REPLACE)
    assert listing(root, "cur") == [name + ":2,"]  # stays in cur/, no info letters
    assert await box.read(INBOX, d.uid) == MSG


async def test_append_with_seen_lands_in_cur(maildir_store: MaildirStore) -> None:
    root = maildir(maildir_store) / ".Sent"
    await maildir_store.mailboxes(ALICE).append("Sent", MSG, [SEEN])
    assert listing(root, "new") == []
    (name,) = listing(root, "cur")
    assert name.endswith(":2,S") and NAME.match(name)
    assert listing(root, "tmp") == []


async def test_no_tmp_leftovers_and_hard_links(maildir_store: MaildirStore) -> None:
    await asyncio.gather(
        *(
            maildir_store.deliver(MSG, [Recipient(ALICE), Recipient(ALICE, "Junk"), Recipient(BOB)])
            for _ in range(20)
        )
    )
    alice, bob = maildir(maildir_store), maildir(maildir_store, BOB)
    for folder in (alice, alice / ".Junk", bob):
        assert listing(folder, "tmp") == []
        assert len(listing(folder, "new")) == 20
    first = alice / "new" / listing(alice, "new")[0]
    assert first.stat().st_nlink == 3  # one inode for the three mailboxes


async def test_names_on_disk(maildir_store: MaildirStore) -> None:
    box = maildir_store.mailboxes(ALICE)
    for name in ("Entwürfe", "a.b", "x/y", "日本語", "&"):
        await box.create(name)
    dirs = {p.name for p in maildir(maildir_store).iterdir()}
    assert {".Entw&APw-rfe", ".a%2eb", ".x", ".x.y", ".&ZeVnLIqe-", ".&-"} <= dirs


async def test_stdlib_maildir_reads_inbox_and_folders(maildir_store: MaildirStore) -> None:
    box = maildir_store.mailboxes(ALICE)
    await box.create("Lists/Python")
    await maildir_store.deliver(MSG, [Recipient(ALICE)])
    uid = (await box.append("Lists/Python", MSG + b"folder\r\n")).uid
    await box.store("Lists/Python", [uid], [SEEN, FLAGGED], StoreMode.ADD)

    md = mailbox.Maildir(maildir(maildir_store), factory=None, create=False)
    try:
        (inbox_msg,) = list(md)
        assert inbox_msg.as_bytes().replace(b"\n", b"\r\n").startswith(b"From: a@example.org")
        assert {"Lists", "Lists.Python", "Sent", "Drafts"} <= set(md.list_folders())
        sub = md.get_folder("Lists.Python")
        (key,) = sub.keys()
        assert sub.get_bytes(key) == MSG + b"folder\r\n"
        msg = sub[key]
        assert isinstance(msg, mailbox.MaildirMessage)
        assert msg.get_flags() == "FS" and msg.get_subdir() == "cur"
    finally:
        md.close()


async def test_folders_follow_rename_and_delete(maildir_store: MaildirStore) -> None:
    box = maildir_store.mailboxes(ALICE)
    root = maildir(maildir_store)
    await box.create("Work/Old")
    await box.append("Work/Old", MSG)
    await box.rename("Work", "Job")
    names = {p.name for p in root.iterdir()}
    assert {".Job", ".Job.Old"} <= names and not {".Work", ".Work.Old"} & names
    assert len(listing(root / ".Job.Old", "new")) == 1
    await box.delete("Job/Old")
    assert not (root / ".Job.Old").exists()
    assert not [p for p in root.iterdir() if p.name.startswith("pochta-deleted")]


async def test_file_removed_by_hand(maildir_store: MaildirStore) -> None:
    box = maildir_store.mailboxes(ALICE)
    uids = [(await box.append(INBOX, MSG + bytes([65 + i]))).uid for i in range(3)]
    root = maildir(maildir_store)
    # By content: unique names do not sort in append order (a counter that
    # gains a digit, "_10" < "_9", made this flaky).
    (victim,) = [p for p in (root / "new").iterdir() if p.read_bytes() == MSG + b"B"]
    victim.unlink()
    with pytest.raises(MessageNotFound):
        await box.read(INBOX, uids[1])
    with pytest.raises(MessageNotFound):
        await box.copy(INBOX, uids, "Archive")
    assert await box.messages("Archive") == []  # nothing half-copied
    # STORE and EXPUNGE still work on the orphaned row.
    await box.store(INBOX, uids[1:2], [DELETED], StoreMode.ADD)
    since = (await box.status(INBOX)).highestmodseq
    assert await maildir_store.reindex(ALICE) == 2
    assert [m.uid for m in await box.messages(INBOX)] == [uids[0], uids[2]]
    assert (await box.changes(INBOX, since)).vanished == (uids[1],)


async def test_file_renamed_by_another_program(maildir_store: MaildirStore) -> None:
    """mutt marks a message seen by moving new/X to cur/X:2,S; we still find it."""
    box = maildir_store.mailboxes(ALICE)
    uid = (await box.append(INBOX, MSG)).uid
    root = maildir(maildir_store)
    (name,) = listing(root, "new")
    os.rename(root / "new" / name, root / "cur" / f"{name}:2,S")
    assert await box.read(INBOX, uid) == MSG
    await box.store(INBOX, [uid], [FLAGGED], StoreMode.ADD)
    assert listing(root, "cur") == [f"{name}:2,F"]  # index flags win until reindex
    assert await maildir_store.reindex(ALICE) == 1
    assert (await box.messages(INBOX))[0].flags == {FLAGGED}


async def test_reindex_keeps_uids_when_index_exists(maildir_store: MaildirStore) -> None:
    box = maildir_store.mailboxes(ALICE)
    uids = [(await box.append(INBOX, MSG, ["$Kw"])).uid for _ in range(3)]
    before = await box.status(INBOX)
    root = maildir(maildir_store)
    # Another program: marks one seen, drops a new file in, deletes one.
    # (Delivery order, not text order: "M95000" sorts after "M100000".)
    names = sorted(listing(root, "new"), key=files_module.delivery_order)
    os.rename(root / "new" / names[0], root / "cur" / f"{names[0]}:2,S")
    (root / "new" / names[2]).unlink()
    (root / "cur" / "1.M1P1Q1.elsewhere,S=9:2,F").write_bytes(b"X: y\r\n\r\nz")
    assert await maildir_store.reindex(ALICE) == 3
    after = await box.status(INBOX)
    assert after.uidvalidity == before.uidvalidity
    infos = {m.uid: m for m in await box.messages(INBOX)}
    assert sorted(infos) == [uids[0], uids[1], uids[2] + 1]
    assert infos[uids[0]].flags == {SEEN, "$Kw"}
    assert infos[uids[0]].modseq > before.highestmodseq
    assert infos[uids[1]].flags == {"$Kw"}
    assert infos[uids[2] + 1].flags == {FLAGGED}
    assert (await box.changes(INBOX, before.highestmodseq)).vanished == (uids[2],)
    assert await box.read(INBOX, uids[2] + 1) == b"X: y\r\n\r\nz"


async def test_reindex_after_losing_the_index(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = MaildirStore(data)
    await store.open()
    await store.create_user(ALICE)
    box = store.mailboxes(ALICE)
    await box.create("Lists/Python")
    await box.delete("Junk")
    for i in range(3):
        await store.deliver(MSG + b"%d" % i, [Recipient(ALICE)])
    await box.append("Lists/Python", MSG, [SEEN, FLAGGED])
    await box.store(INBOX, [2], [SEEN], StoreMode.ADD)
    old = {b.name: b.uidvalidity for b in await box.list()}
    await store.close()

    for suffix in ("", "-wal", "-shm"):
        (data / f"index.sqlite{suffix}").unlink(missing_ok=True)

    store = MaildirStore(data)
    await store.open()
    try:
        assert await store.maildir_users() == [ALICE]
        with pytest.raises(UserNotFound):
            await store.mailboxes(ALICE).list()
        assert await store.reindex(ALICE) == 4
        box = store.mailboxes(ALICE)
        boxes = {b.name: b for b in await box.list()}
        assert set(boxes) == {INBOX, "Archive", "Drafts", "Sent", "Trash", "Lists", "Lists/Python"}
        assert boxes["Sent"].special_use == {"\\Sent"}
        assert all(boxes[n].uidvalidity > old[n] for n in old if n in boxes)
        inbox = await box.messages(INBOX)
        assert [m.uid for m in inbox] == [1, 2, 3]
        assert [m.flags for m in inbox] == [frozenset(), {SEEN}, frozenset()]
        assert [await box.read(INBOX, m.uid) for m in inbox] == [MSG + b"%d" % i for i in range(3)]
        (python,) = await box.messages("Lists/Python")
        assert python.flags == {SEEN, FLAGGED}
        # Delivery works at once, with the next UID.
        (d,) = await store.deliver(MSG, [Recipient(ALICE)])
        assert d.uid == 4
    finally:
        await store.close()


async def test_reindex_unknown_user_without_maildir(maildir_store: MaildirStore) -> None:
    with pytest.raises(UserNotFound):
        await maildir_store.reindex("ghost@example.test")
    assert not (maildir_store.data_dir / "mail/example.test/ghost").exists()


def _fail_on(monkeypatch: pytest.MonkeyPatch, poison: bytes) -> None:
    """Make the job that stores ``poison`` fail after its files are in place."""
    real = jobs_module._NewMessageJob.insert

    def insert(self: Any, tx: Any, user: str, box: Any, flags: frozenset[str], **kw: Any) -> int:
        uid: int = real(self, tx, user, box, flags, **kw)
        if self.data == poison:
            raise OSError(28, "No space left on device")
        return uid

    monkeypatch.setattr(jobs_module._NewMessageJob, "insert", insert)


@pytest.mark.parametrize("mailbox", [INBOX, "Junk"])
async def test_failed_job_leaves_nothing(
    maildir_store: MaildirStore, monkeypatch: pytest.MonkeyPatch, mailbox: str
) -> None:
    """One delivery of a batch fails after its files are placed: only it fails, without trace."""
    _fail_on(monkeypatch, b"BAD")
    outcomes = await asyncio.gather(
        *(
            maildir_store.deliver(
                b"BAD" if i == 5 else MSG, [Recipient(ALICE, mailbox), Recipient(BOB, mailbox)]
            )
            for i in range(10)
        ),
        return_exceptions=True,
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], StoreError)
    assert errors[0].code == "UNAVAILABLE" and isinstance(errors[0].__cause__, OSError)
    for user in (ALICE, BOB):
        root = maildir(maildir_store, user)
        folder = root if mailbox == INBOX else root / ".Junk"
        assert len(listing(folder, "new")) == 9
        assert listing(root, "tmp") == [] and listing(folder, "tmp") == []
        assert len(await maildir_store.mailboxes(user).messages(mailbox)) == 9
        contents = {(folder / "new" / n).read_bytes() for n in listing(folder, "new")}
        assert contents == {MSG}


async def test_failed_commit_undoes_the_batch(
    maildir_store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory fsync before COMMIT fails: every job of the batch fails, nothing stays."""
    box = maildir_store.mailboxes(ALICE)
    (uid,) = [(await box.append(INBOX, MSG)).uid]
    monkeypatch.setattr(writer_module, "fsync_dir", _broken_fsync)
    # Every job into the writer's queue (a small STORE would run on its own).
    monkeypatch.setattr(jobs_module, "SMALL_JOB", 0)
    outcomes = await asyncio.gather(
        box.append("Sent", MSG, [SEEN]),
        box.store(INBOX, [uid], [SEEN], StoreMode.ADD),
        box.create("New"),
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreError) and o.code == "UNAVAILABLE" for o in outcomes)
    root = maildir(maildir_store)
    assert listing(root / ".Sent", "cur") == [] and listing(root / ".Sent", "tmp") == []
    assert len(listing(root, "new")) == 1 and listing(root, "cur") == []
    assert not (root / ".New").exists()
    assert (await box.messages(INBOX))[0].flags == frozenset()
    assert "New" not in {b.name for b in await box.list()}
    monkeypatch.undo()
    assert (await box.store(INBOX, [uid], [SEEN], StoreMode.ADD)).updated[0].flags == {SEEN}


def _broken_fsync(path: str) -> None:
    raise OSError(5, "Input/output error")


class _SlowJob(writer_module.Job[None]):
    """Holds the writer (and its transaction) for a while."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def apply(self, tx: writer_module.Tx) -> None:
        time.sleep(self.seconds)


async def test_reads_do_not_wait_for_writes(maildir_store: MaildirStore) -> None:
    box = maildir_store.mailboxes(ALICE)
    await box.append(INBOX, MSG)
    slow = asyncio.create_task(maildir_store._submit(_SlowJob(0.5)))
    await asyncio.sleep(0.05)  # the writer is now inside its transaction
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert len(await box.messages(INBOX)) == 1
    assert await box.read(INBOX, 1) == MSG
    assert (await box.status(INBOX)).messages == 1
    assert loop.time() - start < 0.3
    assert not slow.done()
    await slow


async def test_cancelled_caller_does_not_cancel_the_write(maildir_store: MaildirStore) -> None:
    task = asyncio.create_task(maildir_store.deliver(MSG, [Recipient(ALICE)]))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):  # the delivery completes on its own
        if await maildir_store.mailboxes(ALICE).messages(INBOX):
            break
        await asyncio.sleep(0.01)
    assert len(await maildir_store.mailboxes(ALICE).messages(INBOX)) == 1


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = MaildirStore(tmp_path / "data")
    with pytest.raises(StoreError):
        await store.mailboxes(ALICE).list()
    await store.open()
    await store.create_user(ALICE)
    await store.close()
    with pytest.raises(StoreError):
        await store.create_user(BOB)
    await store.close()  # idempotent


def _threads_applying(monkeypatch: pytest.MonkeyPatch, job: type[Any]) -> list[str]:
    """The names of the threads that run ``job.apply`` from now on, in order."""
    threads: list[str] = []
    apply = job.apply

    def spy(self: Any, tx: writer_module.Tx) -> Any:
        threads.append(threading.current_thread().name)
        return apply(self, tx)

    monkeypatch.setattr(job, "apply", spy)
    return threads


async def _pruning_done(store: MaildirStore) -> None:
    """Wait (up to 1 s) for a tombstone pruning the store started in the background."""
    for _ in range(100):
        if store._pruning is None:
            return
        await asyncio.sleep(0.01)


async def test_small_flag_changes_run_on_the_callers_thread(
    maildir_store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle writer lets a small STORE run on the loop's thread; a big one is queued."""
    box = maildir_store.mailboxes(ALICE)
    uids = [(await box.append(INBOX, MSG)).uid for _ in range(jobs_module.SMALL_JOB + 1)]
    threads = _threads_applying(monkeypatch, jobs_module.StoreFlagsJob)
    watch = box.watch()
    small = await box.store(INBOX, uids[:2], [SEEN], StoreMode.ADD)
    assert [i.flags for i in small.updated] == [frozenset({SEEN})] * 2
    big = await box.store(INBOX, uids, ["$Big"], StoreMode.ADD)
    assert len(big.updated) == len(uids)
    assert threads == [threading.current_thread().name, "pochta-store-writer"]
    # The inline change is as real as any: on disk, in the index, announced.
    assert await watch.wait(5)
    assert [i.flags for i in (await box.messages(INBOX))[:2]] == [{SEEN, "$Big"}] * 2
    root = maildir(maildir_store)
    names = listing(root, "cur") + listing(root, "new")
    assert len(names) == len(uids)
    assert sum(1 for n in names if n.endswith(",S")) == 2  # the letter is in the file name
    watch.close()


async def test_expunge_of_a_big_mailbox_leaves_the_loop(
    maildir_store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An EXPUNGE scans its whole mailbox: with the caller's ``scope`` small it
    runs on the loop's thread, with a big one (or exact UIDs beyond the small
    limit) on the writer's, so a 10,000-message expunge stalls no session."""
    box = maildir_store.mailboxes(ALICE)
    uids = [(await box.append(INBOX, MSG)).uid for _ in range(4)]
    await box.store(INBOX, uids, [DELETED], StoreMode.ADD)
    threads = _threads_applying(monkeypatch, jobs_module.ExpungeJob)
    big = 16 * jobs_module.SMALL_JOB + 1
    assert await box.expunge(INBOX, [uids[0]], scope=4) == [uids[0]]
    assert await box.expunge(INBOX, [uids[1]], scope=big) == [uids[1]]  # UIDs decide
    assert await box.expunge(INBOX) == uids[2:]  # no hint: as before, on the loop
    # Last: a job answered by the writer thread may still hold the connection
    # for a moment, and a small job then queues behind it instead of inline.
    assert await box.expunge(INBOX, scope=big) == []
    here = threading.current_thread().name
    assert threads == [here, here, here, "pochta-store-writer"]


async def test_old_tombstones_are_pruned_and_changes_say_so(
    maildir_store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every PRUNE_EVERY expunged UIDs, each mailbox keeps its newest
    TOMBSTONES_KEPT tombstones (whole MODSEQs); ``changes`` since an older
    MODSEQ says it is incomplete, since a newer one stays exact."""
    from pochta.store import maildir as maildir_module

    monkeypatch.setattr(maildir_module, "PRUNE_EVERY", 4)
    monkeypatch.setattr(maildir_module, "TOMBSTONES_KEPT", 2)
    box = maildir_store.mailboxes(ALICE)
    uids = [(await box.append(INBOX, MSG)).uid for _ in range(8)]
    start = (await box.status(INBOX)).highestmodseq
    marks = []
    for pair in (uids[0:2], uids[2:4], uids[4:6]):  # three expunges of two UIDs
        await box.store(INBOX, pair, [DELETED], StoreMode.ADD)
        assert await box.expunge(INBOX, pair) == pair
        marks.append((await box.status(INBOX)).highestmodseq)
        await asyncio.sleep(0)
    await _pruning_done(maildir_store)  # it runs after the expunge that crossed 4
    # The pruning ran after the second expunge (4 UIDs): the newest 2 stay
    # (a whole MODSEQ), so the first expunge's pair went.
    old = await box.changes(INBOX, start)
    assert not old.complete and old.vanished == tuple(uids[2:6])
    assert (await box.changes(INBOX, marks[0])).complete  # the floor itself
    exact = await box.changes(INBOX, marks[1])
    assert exact.complete and exact.vanished == tuple(uids[4:6])
    assert [m.uid for m in await box.messages(INBOX)] == uids[6:]


async def test_tombstone_pruning_counts_across_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Expunges counted before a restart still count: a server restarted more
    often than every PRUNE_EVERY expunges prunes at its next open."""
    from pochta.store import maildir as maildir_module

    monkeypatch.setattr(maildir_module, "TOMBSTONES_KEPT", 1)
    monkeypatch.setattr(maildir_module, "PRUNE_EVERY", 100)  # never in this process
    first = MaildirStore(tmp_path / "data")
    await first.open()
    await first.create_user(ALICE)
    box = first.mailboxes(ALICE)
    uids = [(await box.append(INBOX, MSG)).uid for _ in range(4)]
    start = (await box.status(INBOX)).highestmodseq
    for pair in (uids[:2], uids[2:]):
        await box.store(INBOX, pair, [DELETED], StoreMode.ADD)
        await box.expunge(INBOX, pair)
    assert (await box.changes(INBOX, start)).complete
    await first.close()
    monkeypatch.setattr(maildir_module, "PRUNE_EVERY", 4)
    second = MaildirStore(tmp_path / "data")
    await second.open()
    try:
        await _pruning_done(second)
        changes = await second.mailboxes(ALICE).changes(INBOX, start)
        assert not changes.complete and changes.vanished == tuple(uids[2:])
    finally:
        await second.close()


def test_changes_since_use_the_modseq_indexes(tmp_path: Path) -> None:
    """A resync after a change reads the few changed rows, not the whole mailbox.

    SQLite prefers the primary key when the query sorts by UID; that walked
    every tombstone of a busy mailbox on each IMAP command. The plans must
    name the MODSEQ indexes.
    """
    from pochta.store import index

    conn = index.connect(str(tmp_path / "index.sqlite"))
    try:
        plans: list[str] = []

        def spy(statement: str) -> None:
            if statement.startswith("SELECT") and "modseq >" in statement:
                plan = conn.execute("EXPLAIN QUERY PLAN " + statement).fetchall()
                plans.append(" ".join(str(row[-1]) for row in plan))

        conn.set_trace_callback(spy)
        try:
            box = index.MailboxRow(1, "INBOX", 1, 1, 1, frozenset(), False)
            index.vanished(conn, box, 5)
            index.info_rows(conn, 1, 5)
        finally:
            conn.set_trace_callback(None)
        assert len(plans) == 2
        assert "expunged_by_modseq" in plans[0]
        assert "messages_by_modseq" in plans[1]
    finally:
        conn.close()


async def test_a_failed_wal_fsync_fails_the_durable_callers(
    maildir_store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The syncer's fsync of the WAL fails: the delivery is not acknowledged
    (the sender keeps the message), while flag changes, answered at COMMIT,
    are unaffected."""
    box = maildir_store.mailboxes(ALICE)
    (uid,) = [(await box.append(INBOX, MSG)).uid]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("-wal"):
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(writer_module.os, "fsync", fsync)
    with pytest.raises(StoreError) as failed:
        await maildir_store.deliver(MSG, [Recipient(ALICE)])
    assert failed.value.code == "UNAVAILABLE"
    updated = await box.store(INBOX, [uid], [SEEN], StoreMode.ADD)
    assert updated.updated[0].flags == {SEEN}
    monkeypatch.undo()
    # A later fsync that succeeds proves nothing about the frames before it
    # (the kernel may have dropped them and marked the pages clean): durable
    # writes keep failing until the store is opened again.
    with pytest.raises(StoreError):
        await maildir_store.deliver(MSG, [Recipient(ALICE)])
    reopened = MaildirStore(maildir_store.data_dir)
    await maildir_store.close()
    await reopened.open()
    try:
        assert await reopened.deliver(MSG, [Recipient(ALICE)])
    finally:
        await reopened.close()


async def test_expunged_files_go_only_after_the_wal_is_on_disk(
    maildir_store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EXPUNGE is answered at COMMIT; its files are unlinked after the next WAL fsync.

    Unlinking first would let a power cut that undoes the (not yet fsynced)
    removal leave index rows whose files are gone.
    """
    box = maildir_store.mailboxes(ALICE)
    uid = (await box.append(INBOX, MSG)).uid
    await box.store(INBOX, [uid], [DELETED], StoreMode.ADD)
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("-wal"):
            events.append("wal fsync")
        real_fsync(fd)

    unlink = jobs_module.files.unlink_quietly

    def spy_unlink(path: str) -> None:
        events.append("unlink")
        unlink(path)

    monkeypatch.setattr(writer_module.os, "fsync", fsync)
    monkeypatch.setattr(jobs_module.files, "unlink_quietly", spy_unlink)
    assert await box.expunge(INBOX) == [uid]
    for _ in range(200):
        if "unlink" in events:
            break
        await asyncio.sleep(0.01)
    assert "unlink" in events
    assert "wal fsync" in events[: events.index("unlink")]
    root = maildir(maildir_store)
    assert listing(root, "cur") == [] and listing(root, "new") == []


async def test_unreadable_file_is_a_store_error(
    maildir_store: MaildirStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small files are read on the caller's thread; an OS error still
    arrives as StoreError UNAVAILABLE, as from the reader threads."""
    from pochta.store import maildir as maildir_module

    box = maildir_store.mailboxes(ALICE)
    uid = (await box.append(INBOX, MSG)).uid

    def denied(path: str) -> bytes:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(maildir_module, "_slurp", denied)
    for read in (lambda: box.read(INBOX, uid), lambda: box.read_many(INBOX, [uid])):
        with pytest.raises(StoreError) as failed:
            await read()
        assert failed.value.code == "UNAVAILABLE"


async def test_another_process_holding_the_write_lock_never_stalls_the_loop(
    maildir_store: MaildirStore,
) -> None:
    """A small STORE runs on the loop's thread only if it can take the write
    lock at once; held elsewhere (the CLI), the writer thread waits instead."""
    box = maildir_store.mailboxes(ALICE)
    uid = (await box.append(INBOX, MSG)).uid
    other = sqlite3.connect(str(maildir_store.data_dir / "index.sqlite"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    loop = asyncio.get_running_loop()
    try:
        task = asyncio.create_task(box.store(INBOX, [uid], [SEEN], StoreMode.ADD))
        start = loop.time()
        await asyncio.sleep(0.3)  # the loop turns: nothing waits on its thread
        assert loop.time() - start < 0.6
        assert not task.done()
    finally:
        other.execute("COMMIT")
        other.close()
    assert (await asyncio.wait_for(task, 10)).updated[0].flags == {SEEN}


async def test_reopening_fences_modseq(maildir_store: MaildirStore) -> None:
    """A flag change is answered before the WAL fsync, so a power cut may undo
    it; each open moves HIGHESTMODSEQ past anything issued before, so the
    MODSEQ a client saw for the lost change is never issued again."""
    from pochta.store.mailbox_jobs import MODSEQ_FENCE

    box = maildir_store.mailboxes(ALICE)
    uid = (await box.append(INBOX, MSG)).uid
    seen = (await box.store(INBOX, [uid], [SEEN], StoreMode.ADD)).updated[0].modseq
    reopened = MaildirStore(maildir_store.data_dir)
    await maildir_store.close()
    await reopened.open()
    try:
        again = reopened.mailboxes(ALICE)
        assert (await again.status(INBOX)).highestmodseq >= seen + MODSEQ_FENCE
        flagged = await again.store(INBOX, [uid], [FLAGGED], StoreMode.ADD)
        assert flagged.updated[0].modseq > seen + MODSEQ_FENCE
    finally:
        await reopened.close()


async def test_open_serves_when_the_fence_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fence failing (another process held the write lock past the busy
    timeout, say) must not stop a server from starting."""
    from pochta.store import mailbox_jobs

    def locked(self: object, tx: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(mailbox_jobs.FenceModseqJob, "apply", locked)
    store = MaildirStore(tmp_path / "data")
    await store.open()
    try:
        await store.create_user(ALICE)
        assert (await store.mailboxes(ALICE).append(INBOX, MSG)).uid == 1
    finally:
        await store.close()
