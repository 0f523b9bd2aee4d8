"""SEARCH evaluation: which messages a parsed search key tree matches.

Design note
-----------
A search runs in two passes so that message files are read only when a key
needs them and only for messages the cheap keys have not already decided:

1. :func:`compile_search` turns the key tree into a :class:`Matcher` once per
   command: ``*`` and ``$`` resolved against the :class:`SearchContext`,
   sequence sets turned into sorted ranges for bisection, needles casefolded,
   and the children of AND/OR reordered cheapest first (flags, numbers and
   dates; then the cached ``MessageMeta``; then header fields; then body text).
2. A matcher answers ``True``, ``False`` or ``None`` for one
   :class:`SearchMessage`. ``None`` means "undecided without content the view
   does not carry" (three-valued logic: ``False AND None`` is ``False``,
   ``True OR None`` is ``True``). :func:`search` evaluates every message with
   the index row alone, asks its loader for the content of the undecided ones
   (:attr:`Matcher.need` says what: :class:`Need`), in batches, and evaluates
   them again.

Matching follows RFC 9051 §6.4.4:

* header keys (BCC, CC, FROM, SUBJECT, TO, HEADER) match a case-insensitive
  substring of any occurrence of the field, unfolded, with RFC 2047
  encoded-words decoded and 8-bit octets read as UTF-8 (RFC 6532); an empty
  string matches every message that has the field;
* BODY matches the decoded text of the body: text/* and other leaf
  message/* parts with their Content-Transfer-Encoding (base64,
  quoted-printable) undone and their charset decoded, plus the headers of
  encapsulated messages; other parts (attachments) are not searched. TEXT
  adds the message header and every MIME part header;
* "case-insensitive" is Unicode full case folding (``str.casefold``);
* BEFORE/ON/SINCE compare the date of the internal date, disregarding time,
  in its own offset (or :attr:`SearchContext.tz` when set); SENTBEFORE/
  SENTON/SENTSINCE the date written in the Date: header, disregarding time
  and time zone; a message without a readable Date: uses its internal date
  (as Dovecot does);
* RECENT matches messages whose view has ``\\Recent`` in ``flags`` (the
  session adds it if it tracks recency; RFC 9051 dropped it); keywords
  compare case-insensitively;
* MODSEQ n matches a message MODSEQ >= n (RFC 7162 §3.1.5);
* a ``$`` set matches the UIDs of the saved result (RFC 5182 §2), empty when
  nothing was saved.

Nothing here raises on malformed message content: undecodable octets become
U+FFFD, unknown charsets are read as UTF-8, broken base64 is decoded as far
as it goes.
"""

from __future__ import annotations

import asyncio
import binascii
import codecs
import datetime as dt
import enum
import functools
import re
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_tz

from pochta.imap.types import (
    DateOp,
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
    SearchSeq,
    SearchSize,
    SearchText,
    SearchUid,
    SequenceSet,
)
from pochta.mime import MessageMeta, Part
from pochta.mime.headers import header_fields, unfold
from pochta.store.interface import MessageInfo

__all__ = [
    "Loader",
    "Matcher",
    "Need",
    "SearchContext",
    "SearchMessage",
    "compile_search",
    "decode_header_value",
    "filter_messages",
    "needs",
    "search",
]


class Need(enum.Flag):
    """Content a search key needs beyond the index row."""

    NONE = 0
    #: The cached ``MessageMeta`` (SENT* dates; part offsets for BODY/TEXT).
    META = enum.auto()
    #: The stored message octets (header keys, BODY, TEXT).
    DATA = enum.auto()


@dataclass(slots=True)
class SearchMessage:
    """What a search sees of one message.

    Not frozen: a session renumbers its cached views in place after an
    expunge (``Selected.search_messages``) instead of rebuilding them all.

    The index row (``seq`` .. ``internal_date``, an aware datetime) is always
    present; ``meta`` and ``data`` are filled in by the loader when
    :attr:`Matcher.need` asks for them.
    """

    seq: int
    uid: int
    flags: frozenset[str]
    modseq: int
    size: int
    internal_date: dt.datetime
    meta: MessageMeta | None = None
    data: bytes | None = None

    @classmethod
    def from_info(
        cls,
        seq: int,
        info: MessageInfo,
        meta: MessageMeta | None = None,
        data: bytes | None = None,
    ) -> SearchMessage:
        """The view of a store index row with message number ``seq``."""
        return cls(
            seq, info.uid, info.flags, info.modseq, info.size, info.internal_date, meta, data
        )


