"""The mailbox store contract that IMAP, POP3 and SMTP delivery use.

Design note
-----------
A *user* is named by its canonical address (``local@domain``, lower case).
A user owns mailboxes named by Unicode strings with ``/`` as the hierarchy
delimiter; ``INBOX`` is case-insensitive (RFC 9051 §5.1) and always exists.

Every mailbox has a UIDVALIDITY that never changes while the mailbox exists,
a UIDNEXT that only grows, and a HIGHESTMODSEQ (RFC 7162 §3.1.1) that every
change bumps: append, flag change, expunge. Expunges leave a tombstone
``(uid, modseq)`` so QRESYNC can report VANISHED UIDs (RFC 7162 §3.2.10).

Durability: ``Store.deliver`` and ``Mailboxes.append`` return only after the
message file and its directory are fsynced and the index is committed. If they
raise, nothing is visible: no half-written message ever becomes mail.

Change feed: ``Mailboxes.watch()`` gives a ``Watch``; ``await watch.wait()``
returns within milliseconds of any change to any of the user's mailboxes made
through any handle of the same store (another IMAP session, SMTP delivery,
POP3). A woken session asks ``changes()`` for what exactly changed; the notice
itself carries only which mailbox and its new HIGHESTMODSEQ.

Errors carry an IMAP response code (RFC 9051 §7.1) so protocol servers can
answer without guessing.
"""

from __future__ import annotations

import builtins
import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from pochta.mime import MessageMeta

# System flags, RFC 9051 §2.3.2. Keywords are any other atom (e.g. "$Junk").
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS = frozenset({SEEN, ANSWERED, FLAGGED, DELETED, DRAFT})

# Special-use attributes, RFC 6154 §2.
ALL = "\\All"
ARCHIVE = "\\Archive"
DRAFTS = "\\Drafts"
FLAGGED_USE = "\\Flagged"
JUNK = "\\Junk"
SENT = "\\Sent"
TRASH = "\\Trash"
SPECIAL_USES = frozenset({ALL, ARCHIVE, DRAFTS, FLAGGED_USE, JUNK, SENT, TRASH})

INBOX = "INBOX"
DELIMITER = "/"

#: Mailboxes every new user gets, with their RFC 6154 roles.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    (INBOX, None),
    ("Drafts", DRAFTS),
    ("Sent", SENT),
    ("Trash", TRASH),
    ("Junk", JUNK),
    ("Archive", ARCHIVE),
)


class StoreError(Exception):
    """A store operation failed in a way a client should hear about.

    ``code`` is the IMAP response code without brackets (RFC 9051 §7.1),
    e.g. "NONEXISTENT", or None.
    """

    code: str | None = None

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class MailboxNotFound(StoreError):
    code = "NONEXISTENT"


class MailboxExists(StoreError):
    code = "ALREADYEXISTS"


class InvalidMailboxName(StoreError):
    code = "CANNOT"


class MailboxNotEmpty(StoreError):
    """DELETE of a mailbox that has children (RFC 9051 §6.3.4 allows refusing)."""

    code = "INUSE"


class MessageNotFound(StoreError):
    code = "NONEXISTENT"


class UserNotFound(StoreError):
    code = None


class StoreMode(enum.Enum):
    """How STORE combines flags (RFC 9051 §6.4.6)."""

    REPLACE = "FLAGS"
    ADD = "+FLAGS"
    REMOVE = "-FLAGS"


