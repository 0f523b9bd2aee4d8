"""The durable spool of the outbound queue.

Everything lives in ``data_dir/queue.sqlite`` (WAL, ``synchronous=FULL``):
the message bytes (``bodies``), the envelope (``messages``) and one row per
recipient with its state, attempts, next try and last reply. Keeping the
bytes in the database makes one group commit (one fsync) cover the message
and its envelope for many concurrent writers, where a file per message would
cost a file fsync and a directory fsync each.

Invariants:

* ``enqueue`` returns only after the message and its rows are committed
  and the WAL fsynced: the caller may then say 250 (mail is never lost).
* A recipient is ``queued`` until an attempt ends with a 2yz (``sent``) or a
  5yz/expiry (``failed``); only ``record`` changes that, in one commit with
  the next try time, so a restart resumes exactly where the queue stood.
  A crash between the remote 250 and ``record`` delivers that recipient
  again on restart: a duplicate, never a loss (RFC 5321 §6.1).
* A message is removed, bytes included, once no recipient is queued.

The methods are blocking (file and SQLite I/O); the runner calls them on
its own threads. Writes go through one writer thread that commits whatever
is queued together (group commit: one fsync for many writers); reads use a
second connection and never wait for a commit (WAL).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

from pochta.queue.outcome import Outcome

T = TypeVar("T")

QUEUED = "queued"
SENT = "sent"
FAILED = "failed"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS messages (
        qid TEXT PRIMARY KEY,
        mail_from TEXT NOT NULL,
        created REAL NOT NULL,
        size INTEGER NOT NULL,
        delay_notified INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS recipients (
        qid TEXT NOT NULL REFERENCES messages(qid) ON DELETE CASCADE,
        rcpt TEXT NOT NULL,
        domain TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL,
        last_try REAL,
        last_reply TEXT,
        remote_mta TEXT,
        PRIMARY KEY (qid, rcpt)
    )""",
    "CREATE INDEX IF NOT EXISTS recipients_due ON recipients(state, next_try)",
    """CREATE TABLE IF NOT EXISTS bodies (
        qid TEXT PRIMARY KEY REFERENCES messages(qid) ON DELETE CASCADE,
        data BLOB NOT NULL
    )""",
)


@dataclass(frozen=True, slots=True)
class QueuedRecipient:
    rcpt: str
    domain: str
    state: str
    attempts: int
    next_try: float
    last_try: float | None
    last_reply: str | None
    remote_mta: str | None


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    qid: str
    mail_from: str  # "" is the null reverse-path (a bounce)
    created: float
    size: int
    delay_notified: bool
    recipients: tuple[QueuedRecipient, ...]


@dataclass(frozen=True, slots=True)
class Work:
    """Recipients of one message at one domain that are due now."""

    qid: str
    mail_from: str
    created: float
    domain: str
    rcpts: tuple[str, ...]
    attempts: int  # the most attempts among them so far


def domain_of(rcpt: str) -> str:
    return rcpt.rpartition("@")[2].lower()