@dataclass(frozen=True, slots=True)
class SearchContext:
    """The mailbox a search runs in.

    ``max_seq`` is the number of messages and ``max_uid`` the highest UID in
    use (both 0 for an empty mailbox): they give ``*`` its value.
    ``saved`` holds the UIDs of the SEARCHRES saved result that ``$``
    stands for (RFC 5182 §2). ``tz``, when set, is the time zone in which
    BEFORE/ON/SINCE take the date of the internal date.
    """

    max_seq: int
    max_uid: int
    saved: frozenset[int] = frozenset()
    tz: dt.tzinfo | None = None


#: A matcher's verdict: True, False, or None (content needed, see :class:`Need`).
Verdict = bool | None
_Pred = Callable[[SearchMessage, "_Doc"], Verdict]

# Costs for ordering AND/OR children: cheapest first.
_CHEAP, _META, _HEADER, _BODY = range(4)


class Matcher:
    """A compiled search key: call it with a :class:`SearchMessage`."""

    __slots__ = ("_doc", "_pred", "need")

    def __init__(self, pred: _Pred, need: Need, *, doc: bool = True) -> None:
        self._pred = pred
        #: What the loader must provide for messages this matcher cannot decide.
        self.need = need
        #: Whether a predicate reads the decoded message (``_Doc``); when not,
        #: none is made per message.
        self._doc = doc

    def __call__(self, message: SearchMessage) -> Verdict:
        """True/False, or None when ``message`` lacks the content :attr:`need` names."""
        return self._pred(message, _Doc(message) if self._doc else _NO_DOC)

    def verdicts(self, messages: Sequence[SearchMessage]) -> list[Verdict]:
        """``self(m)`` for each message, in one loop (SEARCH's hot path)."""
        pred = self._pred
        if self._doc:
            return [pred(m, _Doc(m)) for m in messages]
        return [pred(m, _NO_DOC) for m in messages]


def needs(key: SearchKey) -> Need:
    """The content evaluating ``key`` may need (RFC 9051 §6.4.4 key by key)."""
    match key:
        case SearchDate(sent=True):
            return Need.META
        case SearchHeader(field=field) if field.lower() == "subject":
            return Need.META  # the envelope cached at delivery has it
        case SearchHeader():
            return Need.DATA
        case SearchBody() | SearchText():
            return Need.META | Need.DATA
        case SearchNot(key=inner):
            return needs(inner)
        case SearchOr(left=left, right=right):
            return needs(left) | needs(right)
        case SearchAnd(keys=keys):
            need = Need.NONE
            for k in keys:
                need |= needs(k)
            return need
        case _:
            return Need.NONE


def compile_search(key: SearchKey, ctx: SearchContext) -> Matcher:
    """Compile ``key`` for the mailbox ``ctx`` describes (RFC 9051 §6.4.4)."""
    pred, _ = _compile(key, ctx)
    return Matcher(pred, needs(key), doc=_reads_doc(key))


def _reads_doc(key: SearchKey) -> bool:
    """Whether a predicate of ``key`` reads the decoded message (``_Doc``)."""
    match key:
        case SearchDate(sent=True) | SearchBody() | SearchText():
            return True
        case SearchHeader(field=field):
            return field.lower() != "subject"  # SUBJECT reads the cached envelope
        case SearchNot(key=inner):
            return _reads_doc(inner)
        case SearchOr(left=left, right=right):
            return _reads_doc(left) or _reads_doc(right)
        case SearchAnd(keys=keys):
            return any(_reads_doc(k) for k in keys)
        case _:
            return False


def filter_messages(
    matcher: Matcher, messages: Sequence[SearchMessage]
) -> tuple[list[SearchMessage], list[SearchMessage]]:
    """``(matched, undecided)``: one pass, no loading; both keep input order."""
    matched: list[SearchMessage] = []
    undecided: list[SearchMessage] = []
    for message, verdict in zip(messages, matcher.verdicts(messages), strict=True):
        if verdict is None:
            undecided.append(message)
        elif verdict:
            matched.append(message)
    return matched, undecided


#: Fills in ``meta`` and/or ``data`` (as :class:`Need` asks) of the given
#: views; returns the completed views in the same order. A view it cannot
#: complete (the message vanished) may be returned as it was: it then does
#: not match.
Loader = Callable[[Sequence[SearchMessage], Need], Awaitable[Sequence[SearchMessage]]]