@dataclass(frozen=True, slots=True)
class MailboxInfo:
    """One mailbox as LIST and STATUS see it."""

    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: frozenset[str] = frozenset()
    subscribed: bool = False
    messages: int = 0
    unseen: int = 0
    deleted: int = 0  # messages flagged \Deleted (STATUS DELETED, RFC 9051 §6.3.11)
    size: int = 0  # sum of RFC822.SIZE (STATUS SIZE, RFC 8438)


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """One message's index row: what FETCH needs without opening the file."""

    uid: int
    flags: frozenset[str]
    modseq: int
    size: int
    internal_date: dt.datetime  # timezone-aware


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a mailbox since a MODSEQ (RFC 7162 §3.1, §3.2.5)."""

    highestmodseq: int
    changed: tuple[MessageInfo, ...]  # messages whose MODSEQ > since, by UID
    vanished: tuple[int, ...]  # UIDs expunged with MODSEQ > since, ascending
    #: The mailbox's UIDVALIDITY and UIDNEXT in the same snapshot: a re-SELECT
    #: builds its view from the previous one and these (0 when not known).
    uidvalidity: int = 0
    uidnext: int = 0
    #: False when ``since`` is older than the tombstones the store still keeps
    #: (it forgets old ones): ``vanished`` then lists only those kept, and a
    #: caller that needs every UID expunged since compares the UIDs it knows
    #: with the existing ones (RFC 7162 §3.2.5.2 lets a server report every
    #: UID of a range that no longer exists).
    complete: bool = True


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The APPENDUID data of RFC 4315 §3."""

    uidvalidity: int
    uid: int


@dataclass(frozen=True, slots=True)
class CopyResult:
    """The COPYUID data of RFC 4315 §3: source UIDs and their new UIDs."""

    uidvalidity: int
    source_uids: tuple[int, ...]
    dest_uids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class StoreResult:
    """Outcome of STORE: updated rows, and UIDs that failed UNCHANGEDSINCE."""

    updated: tuple[MessageInfo, ...]
    modified: tuple[int, ...] = ()  # RFC 7162 §3.1.3 MODIFIED response code


@dataclass(frozen=True, slots=True)
class Notice:
    """A change happened in ``mailbox``; its HIGHESTMODSEQ is now ``modseq``.

    ``mailbox`` is None when the mailbox list itself changed (create, delete,
    rename, subscribe).
    """

    mailbox: str | None
    modseq: int


@dataclass(frozen=True, slots=True)
class Recipient:
    """One delivery target: a user's mailbox, with initial flags."""

    user: str
    mailbox: str = INBOX
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Delivered:
    """Where one recipient's copy landed."""

    user: str
    mailbox: str
    uidvalidity: int
    uid: int


class Watch(Protocol):
    """A subscription to one user's change feed."""

    async def wait(self, timeout: float | None = None) -> list[Notice]:  # noqa: ASYNC109
        """Return pending notices, waiting up to ``timeout`` s for one (``[]`` on timeout)."""
        ...

    def close(self) -> None:
        """Stop receiving notices; idempotent."""
        ...


