"""Group commit: one writer thread applies batches of jobs, one COMMIT each.

Design note
-----------
Every change to the Maildir store is a ``Job``. Coroutines ``submit`` jobs
and await a future; the single writer thread takes everything queued (up to
``max_batch``) and runs it as one batch. Steps:

1. ``prepare`` (before the batch): work that needs no index state, e.g.
   writing, fsyncing and parsing a new message in ``tmp/``, runs at once on a
   pool of helper threads, and the job joins the writer's queue when that is
   done. So the fsyncs of many messages proceed in parallel (the filesystem
   merges them into shared journal commits) and overlap the writer's commit
   of the previous batch, instead of running in lock-step with it.
2. ``BEGIN IMMEDIATE``; then each job's ``apply`` in order, inside its own
   SAVEPOINT: index rows plus the file renames/links that go with them, each
   registering how to undo itself (``Tx.on_undo``). A job that raises is
   rolled back to its savepoint and its file changes undone; later jobs see
   the state as if it never ran.
3. One fsync per directory the batch touched (deduplicated, in parallel),
   then one COMMIT. If either fails, every job is undone and fails. The
   COMMIT runs with ``synchronous=NORMAL``: it writes the WAL but does not
   fsync it, so the writer goes on with the next batch at once.
4. After the commit: ``cleanup`` of every job; jobs that are not
   ``durable`` (flag changes) are answered now. The durable ones go to the
   *syncer* thread, which fsyncs the WAL file once for every batch waiting
   (group commit across batches, as a database's log writer does) and only
   then answers them and publishes their change notices. Deferred removals
   (expunged files) of any job also wait for that fsync, then run on the
   janitor thread. Answers go out
   with one ``loop.call_soon_threadsafe`` per group, not per job.

So a durable caller's ``await`` returns only after its change is on disk,
and a failed job leaves nothing visible: no index row without its file, no
file (outside ``tmp/``, which ``cleanup`` empties) without its index row.
Why the WAL fsync is safe off the writer: the WAL is append-only between
checkpoints and SQLite recovers the longest valid prefix of it, so one
fsync of the file makes every COMMIT written before it durable; a
checkpoint fsyncs the WAL itself before it copies frames, and resets the
file in place (same inode), which :class:`_WalSync` checks anyway.
OS and SQLite errors reach callers as ``StoreError`` with code UNAVAILABLE
(RFC 5530), the original chained as ``__cause__``. A cancelled caller does
not cancel its job: once queued, the change happens.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pochta.store.files import fsync_dir
from pochta.store.interface import Notice, StoreError

log = logging.getLogger("pochta.store")

#: The writer checkpoints the WAL after this many COMMITs (a few pages
#: each: near SQLite's automatic checkpoint at 1,000 pages). Not by the
#: file's size: SQLite reuses the WAL file from its start without
#: shrinking it.
CHECKPOINT_EVERY = 500

#: Seconds the syncer holds post-reply work (unlinks) that no caller waits
#: for, so that it shares the next durable batch's WAL fsync.
LATER_WAIT = 0.05

T = TypeVar("T")


def _run_all(actions: list[Callable[[], object]]) -> None:
    """Post-reply actions of one batch, on the janitor thread; failures are logged."""
    for action in actions:
        try:
            action()
        except Exception:
            log.exception("store: post-reply cleanup failed")


class Tx:
    """What one job's ``apply`` may do besides SQL on ``conn``."""

    __slots__ = ("after", "conn", "dirs", "later", "notices", "undo")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.undo: list[Callable[[], object]] = []
        self.after: list[Callable[[], object]] = []
        self.later: list[Callable[[], object]] = []
        self.dirs: set[str] = set()
        self.notices: list[tuple[str, Notice]] = []

    def on_undo(self, action: Callable[[], object]) -> None:
        """Run ``action`` if this job or the batch fails (in reverse order)."""
        self.undo.append(action)

    def after_reply(self, action: Callable[[], object]) -> None:
        """Run ``action`` once the batch is committed, its callers have been
        answered *and* the WAL holding it is fsynced (on the janitor thread):
        for slow, safe-to-lose work such as unlinking expunged message files
        (a file left behind is what a crash leaves anyway; a file unlinked
        while its removal could still be undone would be lost mail)."""
        self.later.append(action)

    def after_commit(self, action: Callable[[], object]) -> None:
        """Run ``action`` once the batch is committed (best effort)."""
        self.after.append(action)

    def sync_dir(self, path: str) -> None:
        """Fsync directory ``path`` before the commit (once per batch)."""
        self.dirs.add(path)

    def notify(self, user: str, notice: Notice) -> None:
        self.notices.append((user, notice))

    def rollback_files(self) -> None:
        for action in reversed(self.undo):
            try:
                action()
            except Exception:
                log.exception("store: undo after a failed write failed")
        self.undo.clear()


