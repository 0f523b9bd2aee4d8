"""Greylisting: a temporary refusal of the first attempt from an unknown sender.

Design note
-----------
Legitimate MTAs queue a message that got a 4xx reply and retry it (RFC 5321
§4.5.4.1); much bulk spam software does not. So the first attempt of an
unknown *triplet* -- (client network, envelope sender, recipient) -- gets
451 4.7.1 (RFC 3463 §3.8: "delivery not authorized", temporary), and a
retry after ``delay`` seconds is accepted and remembered.

* The client is the IPv4 /24 or IPv6 /64 it connects from: large senders
  retry from another host of the same farm. An IPv4-mapped IPv6 address
  (a dual-stack socket) counts as its IPv4 address.
* The sender is lower-cased; the null reverse-path ``<>`` (RFC 5321 §4.5.5)
  is ``""``. A BATV tag (``prvs=TAG=user@domain``) changes with every
  message, so it is removed, or every message from such a domain would be
  greylisted anew. The recipient is lower-cased.
* A retry before ``delay`` is refused again with the time still to wait;
  it does not restart the clock.
* A client network that delivered ``auto_allow_after`` messages after
  passing greylisting has shown it retries; it is no longer greylisted.
  ``auto_allow_after <= 0`` turns this off.
* A triplet or client not seen for ``expire`` seconds is forgotten; rows are
  purged at most once per :data:`PURGE_INTERVAL` seconds, during a check.

The state is an SQLite file (WAL), so it survives restarts. All SQLite work
runs on one dedicated worker thread per :class:`Greylist` (the connection is
used only there), so the event loop never waits for the disk and concurrent
checks are serialized. ``synchronous=NORMAL``: after a power cut the last
few updates may be lost, which only means one more 451 for someone.

If the database cannot be used (disk full, corruption), checks let mail
through and log the error: greylisting is a filter, never a reason to stop
mail.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import TypeVar

__all__ = [
    "PURGE_INTERVAL",
    "GreyVerdict",
    "Greylist",
    "SQLiteThread",
    "client_network",
    "normalize_sender",
]

log = logging.getLogger("pochta.antispam.greylist")

T = TypeVar("T")

#: Seconds between two purges of expired rows.
PURGE_INTERVAL = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS triplets (
    network    TEXT NOT NULL,
    sender     TEXT NOT NULL,
    recipient  TEXT NOT NULL,
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,
    passed     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (network, sender, recipient)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS triplets_by_last_seen ON triplets (last_seen);
CREATE TABLE IF NOT EXISTS clients (
    network    TEXT PRIMARY KEY,
    deliveries INTEGER NOT NULL,
    last_seen  REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS clients_by_last_seen ON clients (last_seen);
"""


class SQLiteThread:
    """One SQLite connection, opened and used only on its own worker thread.

    :meth:`run` hands a function of the connection to that thread and awaits
    the result, so callers on the event loop never block on the disk, and
    jobs run one at a time in the order they were submitted. The file is
    opened (and ``setup`` run on it) by the first job, not by the
    constructor, which may run before any event loop exists.
    """

    def __init__(
        self, path: Path, setup: Callable[[sqlite3.Connection], None], *, name: str
    ) -> None:
        self.path = path
        self._setup = setup
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the worker thread; RuntimeError once closed."""
        if self._closed:
            raise RuntimeError(f"{self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._open()
        return fn(self._conn)

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE in
        # ``transaction``), so a read-modify-write is atomic even if another
        # process opened the same file.
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        """Finish the queued jobs, close the connection, stop the thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._close_connection)
        finally:
            # The thread is idle now (the close job was the last one), so
            # joining it is immediate.
            self._executor.shutdown(wait=True)

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True, slots=True)
class GreyVerdict:
    """The outcome of :meth:`Greylist.check`."""

    allowed: bool
    reason: str
    """"known triplet", "client auto-allowed", "new triplet", "retry too soon",
    or "greylist unavailable" (database error; allowed)."""
    retry_after: int
    """Seconds until a retry will be accepted; 0 when allowed."""


def client_network(ip: str) -> str:
    """The greylisting key of a client address: its IPv4 /24 or IPv6 /64.

    Something that is not an address (it cannot happen on TCP, but the
    caller's string is not trusted) is its own key.
    """
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ip_address(text)
    except ValueError:
        return text.lower()
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, IPv4Address):
        return str(IPv4Network((address, 24), strict=False))
    # int() drops a zone index (fe80::1%eth0), which is local to this host.
    return str(IPv6Network((int(address), 64), strict=False))


# BATV (draft-levine-smtp-batv): "prvs=" tag "=" the original local part.
_BATV = re.compile(r"^prvs=[0-9a-z]{1,32}=(?=.)", re.IGNORECASE)


