"""The SQLite index of the Maildir store: schema, connections, row queries.

Design note
-----------
One database, ``<data_dir>/index.sqlite``, in WAL mode with
``synchronous=FULL``: a COMMIT returns only once the WAL is fsynced, and
readers see the last committed state without waiting for the writer.

Tables: ``users``; ``mailboxes`` (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
special-use, subscription); ``messages`` (one row per message file: UID,
MODSEQ, system flags as a bit mask, keywords, size, INTERNALDATE as epoch
seconds + UTC offset, path relative to the folder, the ``MessageMeta`` JSON);
``expunged`` (tombstones for QRESYNC); ``counters`` (the last UIDVALIDITY
issued, so values never repeat).

Only the store's threads use these connections; functions here never commit
(the writer owns transactions) and raise interface errors
(``MailboxNotFound``, ``UserNotFound``) for missing rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pochta.store import common
from pochta.store import flags as flagset
from pochta.store.interface import (
    MailboxInfo,
    MailboxNotFound,
    MessageInfo,
    StoreError,
    UserNotFound,
)

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    uidvalidity   INTEGER NOT NULL,
    uidnext       INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use   TEXT NOT NULL DEFAULT '',
    subscribed    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, name)
);
CREATE TABLE IF NOT EXISTS messages (
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    modseq        INTEGER NOT NULL,
    flags         INTEGER NOT NULL,
    keywords      TEXT NOT NULL DEFAULT '',
    size          INTEGER NOT NULL,
    internal_date INTEGER NOT NULL,
    tz_minutes    INTEGER NOT NULL DEFAULT 0,
    path          TEXT NOT NULL,
    meta          BLOB NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX IF NOT EXISTS messages_by_modseq ON messages (mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS expunged (
    mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid        INTEGER NOT NULL,
    modseq     INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
-- Every resync asks "expunged since MODSEQ n" (RFC 7162 VANISHED): without
-- this, each IMAP command after a change scanned all of a mailbox's
-- tombstones (54% of the loop's time in a 10-client benchmark).
CREATE INDEX IF NOT EXISTS expunged_by_modseq ON expunged (mailbox_id, modseq);
-- The highest MODSEQ of the tombstones pruned from a mailbox (see
-- ``prune_tombstones``): changes since an older MODSEQ are incomplete.
CREATE TABLE IF NOT EXISTS vanished_floor (
    mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
    modseq     INTEGER NOT NULL
);
-- Tombstones written per mailbox since its last pruning: which mailboxes a
-- pruning looks at (no scan of every tombstone), and across restarts.
CREATE TABLE IF NOT EXISTS tombstones_added (
    mailbox_id INTEGER PRIMARY KEY REFERENCES mailboxes(id) ON DELETE CASCADE,
    count      INTEGER NOT NULL
);
"""

#: Columns that make a MessageInfo, in ``message_info``'s order (meta is left out:
#: it is the large column and listed last in the table so scans skip its pages).
INFO_COLUMNS = "uid, flags, keywords, modseq, size, internal_date, tz_minutes"


def connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the index; the writer's connection also creates the schema."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        else:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


@dataclass(slots=True)
class MailboxRow:
    id: int
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: frozenset[str]
    subscribed: bool
    #: The highest MODSEQ of its pruned tombstones (``prune_tombstones``);
    #: filled by ``user_mailbox`` only (0 elsewhere).
    floor: int = 0

    def info(self) -> MailboxInfo:
        return MailboxInfo(
            name=self.name,
            uidvalidity=self.uidvalidity,
            uidnext=self.uidnext,
            highestmodseq=self.highestmodseq,
            special_use=self.special_use,
            subscribed=self.subscribed,
        )


_MAILBOX_COLUMNS = "id, name, uidvalidity, uidnext, highestmodseq, special_use, subscribed"


def _mailbox_row(row: tuple[Any, ...]) -> MailboxRow:
    """A row of ``_MAILBOX_COLUMNS``, perhaps followed by the floor."""
    return MailboxRow(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        frozenset(row[5].split()),
        bool(row[6]),
        row[7] if len(row) > 7 else 0,
    )


@functools.lru_cache(maxsize=64)
def _zone(minutes: int) -> dt.timezone:
    return dt.UTC if minutes == 0 else dt.timezone(dt.timedelta(minutes=minutes))


def message_info(row: tuple[int, int, str, int, int, int, int]) -> MessageInfo:
    uid, bits, keywords, modseq, size, stamp, tz = row
    return MessageInfo(
        uid,
        flagset.from_bits(bits, keywords),
        modseq,
        size,
        dt.datetime.fromtimestamp(stamp, _zone(tz)),
    )


