"""Rebuild one user's index rows from the Maildir files (``pochta reindex``).

Design note
-----------
The files are the truth for *which* messages exist and their system flags;
the index is the truth for UIDs, keywords and MODSEQs, as far as it still
knows the files. Files are matched to rows by their base name (the part
before ``:``, which mutt, Dovecot and we never change), so:

* a file the index knows keeps its UID and keywords; its flags come from its
  name (a change bumps MODSEQ), its size and ``MessageMeta`` are recomputed;
* a new file gets the next UID, in (mtime, name) order, with its mtime as
  INTERNALDATE;
* a row whose file is gone is dropped and leaves a tombstone;
* a folder ``.Name/`` without a row becomes a mailbox (with a new
  UIDVALIDITY; default names get their special-use back), a mailbox whose
  folder is gone is dropped, and missing parents are created.

A user whose rows are all gone (the index was deleted) is rebuilt from
scratch: every mailbox gets a new UIDVALIDITY, as RFC 9051 §2.3.1.1 requires
when UIDs cannot be kept. The whole rebuild is one writer job, so sessions see
either the old index or the new one. Crash leftovers are cleaned: ``tmp/``
files older than 36 hours, and deleted folders not yet removed.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

from pochta.mime import analyze
from pochta.store import common, files, index, names
from pochta.store import flags as flagset
from pochta.store.index import MailboxRow
from pochta.store.interface import INBOX, Notice, UserNotFound
from pochta.store.jobs import LIST_CHANGED, create_mailbox
from pochta.store.writer import Job, Tx

log = logging.getLogger("pochta.store")


@dataclass(slots=True)
class _File:
    rel: str
    flags: frozenset[str]
    mtime: float


def scan_folders(root: str) -> dict[str, str]:
    """Mailbox name → folder path of every Maildir++ folder under ``root``, INBOX included."""
    found = {INBOX: root}
    with os.scandir(root) as entries:
        for entry in entries:
            if not entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
                continue
            name = names.name_from_dir(entry.name)
            if name is None or name == INBOX:
                log.warning("reindex: skipping folder %s: not a mailbox name", entry.path)
                continue
            if names.folder_dir(name) != entry.name:
                # Same name, different spelling (e.g. needless escapes): we look
                # folders up by the canonical spelling, so only adopt that one.
                log.warning("reindex: skipping folder %s: not in canonical form", entry.path)
                continue
            if os.path.isdir(os.path.join(entry.path, "cur")):
                found[name] = entry.path
    return found


def scan_messages(folder: str) -> dict[str, _File]:
    """Base name → file, for every message file in ``cur/`` and ``new/``."""
    found: dict[str, _File] = {}
    for sub in ("cur", "new"):  # cur/ first: if a base is in both, the seen copy wins
        try:
            entries = list(os.scandir(os.path.join(folder, sub)))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            base, letters = files.split_name(entry.name)
            if base in found:
                continue
            flags = flagset.from_letters(letters or "") if sub == "cur" else frozenset()
            found[base] = _File(f"{sub}/{entry.name}", flags, entry.stat().st_mtime)
    return found


class ReindexJob(Job[int]):
    def __init__(self, layout: files.Layout, user: str) -> None:
        self.layout, self.user = layout, user

    def apply(self, tx: Tx) -> int:
        conn, user = tx.conn, self.user
        root = self.layout.user_dir(user)
        user_id = index.user_id(conn, user)
        if user_id is None:
            if not os.path.isdir(root):
                raise UserNotFound(f"no such user {user} and no Maildir at {root}")
            cur = conn.execute("INSERT INTO users (name) VALUES (?)", (user,))
            assert cur.lastrowid is not None
            user_id = cur.lastrowid
        files.make_maildir(root, folder=False)
        known = {row.name: row for row in index.mailboxes(conn, user_id)}
        on_disk = scan_folders(root)
        for name in list(on_disk):
            for parent in names.parents(name):
                if parent not in on_disk:
                    on_disk[parent] = self.layout.folder(user, parent)
        for name, stale in known.items():
            if name not in on_disk:
                conn.execute("DELETE FROM mailboxes WHERE id = ?", (stale.id,))
        total = 0
        for name in common.sort_mailboxes(list(on_disk)):
            row: MailboxRow | None = known.get(name)
            if row is None:
                use = common.DEFAULT_SPECIAL_USE.get(name)
                uses = frozenset() if use is None else frozenset({use})
                row = create_mailbox(tx, self.layout, user, user_id, name, uses, subscribed=True)
            files.make_maildir(on_disk[name], folder=name != INBOX)
            total += self._folder(tx, row, on_disk[name])
            files.clean_tmp(on_disk[name])
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.name.startswith(files.TRASH_PREFIX):
                    tx.after_commit(functools.partial(files.remove_tree_quietly, entry.path))
        tx.notify(user, LIST_CHANGED)
        return total

    def _folder(self, tx: Tx, box: MailboxRow, folder: str) -> int:
        conn = tx.conn
        rows = {
            files.split_name(path.rpartition("/")[2])[0]: (uid, bits)
            for uid, path, bits in conn.execute(
                "SELECT uid, path, flags FROM messages WHERE mailbox_id = ?", (box.id,)
            )
        }
        # Delivery order (the time and counter in our file names), not the
        # files' mtimes: those tie within a clock tick.
        found = sorted(scan_messages(folder).items(), key=lambda kv: files.delivery_order(kv[0]))
        # One MODSEQ for the whole rebuild of this mailbox, taken only if something changed.
        modseq = 0

        def bump() -> int:
            nonlocal modseq
            modseq = modseq or index.bump_modseq(conn, box)
            return modseq

        new_uids = iter(index.take_uids(conn, box, sum(1 for b, _ in found if b not in rows)))
        count = 0
        for base, file in found:
            try:
                with open(os.path.join(folder, file.rel), "rb") as f:
                    data = f.read()
            except FileNotFoundError:  # removed while we looked (a UID may be skipped)
                continue
            meta = analyze(data).to_json()
            bits = flagset.to_bits(file.flags)
            count += 1
            known = rows.pop(base, None)
            if known is None:
                uid, stamp = next(new_uids), int(file.mtime)
                conn.execute(
                    index.INSERT_MESSAGE,
                    (box.id, uid, bump(), bits, "", len(data), stamp, 0, file.rel, meta),
                )
            elif known[1] != bits:
                conn.execute(
                    "UPDATE messages SET path = ?, flags = ?, size = ?, meta = ?, modseq = ?"
                    " WHERE mailbox_id = ? AND uid = ?",
                    (file.rel, bits, len(data), meta, bump(), box.id, known[0]),
                )
            else:
                conn.execute(
                    "UPDATE messages SET path = ?, size = ?, meta = ?"
                    " WHERE mailbox_id = ? AND uid = ?",
                    (file.rel, len(data), meta, box.id, known[0]),
                )
        if rows:  # rows whose file is gone
            gone = sorted(uid for uid, _ in rows.values())
            conn.execute(
                f"DELETE FROM messages WHERE mailbox_id = ? AND {index.IN_UIDS}",
                (box.id, index.uid_list(gone)),
            )
            index.tombstone(conn, box.id, gone, bump())
        if modseq:
            tx.notify(self.user, Notice(box.name, modseq))
        return count