async def search(
    key: SearchKey,
    messages: Sequence[SearchMessage],
    ctx: SearchContext,
    load: Loader | None = None,
    *,
    batch: int = 100,
) -> list[SearchMessage]:
    """The messages ``key`` matches, in input order (RFC 9051 §6.4.4).

    ``messages`` are index-row views (with content already present where
    cheap). Undecided messages are completed by ``load`` in batches of
    ``batch`` (bounding memory to one batch of message octets) and
    evaluated again; between batches the event loop gets a turn. Without a
    loader, undecided messages do not match.
    """
    matcher = compile_search(key, ctx)
    verdicts = matcher.verdicts(messages)  # None (undecided) counts as no match
    if load is not None:
        pending = [i for i, verdict in enumerate(verdicts) if verdict is None]
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            loaded = await load([messages[i] for i in chunk], matcher.need)
            for i, message in zip(chunk, loaded, strict=True):
                verdicts[i] = bool(matcher(message))
            await asyncio.sleep(0)
    return [m for m, ok in zip(messages, verdicts, strict=True) if ok]


# --- compilation ------------------------------------------------------------------


def _true(m: SearchMessage, d: _Doc) -> Verdict:
    return True


def _ranges(sequence_set: SequenceSet, largest: int) -> tuple[list[int], list[int]]:
    bounds = sequence_set.bounds(largest)
    return [lo for lo, _ in bounds], [hi for _, hi in bounds]


def _in(n: int, los: list[int], his: list[int]) -> bool:
    i = bisect_right(los, n) - 1
    return i >= 0 and n <= his[i]


def _compare(op: DateOp, value: dt.date, target: dt.date) -> bool:
    if op is DateOp.BEFORE:
        return value < target
    if op is DateOp.ON:
        return value == target
    return value >= target


def _compile(key: SearchKey, ctx: SearchContext) -> tuple[_Pred, int]:
    """The predicate for ``key`` and its cost class."""
    match key:
        case SearchAll():
            return _true, _CHEAP
        case SearchFlag(flag=flag, present=present):
            return _flag(flag, present), _CHEAP
        case SearchSize(size=size, larger=larger):
            if larger:
                return (lambda m, d: m.size > size), _CHEAP
            return (lambda m, d: m.size < size), _CHEAP
        case SearchSeq(sequence_set=s) | SearchUid(sequence_set=s) if s.saved:
            saved = ctx.saved
            return (lambda m, d: m.uid in saved), _CHEAP
        case SearchSeq(sequence_set=s):
            los, his = _ranges(s, ctx.max_seq)
            return (lambda m, d: _in(m.seq, los, his)), _CHEAP
        case SearchUid(sequence_set=s):
            los, his = _ranges(s, ctx.max_uid)
            return (lambda m, d: _in(m.uid, los, his)), _CHEAP
        case SearchModSeq(modseq=modseq):
            return (lambda m, d: m.modseq >= modseq), _CHEAP
        case SearchDate(op=op, date=date, sent=False):
            tz = ctx.tz

            def internal(m: SearchMessage, d: _Doc) -> Verdict:
                when = m.internal_date if tz is None else m.internal_date.astimezone(tz)
                return _compare(op, when.date(), date)

            return internal, _CHEAP
        case SearchDate(op=op, date=date, sent=True):

            def sent(m: SearchMessage, d: _Doc) -> Verdict:
                value = d.sent_date()
                return None if value is None else _compare(op, value, date)

            return sent, _META
        case SearchHeader(field=field, value=value) if field.lower() == "subject":
            return _subject(value.casefold()), _META
        case SearchHeader(field=field, value=value):
            return _header(field.lower(), value.casefold()), _HEADER
        case SearchBody(value=value):
            needle = value.casefold()

            def body(m: SearchMessage, d: _Doc) -> Verdict:
                text = d.body()
                return None if text is None else needle in text

            return body, _BODY
        case SearchText(value=value):
            needle = value.casefold()

            def text(m: SearchMessage, d: _Doc) -> Verdict:
                haystack = d.text()
                return None if haystack is None else needle in haystack

            return text, _BODY
        case SearchNot(key=inner):
            pred, cost = _compile(inner, ctx)

            def negate(m: SearchMessage, d: _Doc) -> Verdict:
                verdict = pred(m, d)
                return None if verdict is None else not verdict

            return negate, cost
        case SearchOr(left=left, right=right):
            return _any([_compile(left, ctx), _compile(right, ctx)])
        case SearchAnd(keys=keys):
            return _all([_compile(k, ctx) for k in keys])
    raise TypeError(f"not a search key: {key!r}")  # pragma: no cover


