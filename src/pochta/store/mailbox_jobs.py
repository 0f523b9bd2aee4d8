"""Write jobs that change users and mailboxes (not messages): CREATE, DELETE, RENAME...

Design note
-----------
Same rules as ``jobs``: each ``apply`` runs on the writer thread inside the
batch transaction, pairs every directory change with its undo and fsyncs the
parent directory before the commit. A deleted folder is renamed out of the
Maildir++ namespace first (``files.TRASH_PREFIX``) and removed only after the
commit, so a failed batch can put it back. A renamed mailbox keeps its
UIDVALIDITY (it is unique per user, so no other mailbox ever had it); its
folder directories are renamed, children included (RFC 9051 §6.3.6).
"""

from __future__ import annotations

import os

from pochta.store import files, index, names
from pochta.store.interface import (
    DEFAULT_MAILBOXES,
    INBOX,
    InvalidMailboxName,
    MailboxExists,
    MailboxInfo,
    MailboxNotEmpty,
    StoreError,
)
from pochta.store.jobs import LIST_CHANGED, create_mailbox, ensure_parents, transfer
from pochta.store.writer import Job, Tx

# Users ------------------------------------------------------------------------


class CreateUserJob(Job[None]):
    def __init__(self, layout: files.Layout, user: str) -> None:
        self.layout, self.user = layout, user

    def apply(self, tx: Tx) -> None:
        root = self.layout.user_dir(self.user)
        if index.user_id(tx.conn, self.user) is not None:
            files.make_maildir(root, folder=False)  # repair a Maildir removed by hand
            return
        cur = tx.conn.execute("INSERT INTO users (name) VALUES (?)", (self.user,))
        assert cur.lastrowid is not None
        if files.make_maildir(root, folder=False):
            tx.on_undo(lambda: files.remove_tree_quietly(root))
        # The new directory entries must survive a crash like the index row.
        tx.sync_dir(os.path.dirname(root))
        tx.sync_dir(os.path.dirname(os.path.dirname(root)))
        tx.sync_dir(root)
        for name, use in DEFAULT_MAILBOXES:
            uses = frozenset() if use is None else frozenset({use})
            create_mailbox(tx, self.layout, self.user, cur.lastrowid, name, uses, True)
        tx.notify(self.user, LIST_CHANGED)


class DeleteUserJob(Job[None]):
    def __init__(self, user: str) -> None:
        self.user = user

    def apply(self, tx: Tx) -> None:
        if tx.conn.execute("DELETE FROM users WHERE name = ?", (self.user,)).rowcount:
            tx.notify(self.user, LIST_CHANGED)


# Mailboxes --------------------------------------------------------------------


class CreateJob(Job[MailboxInfo]):
    def __init__(self, layout: files.Layout, user: str, name: str, uses: frozenset[str]) -> None:
        self.layout, self.user, self.name, self.uses = layout, user, name, uses

    def apply(self, tx: Tx) -> MailboxInfo:
        user_id = index.require_user(tx.conn, self.user)
        if index.mailbox(tx.conn, user_id, self.name) is not None:
            raise MailboxExists(f"mailbox {self.name!r} exists")
        ensure_parents(tx, self.layout, self.user, user_id, self.name)
        row = create_mailbox(tx, self.layout, self.user, user_id, self.name, self.uses)
        tx.notify(self.user, LIST_CHANGED)
        return row.info()


class DeleteJob(Job[None]):
    def __init__(self, layout: files.Layout, user: str, name: str) -> None:
        self.layout, self.user, self.name = layout, user, name

    def apply(self, tx: Tx) -> None:
        conn = tx.conn
        user_id = index.require_user(conn, self.user)
        box = index.require_mailbox(conn, user_id, self.name)
        if box.name == INBOX:
            raise StoreError("INBOX cannot be deleted", code="CANNOT")
        child = conn.execute(
            "SELECT 1 FROM mailboxes WHERE user_id = ? AND substr(name, 1, ?) = ? LIMIT 1",
            (user_id, len(box.name) + 1, box.name + "/"),
        ).fetchone()
        if child is not None:
            raise MailboxNotEmpty(f"mailbox {box.name!r} has children")
        conn.execute("DELETE FROM mailboxes WHERE id = ?", (box.id,))
        path = self.layout.folder(self.user, box.name)
        if os.path.isdir(path):
            root = self.layout.user_dir(self.user)
            trash = os.path.join(root, files.TRASH_PREFIX + files.new_base(0))
            os.rename(path, trash)
            tx.on_undo(lambda: os.rename(trash, path))
            tx.sync_dir(root)
            tx.after_commit(lambda: files.remove_tree_quietly(trash))
        tx.notify(self.user, LIST_CHANGED)


