"""IMAP command parser: octets in, ``(tag, Command)`` out; pure, no I/O.

Design note
-----------
A command arrives as a line, and whenever a line ends with a literal
announcement (``{n}``, ``{n+}``, ``~{n}``, ``~{n+}``; RFC 9051 §4.3,
RFC 7888, RFC 3516 §4.4) the n octets of the literal follow and then the next
line continues the same command. The connection layer owns the socket; this
module tells it what to do and parses what it collected:

1. read a line (without CRLF) and call :func:`literal_needed` (or feed a
   :class:`CommandReader`, which also enforces :class:`Limits`);
2. if it returns a :class:`LiteralSpec`, send ``+ go ahead`` unless the
   literal is non-synchronizing, read exactly ``size`` octets, read the next
   line and repeat;
3. call :func:`parse_command` with the parts ``[line, literal, line, ...,
   line]``; it returns ``(tag, command)`` or raises
   :class:`~pochta.imap.types.ParseError`, which becomes a tagged BAD/NO
   (``* BAD`` when ``tag`` is None).

The grammar is RFC 9051 §9 plus RFC 3501 and the extensions Pochta
implements; each command's parser is a small function in :data:`COMMANDS`
whose docstring names its RFC section. Whatever the grammar rejects is a
BAD: unknown commands, extra or missing spaces, trailing junk, an
unannounced literal, NUL in a non-binary literal, invalid UTF-8 in strings.

Bounds: numbers are checked before conversion (never more than 20 digits),
parentheses nest at most :data:`MAX_DEPTH` levels in SEARCH (recursion stays
far below Python's limit), a SEARCH program has at most
:data:`MAX_SEARCH_KEYS` keys, every list at most :data:`MAX_ITEMS` items, a
command at most :data:`MAX_LITERALS` literals and MULTIAPPEND at most
:data:`MAX_APPEND_MESSAGES` messages. Work is linear in the input size. Any
input, however hostile, gives a command or a ``ParseError``, never another
exception (a property test checks this).

The ``utf8`` flag of :func:`parse_command` says how mailbox names are
encoded: False (an IMAP4rev1 client) means modified UTF-7 (RFC 3501
§5.1.3), True (after ``ENABLE UTF8=ACCEPT``, RFC 6855 §3, or
``ENABLE IMAP4rev2``, RFC 9051 §5.1) means UTF-8. Quoted strings may always
carry UTF-8 (RFC 9051 §9 ``QUOTED-CHAR``).
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pochta.imap.types import (
    MAX_NUMBER,
    MAX_NUMBER64,
    Append,
    AppendMessage,
    Authenticate,
    BinarySection,
    BinarySize,
    BodySection,
    Capability,
    Check,
    Close,
    Command,
    Copy,
    Create,
    DateOp,
    Delete,
    Enable,
    Examine,
    Expunge,
    Fetch,
    FetchAttr,
    FetchItem,
    Id,
    Idle,
    List,
    ListReturn,
    ListSelect,
    Login,
    Logout,
    Lsub,
    Move,
    Namespace,
    Noop,
    ParseError,
    Partial,
    QResync,
    Rename,
    Search,
    SearchAll,
    SearchAnd,
    SearchBody,
    SearchDate,
    SearchFlag,
    SearchHeader,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchReturn,
    SearchSeq,
    SearchSize,
    SearchText,
    SearchUid,
    Section,
    SectionText,
    Select,
    SequenceSet,
    StartTLS,
    Status,
    StatusItem,
    Store,
    StoreMode,
    Subscribe,
    Unselect,
    Unsubscribe,
)
from pochta.store.interface import INBOX, SPECIAL_USES, SYSTEM_FLAGS
from pochta.store.names import mutf7_decode

__all__ = [
    "COMMANDS",
    "LITERAL_MINUS_MAX",
    "MAX_APPEND_MESSAGES",
    "MAX_DEPTH",
    "MAX_ITEMS",
    "MAX_LITERALS",
    "MAX_SEARCH_KEYS",
    "UID_COMMANDS",
    "CommandReader",
    "Cursor",
    "Limits",
    "LiteralSpec",
    "ParseError",
    "is_idle_done",
    "literal_needed",
    "parse_command",
    "parse_sasl_response",
    "peek_command",
]

#: Deepest nesting of parentheses, NOT and OR in a SEARCH program.
MAX_DEPTH = 64
#: Most search keys in one SEARCH program.
MAX_SEARCH_KEYS = 1_000
#: Most items in any other list (FETCH items, flags, header names, ...).
MAX_ITEMS = 1_000
#: Most literals in one command.
MAX_LITERALS = 1_000
#: Most messages in one MULTIAPPEND (RFC 3502).
MAX_APPEND_MESSAGES = 1_000
#: Largest non-synchronizing literal a LITERAL- server accepts (RFC 7888 §4,
#: RFC 9051 §4.3).
LITERAL_MINUS_MAX = 4096
#: RFC 2971 §3.3 ID limits: pairs, field octets, value octets.
ID_MAX_PAIRS = 30
ID_MAX_FIELD = 30
ID_MAX_VALUE = 1024

#: Charsets SEARCH accepts (RFC 9051 §6.4.4 requires US-ASCII and UTF-8).
SEARCH_CHARSETS = ("US-ASCII", "UTF-8")
BADCHARSET = "BADCHARSET (" + " ".join(SEARCH_CHARSETS) + ")"

# --- lexical classes (RFC 9051 §9) -------------------------------------------

# ATOM-CHAR: any CHAR except atom-specials: ( ) { SP CTL % * " \ ]
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
# ASTRING-CHAR = ATOM-CHAR / resp-specials
_ASTRING = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
# tag: 1*<any ASTRING-CHAR except "+">
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
# list-char = ATOM-CHAR / list-wildcards / resp-specials
_LIST_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_QUOTED_ESCAPE = re.compile(rb'\\(["\\])')
_LITERAL = re.compile(rb"(~?)\{([0-9]+)(\+?)\}")
_DIGITS = re.compile(rb"[0-9]+")
_SEQ_CHARS = re.compile(rb"[0-9:,*$]+")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_SECTION_WORD = re.compile(rb"[A-Za-z.]+")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(
    rb'"( [0-9]|[0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) '
    rb'([0-9]{2}):([0-9]{2}):([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"'
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        b"JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(),
        start=1,
    )
}
_SP = 0x20
_LPAREN = 0x28
_RPAREN = 0x29
_DQUOTE = 0x22
_LBRACE = 0x7B
_TILDE = 0x7E
_BACKSLASH = 0x5C
_STAR_FLAG = b"\\*"

_CANONICAL_FLAGS = {f.upper(): f for f in SYSTEM_FLAGS} | {"\\RECENT": "\\Recent"}
_CANONICAL_USES = {u.upper(): u for u in SPECIAL_USES}


_T = TypeVar("_T")
_E = TypeVar("_E", StatusItem, ListSelect, ListReturn, SearchReturn)


def _is_digit(octet: int) -> bool:
    return 0x30 <= octet <= 0x39


def _fail(message: str) -> ParseError:
    return ParseError(None, message)


# --- the cursor -----------------------------------------------------------------


class Cursor:
    """Reads tokens from one command's parts; every parser function takes one.

    ``parts`` alternates lines (without CRLF) and literal data, starting and
    ending with a line. The cursor is on ``line`` (the current line) at
    ``pos``; a literal announcement must end its line, and reading it moves
    the cursor to the start of the next line. ``utf8`` selects the mailbox
    name encoding (see the module note).
    """

    __slots__ = ("_index", "_parts", "depth", "keys", "line", "pos", "utf8")

    def __init__(self, parts: Sequence[bytes], *, utf8: bool = False) -> None:
        self._parts = parts
        self._index = 0
        self.line = parts[0]
        self.pos = 0
        self.utf8 = utf8
        self.depth = 0
        self.keys = 0

    # -- primitives

    def peek(self) -> int:
        """The next octet, or -1 at the end of the line."""
        return self.line[self.pos] if self.pos < len(self.line) else -1

    def end(self) -> None:
        """Require the end of the command."""
        if self.pos != len(self.line):
            raise _fail("unexpected characters at the end of the command")
        if self._index != len(self._parts) - 1:
            raise _fail("unexpected literal at the end of the command")

    def sp(self) -> None:
        """Require exactly one space."""
        if self.peek() != _SP:
            raise _fail("expected a space")
        self.pos += 1
        if self.peek() == _SP:
            raise _fail("unexpected extra space")

    def try_sp(self) -> bool:
        """Consume one space if there is one."""
        if self.peek() == _SP:
            self.sp()
            return True
        return False

    def char(self, octet: int, what: str) -> None:
        """Require the octet ``octet`` (e.g. ``(``)."""
        if self.peek() != octet:
            raise _fail(f"expected {what}")
        self.pos += 1

    def match(self, pattern: re.Pattern[bytes], what: str) -> re.Match[bytes]:
        """Require ``pattern`` at the cursor and move past it."""
        m = pattern.match(self.line, self.pos)
        if m is None:
            raise _fail(f"expected {what}")
        self.pos = m.end()
        return m

    def atom(self, what: str = "an atom") -> bytes:
        """``atom`` (RFC 9051 §9)."""
        return self.match(_ATOM, what)[0]

    def word(self, what: str = "a keyword") -> str:
        """An atom, upper case: command names, options, search keys."""
        return self.atom(what).decode("ascii").upper()

    def peek_word(self) -> str:
        """The upper-case atom at the cursor, without consuming it ("" if none)."""
        m = _ATOM.match(self.line, self.pos)
        return m[0].decode("ascii").upper() if m else ""

    def open_list(self) -> None:
        self.char(_LPAREN, "'('")

    def close_list(self) -> None:
        self.char(_RPAREN, "')'")

    def items(self, read: Callable[[], object], *, empty: bool) -> None:
        """Read ``( item *(SP item) )`` calling ``read`` for each item."""
        self.open_list()
        if self.peek() == _RPAREN:
            if not empty:
                raise _fail("empty list")
            self.pos += 1
            return
        count = 0
        while True:
            count += 1
            if count > MAX_ITEMS:
                raise _fail("too many items in a list")
            read()
            if self.peek() == _RPAREN:
                self.pos += 1
                return
            self.sp()

    # -- numbers

    def number(self, lo: int = 0, hi: int = MAX_NUMBER, what: str = "a number") -> int:
        """``number`` / ``nz-number`` / ``number64`` within ``lo..hi``."""
        digits = self.match(_DIGITS, what)[0]
        if len(digits) > 20:
            raise _fail(f"{what} is too large")
        n = int(digits)
        if not lo <= n <= hi:
            raise _fail(f"{what} is out of range")
        return n

    def nz_number(self, what: str = "a non-zero number") -> int:
        return self.number(1, MAX_NUMBER, what)

    def modseq(self, *, zero: bool) -> int:
        """``mod-sequence-value`` (``zero``: ``mod-sequence-valzer``), RFC 7162 §7."""
        return self.number(0 if zero else 1, MAX_NUMBER64, "a mod-sequence")

    # -- strings

    def quoted(self) -> bytes:
        """``quoted`` with ``\\"`` and ``\\\\`` unescaped (RFC 9051 §4.3)."""
        m = _QUOTED.match(self.line, self.pos)
        if m is None:
            raise _fail("invalid quoted string")
        self.pos = m.end()
        body = m[1]
        return _QUOTED_ESCAPE.sub(rb"\1", body) if b"\\" in body else body

    def literal(self, *, binary: bool = False) -> tuple[bytes, bool]:
        """``literal`` (or ``literal8`` when ``binary`` allows it): data and
        whether it was a literal8."""
        m = _LITERAL.match(self.line, self.pos)
        if m is None:
            raise _fail("invalid literal")
        if m.end() != len(self.line):
            raise _fail("a literal must end its line")
        is_binary = bool(m[1])
        if is_binary and not binary:
            raise _fail("literal8 is not allowed here")
        if len(m[2]) > 20:
            raise _fail("literal too large")
        size = int(m[2])
        if self._index + 2 >= len(self._parts):
            raise _fail("missing literal data")
        data = self._parts[self._index + 1]
        if len(data) != size:
            raise _fail("literal data does not match its announced size")
        if not is_binary and b"\x00" in data:
            raise _fail("NUL in a literal (use literal8)")
        self._index += 2
        self.line = self._parts[self._index]
        self.pos = 0
        return data, is_binary

    def string(self) -> bytes:
        """``string = quoted / literal``."""
        c = self.peek()
        if c == _DQUOTE:
            return self.quoted()
        if c == _LBRACE:
            return self.literal()[0]
        raise _fail("expected a string")

    def astring(self, what: str = "a string") -> bytes:
        """``astring = 1*ASTRING-CHAR / string``."""
        c = self.peek()
        if c == _DQUOTE:
            return self.quoted()
        if c == _LBRACE:
            return self.literal()[0]
        return self.match(_ASTRING, what)[0]

    def nstring(self) -> bytes | None:
        """``nstring = string / nil``."""
        if self.peek() in (_DQUOTE, _LBRACE):
            return self.string()
        if self.word("a string or NIL") != "NIL":
            raise _fail("expected a string or NIL")
        return None

    def text(self, what: str = "a string") -> str:
        """An astring decoded as UTF-8 (RFC 9051 §4.3: strings are UTF-8)."""
        return _utf8(self.astring(what), what)

    # -- IMAP values

    def mailbox(self) -> str:
        """``mailbox = "INBOX" / astring``, decoded (see the module note)."""
        return _mailbox_name(self.astring("a mailbox name"), self.utf8)

    def list_mailbox(self) -> str:
        """``list-mailbox = 1*list-char / string`` (RFC 9051 §6.3.9), decoded."""
        c = self.peek()
        raw = self.string() if c in (_DQUOTE, _LBRACE) else self.match(_LIST_CHARS, "a pattern")[0]
        return _pattern(raw, self.utf8)

    def sequence_set(self, *, star: bool = True, saved: bool = True) -> SequenceSet:
        """``sequence-set`` (RFC 9051 §9), ``$`` only when ``saved``, ``*`` only
        when ``star``."""
        raw = self.match(_SEQ_CHARS, "a sequence set")[0]
        try:
            result = SequenceSet.parse(raw.decode("ascii"))
        except ValueError:
            raise _fail("invalid sequence set") from None
        if result.saved and not saved:
            raise _fail("'$' is not allowed here")
        if result.has_star and not star:
            raise _fail("'*' is not allowed here")
        return result

    def flag(self) -> str:
        """``flag`` (RFC 9051 §2.3.2, §9): system flags canonical; never ``\\*``."""
        if self.peek() == _BACKSLASH:
            if self.line.startswith(_STAR_FLAG, self.pos):
                raise _fail("\\* is not a flag a client can send")
            self.pos += 1
            name = "\\" + self.atom("a flag").decode("ascii")
            return _CANONICAL_FLAGS.get(name.upper(), name)
        return self.atom("a flag").decode("ascii")

    def flag_list(self) -> tuple[str, ...]:
        """``flag-list = "(" [flag *(SP flag)] ")"``."""
        flags: list[str] = []
        self.items(lambda: flags.append(self.flag()), empty=True)
        return _unique(flags)

    def date(self) -> dt.date:
        """``date`` (RFC 9051 §9): ``1-Feb-2024`` or ``"1-Feb-2024"``."""
        quoted = self.peek() == _DQUOTE
        if quoted:
            self.pos += 1
        m = self.match(_DATE, "a date (d-Mon-yyyy)")
        if quoted:
            self.char(_DQUOTE, "'\"' after the date")
        month = _MONTHS.get(m[2].upper())
        if month is None:
            raise _fail("invalid month in date")
        try:
            return dt.date(int(m[3]), month, int(m[1]))
        except ValueError:
            raise _fail("invalid date") from None

    def date_time(self) -> dt.datetime:
        """``date-time`` (RFC 9051 §9): ``"17-Jul-1996 02:44:25 -0700"``."""
        m = self.match(_DATE_TIME, "a date-time")
        month = _MONTHS.get(m[2].upper())
        if month is None:
            raise _fail("invalid month in date-time")
        zone_h, zone_m = int(m[8]), int(m[9])
        if zone_h > 23 or zone_m > 59:
            raise _fail("invalid time zone")
        offset = dt.timedelta(hours=zone_h, minutes=zone_m)
        try:
            return dt.datetime(
                int(m[3]),
                month,
                int(m[1]),
                int(m[4]),
                int(m[5]),
                int(m[6]),
                tzinfo=dt.timezone(-offset if m[7] == b"-" else offset),
            )
        except ValueError:
            raise _fail("invalid date-time") from None

    def status_items(self) -> tuple[StatusItem, ...]:
        """``"(" status-att *(SP status-att) ")"`` (RFC 9051 §6.3.11)."""
        items: list[StatusItem] = []
        self.items(lambda: items.append(_enum(StatusItem, self.word(), "STATUS item")), empty=False)
        return _unique(items)


# --- decoding helpers -------------------------------------------------------------


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(f"{what} is not valid UTF-8") from None


def _mailbox_name(raw: bytes, utf8: bool) -> str:
    """A client's mailbox name as Unicode (RFC 9051 §5.1, RFC 3501 §5.1.3)."""
    if utf8:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(
                None, "mailbox name is not valid UTF-8", "CANNOT", status="NO"
            ) from None
    else:
        if not raw.isascii():
            raise ParseError(None, "8-bit mailbox name without UTF8=ACCEPT", "CANNOT", status="NO")
        try:
            name = mutf7_decode(raw.decode("ascii"))
        except ValueError:
            raise ParseError(
                None, "mailbox name is not valid modified UTF-7", "CANNOT", status="NO"
            ) from None
    name = unicodedata.normalize("NFC", name)
    head, sep, rest = name.partition("/")
    if head.isascii() and head.upper() == INBOX:
        name = INBOX + sep + rest
    return name


def _pattern(raw: bytes, utf8: bool) -> str:
    """A LIST reference or pattern: decoded like a name, but never refused."""
    if utf8 or not raw.isascii():
        return unicodedata.normalize("NFC", raw.decode("utf-8", "replace"))
    text = raw.decode("ascii")
    try:
        return unicodedata.normalize("NFC", mutf7_decode(text))
    except ValueError:
        return text


def _enum(kind: type[_E], word: str, what: str) -> _E:
    try:
        return kind(word)
    except ValueError:
        raise _fail(f"unknown {what}") from None


def _unique(items: Sequence[_T]) -> tuple[_T, ...]:
    return tuple(dict.fromkeys(items))


# --- commands without arguments ---------------------------------------------------


def parse_capability(c: Cursor) -> Capability:
    """RFC 9051 §6.1.1 CAPABILITY."""
    return Capability()


def parse_noop(c: Cursor) -> Noop:
    """RFC 9051 §6.1.2 NOOP."""
    return Noop()


def parse_logout(c: Cursor) -> Logout:
    """RFC 9051 §6.1.3 LOGOUT."""
    return Logout()


def parse_starttls(c: Cursor) -> StartTLS:
    """RFC 9051 §6.2.1 STARTTLS."""
    return StartTLS()


def parse_namespace(c: Cursor) -> Namespace:
    """RFC 9051 §6.3.10 NAMESPACE (RFC 2342)."""
    return Namespace()


def parse_idle(c: Cursor) -> Idle:
    """RFC 9051 §6.3.13 IDLE (RFC 2177)."""
    return Idle()


def parse_check(c: Cursor) -> Check:
    """RFC 3501 §6.4.1 CHECK."""
    return Check()


def parse_close(c: Cursor) -> Close:
    """RFC 9051 §6.4.1 CLOSE."""
    return Close()


def parse_unselect(c: Cursor) -> Unselect:
    """RFC 9051 §6.4.2 UNSELECT (RFC 3691)."""
    return Unselect()


# --- not authenticated ----------------------------------------------------------


def parse_authenticate(c: Cursor) -> Authenticate:
    """RFC 9051 §6.2.2 AUTHENTICATE mechanism [initial-response] (RFC 4959 SASL-IR)."""
    c.sp()
    mechanism = c.word("a SASL mechanism")
    response: bytes | None = None
    if c.try_sp():
        if c.peek() == ord("=") and c.pos + 1 == len(c.line):
            c.pos += 1
            response = b""
        else:
            raw = c.match(_BASE64, "a base64 initial response")[0]
            response = _base64(raw)
    return Authenticate(mechanism, response)


def _base64(raw: bytes) -> bytes:
    if not raw or len(raw) % 4:
        raise _fail("invalid base64")
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        raise _fail("invalid base64") from None


def parse_login(c: Cursor) -> Login:
    """RFC 9051 §6.2.3 LOGIN userid password."""
    c.sp()
    user = c.text("a user name")
    c.sp()
    return Login(user, c.text("a password"))


# --- authenticated ----------------------------------------------------------------


def parse_enable(c: Cursor) -> Enable:
    """RFC 9051 §6.3.1 ENABLE capability... (RFC 5161)."""
    names: list[str] = []
    c.sp()
    while True:
        if len(names) >= MAX_ITEMS:
            raise _fail("too many capabilities")
        names.append(c.word("a capability name"))
        if not c.try_sp():
            return Enable(_unique(names))


def parse_id(c: Cursor) -> Id:
    """RFC 2971 §3.1 ID ( field value ... ) / NIL, with the §3.3 limits."""
    c.sp()
    if c.peek() != _LPAREN:
        if c.word("'(' or NIL") != "NIL":
            raise _fail("expected '(' or NIL")
        return Id(None)
    pairs: list[tuple[str, str | None]] = []

    def pair() -> None:
        if len(pairs) >= ID_MAX_PAIRS:
            raise _fail("too many ID fields")
        field = c.string()
        c.sp()
        value = c.nstring()
        if len(field) > ID_MAX_FIELD or (value is not None and len(value) > ID_MAX_VALUE):
            raise _fail("ID field or value too long")
        text = None if value is None else _utf8(value, "ID value")
        pairs.append((_utf8(field, "ID field"), text))

    c.items(pair, empty=True)
    return Id(tuple(pairs))


def _select_params(c: Cursor) -> tuple[bool, QResync | None]:
    condstore = False
    qresync: QResync | None = None
    if not c.try_sp():
        return condstore, qresync

    def param() -> None:
        nonlocal condstore, qresync
        word = c.word("a select parameter")
        if word == "CONDSTORE":
            condstore = True
        elif word == "QRESYNC" and qresync is None:
            c.sp()
            qresync = _qresync(c)
        else:
            raise _fail("unknown or repeated select parameter")

    c.items(param, empty=False)
    return condstore, qresync


def _qresync(c: Cursor) -> QResync:
    """``"(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"``."""
    c.open_list()
    uidvalidity = c.nz_number("a UIDVALIDITY")
    c.sp()
    # RFC 7162 §7 says mod-sequence-value; 0 (a client that never saw a
    # MODSEQ) is accepted and means "everything changed".
    modseq = c.modseq(zero=True)
    known: SequenceSet | None = None
    match: tuple[SequenceSet, SequenceSet] | None = None
    if c.try_sp() and c.peek() != _LPAREN:
        known = c.sequence_set(star=False, saved=False)
        c.try_sp()
    if c.peek() == _LPAREN:
        c.open_list()
        seqs = c.sequence_set(star=False, saved=False)
        c.sp()
        uids = c.sequence_set(star=False, saved=False)
        c.close_list()
        match = (seqs, uids)
    c.close_list()
    return QResync(uidvalidity, modseq, known, match)


def parse_select(c: Cursor) -> Select:
    """RFC 9051 §6.3.2 SELECT mailbox [(CONDSTORE / QRESYNC (...))] (RFC 7162 §3.1.8, §3.2.5)."""
    c.sp()
    mailbox = c.mailbox()
    condstore, qresync = _select_params(c)
    return Select(mailbox, condstore, qresync)


def parse_examine(c: Cursor) -> Examine:
    """RFC 9051 §6.3.3 EXAMINE mailbox [select-params]."""
    c.sp()
    mailbox = c.mailbox()
    condstore, qresync = _select_params(c)
    return Examine(mailbox, condstore, qresync)


def parse_create(c: Cursor) -> Create:
    """RFC 9051 §6.3.4 CREATE mailbox [(USE (attr...))] (RFC 6154 §3 CREATE-SPECIAL-USE)."""
    c.sp()
    mailbox = c.mailbox()
    uses: list[str] = []
    if c.try_sp():

        def use_attr() -> None:
            c.char(_BACKSLASH, "a special-use attribute")
            name = "\\" + c.atom("a special-use attribute").decode("ascii")
            uses.append(_CANONICAL_USES.get(name.upper(), name))

        def param() -> None:
            if c.word("a CREATE parameter") != "USE":
                raise _fail("unknown CREATE parameter")
            c.sp()
            c.items(use_attr, empty=True)

        c.items(param, empty=False)
    return Create(mailbox, frozenset(uses))


def parse_delete(c: Cursor) -> Delete:
    """RFC 9051 §6.3.5 DELETE mailbox."""
    c.sp()
    return Delete(c.mailbox())


def parse_rename(c: Cursor) -> Rename:
    """RFC 9051 §6.3.6 RENAME existing-mailbox new-mailbox."""
    c.sp()
    old = c.mailbox()
    c.sp()
    return Rename(old, c.mailbox())


def parse_subscribe(c: Cursor) -> Subscribe:
    """RFC 9051 §6.3.7 SUBSCRIBE mailbox."""
    c.sp()
    return Subscribe(c.mailbox())


def parse_unsubscribe(c: Cursor) -> Unsubscribe:
    """RFC 9051 §6.3.8 UNSUBSCRIBE mailbox."""
    c.sp()
    return Unsubscribe(c.mailbox())


def parse_list(c: Cursor) -> List:
    """RFC 9051 §6.3.9 LIST [selection] reference pattern(s) [RETURN (...)].

    Extended forms: RFC 5258 §3 (LIST-EXTENDED), RFC 5819 (RETURN STATUS),
    RFC 6154 §3 (SPECIAL-USE selection and return options).
    """
    c.sp()
    extended = False
    selection: set[ListSelect] = set()
    if c.peek() == _LPAREN:
        extended = True
        c.items(
            lambda: selection.add(_enum(ListSelect, c.word(), "LIST selection option")),
            empty=True,
        )
        if ListSelect.RECURSIVEMATCH in selection and not (
            selection & {ListSelect.SUBSCRIBED, ListSelect.SPECIAL_USE}
        ):
            raise _fail("RECURSIVEMATCH needs another selection option")  # RFC 5258 §3.1
        c.sp()
    reference = _pattern(c.astring("a reference name"), c.utf8)
    c.sp()
    patterns: list[str] = []
    if c.peek() == _LPAREN:
        extended = True
        c.items(lambda: patterns.append(c.list_mailbox()), empty=False)
    else:
        patterns.append(c.list_mailbox())
    returns: set[ListReturn] = set()
    status: tuple[StatusItem, ...] = ()
    if c.try_sp():
        extended = True
        if c.word("RETURN") != "RETURN":
            raise _fail("expected RETURN")
        c.sp()

        def option() -> None:
            nonlocal status
            opt = _enum(ListReturn, c.word(), "LIST return option")
            if opt is ListReturn.STATUS:
                if ListReturn.STATUS in returns:
                    raise _fail("STATUS given twice")
                c.sp()
                status = c.status_items()
            returns.add(opt)

        c.items(option, empty=True)
    return List(
        reference,
        _unique(patterns),
        frozenset(selection),
        frozenset(returns),
        status,
        extended,
    )


def parse_lsub(c: Cursor) -> Lsub:
    """RFC 3501 §6.3.9 LSUB reference pattern."""
    c.sp()
    reference = _pattern(c.astring("a reference name"), c.utf8)
    c.sp()
    return Lsub(reference, c.list_mailbox())


def parse_status(c: Cursor) -> Status:
    """RFC 9051 §6.3.11 STATUS mailbox (items) (RFC 7162, RFC 7889, RFC 8438 items)."""
    c.sp()
    mailbox = c.mailbox()
    c.sp()
    return Status(mailbox, c.status_items())


def parse_append(c: Cursor) -> Append:
    """RFC 9051 §6.3.12 APPEND mailbox [flags] [date-time] data, repeated (RFC 3502).

    Data is a ``literal``, a ``literal8`` (RFC 3516 §4.4) or
    ``UTF8 (literal8)`` (RFC 6855 §4).
    """
    c.sp()
    mailbox = c.mailbox()
    messages: list[AppendMessage] = []
    c.sp()
    while True:
        if len(messages) >= MAX_APPEND_MESSAGES:
            raise _fail("too many messages in one APPEND")
        flags: tuple[str, ...] = ()
        date: dt.datetime | None = None
        if c.peek() == _LPAREN:
            flags = c.flag_list()
            c.sp()
        if c.peek() == _DQUOTE:
            date = c.date_time()
            c.sp()
        utf8 = False
        if c.peek() in (_LBRACE, _TILDE):
            data, binary = c.literal(binary=True)
        elif c.word("message data") == "UTF8":
            c.sp()
            c.open_list()
            if c.peek() != _TILDE:
                raise _fail("UTF8 data must be a literal8")
            data, binary = c.literal(binary=True)
            c.close_list()
            utf8 = True
        else:
            raise _fail("expected a literal with the message")
        messages.append(AppendMessage(data, flags, date, binary, utf8))
        if not c.try_sp():
            return Append(mailbox, tuple(messages))


# --- selected -----------------------------------------------------------------------


def parse_expunge(c: Cursor, uid: bool = False) -> Expunge:
    """RFC 9051 §6.4.3 EXPUNGE; UID EXPUNGE set (RFC 4315 §2.1, RFC 9051 §6.4.9)."""
    if not uid:
        return Expunge()
    c.sp()
    return Expunge(c.sequence_set())


def parse_copy(c: Cursor, uid: bool = False) -> Copy:
    """RFC 9051 §6.4.7 COPY set mailbox."""
    c.sp()
    seq = c.sequence_set()
    c.sp()
    return Copy(seq, c.mailbox(), uid)


def parse_move(c: Cursor, uid: bool = False) -> Move:
    """RFC 9051 §6.4.8 MOVE set mailbox (RFC 6851)."""
    c.sp()
    seq = c.sequence_set()
    c.sp()
    return Move(seq, c.mailbox(), uid)


def parse_store(c: Cursor, uid: bool = False) -> Store:
    """RFC 9051 §6.4.6 STORE set [(UNCHANGEDSINCE n)] [+|-]FLAGS[.SILENT] flags.

    UNCHANGEDSINCE: RFC 7162 §3.1.3.
    """
    c.sp()
    seq = c.sequence_set()
    c.sp()
    unchanged: int | None = None
    if c.peek() == _LPAREN:

        def modifier() -> None:
            nonlocal unchanged
            if c.word("a STORE modifier") != "UNCHANGEDSINCE" or unchanged is not None:
                raise _fail("unknown or repeated STORE modifier")
            c.sp()
            unchanged = c.modseq(zero=True)

        c.items(modifier, empty=False)
        c.sp()
    word = c.word("FLAGS, +FLAGS or -FLAGS")
    silent = word.endswith(".SILENT")
    if silent:
        word = word[: -len(".SILENT")]
    try:
        mode = StoreMode(word)
    except ValueError:
        raise _fail("expected FLAGS, +FLAGS or -FLAGS") from None
    c.sp()
    if c.peek() == _LPAREN:
        flags = c.flag_list()
    else:
        items = [c.flag()]
        while c.try_sp():
            if len(items) >= MAX_ITEMS:
                raise _fail("too many flags")
            items.append(c.flag())
        flags = _unique(items)
    return Store(seq, mode, flags, silent, unchanged, uid)


# FETCH -------------------------------------------------------------------------------

_SIMPLE_FETCH = {a.value: a for a in FetchAttr}
_MACROS: dict[str, tuple[FetchItem, ...]] = {
    "FAST": (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE),
    "ALL": (FetchAttr.FLAGS, FetchAttr.INTERNALDATE, FetchAttr.RFC822_SIZE, FetchAttr.ENVELOPE),
    "FULL": (
        FetchAttr.FLAGS,
        FetchAttr.INTERNALDATE,
        FetchAttr.RFC822_SIZE,
        FetchAttr.ENVELOPE,
        FetchAttr.BODY,
    ),
}
_MSGTEXT = {t.value: t for t in SectionText if t is not SectionText.MIME}


def _part_path(c: Cursor) -> tuple[int, ...]:
    """``section-part = nz-number *("." nz-number)``, stopping before ``.TEXT``."""
    path = [c.nz_number("a part number")]
    while c.peek() == ord(".") and c.pos + 1 < len(c.line) and _is_digit(c.line[c.pos + 1]):
        c.pos += 1
        if len(path) >= MAX_ITEMS:
            raise _fail("part path too deep")
        path.append(c.nz_number("a part number"))
    return tuple(path)


def _section(c: Cursor) -> Section:
    """``section = "[" [section-spec] "]"`` (RFC 9051 §6.4.5)."""
    c.char(ord("["), "'['")
    if c.peek() == ord("]"):
        c.pos += 1
        return Section()
    part: tuple[int, ...] = ()
    if _is_digit(c.peek()):
        part = _part_path(c)
        if c.peek() == ord("]"):
            c.pos += 1
            return Section(part)
        c.char(ord("."), "'.' or ']'")
    word = c.match(_SECTION_WORD, "a section text")[0].decode("ascii").upper()
    if word == "MIME" and part:
        text = SectionText.MIME
    elif word in _MSGTEXT:
        text = _MSGTEXT[word]
    else:
        raise _fail("invalid section")
    fields: list[str] = []
    if text in (SectionText.HEADER_FIELDS, SectionText.HEADER_FIELDS_NOT):
        c.sp()
        c.items(lambda: fields.append(_field_name(c.astring("a header field name"))), empty=False)
    c.char(ord("]"), "']'")
    return Section(part, text, _unique(fields))


def _field_name(raw: bytes) -> str:
    # A header field name is printable US-ASCII without ":" (RFC 5322 §3.6.8).
    if not raw or not all(0x21 <= b <= 0x7E and b != 0x3A for b in raw):
        raise _fail("invalid header field name")
    return raw.decode("ascii")


def _binary_part(c: Cursor) -> tuple[int, ...]:
    """``section-binary = "[" [section-part] "]"`` (RFC 9051 §9)."""
    c.char(ord("["), "'['")
    part: tuple[int, ...] = ()
    if c.peek() != ord("]"):
        part = _part_path(c)
    c.char(ord("]"), "']'")
    return part


def _partial(c: Cursor) -> Partial | None:
    """``partial = "<" number64 "." nz-number64 ">"`` (RFC 9051 §9)."""
    if c.peek() != ord("<"):
        return None
    c.pos += 1
    start = c.number(0, MAX_NUMBER64, "a partial origin")
    c.char(ord("."), "'.' in partial")
    length = c.number(1, MAX_NUMBER64, "a partial length")
    c.char(ord(">"), "'>'")
    return Partial(start, length)


def _fetch_att(c: Cursor) -> FetchItem:
    """``fetch-att`` (RFC 9051 §6.4.5, §9)."""
    name = c.match(_FETCH_NAME, "a FETCH item")[0].decode("ascii").upper()
    bracket = c.peek() == ord("[")
    if name in ("BODY", "BODY.PEEK") and bracket:
        section = _section(c)
        return BodySection(section, _partial(c), name == "BODY.PEEK")
    if name in ("BINARY", "BINARY.PEEK"):
        part = _binary_part(c)
        return BinarySection(part, _partial(c), name == "BINARY.PEEK")
    if name == "BINARY.SIZE":
        return BinarySize(_binary_part(c))
    attr = _SIMPLE_FETCH.get(name)
    if attr is None or bracket:
        raise _fail("unknown FETCH item")
    return attr


def parse_fetch(c: Cursor, uid: bool = False) -> Fetch:
    """RFC 9051 §6.4.5 FETCH set items [(CHANGEDSINCE n [VANISHED])].

    Modifiers: RFC 7162 §3.1.4 CHANGEDSINCE, §3.2.6 VANISHED (UID FETCH with
    CHANGEDSINCE only, else BAD).
    """
    c.sp()
    seq = c.sequence_set()
    c.sp()
    items: list[FetchItem] = []
    if c.peek() == _LPAREN:
        c.items(lambda: items.append(_fetch_att(c)), empty=False)
    else:
        macro = _MACROS.get(c.peek_word())
        if macro is not None:
            c.word()
            items.extend(macro)
        else:
            items.append(_fetch_att(c))
    changed: int | None = None
    vanished = False
    if c.try_sp():

        def modifier() -> None:
            nonlocal changed, vanished
            word = c.word("a FETCH modifier")
            if word == "CHANGEDSINCE" and changed is None:
                c.sp()
                # RFC 7162 §7 says mod-sequence-value; 0 is accepted (all changed).
                changed = c.modseq(zero=True)
            elif word == "VANISHED" and not vanished:
                vanished = True
            else:
                raise _fail("unknown or repeated FETCH modifier")

        c.items(modifier, empty=False)
    if vanished and (not uid or changed is None):
        raise _fail("VANISHED needs UID FETCH and CHANGEDSINCE")  # RFC 7162 §3.2.6
    return Fetch(seq, _unique(items), changed, vanished, uid)


# SEARCH ----------------------------------------------------------------------------------

_FLAG_KEYS: dict[str, SearchKey] = {
    "ALL": SearchAll(),
    "ANSWERED": SearchFlag("\\Answered"),
    "DELETED": SearchFlag("\\Deleted"),
    "DRAFT": SearchFlag("\\Draft"),
    "FLAGGED": SearchFlag("\\Flagged"),
    "SEEN": SearchFlag("\\Seen"),
    "RECENT": SearchFlag("\\Recent"),
    "UNANSWERED": SearchFlag("\\Answered", False),
    "UNDELETED": SearchFlag("\\Deleted", False),
    "UNDRAFT": SearchFlag("\\Draft", False),
    "UNFLAGGED": SearchFlag("\\Flagged", False),
    "UNSEEN": SearchFlag("\\Seen", False),
    # RFC 3501 §6.4.4: NEW is RECENT UNSEEN, OLD is NOT RECENT.
    "NEW": SearchAnd((SearchFlag("\\Recent"), SearchFlag("\\Seen", False))),
    "OLD": SearchFlag("\\Recent", False),
}
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS = {
    "BEFORE": (DateOp.BEFORE, False),
    "ON": (DateOp.ON, False),
    "SINCE": (DateOp.SINCE, False),
    "SENTBEFORE": (DateOp.BEFORE, True),
    "SENTON": (DateOp.ON, True),
    "SENTSINCE": (DateOp.SINCE, True),
}
_ENTRY_TYPES = frozenset({"priv", "shared", "all"})


def _nested(c: Cursor) -> SearchKey:
    c.depth += 1
    if c.depth > MAX_DEPTH:
        raise _fail("search program nested too deeply")
    key = _search_key(c)
    c.depth -= 1
    return key


def _search_key(c: Cursor) -> SearchKey:
    """One ``search-key`` (RFC 9051 §6.4.4, §9; RFC 3501 §6.4.4; RFC 7162 §3.1.5)."""
    c.keys += 1
    if c.keys > MAX_SEARCH_KEYS:
        raise _fail("too many search keys")
    first = c.peek()
    if first == _LPAREN:
        c.depth += 1
        if c.depth > MAX_DEPTH:
            raise _fail("search program nested too deeply")
        keys: list[SearchKey] = []
        c.items(lambda: keys.append(_search_key(c)), empty=False)
        c.depth -= 1
        return keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
    if _is_digit(first) or first in (0x2A, 0x24):  # digit, "*", "$"
        return SearchSeq(c.sequence_set())
    word = c.word("a search key")
    simple = _FLAG_KEYS.get(word)
    if simple is not None:
        return simple
    if word in _HEADER_KEYS:
        c.sp()
        return SearchHeader(_HEADER_KEYS[word], c.text())
    if word in ("BODY", "TEXT"):
        c.sp()
        value = c.text()
        return SearchBody(value) if word == "BODY" else SearchText(value)
    if word in _DATE_KEYS:
        op, sent = _DATE_KEYS[word]
        c.sp()
        return SearchDate(op, c.date(), sent)
    if word in ("KEYWORD", "UNKEYWORD"):
        c.sp()
        return SearchFlag(c.atom("a keyword").decode("ascii"), word == "KEYWORD")
    if word in ("LARGER", "SMALLER"):
        c.sp()
        return SearchSize(c.number(0, MAX_NUMBER64, "a size"), word == "LARGER")
    if word == "HEADER":
        c.sp()
        field = _field_name(c.astring("a header field name"))
        c.sp()
        return SearchHeader(field, c.text())
    if word == "UID":
        c.sp()
        return SearchUid(c.sequence_set())
    if word == "NOT":
        c.sp()
        return SearchNot(_nested(c))
    if word == "OR":
        c.sp()
        left = _nested(c)
        c.sp()
        return SearchOr(left, _nested(c))
    if word == "MODSEQ":
        c.sp()
        entry: str | None = None
        entry_type: str | None = None
        if c.peek() == _DQUOTE:
            entry = _utf8(c.quoted(), "entry name").lower()
            c.sp()
            entry_type = c.word("an entry type").lower()
            if entry_type not in _ENTRY_TYPES:
                raise _fail("entry type must be priv, shared or all")
            c.sp()
        return SearchModSeq(c.modseq(zero=True), entry, entry_type)
    raise _fail("unknown search key")


def parse_search(c: Cursor, uid: bool = False) -> Search:
    """RFC 9051 §6.4.4 SEARCH [RETURN (...)] [CHARSET cs] key...

    RETURN options: RFC 4731 §3.1 (ESEARCH), RFC 5182 §2 (SAVE). An
    unsupported charset is a ``NO [BADCHARSET (US-ASCII UTF-8)]``.
    """
    c.sp()
    returns: frozenset[SearchReturn] | None = None
    if c.peek_word() == "RETURN":
        c.word()
        c.sp()
        options: list[SearchReturn] = []
        c.items(
            lambda: options.append(_enum(SearchReturn, c.word(), "SEARCH return option")),
            empty=True,
        )
        returns = frozenset(options) or frozenset({SearchReturn.ALL})
        c.sp()
    charset: str | None = None
    if c.peek_word() == "CHARSET":
        c.word()
        c.sp()
        raw = c.astring("a charset").decode("ascii", "replace").upper()
        if raw not in SEARCH_CHARSETS:
            raise ParseError(None, "unsupported charset", BADCHARSET, status="NO")
        charset = raw
        c.sp()
    keys = [_search_key(c)]
    while c.try_sp():
        keys.append(_search_key(c))
    key = keys[0] if len(keys) == 1 else SearchAnd(tuple(keys))
    return Search(key, charset, returns, uid)


# UID ----------------------------------------------------------------------------------

#: UID subcommands (RFC 9051 §6.4.9; UID EXPUNGE RFC 4315 §2.1; UID MOVE RFC 6851).
UID_COMMANDS: dict[str, Callable[[Cursor, bool], Command]] = {
    "COPY": parse_copy,
    "MOVE": parse_move,
    "FETCH": parse_fetch,
    "SEARCH": parse_search,
    "STORE": parse_store,
    "EXPUNGE": parse_expunge,
}


def parse_uid(c: Cursor) -> Command:
    """RFC 9051 §6.4.9 UID COPY/MOVE/FETCH/SEARCH/STORE/EXPUNGE."""
    c.sp()
    sub = UID_COMMANDS.get(c.word("a UID command"))
    if sub is None:
        raise _fail("unknown UID command")
    return sub(c, True)


#: Command word → parser function. The session keeps its own per-state
#: tables (RFC 9051 §3) keyed by :attr:`Command.name`.
COMMANDS: dict[str, Callable[[Cursor], Command]] = {
    "CAPABILITY": parse_capability,
    "NOOP": parse_noop,
    "LOGOUT": parse_logout,
    "STARTTLS": parse_starttls,
    "AUTHENTICATE": parse_authenticate,
    "LOGIN": parse_login,
    "ENABLE": parse_enable,
    "ID": parse_id,
    "SELECT": parse_select,
    "EXAMINE": parse_examine,
    "CREATE": parse_create,
    "DELETE": parse_delete,
    "RENAME": parse_rename,
    "SUBSCRIBE": parse_subscribe,
    "UNSUBSCRIBE": parse_unsubscribe,
    "LIST": parse_list,
    "LSUB": parse_lsub,
    "NAMESPACE": parse_namespace,
    "STATUS": parse_status,
    "APPEND": parse_append,
    "IDLE": parse_idle,
    "CHECK": parse_check,
    "CLOSE": parse_close,
    "UNSELECT": parse_unselect,
    "EXPUNGE": parse_expunge,
    "SEARCH": parse_search,
    "FETCH": parse_fetch,
    "STORE": parse_store,
    "COPY": parse_copy,
    "MOVE": parse_move,
    "UID": parse_uid,
}


# --- entry points ------------------------------------------------------------------------


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


def parse_command(parts: bytes | Sequence[bytes], *, utf8: bool = False) -> tuple[str, Command]:
    """Parse one complete command: ``(tag, command)`` or :class:`ParseError`.

    ``parts`` is a single line, or ``[line, literal, line, ..., line]`` as
    collected by the connection (each line without its CRLF; a trailing CRLF
    is tolerated). ``utf8`` selects UTF-8 mailbox names instead of modified
    UTF-7 (see the module note).
    """
    raw = [parts] if isinstance(parts, bytes | bytearray) else list(parts)
    chunks = [p if type(p) is bytes else bytes(p) for p in raw]
    if not chunks:
        raise ParseError(None, "empty command")
    if len(chunks) > 2 * MAX_LITERALS + 1:
        raise ParseError(peek_command(chunks[0])[0], "too many literals")
    for i in range(0, len(chunks), 2):
        chunks[i] = _strip_eol(chunks[i])
    c = Cursor(chunks, utf8=utf8)
    m = _TAG.match(c.line)
    if m is None or (m.end() < len(c.line) and c.line[m.end()] != _SP):
        raise ParseError(None, "missing or invalid tag")
    tag = m[0].decode("ascii")
    c.pos = m.end()
    try:
        c.sp()
        name = c.word("a command name")
        parse = COMMANDS.get(name)
        if parse is None:
            raise _fail("unknown command")
        command = parse(c)
        c.end()
    except ParseError as exc:
        exc.tag = tag
        raise
    return tag, command


def peek_command(line: bytes) -> tuple[str | None, str | None]:
    """The tag and upper-case command word of a first line, as far as readable.

    For replies before the command is complete (a refused literal).
    """
    m = _TAG.match(line)
    if m is None or (m.end() < len(line) and line[m.end()] != _SP):
        return None, None
    tag = m[0].decode("ascii")
    if line[m.end() : m.end() + 1] != b" ":
        return tag, None
    word = _ATOM.match(line, m.end() + 1)
    return tag, word[0].decode("ascii").upper() if word else None


# --- the literal protocol --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LiteralSpec:
    """A literal announced at the end of a line (RFC 9051 §4.3).

    ``non_sync``: ``{n+}`` (LITERAL+/LITERAL-, RFC 7888): the client sends the
    data at once, the server must not send ``+``. ``binary``: ``~{n}``
    (literal8, RFC 3516 §4.4), the data may contain NUL.
    """

    size: int
    non_sync: bool = False
    binary: bool = False


_QUOTED_REST = re.compile(rb'(?:[^"\\]|\\.)*"', re.S)
_LITERAL_AT_END = re.compile(rb"(~?)\{([0-9]+)(\+?)\}")


def literal_needed(line: bytes) -> LiteralSpec | None:
    """The literal the line announces at its end, or None if the command ends.

    ``line`` is one line as read (its CRLF may be present). A ``{n}`` inside
    a quoted string is not an announcement. A number too large to matter
    gives ``size`` larger than any limit, so the caller refuses it.
    """
    line = _strip_eol(line)
    if not line.endswith(b"}"):
        return None
    start = line.rfind(b"{")
    if start < 0:
        return None
    if start > 0 and line[start - 1] == _TILDE:
        start -= 1
    m = _LITERAL_AT_END.fullmatch(line, start)
    if m is None:
        return None
    # The announcement counts only outside a quoted string: each line starts
    # outside one, so scan the quotes before it.
    pos = 0
    while True:
        q = line.find(b'"', pos, start)
        if q < 0:
            break
        end = _QUOTED_REST.match(line, q + 1)
        if end is None or end.end() > start:
            return None
        pos = end.end()
    digits = m[2]
    size = int(digits) if len(digits) <= 20 else 10**20
    return LiteralSpec(size, bool(m[3]), bool(m[1]))


@dataclass(frozen=True, slots=True)
class Limits:
    """What one command may contain (the connection's memory bound).

    ``max_line``: octets per line, CRLF excluded. ``max_literal``: octets
    per literal outside APPEND. ``max_append``: octets per literal in APPEND
    (advertise it as APPENDLIMIT, RFC 7889). ``max_command``: octets of all
    parts together (several MULTIAPPEND messages). ``literal_plus``: LITERAL+
    is advertised; when False only LITERAL- applies (non-synchronizing
    literals up to :data:`LITERAL_MINUS_MAX` octets, RFC 7888 §4).
    """

    max_line: int = 64 * 1024
    max_literal: int = 64 * 1024
    max_append: int = 64 * 1024 * 1024
    max_command: int = 256 * 1024 * 1024
    max_literals: int = MAX_LITERALS
    literal_plus: bool = True


class CommandReader:
    """Collects the lines and literals of one command; pure, no I/O.

    The connection's loop (asyncio pseudo-code)::

        reader = CommandReader(limits)
        try:
            spec = reader.feed_line(await read_line())
            while spec is not None:
                if not spec.non_sync:
                    send(b"+ go ahead\\r\\n")
                reader.feed_literal(await read_exactly(spec.size))
                spec = reader.feed_line(await read_line())
            tag, command = reader.parse(utf8=session.utf8)
        except ParseError as e:
            send(e.response())
            if e.close:
                close the connection

    ``feed_line`` raises ``ParseError`` (tagged when the tag was readable)
    when a limit is exceeded. A refused synchronizing literal costs
    nothing: the client gets the tagged error instead of ``+`` and does not
    send it. A refused non-synchronizing literal is already on its way:
    the error has ``close=True`` (RFC 7888 §4 allows closing). Literals too
    big for APPEND are ``NO [TOOBIG]`` (RFC 7889 §4), others ``BAD
    [TOOBIG]``.
    """

    __slots__ = ("_appending", "_limits", "_parts", "_tag", "_total", "_want")

    def __init__(self, limits: Limits | None = None) -> None:
        self._limits = limits or Limits()
        self._parts: list[bytes] = []
        self._want: LiteralSpec | None = None
        self._total = 0
        self._tag: str | None = None
        self._appending = False

    @property
    def parts(self) -> list[bytes]:
        """What was collected so far: ``[line, literal, ..., line]``."""
        return self._parts

    def feed_line(self, line: bytes) -> LiteralSpec | None:
        """Add a line; the literal it announces, or None when the command is complete."""
        if self._want is not None:
            raise RuntimeError("a literal is expected, not a line")
        limits = self._limits
        line = _strip_eol(line)
        if not self._parts:
            self._tag, name = peek_command(line)
            self._appending = name == "APPEND"
        spec = literal_needed(line)
        if len(line) > limits.max_line:
            raise ParseError(self._tag, "command line too long", close=spec is not None)
        self._parts.append(line)
        self._total += len(line)
        if spec is None:
            return None
        limit = limits.max_append if self._appending else limits.max_literal
        count = len(self._parts) // 2 + 1
        refusal: ParseError | None = None
        if spec.size > limit or self._total + spec.size > limits.max_command:
            refusal = ParseError(
                self._tag, "literal too big", "TOOBIG", status="NO" if self._appending else "BAD"
            )
        elif count > limits.max_literals:
            refusal = ParseError(self._tag, "too many literals")
        elif spec.non_sync and not limits.literal_plus and spec.size > LITERAL_MINUS_MAX:
            refusal = ParseError(self._tag, "non-synchronizing literal too big", "TOOBIG")
        if refusal is not None:
            refusal.close = spec.non_sync
            raise refusal
        self._want = spec
        return spec

    def feed_literal(self, data: bytes) -> None:
        """Add the octets of the literal the last line announced."""
        if self._want is None or len(data) != self._want.size:
            raise RuntimeError("literal does not match the announced size")
        self._parts.append(data)
        self._total += len(data)
        self._want = None

    def parse(self, *, utf8: bool = False) -> tuple[str, Command]:
        """Parse the complete command (see :func:`parse_command`)."""
        if self._want is not None or not self._parts:
            raise RuntimeError("the command is not complete")
        return parse_command(self._parts, utf8=utf8)


# --- continuation lines --------------------------------------------------------------------


def is_idle_done(line: bytes) -> bool:
    """Whether a line read during IDLE is ``DONE`` (RFC 9051 §6.3.13)."""
    return _strip_eol(line).upper() == b"DONE"


def parse_sasl_response(line: bytes) -> bytes | None:
    """A client's AUTHENTICATE continuation line (RFC 9051 §6.2.2).

    Returns the decoded octets (``b""`` for an empty line), None when the
    client cancels with ``*`` (answer a tagged BAD), or raises ``ParseError``
    for invalid base64 (tag None: the session fills in the AUTHENTICATE tag).
    """
    line = _strip_eol(line)
    if line == b"*":
        return None
    if not line:
        return b""
    if _BASE64.fullmatch(line) is None:
        raise _fail("invalid base64")
    return _base64(line)