class Spool:
    def __init__(self, data_dir: Path) -> None:
        path = data_dir / "queue.sqlite"
        data_dir.mkdir(parents=True, exist_ok=True)
        self._db = _connect(path)
        for statement in _SCHEMA:
            self._db.execute(statement)
        # Reads get their own connection (WAL: they never wait for a commit).
        self._rdb = _connect(path)
        self._lock = threading.Lock()  # guards _rdb
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="pochta-spool", daemon=True)
        self._writer.start()
        #: Commits so far (group commit: fewer than the writes they carry).
        self.commits = 0

    def close(self) -> None:
        self._jobs.put(None)
        self._writer.join()
        with self._lock:
            self._rdb.close()
        self._db.close()

    # -- group commit --------------------------------------------------------
    # Every write is a function of the connection, run by one writer thread:
    # whatever is queued when it comes round goes into one transaction with
    # one fsync (and one fsync of the spool directory if new files were
    # placed), so the cost of durability is shared by concurrent writers.

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        job = _Job(fn)
        self._jobs.put(job)
        return cast(T, job.future.result())

    def _write_loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < 512:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # finish this batch, then stop
                    break
                batch.append(more)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Job]) -> None:
        results: list[tuple[_Job, object, BaseException | None]] = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for job in batch:
                self._db.execute("SAVEPOINT job")
                try:
                    results.append((job, job.fn(self._db), None))
                except Exception as exc:
                    self._db.execute("ROLLBACK TO job")
                    results.append((job, None, exc))
                self._db.execute("RELEASE job")
            self._db.execute("COMMIT")
            self.commits += 1
        except Exception as exc:  # the commit itself failed: nothing happened
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, result, error in results:
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)

    # -- writing -------------------------------------------------------------
    def enqueue(
        self,
        qid: str,
        mail_from: str,
        rcpts: Sequence[str],
        data: bytes,
        now: float | None = None,
    ) -> None:
        """Store a message durably for delivery to ``rcpts`` (see module note)."""
        self.enqueue_many([(qid, mail_from, rcpts, data)], now)

    def enqueue_many(
        self,
        copies: Sequence[tuple[str, str, Sequence[str], bytes]],
        now: float | None = None,
    ) -> None:
        """Store several messages, each ``(qid, mail_from, rcpts, data)``, in one
        transaction: all of them durable, or none (a forwarding MX's copies
        for several domains, so that a failure cannot leave some queued and
        the client's retry duplicate them)."""
        now = time.time() if now is None else now

        def insert(db: sqlite3.Connection) -> None:
            for qid, mail_from, rcpts, data in copies:
                db.execute(
                    "INSERT INTO messages (qid, mail_from, created, size) VALUES (?, ?, ?, ?)",
                    (qid, mail_from, now, len(data)),
                )
                db.execute("INSERT INTO bodies (qid, data) VALUES (?, ?)", (qid, data))
                db.executemany(
                    "INSERT OR IGNORE INTO recipients (qid, rcpt, domain, state, next_try)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(qid, r, domain_of(r), QUEUED, now) for r in rcpts],
                )

        self._write(insert)

    def record(
        self,
        qid: str,
        outcomes: dict[str, Outcome],
        now: float,
        retry_intervals: Sequence[int],
        max_age: float,
    ) -> tuple[list[tuple[str, Outcome]], bool]:
        """Apply one attempt's outcomes.

        Returns the recipients that have now failed for good (5yz, or 4yz
        past ``max_age``) with their outcome, for the DSN, and whether the
        message is finished (no recipient left queued; it is gone from the spool).
        """

        def apply(db: sqlite3.Connection) -> tuple[list[tuple[str, Outcome]], bool]:
            failed: list[tuple[str, Outcome]] = []
            row = db.execute("SELECT created FROM messages WHERE qid = ?", (qid,)).fetchone()
            if row is None:  # deleted by the operator meanwhile
                return [], True
            created = float(row[0])
            for rcpt, outcome in outcomes.items():
                attempts_row = db.execute(
                    "SELECT attempts FROM recipients WHERE qid = ? AND rcpt = ? AND state = ?",
                    (qid, rcpt, QUEUED),
                ).fetchone()
                if attempts_row is None:
                    continue
                attempts = int(attempts_row[0]) + 1
                if outcome.delivered:
                    state, next_try = SENT, now
                elif outcome.permanent or now - created >= max_age:
                    state, next_try = FAILED, now
                    failed.append((rcpt, outcome))
                else:
                    delay = retry_intervals[min(attempts, len(retry_intervals)) - 1]
                    state, next_try = QUEUED, now + delay
                db.execute(
                    "UPDATE recipients SET state = ?, attempts = ?, next_try = ?, last_try = ?,"
                    " last_reply = ?, remote_mta = ? WHERE qid = ? AND rcpt = ?",
                    (
                        state,
                        attempts,
                        next_try,
                        now,
                        outcome.reply(),
                        outcome.remote_mta,
                        qid,
                        rcpt,
                    ),
                )
            return failed, self._finish_if_done(db, qid)

        return self._write(apply)

    def _finish_if_done(self, db: sqlite3.Connection, qid: str) -> bool:
        left = db.execute(
            "SELECT count(*) FROM recipients WHERE qid = ? AND state = ?", (qid, QUEUED)
        ).fetchone()[0]
        if left:
            return False
        db.execute("DELETE FROM recipients WHERE qid = ?", (qid,))
        db.execute("DELETE FROM bodies WHERE qid = ?", (qid,))
        db.execute("DELETE FROM messages WHERE qid = ?", (qid,))
        return True

    def mark_delay_notified(self, qid: str) -> None:
        def mark(db: sqlite3.Connection) -> None:
            db.execute("UPDATE messages SET delay_notified = 1 WHERE qid = ?", (qid,))

        self._write(mark)

    def retry(self, qid: str | None, now: float | None = None) -> int:
        """Make queued recipients (of one message, or all) due now; returns how many."""
        when = time.time() if now is None else now

        def due_now(db: sqlite3.Connection) -> int:
            if qid is None:
                cur = db.execute(
                    "UPDATE recipients SET next_try = ? WHERE state = ?", (when, QUEUED)
                )
            else:
                cur = db.execute(
                    "UPDATE recipients SET next_try = ? WHERE qid = ? AND state = ?",
                    (when, qid, QUEUED),
                )
            return int(cur.rowcount)

        return self._write(due_now)

    def delete(self, qid: str) -> bool:
        """Drop a message from the queue without delivering or bouncing it."""

        def drop(db: sqlite3.Connection) -> bool:
            db.execute("DELETE FROM recipients WHERE qid = ?", (qid,))
            db.execute("DELETE FROM bodies WHERE qid = ?", (qid,))
            cur = db.execute("DELETE FROM messages WHERE qid = ?", (qid,))
            return cur.rowcount > 0

        return self._write(drop)

    # -- reading -------------------------------------------------------------
    def read(self, qid: str) -> bytes:
        with self._lock:
            row = self._rdb.execute("SELECT data FROM bodies WHERE qid = ?", (qid,)).fetchone()
        if row is None:
            raise FileNotFoundError(f"queued message {qid} has no body")
        return bytes(row[0])

    def due(self, now: float, exclude: Iterable[tuple[str, str]] = ()) -> list[Work]:
        """Queued recipients whose next try has come, grouped by message and domain."""
        skip = set(exclude)
        with self._lock:
            rows = self._rdb.execute(
                "SELECT r.qid, m.mail_from, m.created, r.domain, r.rcpt, r.attempts"
                " FROM recipients r JOIN messages m USING (qid)"
                " WHERE r.state = ? AND r.next_try <= ? ORDER BY r.next_try, r.qid",
                (QUEUED, now),
            ).fetchall()
        groups: dict[tuple[str, str], list[tuple[str, str, float, str, str, int]]] = {}
        for row in rows:
            key = (row[0], row[3])
            if key not in skip:
                groups.setdefault(key, []).append(row)
        return [
            Work(
                qid=qid,
                mail_from=items[0][1],
                created=items[0][2],
                domain=domain,
                rcpts=tuple(item[4] for item in items),
                attempts=max(item[5] for item in items),
            )
            for (qid, domain), items in groups.items()
        ]

    def next_due(self) -> float | None:
        with self._lock:
            row = self._rdb.execute(
                "SELECT min(next_try) FROM recipients WHERE state = ?", (QUEUED,)
            ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def delayed(self, older_than: float) -> list[QueuedMessage]:
        """Messages queued before ``older_than``, still pending, not yet delay-notified
        (never for the null sender: no DSN about a DSN)."""
        with self._lock:
            qids = [
                row[0]
                for row in self._rdb.execute(
                    "SELECT qid FROM messages m WHERE created <= ? AND delay_notified = 0"
                    " AND mail_from != '' AND EXISTS (SELECT 1 FROM recipients r"
                    " WHERE r.qid = m.qid AND r.state = ?)",
                    (older_than, QUEUED),
                )
            ]
        return [m for qid in qids for m in self.messages(qid)]

    def messages(self, qid: str | None = None) -> list[QueuedMessage]:
        with self._lock:
            if qid is None:
                msgs = self._rdb.execute(
                    "SELECT qid, mail_from, created, size, delay_notified FROM messages"
                    " ORDER BY created"
                ).fetchall()
                rcpts = self._rdb.execute(
                    "SELECT qid, rcpt, domain, state, attempts, next_try, last_try, last_reply,"
                    " remote_mta FROM recipients ORDER BY rcpt"
                ).fetchall()
            else:
                msgs = self._rdb.execute(
                    "SELECT qid, mail_from, created, size, delay_notified FROM messages"
                    " WHERE qid = ?",
                    (qid,),
                ).fetchall()
                rcpts = self._rdb.execute(
                    "SELECT qid, rcpt, domain, state, attempts, next_try, last_try, last_reply,"
                    " remote_mta FROM recipients WHERE qid = ? ORDER BY rcpt",
                    (qid,),
                ).fetchall()
        by_qid: dict[str, list[QueuedRecipient]] = {}
        for r in rcpts:
            by_qid.setdefault(r[0], []).append(QueuedRecipient(*r[1:]))
        return [
            QueuedMessage(m[0], m[1], m[2], m[3], bool(m[4]), tuple(by_qid.get(m[0], ())))
            for m in msgs
        ]


@dataclass(slots=True)
class _Job:
    fn: Callable[[sqlite3.Connection], object]
    future: Future[object] = field(default_factory=Future)


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    return db