class RenameJob(Job[None]):
    def __init__(self, layout: files.Layout, user: str, old: str, new: str) -> None:
        self.layout, self.user, self.old, self.new = layout, user, old, new

    def apply(self, tx: Tx) -> None:
        conn, user = tx.conn, self.user
        user_id = index.require_user(conn, user)
        source = index.require_mailbox(conn, user_id, self.old)
        if index.mailbox(conn, user_id, self.new) is not None:
            raise MailboxExists(f"mailbox {self.new!r} exists")
        if names.is_inferior(self.new, source.name):
            raise InvalidMailboxName("cannot rename a mailbox into itself")
        if source.name == INBOX:
            # RFC 9051 §6.3.6: INBOX stays (empty); its messages move to the new name.
            ensure_parents(tx, self.layout, user, user_id, self.new)
            dest = create_mailbox(tx, self.layout, user, user_id, self.new)
            transfer(tx, self.layout, user, source, dest, None, move=True)
            tx.notify(user, LIST_CHANGED)
            return
        moving = [
            row
            for row in index.mailboxes(conn, user_id)
            if row.name == source.name or names.is_inferior(row.name, source.name)
        ]
        renamed = [(row, self.new + row.name[len(source.name) :]) for row in moving]
        for _, new_name in renamed:
            if index.mailbox(conn, user_id, new_name) is not None:
                raise MailboxExists(f"mailbox {new_name!r} exists")
        for row, new_name in renamed:
            conn.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new_name, row.id))
            self._move_dir(tx, row.name, new_name)
        ensure_parents(tx, self.layout, user, user_id, self.new)
        tx.sync_dir(self.layout.user_dir(user))
        tx.notify(user, LIST_CHANGED)

    def _move_dir(self, tx: Tx, old: str, new: str) -> None:
        src, dst = self.layout.folder(self.user, old), self.layout.folder(self.user, new)
        if os.path.lexists(dst):
            raise MailboxExists(f"a folder for {new!r} is in the way on disk")
        if os.path.isdir(src):
            os.rename(src, dst)
            tx.on_undo(lambda: os.rename(dst, src))
        else:  # the folder was removed by hand; give the renamed mailbox a fresh one
            files.make_maildir(dst, folder=True)
            tx.on_undo(lambda: files.remove_tree_quietly(dst))


class SubscribeJob(Job[None]):
    def __init__(self, user: str, name: str, subscribed: bool) -> None:
        self.user, self.name, self.subscribed = user, name, subscribed

    def apply(self, tx: Tx) -> None:
        box = index.user_mailbox(tx.conn, self.user, self.name)
        tx.conn.execute(
            "UPDATE mailboxes SET subscribed = ? WHERE id = ?", (int(self.subscribed), box.id)
        )
        tx.notify(self.user, LIST_CHANGED)


#: How far every mailbox's HIGHESTMODSEQ jumps when a store opens; more
#: than the MODSEQs that commits not yet fsynced could have issued (at most
#: ``writer.CHECKPOINT_EVERY`` COMMITs of at most ``max_batch`` jobs each,
#: one bump per mailbox per job).
MODSEQ_FENCE = 1_000_000


class FenceModseqJob(Job[None]):
    """Move every mailbox's HIGHESTMODSEQ past anything issued before.

    Flag changes and expunges are answered at their COMMIT, before the WAL
    fsync (see docs/architecture.md), so a power cut can undo the last of
    them -- and without this, the MODSEQ values clients saw for them would
    be issued again for other changes, which RFC 7162 §3.1.1 forbids
    (a client resyncing from such a value would miss those changes). Run
    at every open: a store cannot tell a power cut from a clean stop.
    The undone changes themselves are not re-announced (as with Dovecot's
    ``fsync_mode = optimized``).
    """

    def apply(self, tx: Tx) -> None:
        tx.conn.execute("UPDATE mailboxes SET highestmodseq = highestmodseq + ?", (MODSEQ_FENCE,))


class PruneTombstonesJob(Job[int]):
    """``index.prune_tombstones``: returns how many tombstones went."""

    durable = False  # tombstones only: losing the pruning loses nothing

    def __init__(self, keep: int, min_added: int = 0) -> None:
        self.keep, self.min_added = keep, min_added

    def apply(self, tx: Tx) -> int:
        return index.prune_tombstones(tx.conn, self.keep, self.min_added)