def date_columns(value: dt.datetime) -> tuple[int, int]:
    """(epoch seconds, UTC offset in minutes) of an aware datetime."""
    offset = value.utcoffset() or dt.timedelta()
    return int(value.timestamp()), int(offset.total_seconds()) // 60


# Lookups ----------------------------------------------------------------------


def user_id(conn: sqlite3.Connection, user: str) -> int | None:
    row = conn.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()
    return None if row is None else int(row[0])


def require_user(conn: sqlite3.Connection, user: str) -> int:
    uid = user_id(conn, user)
    if uid is None:
        raise UserNotFound(f"no such user {user}")
    return uid


def mailbox(conn: sqlite3.Connection, user_id: int, name: str) -> MailboxRow | None:
    row = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE user_id = ? AND name = ?",
        (user_id, name),
    ).fetchone()
    return None if row is None else _mailbox_row(row)


def require_mailbox(conn: sqlite3.Connection, user_id: int, name: str) -> MailboxRow:
    row = mailbox(conn, user_id, name)
    if row is None:
        raise MailboxNotFound(f"no mailbox {name!r}")
    return row


_USER_MAILBOX = (
    "SELECT "
    + ", ".join(f"m.{c.strip()}" for c in _MAILBOX_COLUMNS.split(","))
    + ", coalesce(f.modseq, 0)"
    + " FROM mailboxes m JOIN users u ON m.user_id = u.id"
    + " LEFT JOIN vanished_floor f ON f.mailbox_id = m.id"
    + " WHERE u.name = ? AND m.name = ?"
)


def user_mailbox(conn: sqlite3.Connection, user: str, name: str) -> MailboxRow:
    # One statement for the common case (nearly every store call makes it);
    # the two lookups only to say which of the two is missing.
    row = conn.execute(_USER_MAILBOX, (user, name)).fetchone()
    if row is not None:
        return _mailbox_row(row)
    return require_mailbox(conn, require_user(conn, user), name)


def mailboxes(conn: sqlite3.Connection, user_id: int) -> list[MailboxRow]:
    rows = conn.execute(
        f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE user_id = ?", (user_id,)
    ).fetchall()
    return [_mailbox_row(r) for r in rows]


def status(conn: sqlite3.Connection, box: MailboxRow) -> MailboxInfo:
    count, unseen, deleted, size = conn.execute(
        "SELECT count(*), total((flags & ?) = 0), total((flags & ?) != 0), total(size)"
        " FROM messages WHERE mailbox_id = ?",
        (flagset.SEEN_BIT, flagset.DELETED_BIT, box.id),
    ).fetchone()
    return MailboxInfo(
        name=box.name,
        uidvalidity=box.uidvalidity,
        uidnext=box.uidnext,
        highestmodseq=box.highestmodseq,
        special_use=box.special_use,
        subscribed=box.subscribed,
        messages=count,
        unseen=int(unseen),
        deleted=int(deleted),
        size=int(size),
    )


def info_rows(conn: sqlite3.Connection, box_id: int, since: int = 0) -> list[Any]:
    """The raw ``INFO_COLUMNS`` of a mailbox's messages with MODSEQ > ``since``, by UID."""
    if since == 0:
        return conn.execute(
            f"SELECT {INFO_COLUMNS} FROM messages WHERE mailbox_id = ? ORDER BY uid", (box_id,)
        ).fetchall()
    # The few changed rows through the MODSEQ index, sorted here (see vanished).
    rows = conn.execute(
        f"SELECT {INFO_COLUMNS} FROM messages WHERE mailbox_id = ? AND modseq > ?",
        (box_id, since),
    ).fetchall()
    rows.sort()
    return rows


def vanished(conn: sqlite3.Connection, box: MailboxRow, since: int) -> tuple[list[int], bool]:
    """UIDs expunged with a MODSEQ above ``since``, and whether that is all of
    them (False: older tombstones were pruned, see ``prune_tombstones``;
    ``box`` from ``user_mailbox``, which reads its floor)."""
    # Sorted here, not by ORDER BY: with it SQLite walks the primary key to
    # avoid a sort -- every tombstone of the mailbox -- instead of the few
    # the MODSEQ index finds (2 ms against 20 us with 50,000 tombstones).
    rows = conn.execute(
        "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ?", (box.id, since)
    )
    return sorted(r[0] for r in rows), since >= box.floor