def normalize_sender(address: str) -> str:
    """Lower case, without angle brackets or a BATV tag; ``""`` for ``<>``."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    text = text.lower()
    local, at, domain = text.rpartition("@")
    if at and _BATV.match(local):
        text = _BATV.sub("", local) + "@" + domain
    return text


def _recipient(address: str) -> str:
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text.lower()


class Greylist:
    """The greylisting database; see the module note.

    ``path`` is the SQLite file (the server uses
    ``<data_dir>/antispam/greylist.sqlite``); ``clock`` gives wall-clock
    seconds (the state outlives the process, so not a monotonic clock).
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        auto_allow_after: int = 5,
    ) -> None:
        self.path = path
        self.clock = clock
        self.auto_allow_after = auto_allow_after
        self._db = SQLiteThread(path, _setup, name="pochta-greylist")
        # Touched only on the worker thread.
        self._last_purge = -math.inf
        self._purge_age = 0

    async def check(
        self, ip: str, sender: str, recipient: str, *, delay: int, expire: int
    ) -> GreyVerdict:
        """May (``ip``, ``sender``, ``recipient``) deliver now?  Records the attempt."""
        network = client_network(ip)
        key = (network, normalize_sender(sender), _recipient(recipient))
        now = self.clock()
        try:
            return await self._db.run(lambda conn: self._check(conn, key, now, delay, expire))
        except (sqlite3.Error, OSError) as exc:
            log.error("greylist %s unusable, letting %s through: %s", self.path, network, exc)
            return GreyVerdict(True, "greylist unavailable", 0)

    async def delivered(self, ip: str) -> None:
        """A message from ``ip`` was accepted after passing greylisting.

        Counts towards auto-allowing the client network; only a network with
        a triplet that passed counts (it has shown that it retries).
        """
        network = client_network(ip)
        now = self.clock()
        try:
            await self._db.run(lambda conn: self._delivered(conn, network, now))
        except (sqlite3.Error, OSError) as exc:
            log.error("greylist %s unusable: %s", self.path, exc)

    async def close(self) -> None:
        """Wait for running work and close the file; the object is unusable after."""
        await self._db.close()

    # The rest runs on the worker thread.

    def _check(
        self,
        conn: sqlite3.Connection,
        key: tuple[str, str, str],
        now: float,
        delay: int,
        expire: int,
    ) -> GreyVerdict:
        network = key[0]
        oldest = now - expire
        with transaction(conn):
            self._maybe_purge(conn, now, expire)
            if self.auto_allow_after > 0:
                row = conn.execute(
                    "SELECT deliveries, last_seen FROM clients WHERE network = ?", (network,)
                ).fetchone()
                if row is not None and row[0] >= self.auto_allow_after and row[1] >= oldest:
                    conn.execute(
                        "UPDATE clients SET last_seen = ? WHERE network = ?", (now, network)
                    )
                    return GreyVerdict(True, "client auto-allowed", 0)
            row = conn.execute(
                "SELECT first_seen, last_seen, passed FROM triplets"
                " WHERE network = ? AND sender = ? AND recipient = ?",
                key,
            ).fetchone()
            if row is None or row[1] < oldest:
                conn.execute(
                    "INSERT OR REPLACE INTO triplets"
                    " (network, sender, recipient, first_seen, last_seen, passed)"
                    " VALUES (?, ?, ?, ?, ?, 0)",
                    (*key, now, now),
                )
                return GreyVerdict(False, "new triplet", max(delay, 0))
            first_seen, _, passed = row
            if passed:
                conn.execute(
                    "UPDATE triplets SET last_seen = ?"
                    " WHERE network = ? AND sender = ? AND recipient = ?",
                    (now, *key),
                )
                return GreyVerdict(True, "known triplet", 0)
            if first_seen > now:
                # The wall clock went back: start the wait again rather
                # than make the sender wait for the clock to catch up.
                first_seen = now
            waited = now - first_seen
            if waited >= delay:
                conn.execute(
                    "UPDATE triplets SET last_seen = ?, passed = 1"
                    " WHERE network = ? AND sender = ? AND recipient = ?",
                    (now, *key),
                )
                return GreyVerdict(True, "known triplet", 0)
            conn.execute(
                "UPDATE triplets SET first_seen = ?, last_seen = ?"
                " WHERE network = ? AND sender = ? AND recipient = ?",
                (first_seen, now, *key),
            )
            return GreyVerdict(False, "retry too soon", max(1, math.ceil(delay - waited)))

    def _delivered(self, conn: sqlite3.Connection, network: str, now: float) -> None:
        # A row older than the longest expiry seen is as good as purged:
        # its count starts again.
        oldest = now - self._purge_age if self._purge_age else -math.inf
        with transaction(conn):
            passed = conn.execute(
                "SELECT 1 FROM triplets WHERE network = ? AND passed = 1 AND last_seen >= ?"
                " LIMIT 1",
                (network, oldest),
            ).fetchone()
            if passed is None:
                return
            conn.execute(
                "INSERT INTO clients (network, deliveries, last_seen) VALUES (?, 1, ?)"
                " ON CONFLICT (network) DO UPDATE SET"
                " deliveries = CASE WHEN last_seen < ? THEN 1 ELSE deliveries + 1 END,"
                " last_seen = excluded.last_seen",
                (network, now, oldest),
            )

    def _maybe_purge(self, conn: sqlite3.Connection, now: float, expire: int) -> None:
        # Domains may have different expiry times; purge only what even the
        # longest one seen would have forgotten.
        self._purge_age = max(self._purge_age, expire)
        if now - self._last_purge < PURGE_INTERVAL:
            return
        self._last_purge = now
        oldest = now - self._purge_age
        triplets = conn.execute("DELETE FROM triplets WHERE last_seen < ?", (oldest,)).rowcount
        clients = conn.execute("DELETE FROM clients WHERE last_seen < ?", (oldest,)).rowcount
        if triplets or clients:
            log.info("greylist: forgot %d triplets and %d clients", triplets, clients)


def _setup(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)