def _flag(flag: str, present: bool) -> _Pred:
    if flag.startswith("\\"):
        return lambda m, d: (flag in m.flags) is present
    lower = flag.lower()

    def keyword(m: SearchMessage, d: _Doc) -> Verdict:
        found = flag in m.flags or any(f.lower() == lower for f in m.flags)
        return found is present

    return keyword


def _subject(needle: str) -> _Pred:
    """SUBJECT from the envelope cached at delivery: no message file is read.

    The envelope keeps the first Subject field, raw (RFC 9051 §7.5.2); it is
    decoded here exactly as a header search decodes it.
    """

    def subject(m: SearchMessage, d: _Doc) -> Verdict:
        meta = m.meta
        if meta is None:
            return None
        raw = meta.envelope.subject
        if raw is None:
            return False
        return needle in _folded_subject(raw)

    return subject


@functools.lru_cache(maxsize=8192)
def _folded_subject(raw: str) -> str:
    """A cached envelope Subject decoded and case-folded: clients repeat
    searches over the same mailbox, and decoding is the costly part."""
    return decode_header_value(raw.encode("utf-8", "surrogateescape")).casefold()


def _header(name: str, needle: str) -> _Pred:
    def header(m: SearchMessage, d: _Doc) -> Verdict:
        values = d.header(name)
        if values is None:
            return None
        return any(needle in v for v in values)

    return header


def _all(children: list[tuple[_Pred, int]]) -> tuple[_Pred, int]:
    children.sort(key=lambda c: c[1])
    preds = [p for p, _ in children]
    cost = children[-1][1] if children else _CHEAP

    def conjunction(m: SearchMessage, d: _Doc) -> Verdict:
        result: Verdict = True
        for pred in preds:
            verdict = pred(m, d)
            if verdict is False:
                return False
            if verdict is None:
                result = None
        return result

    return conjunction, cost


def _any(children: list[tuple[_Pred, int]]) -> tuple[_Pred, int]:
    children.sort(key=lambda c: c[1])
    preds = [p for p, _ in children]
    cost = children[-1][1]

    def disjunction(m: SearchMessage, d: _Doc) -> Verdict:
        result: Verdict = False
        for pred in preds:
            verdict = pred(m, d)
            if verdict is True:
                return True
            if verdict is None:
                result = None
        return result

    return disjunction, cost


# --- per-message decoded content ----------------------------------------------------------


class _Doc:
    """Decoded, casefolded content of one message, computed once on demand."""

    __slots__ = ("_body", "_headers", "_mime", "_sent", "_text", "message")

    def __init__(self, message: SearchMessage) -> None:
        self.message = message
        self._headers: dict[str, list[str]] | None = None
        self._body: str | None = None
        self._mime: str | None = None
        self._sent: dt.date | None = None
        self._text: str | None = None

    def header(self, name: str) -> list[str] | None:
        """Decoded values of the top-level field ``name`` (lower case)."""
        if self._headers is None:
            data = self.message.data
            if data is None:
                return None
            headers: dict[str, list[str]] = {}
            for raw_name, raw_value in header_fields(data, 0, len(data)):
                field = raw_name.decode("ascii", "replace").lower()
                headers.setdefault(field, []).append(decode_header_value(raw_value).casefold())
            self._headers = headers
        return self._headers.get(name, [])

    def _content(self) -> bool:
        if self._body is not None:
            return True
        meta, data = self.message.meta, self.message.data
        if meta is None or data is None:
            return False
        body: list[str] = []
        mime: list[str] = []
        _walk(data, meta.body, body, mime)
        self._body = "\n".join(body).casefold()
        self._mime = "\n".join(mime).casefold()
        return True

    def body(self) -> str | None:
        """Decoded body text (RFC 9051 §6.4.4 BODY)."""
        return self._body if self._content() else None

    def text(self) -> str | None:
        """Header, MIME headers and body text (RFC 9051 §6.4.4 TEXT)."""
        if self._text is None:
            data, meta = self.message.data, self.message.meta
            if not self._content() or data is None or meta is None:
                return None
            header = _header_text(data, 0, meta.body.body_start).casefold()
            self._text = f"{header}\n{self._mime}\n{self._body}"
        return self._text

    def sent_date(self) -> dt.date | None:
        """The Date: header's date, else the internal date's (None: no meta yet)."""
        if self._sent is None:
            meta = self.message.meta
            if meta is None:
                return None
            self._sent = _date_of(meta.envelope.date) or self.message.internal_date.date()
        return self._sent