def prune_tombstones(conn: sqlite3.Connection, keep: int, min_added: int = 0) -> int:
    """Keep the newest ``keep`` (>= 1) tombstones of each mailbox, and the
    rest of the oldest of their MODSEQs (an expunge of many UIDs shares one);
    older ones go, so what remains is exactly the tombstones above the
    mailbox's new floor.

    Looks only at mailboxes that got tombstones since their last pruning
    (``tombstones_added``), and does nothing unless at least ``min_added``
    were written since. Returns how many were removed. Without this the
    table grows with every expunge for ever (POP3 users delete all they
    download); Dovecot likewise forgets old expunges when it rotates its
    transaction log.
    """
    added = conn.execute("SELECT mailbox_id, count FROM tombstones_added").fetchall()
    if not added or sum(n for _, n in added) < min_added:
        return 0
    removed = 0
    for box_id, _ in added:
        # The MODSEQ of the keep-th newest tombstone; everything older goes,
        # so at least ``keep`` stay, in whole MODSEQs.
        kth = conn.execute(
            "SELECT modseq FROM expunged WHERE mailbox_id = ?"
            " ORDER BY modseq DESC LIMIT 1 OFFSET ?",
            (box_id, keep - 1),
        ).fetchone()
        if kth is None:
            continue  # no more than ``keep``
        (cutoff,) = conn.execute(
            "SELECT max(modseq) FROM expunged WHERE mailbox_id = ? AND modseq < ?",
            (box_id, kth[0]),
        ).fetchone()
        if cutoff is None:
            continue
        removed += conn.execute(
            "DELETE FROM expunged WHERE mailbox_id = ? AND modseq <= ?", (box_id, cutoff)
        ).rowcount
        conn.execute(
            "INSERT INTO vanished_floor (mailbox_id, modseq) VALUES (?, ?)"
            " ON CONFLICT (mailbox_id) DO UPDATE SET modseq = max(modseq, excluded.modseq)",
            (box_id, cutoff),
        )
    conn.execute("DELETE FROM tombstones_added")
    return removed


def uid_list(uids: Iterable[int]) -> str:
    """One SQL parameter holding any number of UIDs (read with ``json_each``)."""
    return "[" + ",".join(str(int(u)) for u in uids) + "]"


IN_UIDS = "uid IN (SELECT value FROM json_each(?))"


def metas(conn: sqlite3.Connection, box_id: int, uids: Iterable[int]) -> list[tuple[int, bytes]]:
    return conn.execute(
        f"SELECT uid, meta FROM messages WHERE mailbox_id = ? AND {IN_UIDS}",
        (box_id, uid_list(uids)),
    ).fetchall()


# Changes (writer connection only, inside its transaction) ---------------------


def next_uidvalidity(conn: sqlite3.Connection, floor: int = 0) -> int:
    """A UIDVALIDITY above every one this index issued and above ``floor``."""
    row = conn.execute("SELECT value FROM counters WHERE name = 'uidvalidity'").fetchone()
    value = common.next_uidvalidity(max(floor, 0 if row is None else int(row[0])))
    conn.execute(
        "INSERT INTO counters (name, value) VALUES ('uidvalidity', ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (value,),
    )
    return value


def insert_mailbox(
    conn: sqlite3.Connection,
    user_id: int,
    name: str,
    special_use: frozenset[str] = frozenset(),
    subscribed: bool = False,
    floor: int = 0,
) -> MailboxRow:
    validity = next_uidvalidity(conn, floor)
    cur = conn.execute(
        "INSERT INTO mailboxes (user_id, name, uidvalidity, special_use, subscribed)"
        " VALUES (?, ?, ?, ?, ?)",
        (user_id, name, validity, " ".join(sorted(special_use)), int(subscribed)),
    )
    assert cur.lastrowid is not None
    return MailboxRow(cur.lastrowid, name, validity, 1, 1, special_use, subscribed)


def bump_modseq(conn: sqlite3.Connection, box: MailboxRow) -> int:
    """A new MODSEQ for ``box`` (also written to the row and the table)."""
    box.highestmodseq += 1
    conn.execute("UPDATE mailboxes SET highestmodseq = ? WHERE id = ?", (box.highestmodseq, box.id))
    return box.highestmodseq


def take_uids(conn: sqlite3.Connection, box: MailboxRow, count: int) -> range:
    """Reserve ``count`` UIDs in ``box``."""
    first = box.uidnext
    if first + count - 1 > common.MAX_UINT32:
        raise StoreError("UID space of the mailbox exhausted", code="LIMIT")
    box.uidnext += count
    conn.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (box.uidnext, box.id))
    return range(first, first + count)


def tombstone(conn: sqlite3.Connection, box_id: int, uids: Iterable[int], modseq: int) -> None:
    rows = [(box_id, uid, modseq) for uid in uids]
    conn.executemany(
        "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES (?, ?, ?)"
        " ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
        rows,
    )
    conn.execute(
        "INSERT INTO tombstones_added (mailbox_id, count) VALUES (?, ?)"
        " ON CONFLICT (mailbox_id) DO UPDATE SET count = count + excluded.count",
        (box_id, len(rows)),
    )


INSERT_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, size,"
    " internal_date, tz_minutes, path, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
