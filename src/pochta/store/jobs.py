"""Write jobs that change messages: delivery, APPEND, STORE, EXPUNGE, COPY, MOVE.

Design note
-----------
Each class is one ``writer.Job``; the shared steps here (creating a mailbox,
placing a file, moving messages) serve ``mailbox_jobs`` and ``reindex`` too.
A job's ``apply`` runs on the writer thread inside the batch transaction and
pairs every file operation with its undo (``Tx.on_undo``) and every touched
directory with a deferred fsync (``Tx.sync_dir``). The ordering rules that
keep index and files consistent:

* new files (delivery, APPEND, COPY) are complete and fsynced in ``tmp/``
  before they get their final name, and that name exists (its directory
  fsynced) before the row is committed; COPY adds a hard link;
* flag changes and MOVE rename the file before the commit (renamed back if
  the batch fails); readers racing with the rename find the file by its base
  name (``files.resolve``);
* EXPUNGE unlinks files only after the commit, so a failed batch loses
  nothing; a crash in between leaves a file that ``reindex`` brings back.

Arguments arrive validated (names normalized, flags canonical) by the
caller on the event loop; jobs check what depends on index state.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import TypeVar

from pochta.mime import analyze
from pochta.store import common, files, index, names
from pochta.store import flags as flagset
from pochta.store.index import IN_UIDS, MailboxRow, uid_list
from pochta.store.interface import (
    INBOX,
    AppendResult,
    CopyResult,
    Delivered,
    MessageInfo,
    MessageNotFound,
    Notice,
    StoreMode,
    StoreResult,
)
from pochta.store.writer import Job, Tx

LIST_CHANGED = Notice(None, 0)

T = TypeVar("T")


# Shared steps ---------------------------------------------------------------


def create_mailbox(
    tx: Tx,
    layout: files.Layout,
    user: str,
    user_id: int,
    name: str,
    special_use: frozenset[str] = frozenset(),
    subscribed: bool = False,
) -> MailboxRow:
    """Insert the row and make the folder (INBOX is the user's Maildir itself).

    The new UIDVALIDITY is also recorded in the Maildir (``files.UIDVALIDITY_FILE``)
    so that a rebuild after losing the index issues higher ones.
    """
    root = layout.user_dir(user)
    floor = files.read_uidvalidity_floor(root)
    row = index.insert_mailbox(tx.conn, user_id, name, special_use, subscribed, floor)
    files.write_uidvalidity_floor(root, row.uidvalidity)
    tx.sync_dir(root)
    if name != INBOX:
        path = layout.folder(user, name)
        if files.make_maildir(path, folder=True):
            tx.on_undo(lambda: files.remove_tree_quietly(path))
    return row


def ensure_parents(tx: Tx, layout: files.Layout, user: str, user_id: int, name: str) -> None:
    """Create the missing superior mailboxes of ``name`` (RFC 9051 §6.3.4)."""
    for parent in names.parents(name):
        if index.mailbox(tx.conn, user_id, parent) is None:
            create_mailbox(tx, layout, user, user_id, parent)


def put_file(
    tx: Tx,
    src: str,
    folder: str,
    *,
    is_subfolder: bool,
    size: int,
    letters: str | None,
    keep_source: bool,
) -> str:
    """Give the complete file ``src`` a fresh name in ``folder``; return its relative path.

    A folder whose directories vanished (deleted by hand) is re-created.
    """
    rel = files.rel_path(files.new_base(size), letters)
    dst = os.path.join(folder, rel)
    tmp_dir = os.path.join(folder, "tmp")
    try:
        files.place(src, dst, keep_source=keep_source, tmp_dir=tmp_dir)
    except FileNotFoundError:
        if not os.path.exists(src):
            raise
        files.make_maildir(folder, folder=is_subfolder)
        files.place(src, dst, keep_source=keep_source, tmp_dir=tmp_dir)
    if keep_source:
        tx.on_undo(lambda: files.unlink_quietly(dst))
    else:
        tx.on_undo(lambda: os.rename(dst, src))
    tx.sync_dir(os.path.dirname(dst))
    return rel


def letters_for(flags: frozenset[str], in_cur: bool = False) -> str | None:
    """Info letters for a file with ``flags``; None keeps it in new/ (no system flags)."""
    letters = flagset.to_letters(flags)
    return letters if letters or in_cur else None


@dataclass(slots=True)
class _Row:
    """A message row as copy/move need it."""

    uid: int
    flags: int
    keywords: str
    size: int
    stamp: int
    tz: int
    path: str
    meta: bytes


def transfer(
    tx: Tx,
    layout: files.Layout,
    user: str,
    source: MailboxRow,
    dest: MailboxRow,
    uids: list[int] | None,
    *,
    move: bool,
) -> CopyResult:
    """COPY or MOVE ``uids`` (all when None) from ``source`` to ``dest``."""
    conn = tx.conn
    query = (
        "SELECT uid, flags, keywords, size, internal_date, tz_minutes, path, meta"
        " FROM messages WHERE mailbox_id = ?"
    )
    args: tuple[object, ...] = (source.id,)
    if uids is not None:
        query += f" AND {IN_UIDS}"
        args += (uid_list(uids),)
    rows = [_Row(*r) for r in conn.execute(query + " ORDER BY uid", args)]
    if not rows:
        return CopyResult(dest.uidvalidity, (), ())
    src_folder = layout.folder(user, source.name)
    dst_folder = layout.folder(user, dest.name)
    new_uids = index.take_uids(conn, dest, len(rows))
    modseq = index.bump_modseq(conn, dest)
    inserts = []
    for row, new_uid in zip(rows, new_uids, strict=True):
        rel = files.resolve(src_folder, row.path)
        if rel is None:
            raise MessageNotFound(f"the file of UID {row.uid} is missing")
        src = os.path.join(src_folder, rel)
        new_rel = put_file(
            tx,
            src,
            dst_folder,
            is_subfolder=dest.name != INBOX,
            size=row.size,
            letters=letters_for(flagset.from_bits(row.flags), rel.startswith("cur/")),
            keep_source=not move,
        )
        if move:
            tx.sync_dir(os.path.dirname(src))
        inserts.append(
            (
                *(dest.id, new_uid, modseq, row.flags, row.keywords),
                *(row.size, row.stamp, row.tz, new_rel, row.meta),
            )
        )
    conn.executemany(index.INSERT_MESSAGE, inserts)
    source_uids = tuple(r.uid for r in rows)
    if move:
        if source.id == dest.id:
            source = dest  # same row: keep UIDNEXT/MODSEQ bookkeeping in one object
        gone = index.bump_modseq(conn, source)
        conn.execute(
            f"DELETE FROM messages WHERE mailbox_id = ? AND {IN_UIDS}",
            (source.id, uid_list(source_uids)),
        )
        index.tombstone(conn, source.id, source_uids, gone)
        tx.notify(user, Notice(source.name, gone))
    tx.notify(user, Notice(dest.name, dest.highestmodseq))
    return CopyResult(dest.uidvalidity, source_uids, tuple(new_uids))


# New messages -----------------------------------------------------------------


class _NewMessageJob(Job[T]):
    """Shared by delivery and APPEND: the bytes are written and parsed in ``prepare``."""

    has_prepare = True

    def __init__(
        self,
        layout: files.Layout,
        tmp_dir: str,
        data: bytes,
        when: dt.datetime,
        mtime: float | None,
    ) -> None:
        self.layout = layout
        self.tmp_dir = tmp_dir
        self.data = data
        self.when = when
        self.mtime = mtime  # the file's mtime carries INTERNALDATE for reindex
        self.meta = b""
        self.tmp_path: str | None = None
        self.tmp_taken = False  # renamed to its final name: nothing left to remove

    def prepare(self) -> None:
        self.meta = analyze(self.data).to_json()
        try:
            self.tmp_path = files.write_durable(self.tmp_dir, self.data, self.mtime)
        except FileNotFoundError:
            # No tmp/: maybe an unknown user (apply raises before writing) or a
            # Maildir deleted by hand (apply re-creates it, then writes).
            self.tmp_path = None

    def ensure_file(self) -> str:
        if self.tmp_path is None:
            os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
            self.tmp_path = files.write_durable(self.tmp_dir, self.data, self.mtime)
        return self.tmp_path

    def cleanup(self) -> None:
        # Skipping a needless unlink matters: it locks tmp/, where other
        # deliveries are creating files at the same time.
        if self.tmp_path is not None and not self.tmp_taken:
            files.unlink_quietly(self.tmp_path)

    def insert(
        self, tx: Tx, user: str, box: MailboxRow, flags: frozenset[str], *, last: bool
    ) -> int:
        """File and row for one mailbox; the last target takes the tmp file itself."""
        src = self.ensure_file()
        rel = put_file(
            tx,
            src,
            self.layout.folder(user, box.name),
            is_subfolder=box.name != INBOX,
            size=len(self.data),
            letters=letters_for(flags),
            keep_source=not last,
        )
        if last:
            self.tmp_taken = True
            tx.on_undo(lambda: setattr(self, "tmp_taken", False))
        (uid,) = index.take_uids(tx.conn, box, 1)
        modseq = index.bump_modseq(tx.conn, box)
        bits, keywords = flagset.split(flags)
        stamp, tz = index.date_columns(self.when)
        tx.conn.execute(
            index.INSERT_MESSAGE,
            (box.id, uid, modseq, bits, keywords, len(self.data), stamp, tz, rel, self.meta),
        )
        tx.notify(user, Notice(box.name, modseq))
        return uid


class DeliverJob(_NewMessageJob[list[Delivered]]):
    def __init__(
        self,
        layout: files.Layout,
        data: bytes,
        targets: list[tuple[str, str, frozenset[str]]],
    ) -> None:
        # tmp/ of the first recipient; links reach the others (same filesystem).
        super().__init__(
            layout,
            os.path.join(layout.user_dir(targets[0][0]), "tmp"),
            data,
            common.internal_date(None),
            None,  # delivered now: the file's own mtime is right
        )
        self.targets = targets

    def apply(self, tx: Tx) -> list[Delivered]:
        conn = tx.conn
        landing: list[tuple[str, MailboxRow, frozenset[str]]] = []
        seen: set[int] = set()
        for user, name, flags in self.targets:
            user_id = index.require_user(conn, user)
            # A mailbox that is gone (deleted by its owner) falls back to INBOX,
            # as Dovecot's LDA does: mail is never refused for that.
            box = index.mailbox(conn, user_id, name) or index.require_mailbox(conn, user_id, INBOX)
            if box.id not in seen:
                seen.add(box.id)
                landing.append((user, box, flags))
        delivered = []
        for i, (user, box, flags) in enumerate(landing):
            uid = self.insert(tx, user, box, flags, last=i == len(landing) - 1)
            delivered.append(Delivered(user, box.name, box.uidvalidity, uid))
        return delivered


class AppendJob(_NewMessageJob[AppendResult]):
    def __init__(
        self,
        layout: files.Layout,
        user: str,
        name: str,
        data: bytes,
        flags: frozenset[str],
        when: dt.datetime,
    ) -> None:
        super().__init__(
            layout, os.path.join(layout.user_dir(user), "tmp"), data, when, when.timestamp()
        )
        self.user, self.name, self.flags = user, name, flags

    def apply(self, tx: Tx) -> AppendResult:
        box = index.user_mailbox(tx.conn, self.user, self.name)
        uid = self.insert(tx, self.user, box, self.flags, last=True)
        return AppendResult(box.uidvalidity, uid)


# Flags and expunge ------------------------------------------------------------

#: Flag changes of up to this many messages run on the caller's thread when
#: the writer is idle (``Job.small``).
SMALL_JOB = 64


class StoreFlagsJob(Job[StoreResult]):
    durable = False  # flags: lost in a power cut at worst, never mail

    def __init__(
        self,
        layout: files.Layout,
        user: str,
        name: str,
        uids: list[int],
        flags: frozenset[str],
        mode: StoreMode,
        unchanged_since: int | None,
    ) -> None:
        self.layout, self.user, self.name = layout, user, name
        self.uids, self.flags, self.mode = uids, flags, mode
        self.unchanged_since = unchanged_since

    @property
    def small(self) -> bool:
        return len(self.uids) <= SMALL_JOB  # a rename and a row each

    def apply(self, tx: Tx) -> StoreResult:
        conn = tx.conn
        box = index.user_mailbox(conn, self.user, self.name)
        folder = self.layout.folder(self.user, box.name)
        rows = conn.execute(
            f"SELECT {index.INFO_COLUMNS}, path FROM messages"
            f" WHERE mailbox_id = ? AND {IN_UIDS} ORDER BY uid",
            (box.id, uid_list(self.uids)),
        ).fetchall()
        updated: list[MessageInfo] = []
        modified: list[int] = []
        changes: list[tuple[int, str, int, str, int, int]] = []
        modseq = 0
        for row in rows:
            info = index.message_info(row[:7])
            if self.unchanged_since is not None and info.modseq > self.unchanged_since:
                modified.append(info.uid)
                continue
            new = flagset.apply(info.flags, self.flags, self.mode)
            if new == info.flags:
                updated.append(info)
                continue
            modseq = modseq or index.bump_modseq(conn, box)
            path = self._rename(tx, folder, row[7], info.flags, new)
            bits, keywords = flagset.split(new)
            changes.append((bits, keywords, modseq, path, box.id, info.uid))
            updated.append(MessageInfo(info.uid, new, modseq, info.size, info.internal_date))
        if changes:
            conn.executemany(
                "UPDATE messages SET flags = ?, keywords = ?, modseq = ?, path = ?"
                " WHERE mailbox_id = ? AND uid = ?",
                changes,
            )
            tx.notify(self.user, Notice(box.name, modseq))
        return StoreResult(tuple(updated), tuple(modified))

    @staticmethod
    def _rename(tx: Tx, folder: str, rel: str, old: frozenset[str], new: frozenset[str]) -> str:
        """Move the file to the name that carries ``new``'s letters; return its path."""
        if flagset.to_letters(old) == flagset.to_letters(new) and not rel.startswith("new/"):
            return rel
        current = files.resolve(folder, rel)
        if current is None:  # deleted behind our back: the row still changes
            return rel
        base, _ = files.split_name(current.rpartition("/")[2])
        letters = flagset.to_letters(new)
        target = files.rel_path(base, letters) if letters or current.startswith("cur/") else current
        if target == current:
            return current
        src, dst = os.path.join(folder, current), os.path.join(folder, target)
        os.rename(src, dst)
        tx.on_undo(lambda: os.rename(dst, src))
        tx.sync_dir(os.path.dirname(dst))
        tx.sync_dir(os.path.dirname(src))
        return target


class ExpungeJob(Job[list[int]]):
    """EXPUNGE of \\Deleted messages, or (``any_flags``) removal of exact UIDs.

    POP3's UPDATE uses ``any_flags``: flagging thousands of messages
    \\Deleted first would rename every file just before unlinking it.
    Not durable: the caller is answered at the COMMIT; the files are
    unlinked only after the WAL holding the removal is fsynced
    (``Tx.after_reply``), so a power cut either keeps both the rows and the
    files (the messages come back: nothing is lost) or loses neither.
    """

    durable = False

    def __init__(
        self,
        layout: files.Layout,
        user: str,
        name: str,
        uids: list[int] | None,
        *,
        any_flags: bool = False,
        scope: int | None = None,
    ) -> None:
        self.layout, self.user, self.name, self.uids = layout, user, name, uids
        self.any_flags = any_flags
        self.scope = scope  # see ``Mailboxes.expunge``

    @property
    def small(self) -> bool:
        # Rows only (the unlinks come later, off the loop). Without UIDs the
        # job scans the whole mailbox for \\Deleted rows, and expunging
        # 10,000 of them is ~50-100 ms of SQL: on the loop that would stall
        # every session, so a big mailbox (the caller's ``scope``) goes to
        # the writer thread.
        count = len(self.uids) if self.uids is not None else self.scope
        return count is None or count <= 16 * SMALL_JOB

    def apply(self, tx: Tx) -> list[int]:
        conn = tx.conn
        box = index.user_mailbox(conn, self.user, self.name)
        query = "SELECT uid, path FROM messages WHERE mailbox_id = ? AND flags & ? != 0"
        args: tuple[object, ...] = (box.id, flagset.DELETED_BIT)
        if self.any_flags:
            assert self.uids is not None
            query = "SELECT uid, path FROM messages WHERE mailbox_id = ?"
            args = (box.id,)
        if self.uids is not None:
            query += f" AND {IN_UIDS}"
            args += (uid_list(self.uids),)
        rows = conn.execute(query + " ORDER BY uid", args).fetchall()
        if not rows:
            return []
        uids = [r[0] for r in rows]
        modseq = index.bump_modseq(conn, box)
        conn.execute(
            f"DELETE FROM messages WHERE mailbox_id = ? AND {IN_UIDS}", (box.id, uid_list(uids))
        )
        index.tombstone(conn, box.id, uids, modseq)
        folder = self.layout.folder(self.user, box.name)
        paths = [r[1] for r in rows]

        def unlink_files() -> None:
            for rel in paths:
                current = files.resolve(folder, rel)
                if current is not None:
                    files.unlink_quietly(os.path.join(folder, current))

        tx.after_reply(unlink_files)  # thousands at a POP3 QUIT must not delay it
        tx.notify(self.user, Notice(box.name, modseq))
        return uids


class TransferJob(Job[CopyResult]):
    """COPY (RFC 9051 §6.4.7) or MOVE (RFC 6851)."""

    def __init__(
        self, layout: files.Layout, user: str, name: str, uids: list[int], dest: str, move: bool
    ) -> None:
        self.layout, self.user, self.name = layout, user, name
        self.uids, self.dest, self.move = uids, dest, move

    def apply(self, tx: Tx) -> CopyResult:
        user_id = index.require_user(tx.conn, self.user)
        source = index.require_mailbox(tx.conn, user_id, self.name)
        dest = index.require_mailbox(tx.conn, user_id, self.dest)
        if dest.id == source.id:
            dest = source
        return transfer(tx, self.layout, self.user, source, dest, self.uids, move=self.move)
