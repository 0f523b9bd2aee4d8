"""The change feed: per-user fan-out of ``Notice``s to ``Watch`` subscribers.

Design note
-----------
One ``Feed`` per store instance. ``publish`` runs on the event loop thread
(backends whose writes happen on another thread hand it over with
``loop.call_soon_threadsafe``), appends each notice to every open watch of the
user and sets the watch's ``asyncio.Event``, so an IMAP IDLE wakes within the
same loop iteration.

A watch that nobody drains cannot grow without bound: pending notices are
coalesced per mailbox, keeping the highest MODSEQ (a later ``changes()``
reports everything anyway). Closing a watch removes it from the feed; a closed
watch's ``wait`` returns ``[]`` at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from pochta.store.interface import Notice


class FeedWatch:
    """One subscriber; implements ``pochta.store.interface.Watch``."""

    __slots__ = ("_closed", "_event", "_feed", "_pending", "user")

    def __init__(self, feed: Feed, user: str) -> None:
        self._feed = feed
        self.user = user
        self._pending: dict[str | None, int] = {}
        self._event = asyncio.Event()
        self._closed = False

    def _push(self, notice: Notice) -> None:
        previous = self._pending.get(notice.mailbox)
        if previous is None or notice.modseq > previous:
            self._pending[notice.mailbox] = notice.modseq
        self._event.set()

    def _drain(self) -> list[Notice]:
        notices = [Notice(mailbox, modseq) for mailbox, modseq in self._pending.items()]
        self._pending.clear()
        self._event.clear()
        return notices

    async def wait(self, timeout: float | None = None) -> list[Notice]:  # noqa: ASYNC109
        """Pending notices, waiting up to ``timeout`` seconds for one; ``[]`` on timeout."""
        if self._closed:
            return []
        if not self._pending:
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return []
        return self._drain()

    def close(self) -> None:
        """Stop receiving notices; idempotent."""
        if not self._closed:
            self._closed = True
            self._feed._discard(self)
            self._pending.clear()
            self._event.set()  # release a waiter blocked in wait()


class Feed:
    """All watches of one store, by user. Use only on the event loop thread."""

    def __init__(self) -> None:
        self._watches: dict[str, set[FeedWatch]] = {}
        self._stamps: dict[str, int] = {}

    def stamp(self, user: str) -> int:
        """A counter that moves whenever a notice for ``user`` is published."""
        return self._stamps.get(user, 0)

    def watch(self, user: str) -> FeedWatch:
        watch = FeedWatch(self, user)
        self._watches.setdefault(user, set()).add(watch)
        return watch

    def publish(self, user: str, notices: Iterable[Notice]) -> None:
        self._stamps[user] = self._stamps.get(user, 0) + 1
        watches = self._watches.get(user)
        if not watches:
            return
        for notice in notices:
            for watch in watches:
                watch._push(notice)

    def publish_many(self, items: Iterable[tuple[str, Notice]]) -> None:
        for user, notice in items:
            self.publish(user, (notice,))

    def close_all(self) -> None:
        for watches in list(self._watches.values()):
            for watch in list(watches):
                watch.close()

    def _discard(self, watch: FeedWatch) -> None:
        watches = self._watches.get(watch.user)
        if watches is not None:
            watches.discard(watch)
            if not watches:
                del self._watches[watch.user]
