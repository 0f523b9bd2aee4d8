"""The typed, frozen syntax tree of IMAP client commands.

Design note
-----------
:func:`pochta.imap.parser.parse_command` turns the octets of one command into
``(tag, command)`` where ``command`` is one of the frozen dataclasses below,
all subclasses of :class:`Command`. Nothing here does I/O or knows about
sessions: which commands a state allows, whether an extension was ENABLEd,
and what a mailbox name refers to are the session's business.

Values are already decoded and normalized, so the session never looks at
syntax again:

* mailbox names are Unicode ``str`` (modified UTF-7 decoded for legacy
  clients, NFC, ``INBOX`` canonical); LIST patterns likewise;
* system flags are in their canonical spelling (``\\Seen``), keywords as
  written; ``\\*`` never occurs (no client command allows it);
* dates are ``datetime.date`` / aware ``datetime.datetime``;
* FETCH macros (ALL, FAST, FULL) are expanded; ``NEW`` and ``OLD`` in SEARCH
  are rewritten to their definitions (RFC 3501 §6.4.4);
* numbers are ``int`` already checked against their grammar bounds
  (:data:`MAX_NUMBER`, :data:`MAX_NUMBER64`).

:class:`SequenceSet` is the one non-trivial value type: it keeps ``*`` and
``$`` symbolic and resolves them only against a mailbox (``bounds``,
``select``, ``contains``), so a hostile ``1:4294967295`` never becomes a
four-billion-element list.

:class:`ParseError` lives here (not in the parser) so that every module can
raise a client-facing IMAP error without importing the parser; it carries the
tag, the status (``BAD`` for syntax, ``NO`` for the few semantic refusals
the grammar layer can already decide, e.g. ``[BADCHARSET]``) and the
response code.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias

from pochta.store.interface import StoreMode

__all__ = [
    "MAX_NUMBER",
    "MAX_NUMBER64",
    "MAX_SET_ITEMS",
    "Append",
    "AppendMessage",
    "Authenticate",
    "BinarySection",
    "BinarySize",
    "BodySection",
    "Capability",
    "Check",
    "Close",
    "Command",
    "Copy",
    "Create",
    "DateOp",
    "Delete",
    "Enable",
    "Examine",
    "Expunge",
    "Fetch",
    "FetchAttr",
    "FetchItem",
    "Id",
    "Idle",
    "List",
    "ListReturn",
    "ListSelect",
    "Login",
    "Logout",
    "Lsub",
    "Move",
    "Namespace",
    "Noop",
    "ParseError",
    "Partial",
    "QResync",
    "Rename",
    "Search",
    "SearchAll",
    "SearchAnd",
    "SearchBody",
    "SearchDate",
    "SearchFlag",
    "SearchHeader",
    "SearchKey",
    "SearchModSeq",
    "SearchNot",
    "SearchOr",
    "SearchReturn",
    "SearchSeq",
    "SearchSize",
    "SearchText",
    "SearchUid",
    "Section",
    "SectionText",
    "Select",
    "SequenceSet",
    "StartTLS",
    "Status",
    "StatusItem",
    "Store",
    "StoreMode",
    "Subscribe",
    "Unselect",
    "Unsubscribe",
]

#: ``number`` / ``nz-number`` upper bound: unsigned 32 bits (RFC 9051 §9).
MAX_NUMBER = 4_294_967_295
#: ``number64`` / ``mod-sequence-value`` upper bound: 63 bits (RFC 9051 §9,
#: RFC 7162 §7).
MAX_NUMBER64 = 9_223_372_036_854_775_807
#: At most this many comma-separated items in one sequence set (a 64 KiB
#: command line holds about 32,000).
MAX_SET_ITEMS = 65_536


class ParseError(Exception):
    """A command the server answers with a tagged (or untagged) BAD or NO.

    ``tag`` is None when no tag could be read: answer ``* BAD``.
    ``status`` is ``"BAD"`` for syntax errors (RFC 9051 §7.1.5) and ``"NO"``
    for refusals decided while parsing (an unsupported CHARSET,
    RFC 9051 §6.4.4; a mailbox name that is not valid modified UTF-7 or
    UTF-8). ``code`` is the response code without brackets (``"BADCHARSET
    (US-ASCII UTF-8)"``, ``"CANNOT"``, ``"TOOBIG"``) or None. ``close`` asks
    the connection to close after replying: set only when the client is
    already sending octets the server refuses to read (an oversized
    non-synchronizing literal, RFC 7888 §4). ``message`` never contains raw
    client octets, so it is safe to send as resp-text.
    """

    def __init__(
        self,
        tag: str | None,
        message: str,
        code: str | None = None,
        *,
        status: Literal["BAD", "NO"] = "BAD",
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.tag = tag
        self.message = message
        self.code = code
        self.status: Literal["BAD", "NO"] = status
        self.close = close

    def response(self) -> bytes:
        """The complete response line, e.g. ``b"a1 BAD [TOOBIG] ...\\r\\n"``."""
        code = f"[{self.code}] " if self.code else ""
        return f"{self.tag or '*'} {self.status} {code}{self.message}\r\n".encode()

    def __repr__(self) -> str:
        return f"ParseError({self.tag!r}, {self.message!r}, {self.code!r}, status={self.status!r})"


# --- sequence sets -----------------------------------------------------------

_SET_ITEM = re.compile(r"(?:[0-9]+|\*)(?::(?:[0-9]+|\*))?")


def _seq_number(text: str) -> int | None:
    if text == "*":
        return None
    if len(text) > 10:
        raise ValueError("sequence number too large")
    n = int(text)
    if not 1 <= n <= MAX_NUMBER:
        raise ValueError(f"sequence number out of range: {n}")
    return n


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """A ``sequence-set`` of RFC 9051 §9: message numbers or UIDs.

    ``ranges`` holds ``(first, last)`` pairs as written, a single number as
    ``(n, n)``; ``None`` stands for ``*`` (the largest number in use). A range
    may be written in either order (``5:2`` is ``2:5``). ``saved`` is the
    SEARCHRES ``$`` (RFC 5182 §2, RFC 9051 §6.4.4): it has no ranges and the
    session substitutes the saved result before resolving it.

    Resolve against a mailbox with :meth:`bounds` / :meth:`select` /
    :meth:`contains`; ``largest`` is the number of messages for message
    numbers, the highest UID in use for UIDs (0 for an empty mailbox, where
    ``*`` matches nothing).
    """

    ranges: tuple[tuple[int | None, int | None], ...] = ()
    saved: bool = False

    def __post_init__(self) -> None:
        if self.saved and self.ranges:
            raise ValueError("'$' cannot be combined with other ranges")
        if len(self.ranges) > MAX_SET_ITEMS:
            raise ValueError("too many ranges in a sequence set")
        for pair in self.ranges:
            for n in pair:
                if n is not None and not 1 <= n <= MAX_NUMBER:
                    raise ValueError(f"sequence number out of range: {n}")

    @classmethod
    def parse(cls, text: str | bytes) -> SequenceSet:
        """Parse ``1:3,5,7:*`` or ``$``; ``ValueError`` when it is not one."""
        if isinstance(text, bytes):
            text = text.decode("ascii", "replace")
        if text == "$":
            return cls(saved=True)
        items = text.split(",", MAX_SET_ITEMS)
        if len(items) > MAX_SET_ITEMS:
            raise ValueError("too many ranges in a sequence set")
        ranges: list[tuple[int | None, int | None]] = []
        for item in items:
            if not _SET_ITEM.fullmatch(item):
                raise ValueError(f"invalid sequence set item {item[:20]!r}")
            first, _, last = item.partition(":")
            a = _seq_number(first)
            ranges.append((a, _seq_number(last) if last else a))
        return cls(tuple(ranges))

    @classmethod
    def from_numbers(cls, numbers: Iterable[int]) -> SequenceSet:
        """The shortest set of exactly ``numbers`` (e.g. for ESEARCH ALL, COPYUID).

        An empty input gives an empty set, whose ``str`` is ``""``; IMAP has
        no syntax for it, so callers leave such a set out of a response.
        """
        ranges: list[tuple[int | None, int | None]] = []
        start = end = -1
        for n in sorted(set(numbers)):
            if n == end + 1:
                end = n
                continue
            if start > 0:
                ranges.append((start, end))
            start = end = n
        if start > 0:
            ranges.append((start, end))
        return cls(tuple(ranges))

    def __str__(self) -> str:
        if self.saved:
            return "$"
        return ",".join(_range_str(a, b) for a, b in self.ranges)

    @property
    def has_star(self) -> bool:
        """True when ``*`` occurs."""
        return any(a is None or b is None for a, b in self.ranges)

    def max_number(self) -> int:
        """The largest number written (``*`` ignored); 0 if none.

        The session compares it with the message count: a message number
        beyond it is a BAD (RFC 9051 §9, ``seq-number``).
        """
        return max((n for pair in self.ranges for n in pair if n is not None), default=0)

    def bounds(self, largest: int) -> list[tuple[int, int]]:
        """Inclusive ``(lo, hi)`` ranges inside ``1..largest``: sorted, merged.

        ``*`` is ``largest``; a range reaching past ``largest`` is cut there,
        so ``UID 559:*`` still includes the highest UID (RFC 9051 §9 note on
        ``seq-range``).
        """
        if self.saved:
            raise ValueError("resolve '$' (the saved search result) first")
        if largest <= 0:
            return []
        raw: list[tuple[int, int]] = []
        for a, b in self.ranges:
            lo = largest if a is None else a
            hi = largest if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            hi = min(hi, largest)
            if lo <= hi:
                raw.append((lo, hi))
        raw.sort()
        merged: list[tuple[int, int]] = []
        for lo, hi in raw:
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def expand(self, largest: int) -> list[int]:
        """Every number in the set, ascending, up to ``largest``.

        Costs O(``largest``) at worst: use it for message numbers; for UIDs
        use :meth:`select` with the UIDs that exist.
        """
        return [n for lo, hi in self.bounds(largest) for n in range(lo, hi + 1)]

    def select(self, values: Sequence[int], largest: int | None = None) -> list[int]:
        """The members of the ascending ``values`` that are in the set.

        ``largest`` defaults to ``values[-1]``. O(ranges × log len(values)
        + result): right for UIDs, whatever the numbers written.
        """
        if not values:
            return []
        top = values[-1] if largest is None else largest
        out: list[int] = []
        for lo, hi in self.bounds(top):
            out.extend(values[bisect_left(values, lo) : bisect_right(values, hi)])
        return out

    def contains(self, n: int, largest: int) -> bool:
        """Whether ``n`` is in the set (with ``*`` = ``largest``)."""
        if not 1 <= n <= largest:
            return False
        for a, b in self.ranges:
            lo = largest if a is None else a
            hi = largest if b is None else b
            if lo > hi:
                lo, hi = hi, lo
            if lo <= n <= min(hi, largest):
                return True
        return False


def _range_str(a: int | None, b: int | None) -> str:
    first = "*" if a is None else str(a)
    if a == b:
        return first
    return f"{first}:{'*' if b is None else b}"


# --- commands ------------------------------------------------------------------


class Command:
    """Base of every command. ``name`` is the command word (``"UID FETCH"``
    is a :class:`Fetch` with ``uid=True``), the key of the session's
    per-state command table (RFC 9051 §6)."""

    __slots__ = ()
    name: ClassVar[str] = ""


@dataclass(frozen=True, slots=True)
class Capability(Command):
    """RFC 9051 §6.1.1 CAPABILITY."""

    name: ClassVar[str] = "CAPABILITY"


@dataclass(frozen=True, slots=True)
class Noop(Command):
    """RFC 9051 §6.1.2 NOOP."""

    name: ClassVar[str] = "NOOP"


@dataclass(frozen=True, slots=True)
class Logout(Command):
    """RFC 9051 §6.1.3 LOGOUT."""

    name: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTLS(Command):
    """RFC 9051 §6.2.1 STARTTLS."""

    name: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Authenticate(Command):
    """RFC 9051 §6.2.2 AUTHENTICATE, with RFC 4959 SASL-IR.

    ``mechanism`` is upper case. ``initial_response`` is the decoded initial
    response (``b""`` when the client sent ``=``), None when absent.
    """

    name: ClassVar[str] = "AUTHENTICATE"
    mechanism: str
    initial_response: bytes | None = None


@dataclass(frozen=True, slots=True)
class Login(Command):
    """RFC 9051 §6.2.3 LOGIN. Both strings decoded as UTF-8."""

    name: ClassVar[str] = "LOGIN"
    username: str
    password: str

    def __repr__(self) -> str:  # keep passwords out of logs
        return f"Login(username={self.username!r}, password='***')"


@dataclass(frozen=True, slots=True)
class Enable(Command):
    """RFC 9051 §6.3.1 ENABLE (RFC 5161). Capability names upper case."""

    name: ClassVar[str] = "ENABLE"
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Id(Command):
    """RFC 2971 §3.1 ID: field/value pairs, or None for ``ID NIL``."""

    name: ClassVar[str] = "ID"
    params: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True, slots=True)
class QResync:
    """The QRESYNC select parameter (RFC 7162 §3.2.5).

    ``known_uids`` and both sets of ``seq_match`` (known message numbers,
    their UIDs) never contain ``*`` or ``$``.
    """

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet, SequenceSet] | None = None


@dataclass(frozen=True, slots=True)
class Select(Command):
    """RFC 9051 §6.3.2 SELECT, with RFC 7162 §3.1.8 CONDSTORE and §3.2.5 QRESYNC."""

    name: ClassVar[str] = "SELECT"
    readonly: ClassVar[bool] = False
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Examine(Command):
    """RFC 9051 §6.3.3 EXAMINE: SELECT, read-only (same parameters)."""

    name: ClassVar[str] = "EXAMINE"
    readonly: ClassVar[bool] = True
    mailbox: str
    condstore: bool = False
    qresync: QResync | None = None


@dataclass(frozen=True, slots=True)
class Create(Command):
    """RFC 9051 §6.3.4 CREATE, with RFC 6154 §3 ``(USE (...))``.

    ``mailbox`` keeps a trailing ``/`` if the client sent one (normalize it
    with ``for_create=True``). ``special_use`` holds the requested
    attributes, the RFC 6154 ones in canonical spelling; any other
    ``\\atom`` is kept as written so the session can answer ``NO [USEATTR]``.
    """

    name: ClassVar[str] = "CREATE"
    mailbox: str
    special_use: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Delete(Command):
    """RFC 9051 §6.3.5 DELETE."""

    name: ClassVar[str] = "DELETE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Rename(Command):
    """RFC 9051 §6.3.6 RENAME."""

    name: ClassVar[str] = "RENAME"
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class Subscribe(Command):
    """RFC 9051 §6.3.7 SUBSCRIBE."""

    name: ClassVar[str] = "SUBSCRIBE"
    mailbox: str


@dataclass(frozen=True, slots=True)
class Unsubscribe(Command):
    """RFC 9051 §6.3.8 UNSUBSCRIBE."""

    name: ClassVar[str] = "UNSUBSCRIBE"
    mailbox: str


class ListSelect(enum.StrEnum):
    """LIST selection options (RFC 5258 §3.1, RFC 6154 §3)."""

    SUBSCRIBED = "SUBSCRIBED"
    REMOTE = "REMOTE"
    RECURSIVEMATCH = "RECURSIVEMATCH"
    SPECIAL_USE = "SPECIAL-USE"


class ListReturn(enum.StrEnum):
    """LIST return options (RFC 5258 §3.2, RFC 5819 STATUS, RFC 6154 §3)."""

    SUBSCRIBED = "SUBSCRIBED"
    CHILDREN = "CHILDREN"
    SPECIAL_USE = "SPECIAL-USE"
    STATUS = "STATUS"


class StatusItem(enum.StrEnum):
    """STATUS data items (RFC 9051 §6.3.11; RECENT from RFC 3501,
    HIGHESTMODSEQ from RFC 7162 §3.1.7, APPENDLIMIT from RFC 7889,
    SIZE from RFC 8438)."""

    MESSAGES = "MESSAGES"
    UIDNEXT = "UIDNEXT"
    UIDVALIDITY = "UIDVALIDITY"
    UNSEEN = "UNSEEN"
    DELETED = "DELETED"
    SIZE = "SIZE"
    RECENT = "RECENT"
    HIGHESTMODSEQ = "HIGHESTMODSEQ"
    APPENDLIMIT = "APPENDLIMIT"


@dataclass(frozen=True, slots=True)
class List(Command):
    """RFC 9051 §6.3.9 LIST, with LIST-EXTENDED (RFC 5258), LIST-STATUS
    (RFC 5819) and SPECIAL-USE (RFC 6154).

    ``extended`` is True when the client used extended syntax (selection
    options, a parenthesized pattern list or RETURN): RFC 5258 §3 responses
    then apply. ``status`` is the RETURN (STATUS (...)) item list, set exactly
    when ``ListReturn.STATUS`` is in ``returns``.
    """

    name: ClassVar[str] = "LIST"
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[ListSelect] = frozenset()
    returns: frozenset[ListReturn] = frozenset()
    status: tuple[StatusItem, ...] = ()
    extended: bool = False


@dataclass(frozen=True, slots=True)
class Lsub(Command):
    """RFC 3501 §6.3.9 LSUB."""

    name: ClassVar[str] = "LSUB"
    reference: str
    pattern: str


@dataclass(frozen=True, slots=True)
class Namespace(Command):
    """RFC 9051 §6.3.10 NAMESPACE."""

    name: ClassVar[str] = "NAMESPACE"


@dataclass(frozen=True, slots=True)
class Status(Command):
    """RFC 9051 §6.3.11 STATUS; items in the order asked, duplicates removed."""

    name: ClassVar[str] = "STATUS"
    mailbox: str
    items: tuple[StatusItem, ...]


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of APPEND (RFC 9051 §6.3.12; several: RFC 3502 MULTIAPPEND).

    ``binary`` is True when the data came as ``literal8`` (``~{n}``,
    RFC 3516 §4.4, may contain NUL); ``utf8`` when it came as
    ``UTF8 (~{n})`` (RFC 6855 §4).
    """

    data: bytes
    flags: tuple[str, ...] = ()
    internal_date: dt.datetime | None = None
    binary: bool = False
    utf8: bool = False

    def __repr__(self) -> str:
        return (
            f"AppendMessage(<{len(self.data)} octets>, flags={self.flags!r}, "
            f"internal_date={self.internal_date!r}, binary={self.binary}, utf8={self.utf8})"
        )


@dataclass(frozen=True, slots=True)
class Append(Command):
    """RFC 9051 §6.3.12 APPEND, with RFC 3502 MULTIAPPEND (one or more messages)."""

    name: ClassVar[str] = "APPEND"
    mailbox: str
    messages: tuple[AppendMessage, ...]


@dataclass(frozen=True, slots=True)
class Idle(Command):
    """RFC 9051 §6.3.13 IDLE (RFC 2177); the connection then waits for DONE."""

    name: ClassVar[str] = "IDLE"


@dataclass(frozen=True, slots=True)
class Check(Command):
    """RFC 3501 §6.4.1 CHECK (a NOOP in IMAP4rev2)."""

    name: ClassVar[str] = "CHECK"


@dataclass(frozen=True, slots=True)
class Close(Command):
    """RFC 9051 §6.4.1 CLOSE."""

    name: ClassVar[str] = "CLOSE"


@dataclass(frozen=True, slots=True)
class Unselect(Command):
    """RFC 9051 §6.4.2 UNSELECT (RFC 3691)."""

    name: ClassVar[str] = "UNSELECT"


@dataclass(frozen=True, slots=True)
class Expunge(Command):
    """RFC 9051 §6.4.3 EXPUNGE; with a set it is UID EXPUNGE (RFC 4315 §2.1)."""

    name: ClassVar[str] = "EXPUNGE"
    sequence_set: SequenceSet | None = None

    @property
    def uid(self) -> bool:
        return self.sequence_set is not None


# --- SEARCH -------------------------------------------------------------------


class DateOp(enum.StrEnum):
    """How a date search key compares (RFC 9051 §6.4.4)."""

    BEFORE = "BEFORE"
    ON = "ON"
    SINCE = "SINCE"


@dataclass(frozen=True, slots=True)
class SearchAll:
    """ALL (RFC 9051 §6.4.4)."""


@dataclass(frozen=True, slots=True)
class SearchFlag:
    """A flag test: ANSWERED, DELETED, DRAFT, FLAGGED, SEEN, RECENT,
    KEYWORD and their UN-forms (``present=False``), RFC 9051 §6.4.4.

    ``flag`` is a canonical system flag (``\\Seen``, ``\\Recent``) or a
    keyword as written (keywords compare case-insensitively).
    """

    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SearchHeader:
    """HEADER field string, and BCC/CC/FROM/SUBJECT/TO (RFC 9051 §6.4.4).

    ``field`` is the header field name (``"From"`` for FROM); ``value`` the
    substring to find, case-insensitively, in the decoded field value.
    """

    field: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchBody:
    """BODY string (RFC 9051 §6.4.4): substring of the decoded body text."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchText:
    """TEXT string (RFC 9051 §6.4.4): substring of header or body text."""

    value: str


@dataclass(frozen=True, slots=True)
class SearchDate:
    """BEFORE/ON/SINCE (internal date) and SENTBEFORE/SENTON/SENTSINCE
    (``sent=True``, the Date: header), RFC 9051 §6.4.4."""

    op: DateOp
    date: dt.date
    sent: bool = False


@dataclass(frozen=True, slots=True)
class SearchSize:
    """LARGER n (``larger=True``: RFC822.SIZE > n) or SMALLER n (< n)."""

    size: int
    larger: bool


@dataclass(frozen=True, slots=True)
class SearchSeq:
    """A sequence set of message numbers as a search key (RFC 9051 §6.4.4)."""

    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchUid:
    """UID sequence-set (RFC 9051 §6.4.4)."""

    sequence_set: SequenceSet


@dataclass(frozen=True, slots=True)
class SearchModSeq:
    """MODSEQ [entry-name entry-type] n (RFC 7162 §3.1.5): MODSEQ >= n.

    ``entry`` is the metadata item name (``/flags/\\draft``) and
    ``entry_type`` one of ``priv``/``shared``/``all``, both lower case, or
    None. Pochta keeps one MODSEQ per message, which RFC 7162 allows to
    stand for every entry.
    """

    modseq: int
    entry: str | None = None
    entry_type: str | None = None


@dataclass(frozen=True, slots=True)
class SearchNot:
    """NOT key (RFC 9051 §6.4.4)."""

    key: SearchKey


@dataclass(frozen=True, slots=True)
class SearchOr:
    """OR key1 key2 (RFC 9051 §6.4.4)."""

    left: SearchKey
    right: SearchKey


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """Keys that must all match: a parenthesized list, or the whole program
    when it has more than one key (RFC 9051 §6.4.4)."""

    keys: tuple[SearchKey, ...]


SearchKey: TypeAlias = (
    SearchAll
    | SearchFlag
    | SearchHeader
    | SearchBody
    | SearchText
    | SearchDate
    | SearchSize
    | SearchSeq
    | SearchUid
    | SearchModSeq
    | SearchNot
    | SearchOr
    | SearchAnd
)


class SearchReturn(enum.StrEnum):
    """ESEARCH result options (RFC 4731 §3.1, RFC 5182 §2 SAVE, RFC 9051 §6.4.4)."""

    MIN = "MIN"
    MAX = "MAX"
    ALL = "ALL"
    COUNT = "COUNT"
    SAVE = "SAVE"


@dataclass(frozen=True, slots=True)
class Search(Command):
    """RFC 9051 §6.4.4 SEARCH / UID SEARCH.

    ``returns`` is None without RETURN (an IMAP4rev1 client then gets
    ``* SEARCH``); ``RETURN ()`` is read as ``{ALL}`` (RFC 4731 §3.1).
    ``charset`` is ``"UTF-8"``, ``"US-ASCII"`` or None (not given): strings
    are already decoded either way.
    """

    name: ClassVar[str] = "SEARCH"
    key: SearchKey
    charset: str | None = None
    returns: frozenset[SearchReturn] | None = None
    uid: bool = False


# --- FETCH --------------------------------------------------------------------


class FetchAttr(enum.StrEnum):
    """FETCH data items without a section (RFC 9051 §6.4.5; RFC 3501 RFC822.*,
    RFC 7162 §3.1.4 MODSEQ)."""

    ENVELOPE = "ENVELOPE"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822 = "RFC822"
    RFC822_HEADER = "RFC822.HEADER"
    RFC822_SIZE = "RFC822.SIZE"
    RFC822_TEXT = "RFC822.TEXT"
    BODY = "BODY"
    BODYSTRUCTURE = "BODYSTRUCTURE"
    UID = "UID"
    MODSEQ = "MODSEQ"


class SectionText(enum.StrEnum):
    """The text part of a section-spec (RFC 9051 §6.4.5)."""

    HEADER = "HEADER"
    HEADER_FIELDS = "HEADER.FIELDS"
    HEADER_FIELDS_NOT = "HEADER.FIELDS.NOT"
    TEXT = "TEXT"
    MIME = "MIME"


_ATOM_SAFE = re.compile(r"[!#$&'+-Z^-z|}~]+")


def _astring(value: str) -> str:
    """``value`` as an IMAP astring: the atom itself when safe, else quoted."""
    if _ATOM_SAFE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class Section:
    """A ``section-spec`` (RFC 9051 §6.4.5): part path plus optional text.

    ``part`` is ``()`` for the whole message; ``fields`` is non-empty
    exactly for HEADER.FIELDS(.NOT), names as the client wrote them. MIME
    occurs only with a non-empty ``part``.
    """

    part: tuple[int, ...] = ()
    text: SectionText | None = None
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        """The section-spec as echoed in a FETCH response: ``1.HEADER.FIELDS (FROM)``."""
        out = ".".join(map(str, self.part))
        if self.text is not None:
            out = f"{out}.{self.text}" if out else str(self.text)
        if self.fields:
            out += " (" + " ".join(_astring(f) for f in self.fields) + ")"
        return out


@dataclass(frozen=True, slots=True)
class Partial:
    """``<start.length>`` of a FETCH BODY/BINARY item (RFC 9051 §6.4.5)."""

    start: int
    length: int


@dataclass(frozen=True, slots=True)
class BodySection:
    """BODY[section]<partial> and BODY.PEEK[...] (RFC 9051 §6.4.5)."""

    section: Section
    partial: Partial | None = None
    peek: bool = False

    def label(self) -> str:
        """The item name of the response: ``BODY[TEXT]<0>`` (no PEEK, origin only)."""
        origin = f"<{self.partial.start}>" if self.partial else ""
        return f"BODY[{self.section}]{origin}"


@dataclass(frozen=True, slots=True)
class BinarySection:
    """BINARY[part]<partial> and BINARY.PEEK[...] (RFC 9051 §6.4.5, RFC 3516 §4.2)."""

    part: tuple[int, ...] = ()
    partial: Partial | None = None
    peek: bool = False

    def label(self) -> str:
        """The item name of the response: ``BINARY[1.2]<0>``."""
        origin = f"<{self.partial.start}>" if self.partial else ""
        return f"BINARY[{'.'.join(map(str, self.part))}]{origin}"


@dataclass(frozen=True, slots=True)
class BinarySize:
    """BINARY.SIZE[part] (RFC 9051 §6.4.5, RFC 3516 §4.2)."""

    part: tuple[int, ...] = ()

    def label(self) -> str:
        """The item name of the response: ``BINARY.SIZE[1]``."""
        return f"BINARY.SIZE[{'.'.join(map(str, self.part))}]"


FetchItem: TypeAlias = FetchAttr | BodySection | BinarySection | BinarySize


@dataclass(frozen=True, slots=True)
class Fetch(Command):
    """RFC 9051 §6.4.5 FETCH / UID FETCH, with RFC 7162 §3.1.4 CHANGEDSINCE
    and §3.2.6 VANISHED.

    ``items`` has the macros expanded and duplicates removed, in the
    client's order. ``vanished`` implies ``uid`` and ``changed_since``
    (checked by the parser). The session adds UID (for UID FETCH) and
    MODSEQ (with CHANGEDSINCE) to the response itself.
    """

    name: ClassVar[str] = "FETCH"
    sequence_set: SequenceSet
    items: tuple[FetchItem, ...]
    changed_since: int | None = None
    vanished: bool = False
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Store(Command):
    """RFC 9051 §6.4.6 STORE / UID STORE, with RFC 7162 §3.1.3 UNCHANGEDSINCE."""

    name: ClassVar[str] = "STORE"
    sequence_set: SequenceSet
    mode: StoreMode
    flags: tuple[str, ...]
    silent: bool = False
    unchanged_since: int | None = None
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Copy(Command):
    """RFC 9051 §6.4.7 COPY / UID COPY."""

    name: ClassVar[str] = "COPY"
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False


@dataclass(frozen=True, slots=True)
class Move(Command):
    """RFC 9051 §6.4.8 MOVE / UID MOVE (RFC 6851)."""

    name: ClassVar[str] = "MOVE"
    sequence_set: SequenceSet
    mailbox: str
    uid: bool = False