class Mailboxes(Protocol):
    """One user's mailboxes: the handle an IMAP or POP3 session works through."""

    @property
    def user(self) -> str: ...

    async def list(self) -> list[MailboxInfo]:
        """Every mailbox, INBOX first, then by name (RFC 9051 §6.3.9 LIST)."""
        ...

    async def status(self, name: str) -> MailboxInfo:
        """One mailbox with its counters (RFC 9051 §6.3.11 STATUS)."""
        ...

    async def create(self, name: str, special_use: frozenset[str] = frozenset()) -> MailboxInfo:
        """RFC 9051 §6.3.4 CREATE; parents are created as needed; RFC 6154 §3 USE."""
        ...

    async def delete(self, name: str) -> None:
        """RFC 9051 §6.3.5 DELETE. INBOX cannot be deleted."""
        ...

    async def rename(self, old: str, new: str) -> None:
        """RFC 9051 §6.3.6 RENAME; children move too; INBOX moves its messages."""
        ...

    async def subscribe(self, name: str, subscribed: bool) -> None:
        """RFC 9051 §6.3.7/§6.3.8 SUBSCRIBE/UNSUBSCRIBE."""
        ...

    async def append(
        self,
        name: str,
        data: bytes,
        flags: Iterable[str] = (),
        internal_date: dt.datetime | None = None,
    ) -> AppendResult:
        """RFC 9051 §6.3.12 APPEND; durable before it returns."""
        ...

    async def messages(self, name: str) -> builtins.list[MessageInfo]:
        """Every message in the mailbox, ascending UID."""
        ...

    async def changes(self, name: str, since: int) -> Changes:
        """Messages changed and UIDs expunged with MODSEQ > ``since``
        (``Changes.complete`` False if tombstones that old were pruned)."""
        ...

    async def meta(self, name: str, uids: Sequence[int]) -> dict[int, MessageMeta]:
        """Cached parse (ENVELOPE, BODYSTRUCTURE, part offsets) per UID."""
        ...

    async def read(self, name: str, uid: int) -> bytes:
        """The exact bytes stored for the message."""
        ...

    async def read_many(self, name: str, uids: Sequence[int]) -> dict[int, bytes]:
        """The bytes of several messages in one trip to the store (POP3 reads ahead).

        UIDs that are not (or no longer) in the mailbox are left out.
        """
        ...

    async def store(
        self,
        name: str,
        uids: Sequence[int],
        flags: Iterable[str],
        mode: StoreMode,
        unchanged_since: int | None = None,
    ) -> StoreResult:
        """RFC 9051 §6.4.6 STORE, with RFC 7162 §3.1.3 UNCHANGEDSINCE."""
        ...

    async def expunge(
        self, name: str, uids: Sequence[int] | None = None, *, scope: int | None = None
    ) -> builtins.list[int]:
        """Remove messages flagged \\Deleted (only among ``uids`` when given).

        Returns the expunged UIDs, ascending (RFC 9051 §6.4.3, RFC 4315 §2.1).
        ``scope``: how many messages the removal looks at, as far as the
        caller knows (an IMAP session: its view's size); a store may do a big
        one where it cannot delay other callers.
        """
        ...

    async def remove(self, name: str, uids: Sequence[int]) -> builtins.list[int]:
        """Expunge exactly ``uids`` whatever their flags (POP3's UPDATE, RFC 1939 §6).

        UIDs no longer present are skipped. Other sessions see a normal
        expunge. Returns the removed UIDs, ascending.
        """
        ...

    async def copy(self, name: str, uids: Sequence[int], dest: str) -> CopyResult:
        """RFC 9051 §6.4.7 COPY; flags and internal date kept."""
        ...

    async def move(self, name: str, uids: Sequence[int], dest: str) -> CopyResult:
        """RFC 6851 MOVE: copy then expunge the sources, atomically."""
        ...

    def watch(self) -> Watch:
        """Subscribe to this user's change feed."""
        ...

    def stamp(self) -> int:
        """A counter that moves whenever this process changes the user's mail.

        Lets a client of the store skip asking for ``changes`` when nothing
        happened; changes made by other processes do not move it.
        """
        ...


class Store(Protocol):
    """All users' mail. One instance per server process."""

    async def open(self) -> None:
        """Start worker threads, open the index."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release resources."""
        ...

    def mailboxes(self, user: str) -> Mailboxes:
        """A handle on ``user``'s mailboxes (cheap; one per session is fine)."""
        ...

    async def create_user(self, user: str) -> None:
        """Make the user's Maildir and the default mailboxes; idempotent."""
        ...

    async def delete_user(self, user: str) -> None:
        """Remove the user's index rows (the Maildir files are left for backup)."""
        ...

    async def deliver(self, data: bytes, recipients: Sequence[Recipient]) -> list[Delivered]:
        """Store one message for several recipients, durably, once per mailbox.

        Duplicate (user, mailbox) pairs are stored once. Many concurrent calls
        share fsyncs and one index commit (group commit).
        """
        ...

    async def reindex(self, user: str) -> int:
        """Rebuild ``user``'s index from the files; returns the message count."""
        ...
