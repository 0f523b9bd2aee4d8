"""The POP3 maildrop: a snapshot of INBOX taken at login, and message bodies on the wire.

Design note
-----------
Purpose
    RFC 1939 §8 numbers messages 1..N when the session enters TRANSACTION,
    and those numbers must not change until QUIT. ``Maildrop.open`` lists
    INBOX through the store interface once and keeps (UID, size) per number;
    later deliveries are not seen until the next session, as the RFC
    expects. DELE only marks numbers; ``commit`` (the UPDATE state, RFC 1939
    §6) removes exactly those UIDs (``Mailboxes.remove``, without flagging
    them ``\\Deleted`` first), so a message another client (IMAP) flagged ``\\Deleted`` is never
    removed by POP3 and IMAP sessions see a normal EXPUNGE. If the session
    ends any other way, nothing is deleted.

Invariants
    * UIDL of a message is ``<UIDVALIDITY>.<UID>`` of the IMAP INBOX: stable
      across sessions, identical to what an IMAP client sees, and never
      reused (UIDs are not reused within one UIDVALIDITY).
    * Bytes served are the bytes stored: message N is read by its UID, so a
      message expunged by IMAP during the session reads as
      ``MessageNotFound`` and is answered with ``-ERR``, never with another
      message's bytes.
    * Sizes (STAT, LIST) are the stored sizes. Stored mail has CRLF line
      ends (SMTP refuses bare LF), so that is also the size sent, before
      dot-stuffing, as RFC 1939 §11 asks.

Speed
    ``dot_stuff`` is one ``bytes.replace`` over the whole message (a C loop),
    never a Python loop per line. Every extra pass over a 50 KB message costs
    ~40 us on the reference machine, a measurable share of the per-message
    budget, so there is no second pass to look for bare LF (see
    ``dot_stuff``). RETR reads the next messages ahead in batches
    (``Maildrop.retr``), taking the store's thread hop off the round trip.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field

from pochta.store.interface import INBOX, Mailboxes, MessageNotFound, StoreError

#: Octets read ahead at most, and messages per read-ahead batch (``Maildrop.retr``).
PREFETCH_MAX = 1 << 20
PREFETCH_COUNT = 8

__all__ = ["Maildrop", "NoSuchMessage", "dot_stuff", "top_of"]


class NoSuchMessage(Exception):
    """A message number outside the snapshot, or marked deleted (RFC 1939 §5)."""

    def __init__(self, deleted: bool = False) -> None:
        super().__init__("message is marked as deleted" if deleted else "no such message")
        self.deleted = deleted


def dot_stuff(data: bytes, head: bytes = b"") -> bytes:
    """``head``, then ``data`` as a multi-line response body: dot-stuffed,
    CRLF-terminated, with ``.CRLF``.

    RFC 1939 §3: each line starting with "." gets one more "."; the response
    ends with ``CRLF.CRLF``. A last line without a line end gets CRLF.
    Stuffing follows every LF, not only CRLF, so that even a message with
    bare LF (stored mail has CRLF; another tool may have put such a file
    there) can never make a line-splitting client see the end of the
    response early; such bare LFs are otherwise sent as they are. The
    status line goes in as ``head`` so that the whole response is built
    with one copy of the message.
    """
    parts: list[bytes | memoryview]
    lines = _dot_lines(data)
    if lines is None:
        out = data.replace(b"\n.", b"\n..")
        parts = [b"." + out if out[:1] == b"." else out]
    elif lines:
        # One more "." in front of each of those dots (views: no copies).
        view = memoryview(data)
        cuts = [0, *lines, len(data)]
        parts = []
        for start, end in itertools.pairwise(cuts):
            parts += (view[start:end], b".")
        parts.pop()
    else:
        parts = [data]
    if not data or data.endswith(b"\r\n"):
        tail = b".\r\n"
    elif data.endswith(b"\n"):
        parts[-1] = memoryview(parts[-1])[:-1]
        tail = b"\r\n.\r\n"
    else:
        tail = b"\r\n.\r\n"
    return b"".join([head, *parts, tail])


#: Dots :func:`_dot_lines` looks at one by one before it gives up.
_DOTS_CHECKED = 64


def _dot_lines(data: bytes) -> list[int] | None:
    """Offsets of the dots that start a line of ``data``; None if there are too many dots.

    Why not just ``bytes.replace``: searching for the two octets ``LF "."``
    stops at every line end (~40 us for 50 KB), while most messages have few
    dots (base64 attachments have none) and a one-octet ``find`` is a
    memchr. Text full of sentences has many: then the caller replaces.
    """
    found: list[int] = []
    at = data.find(b".")
    for _ in range(_DOTS_CHECKED):
        if at < 0:
            return found
        if at == 0 or data[at - 1] == 0x0A:
            found.append(at)
        at = data.find(b".", at + 1)
    return None if at >= 0 else found


def top_of(data: bytes, lines: int) -> bytes:
    """The header, the empty line and the first ``lines`` body lines (RFC 1939 §7 TOP).

    A message without an empty line is all header. Works on LF line ends
    too (a CR before it stays with the line).
    """
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        pos = end + 4
    else:
        end = data.find(b"\n\n")
        if end < 0:
            return data
        pos = end + 2
    for _ in range(lines):
        nl = data.find(b"\n", pos)
        if nl < 0:
            return data
        pos = nl + 1
    return data[:pos]


def _ignore_result(task: asyncio.Task[dict[int, bytes]]) -> None:
    if not task.cancelled():
        task.exception()


@dataclass(slots=True)
class _Batch:
    """Messages read ahead together: their UIDs, the number after the last, the read."""

    uids: list[int]
    after: int
    task: asyncio.Task[dict[int, bytes]]


@dataclass
class Maildrop:
    """INBOX as this POP3 session sees it; see the module note."""

    mailboxes: Mailboxes
    uidvalidity: int
    uids: list[int]
    sizes: list[int]
    deleted: set[int] = field(default_factory=set)  # message numbers, 1-based
    #: Messages being read ahead of the requests, oldest batch first (at most two).
    _batches: deque[_Batch] = field(default_factory=deque, repr=False)

    @classmethod
    async def open(cls, mailboxes: Mailboxes) -> Maildrop:
        """Snapshot INBOX (RFC 1939 §8: numbers fixed for the session)."""
        info = await mailboxes.status(INBOX)
        messages = await mailboxes.messages(INBOX)
        return cls(
            mailboxes,
            info.uidvalidity,
            [m.uid for m in messages],
            [m.size for m in messages],
        )

    def __len__(self) -> int:
        return len(self.uids)

    def check(self, number: int) -> int:
        """The index of message ``number``; ``NoSuchMessage`` if absent or deleted."""
        if not 1 <= number <= len(self.uids):
            raise NoSuchMessage
        if number in self.deleted:
            raise NoSuchMessage(deleted=True)
        return number - 1

    def stat(self) -> tuple[int, int]:
        """(count, octets) of the messages not marked deleted (RFC 1939 §5 STAT)."""
        if not self.deleted:
            return len(self.uids), sum(self.sizes)
        live = [s for n, s in enumerate(self.sizes, 1) if n not in self.deleted]
        return len(live), sum(live)

    def live(self) -> list[int]:
        """Numbers of the messages not marked deleted, ascending."""
        return [n for n in range(1, len(self.uids) + 1) if n not in self.deleted]

    def size(self, number: int) -> int:
        return self.sizes[self.check(number)]

    def unique_id(self, number: int) -> str:
        """RFC 1939 §7 UIDL: 1-70 characters of 0x21-0x7E, stable across sessions."""
        return f"{self.uidvalidity}.{self.uids[self.check(number)]}"

    async def read(self, number: int) -> bytes:
        """The stored bytes of message ``number``; the store's ``MessageNotFound``
        if another client expunged it since the snapshot."""
        return await self.mailboxes.read(INBOX, self.uids[self.check(number)])

    async def retr(self, number: int, head: bytes = b"") -> bytes:
        """``head`` and the RETR response body for message ``number``: dot-stuffed, terminated.

        Clients download in order (fetchmail, getmail, Outlook: RETR 1, DELE
        1, RETR 2 ...), so the messages after the one asked for are read
        ahead in batches (``Mailboxes.read_many``: one trip to the store's
        threads and one index query for up to ``PREFETCH_COUNT`` messages,
        at most ``PREFETCH_MAX`` octets), while the client is still busy:
        the store's thread hop leaves the round trip. Bytes are kept by UID,
        so a RETR never gets another message's bytes. Raises like ``read``.
        """
        uid = self.uids[self.check(number)]
        while self._batches and uid not in self._batches[0].uids:
            self._batches.popleft().task.cancel()
        data: bytes | None = None
        if self._batches:
            batch = self._batches[0]
            try:
                await batch.task
            except StoreError:
                # A read-ahead that failed is not the last word: drop it and
                # read this message directly (which reports its own error).
                self._batches.popleft()
            else:
                data = self._take(batch, uid)
                if data is None:
                    raise MessageNotFound(f"no message with UID {uid}")
        if data is None:
            data = await self.mailboxes.read(INBOX, uid)
            self._read_ahead(number + 1)
        return dot_stuff(data, head)

    def retr_ready(self, number: int, head: bytes = b"") -> bytes | None:
        """RETR's response body for ``number`` if it can be had without waiting, else None.

        For the session's fast path (``Pop3Session.data_received``): only
        when the read-ahead batch holding the message is already read; any
        other case (a bad number, a deleted message, a read still running
        or failed) is left to :meth:`retr`, which answers it properly.
        """
        if not 1 <= number <= len(self.uids) or number in self.deleted:
            return None
        uid = self.uids[number - 1]
        if not self._batches:
            return None
        batch = self._batches[0]
        if uid not in batch.uids or not batch.task.done() or batch.task.cancelled():
            return None
        if batch.task.exception() is not None:
            return None
        data = self._take(batch, uid)
        return None if data is None else dot_stuff(data, head)

    def _take(self, batch: _Batch, uid: int) -> bytes | None:
        """``uid``'s bytes from the read ``batch`` (None if the store had none).

        Kept there, not popped: a client may RETR the same message again;
        the batch goes once the client moves past it. Halfway through a
        batch the next one starts, so that it is read by the time the
        client gets there.
        """
        data = batch.task.result().get(uid)
        if len(self._batches) == 1 and uid in batch.uids[len(batch.uids) // 2 :]:
            self._read_ahead(batch.after)
        return data

    def _read_ahead(self, number: int) -> None:
        """Start reading the next batch of live messages from ``number`` on."""
        plan: list[int] = []
        octets = 0
        while number <= len(self.uids) and len(plan) < PREFETCH_COUNT:
            if number not in self.deleted:
                size = self.sizes[number - 1]
                if size > PREFETCH_MAX or (plan and octets + size > PREFETCH_MAX):
                    break
                plan.append(self.uids[number - 1])
                octets += size
            number += 1
        if not plan:
            return
        task = asyncio.get_running_loop().create_task(self.mailboxes.read_many(INBOX, plan))
        # A read ahead that is never asked for may fail unseen; retrieve the
        # exception so it is not reported as lost.
        task.add_done_callback(_ignore_result)
        self._batches.append(_Batch(plan, number, task))

    def close(self) -> None:
        """Drop any read ahead (the session ended)."""
        while self._batches:
            self._batches.popleft().task.cancel()

    def delete(self, number: int) -> None:
        self.check(number)
        self.deleted.add(number)

    def reset(self) -> None:
        """RFC 1939 §5 RSET: unmark every message."""
        self.deleted.clear()

    async def commit(self) -> int:
        """RFC 1939 §6 UPDATE: remove exactly the messages marked deleted.

        Returns how many were expunged; store errors propagate (the caller
        answers ``-ERR``). Messages already expunged by another client are
        skipped silently: they are gone, which is what was asked.
        """
        if not self.deleted:
            return 0
        uids = sorted(self.uids[n - 1] for n in self.deleted)
        expunged = await self.mailboxes.remove(INBOX, uids)
        self.deleted.clear()
        return len(expunged)