class Job(abc.ABC, Generic[T]):
    """One unit of change; subclasses implement ``apply``."""

    #: Set when ``prepare`` does something, so the writer can skip the helpers.
    has_prepare = False
    #: False for changes whose loss in a power failure loses no mail (flag
    #: changes): answered at COMMIT, before the WAL fsync, and a batch of
    #: only such jobs skips the directory fsyncs, as Dovecot's default
    #: ``fsync_mode = optimized`` does for its index.
    durable = True

    @property
    def small(self) -> bool:
        """Cheap enough to apply on the event loop's thread (see ``Writer.submit``)."""
        return False

    def prepare(self) -> None:
        """Index-free work done before the transaction, possibly in parallel."""

    @abc.abstractmethod
    def apply(self, tx: Tx) -> T:
        """The index rows and file moves of this change, inside the batch transaction."""

    def cleanup(self) -> None:
        """Always runs after the batch, success or not (remove temporaries)."""


@dataclass(slots=True, eq=False)
class _Item:
    job: Job[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None
    tx: Tx | None = field(default=None)


def storage_error(exc: BaseException) -> BaseException:
    """The exception a caller sees for ``exc`` raised while writing."""
    if isinstance(exc, StoreError) or not isinstance(exc, OSError | sqlite3.Error):
        return exc
    err = StoreError(f"storage failure: {exc}", code="UNAVAILABLE")
    err.__cause__ = exc
    return err


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the change happened anyway
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class Writer:
    """The writer thread and its queue. ``start``/``stop`` from the event loop."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        publish: Callable[[list[tuple[str, Notice]]], None],  # runs on the loop
        *,
        helpers: int = 4,
        max_batch: int = 512,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self._connect = connect
        self._publish = publish
        self._on_exit = on_exit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._helpers = ThreadPoolExecutor(helpers, thread_name_prefix="pochta-store-io")
        # The writer's own directory fsyncs must not queue behind preparations.
        self._syncers = ThreadPoolExecutor(4, thread_name_prefix="pochta-store-sync")
        # Post-reply work (unlinking thousands of expunged files at a POP3
        # QUIT) runs here, in order, so that the next batch need not wait.
        self._janitor = ThreadPoolExecutor(1, thread_name_prefix="pochta-store-janitor")
        self._syncer: _WalSync | None = None
        #: The write connection, and who holds it: the writer thread for a
        #: batch, or the loop's thread for a small job (see ``submit``).
        self._conn: sqlite3.Connection | None = None
        self._conn_lock = threading.Lock()
        self._loop_thread = 0
        self._busy_ms = 0
        #: COMMITs since the last checkpoint (guarded by _conn_lock).
        self._since_checkpoint = 0
        self._inflight = 0  # jobs in prepare, not yet queued (guarded by _lock)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._accepting = False
        self._ready: asyncio.Future[None] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Number of COMMITs and of batches (for tests and metrics).
        self.commits = 0
        #: WAL fsyncs (one covers every durable batch committed before it).
        self.syncs = 0
        self.batches = 0
        self.jobs = 0

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._ready = loop.create_future()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(target=self._run, name="pochta-store-writer", daemon=True)
        self._thread.start()
        try:
            await self._ready
        except BaseException:
            await self._stopped
            self._thread.join()
            raise
        self._accepting = True

    async def stop(self) -> None:
        """Finish every queued job, then close the connection and threads."""
        if self._thread is None or self._stopped is None:
            return
        self._accepting = False
        self._queue.put(None)
        await asyncio.shield(self._stopped)
        # The thread resolved _stopped as its very last step; joining is immediate.
        self._thread.join()
        self._thread = None

    async def submit(self, job: Job[T]) -> T:
        if not self._accepting:
            raise StoreError("the store is not open", code="UNAVAILABLE")
        # On the store's own loop thread (nearly always) its loop is known:
        # asyncio.get_running_loop() costs a getpid(2) system call per job.
        own = self._loop
        if own is not None and threading.get_ident() == self._loop_thread and own.is_running():
            loop = own
        else:
            loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        item = _Item(job, loop, future)
        if job.has_prepare:
            with self._lock:
                self._inflight += 1
            self._helpers.submit(self._prepare, item)
        elif not (job.small and not job.durable and loop is self._loop and self._inline(item)):
            self._queue.put(item)
        return await future

    def _inline(self, item: _Item) -> bool:
        """Run ``item`` as a batch of its own on this (the loop's) thread, if the
        writer is idle; False if it is busy (the caller queues the job).

        Why: a flag change is a few SQL statements and a rename, ~100 us;
        handing it to the writer thread and back costs two thread wake-ups,
        which on a busy machine wait for a scheduler slice each (a STORE took
        7.6 ms at the median with 10 IMAP clients on 2 vCPUs). Only
        ``small`` jobs that need no fsync qualify; the answer still comes
        through ``_hand_over`` like any other.
        """
        conn = self._conn
        if conn is None or not self._queue.empty() or not self._conn_lock.acquire(blocking=False):
            return False
        try:
            if self._conn is None or self._syncer is None:  # closed while we waited
                return False
            if self._since_checkpoint >= CHECKPOINT_EVERY:
                return False  # the writer thread commits it, then checkpoints
            # Another process (the CLI) may hold the database's write lock:
            # never wait for it here, where waiting would stall every
            # session; the writer thread waits instead.
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return False
            finally:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            self._guarded_batch(conn, [item], begun=True)
        finally:
            self._conn_lock.release()
        return True

    # --- the writer thread ---------------------------------------------------

    def _signal(self, future: asyncio.Future[None] | None, error: BaseException | None) -> None:
        if future is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_settle, future, None, error)

    def _run(self) -> None:
        try:
            conn = self._connect()
            # Durability comes from _WalSync's fsync, not from the COMMIT.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # see _maybe_checkpoint
            syncer = self._syncer = _WalSync(_wal_path(conn), self._hand_over, self._janitor)
            self._conn = conn
            #: The connection's own wait for another process's write lock,
            #: restored after an inline job's attempt without waiting.
            self._busy_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
        except BaseException as exc:
            self._helpers.shutdown()
            self._syncers.shutdown()
            self._janitor.shutdown()
            self._signal(self._ready, storage_error(exc))
            self._signal(self._stopped, None)
            return
        self._signal(self._ready, None)
        try:
            self._serve(conn)
        finally:
            self._accepting = False  # also if _serve died of a bug
            # Every durable job is answered before the connection closes.
            syncer.stop()
            self._fail_leftovers()
            self.syncs = syncer.syncs
            with self._conn_lock:
                self._conn = None
                conn.close()
            self._helpers.shutdown()
            self._syncers.shutdown()
            self._janitor.shutdown()  # waits: the files are gone when stop() returns
            if self._on_exit is not None:
                try:
                    self._on_exit()
                except Exception:
                    log.exception("store: shutdown hook failed")
            self._signal(self._stopped, None)

    def _fail_leftovers(self) -> None:
        """Answer jobs still queued when the writer ended (only after a bug)."""
        leftover: list[_Item] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftover.append(item)
        if leftover:
            error = StoreError("the store is closed", code="UNAVAILABLE")
            for it in leftover:
                it.result, it.error = None, error
            self._hand_over(leftover, [])

    def _serve(self, conn: sqlite3.Connection) -> None:
        stopping = False
        while True:
            if stopping:
                # stop() was called: finish what is queued or still in prepare.
                with self._lock:
                    idle = self._inflight == 0
                if idle and self._queue.empty():
                    return
                try:
                    item = self._queue.get(timeout=0.005)
                except queue.Empty:
                    continue
            else:
                item = self._queue.get()
            # Everything queued joins this batch; no waiting for more (a delay
            # would make batches bigger but, measured, not faster).
            batch: list[_Item] = []
            while True:
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
                    if len(batch) >= self._max_batch:
                        break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                with self._conn_lock:
                    self._guarded_batch(conn, batch)
                    self._maybe_checkpoint(conn)

    def _maybe_checkpoint(self, conn: sqlite3.Connection) -> None:
        """Copy the WAL back into the database once it has grown, here on the
        writer thread: SQLite's automatic checkpoint (off on this connection)
        would run in whichever COMMIT crossed the limit -- possibly a small
        job's on the event loop -- with its two fsyncs."""
        if self._since_checkpoint < CHECKPOINT_EVERY:
            return
        self._since_checkpoint = 0
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("store: WAL checkpoint failed: %s", exc)

    def _guarded_batch(
        self, conn: sqlite3.Connection, batch: list[_Item], *, begun: bool = False
    ) -> None:
        try:
            self._run_batch(conn, batch, begun=begun)
        except BaseException as exc:  # a bug here must not kill the writer
            log.exception("store: batch failed")
            for it in batch:
                it.result, it.error = None, it.error or exc
            self._hand_over(batch, [])

    def _prepare(self, item: _Item) -> None:
        """On a helper thread: prepare the job, then hand it to the writer."""
        try:
            item.job.prepare()
        except BaseException as exc:
            item.error = storage_error(exc)
        finally:
            self._queue.put(item)
            with self._lock:
                self._inflight -= 1

    def _fsync_dirs(self, dirs: Iterable[str]) -> None:
        work = sorted(dirs)
        if len(work) <= 1:
            for path in work:
                fsync_dir(path)
        else:
            for _ in self._syncers.map(fsync_dir, work):
                pass

    def _run_batch(
        self, conn: sqlite3.Connection, batch: list[_Item], *, begun: bool = False
    ) -> None:
        """Apply and commit ``batch``; ``begun``: its transaction is already open."""
        self.batches += 1
        self.jobs += len(batch)
        done: list[_Item] = []
        durable = any(it.job.durable for it in batch)
        try:
            if not begun:
                conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            for it in batch:
                it.error = it.error or storage_error(exc)
        else:
            done = self._apply_all(conn, batch)
            if done:
                self._commit(conn, done, durable)
            elif conn.in_transaction:
                conn.execute("ROLLBACK")
        now: list[_Item] = []
        waiting: list[_Item] = []
        notices: list[tuple[str, Notice]] = []
        synced: list[tuple[str, Notice]] = []
        later: list[Callable[[], object]] = []
        for it in done:
            if it.error is None and it.tx is not None:
                for action in it.tx.after:
                    try:
                        action()
                    except Exception:
                        log.exception("store: post-commit cleanup failed")
        for it in batch:
            try:
                it.job.cleanup()
            except Exception:
                log.exception("store: job cleanup failed")
            ok = it.error is None and it.tx is not None
            if ok and it.job.durable:
                waiting.append(it)
                assert it.tx is not None
                synced.extend(it.tx.notices)
                later.extend(it.tx.later)
            else:
                now.append(it)
                if ok:
                    assert it.tx is not None
                    notices.extend(it.tx.notices)
                    later.extend(it.tx.later)
        if now:
            self._hand_over(now, notices)
        if waiting:
            assert self._syncer is not None
            self._syncer.submit(waiting, synced, later)
        elif later:
            assert self._syncer is not None
            self._syncer.submit([], [], later)  # after the next WAL fsync

    def _hand_over(self, batch: list[_Item], notices: list[tuple[str, Notice]]) -> None:
        """Publish notices, then settle futures: one wake-up per loop, not per job."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Item]] = {}
        for it in batch:
            by_loop.setdefault(it.loop, []).append(it)
        if notices and self._loop is not None:
            by_loop.setdefault(self._loop, [])
        here = threading.get_ident()
        for loop, items in by_loop.items():
            settle = [(it.future, it.result, it.error) for it in items]
            published = notices if loop is self._loop else []
            try:
                if loop is self._loop and here == self._loop_thread:
                    # A job run inline (``_inline``): settled right here, so
                    # the caller's ``await`` does not even yield -- going
                    # through the ready queue would make it wait for a whole
                    # loop iteration of every other session's work (a STORE
                    # took 1.5 ms at the median that way, 0.17 ms of it its own).
                    self._on_loop(published, settle)
                else:
                    loop.call_soon_threadsafe(self._on_loop, published, settle)
            except RuntimeError:  # the caller's loop is closed; nobody is listening
                pass

    def _on_loop(
        self,
        notices: list[tuple[str, Notice]],
        settle: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    ) -> None:
        # Notices first: a watcher is woken no later than the writer's caller.
        if notices:
            try:
                self._publish(notices)
            except Exception:
                log.exception("store: publishing change notices failed")
        for future, result, error in settle:
            _settle(future, result, error)

    def _apply_all(self, conn: sqlite3.Connection, batch: list[_Item]) -> list[_Item]:
        """Apply each job under a savepoint; return those that succeeded."""
        done: list[_Item] = []
        # A job alone in its batch needs no savepoint: if it fails, nothing
        # is done and the caller rolls the whole transaction back.
        solo = len(batch) == 1
        for it in batch:
            if it.error is not None:
                continue
            tx = Tx(conn)
            if not solo:
                conn.execute("SAVEPOINT job")
            try:
                it.result = it.job.apply(tx)
            except BaseException as exc:
                it.error = storage_error(exc)
                tx.rollback_files()
                if solo:
                    continue  # the caller rolls back: nothing of the batch is done
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                else:  # SQLite rolled the whole transaction back (e.g. disk full)
                    self._fail(done, exc)
                    conn.execute("BEGIN IMMEDIATE")
                    done = []
            else:
                if not solo:
                    conn.execute("RELEASE job")
                it.tx = tx
                done.append(it)
        return done

    def _commit(self, conn: sqlite3.Connection, done: list[_Item], durable: bool) -> None:
        dirs = set().union(*(it.tx.dirs for it in done if it.tx is not None))
        try:
            # Before the COMMIT: the index never names a file whose
            # directory entry could still be lost.
            if durable:
                self._fsync_dirs(dirs)
            conn.execute("COMMIT")
            self.commits += 1
            self._since_checkpoint += 1
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("store: rollback failed")
            self._fail(done, exc)

    def _fail(self, done: list[_Item], exc: BaseException) -> None:
        """Undo every applied job of the batch; each gets its own exception."""
        for it in reversed(done):
            if it.tx is not None:
                it.tx.rollback_files()
            err = StoreError(f"storage failure, nothing was changed: {exc}", code="UNAVAILABLE")
            err.__cause__ = exc
            it.error = err
            it.result = None


def _wal_path(conn: sqlite3.Connection) -> str:
    """The WAL file of ``conn``'s main database."""
    for _seq, name, path in conn.execute("PRAGMA database_list"):
        if name == "main" and path:
            return str(path) + "-wal"
    raise StoreError("the index has no file", code="UNAVAILABLE")


class _WalSync:
    """The syncer thread: fsync the WAL, then answer the durable jobs committed before it.

    ``submit`` takes a committed batch's durable jobs; the thread takes every
    batch waiting, does one fsync for all of them and hands them over in
    commit order. If the fsync fails, the jobs fail (the change is visible
    but not known to be durable: the client retries, a duplicate at worst).
    """

    def __init__(
        self,
        path: str,
        hand_over: Callable[[list[_Item], list[tuple[str, Notice]]], None],
        janitor: ThreadPoolExecutor,
    ) -> None:
        self.path = path
        self._hand_over = hand_over
        self._janitor = janitor
        self._fd: int | None = None
        self._queue: queue.SimpleQueue[
            tuple[list[_Item], list[tuple[str, Notice]], list[Callable[[], object]]] | None
        ] = queue.SimpleQueue()
        #: fsyncs done (each covers one or more batches).
        self.syncs = 0
        self._stopped = False
        #: Set by the first failed fsync, for good: Linux may report a lost
        #: write-back once and then call the pages clean, so a later fsync
        #: that succeeds proves nothing about the frames before it
        #: (PostgreSQL's "fsyncgate"). Durable writes fail until a restart.
        self._broken: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pochta-store-syncer", daemon=True)
        self._thread.start()

    def submit(
        self,
        items: list[_Item],
        notices: list[tuple[str, Notice]],
        later: list[Callable[[], object]],
    ) -> None:
        if self._stopped:  # never left unanswered
            error = StoreError("the store is closing", code="UNAVAILABLE")
            for it in items:
                it.result, it.error = None, error
            self._hand_over(items, notices)
            return
        self._queue.put((items, notices, later))

    def stop(self) -> None:
        """Answer everything submitted, then end the thread."""
        self._queue.put(None)
        self._thread.join()
        self._stopped = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            groups = [first]
            stopping = self._drain(groups)
            if not stopping and not any(group[0] for group in groups):
                # Only post-reply work (unlinks after an expunge): nobody waits
                # for this fsync, so give a durable batch a moment to come
                # and share it -- one fsync less per expunge under load.
                try:
                    more = self._queue.get(timeout=LATER_WAIT)
                except queue.Empty:
                    pass
                else:
                    if more is None:
                        stopping = True
                    else:
                        groups.append(more)
                        stopping = self._drain(groups)
            error = self._broken
            if error is None:
                try:
                    self._fsync()
                    self.syncs += 1
                except OSError as exc:
                    log.error(
                        "store: fsync of the index WAL failed: %s; new mail is refused"
                        " (senders retry) until the server restarts",
                        exc,
                    )
                    error = self._broken = storage_error(exc)
            items = [it for group in groups for it in group[0]]
            notices = [n for group in groups for n in group[1]]
            later = [a for group in groups for a in group[2]]
            if error is not None:
                # The changes are committed and visible, so watchers still
                # hear of them; but nobody is told they are safe, and no
                # file goes whose removal might not be on disk.
                for it in items:
                    it.result, it.error = None, error
                later = []
            try:
                self._hand_over(items, notices)
            except Exception:
                log.exception("store: answering after the WAL fsync failed")
            if later:
                self._janitor.submit(_run_all, later)

    def _drain(
        self,
        groups: list[tuple[list[_Item], list[tuple[str, Notice]], list[Callable[[], object]]]],
    ) -> bool:
        """Add every group waiting to ``groups``; True if ``stop`` was among them."""
        while True:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return False
            if more is None:
                return True
            groups.append(more)

    def _fsync(self) -> None:
        """fsync the WAL file, reopening it if SQLite replaced it since."""
        if self._fd is not None:
            try:
                replaced = os.fstat(self._fd).st_ino != os.stat(self.path).st_ino
            except FileNotFoundError:
                replaced = True
            if replaced:
                os.close(self._fd)
                self._fd = None
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        os.fsync(self._fd)