def _date_of(value: str | None) -> dt.date | None:
    """The calendar date written in a Date: header value, ignoring time and zone."""
    if not value:
        return None
    try:
        parsed = parsedate_tz(value)
        if parsed is None:
            return None
        return dt.date(parsed[0], parsed[1], parsed[2])
    except (ValueError, TypeError, IndexError, OverflowError):
        return None


def _walk(data: bytes, part: Part, body: list[str], mime: list[str]) -> None:
    """Collect the searchable text of ``part`` (see the module note)."""
    if part.parts:
        for child in part.parts:
            mime.append(_header_text(data, child.header_start, child.body_start))
            _walk(data, child, body, mime)
    elif part.message is not None:
        body.append(_header_text(data, part.body_start, part.message.body_start))
        _walk(data, part.message, body, mime)
    elif part.type in ("text", "message"):
        body.append(_part_text(data, part))


def _header_text(data: bytes, start: int, end: int) -> str:
    return "\n".join(
        f"{name.decode('ascii', 'replace')}: {decode_header_value(value)}"
        for name, value in header_fields(data, start, end)
    )


_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")


def _base64(raw: bytes) -> bytes:
    try:
        return binascii.a2b_base64(raw)
    except binascii.Error:
        clean = _NOT_BASE64.sub(b"", raw)
        clean = clean[: len(clean) - len(clean) % 4]
        try:
            return binascii.a2b_base64(clean)
        except binascii.Error:  # pragma: no cover - clean input always decodes
            return b""


def _part_text(data: bytes, part: Part) -> str:
    raw = data[part.body_start : part.end]
    encoding = part.encoding.upper()
    if encoding == "BASE64":
        raw = _base64(raw)
    elif encoding == "QUOTED-PRINTABLE":
        raw = binascii.a2b_qp(raw)
    return _decode(raw, part.param("charset"))


# --- charsets and RFC 2047 -----------------------------------------------------------------

# Codecs that are not charsets a message can declare, or that are costly or
# surprising on hostile input.
_REFUSED_CODECS = frozenset(
    {"punycode", "idna", "unicode_escape", "raw_unicode_escape", "undefined", "mbcs", "oem"}
)


@functools.lru_cache(maxsize=256)
def _codec(charset: str) -> str:
    """The Python codec for a MIME charset name; UTF-8 when unknown."""
    try:
        info = codecs.lookup(charset.split("*", 1)[0].strip())
    except (LookupError, ValueError, TypeError):
        return "utf-8"
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return "utf-8"
    # Undeclared 8-bit text labelled us-ascii is nearly always UTF-8.
    return "utf-8" if info.name == "ascii" else info.name


def _decode(raw: bytes, charset: str | None) -> str:
    codec = _codec(charset[:64]) if charset else "utf-8"
    try:
        return raw.decode(codec, "replace")
    except Exception:  # a codec that fails even with "replace"
        return raw.decode("utf-8", "replace")


_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_FOLDING_SPACE = re.compile(rb"[ \t\r\n]*")


def decode_header_value(raw: bytes) -> str:
    """A raw header field value as text: unfolded, RFC 2047 encoded-words
    decoded (RFC 2047 §6.2: blanks between adjacent encoded-words dropped,
    adjacent words in one charset joined before decoding), other octets
    read as UTF-8 (RFC 6532). Never raises."""
    raw = unfold(raw)
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""
    pos = 0

    def flush() -> None:
        if pending:
            out.append(_decode(b"".join(pending), pending_charset))
            pending.clear()

    for m in _ENCODED_WORD.finditer(raw):
        between = raw[pos : m.start()]
        # Blanks between two encoded-words are dropped (RFC 2047 §6.2).
        if not (pending and _FOLDING_SPACE.fullmatch(between)):
            flush()
            out.append(between.decode("utf-8", "replace"))
        charset = m[1].decode("ascii", "replace")
        if charset.lower() != pending_charset.lower():
            flush()
            pending_charset = charset
        text = m[3]
        if m[2] in b"bB":
            pending.append(_base64(text))
        else:
            pending.append(binascii.a2b_qp(text, header=True))
        pos = m.end()
    flush()
    out.append(raw[pos:].decode("utf-8", "replace"))
    return "".join(out)


#: The ``_Doc`` argument of predicates that never read it (``Matcher._doc``
#: false): no per-message object; reading it would raise AttributeError.
_NO_DOC = _Doc.__new__(_Doc)
