"""FETCH data items rendered from the store's cached analysis (RFC 9051 §6.4.5, §7.5.2).

Design note
-----------
Input: what the store already has for a message: its index row
(:class:`~pochta.store.interface.MessageInfo`: UID, flags, MODSEQ, size,
internal date), the :class:`~pochta.mime.MessageMeta` cached at delivery
(ENVELOPE, the BODYSTRUCTURE tree with byte offsets), and, only when an item
needs them, the stored octets. Nothing is parsed again: ENVELOPE and
BODYSTRUCTURE are joins of the cached strings, every ``BODY[section]`` is a
slice of the stored bytes located by the cached offsets, and ``BODY[]`` is the
file's bytes unchanged ("the exact bytes stored are the bytes served").

Requests are this module's own small frozen values (:class:`Item`,
:class:`BodySection`, :class:`BinarySize`); the session maps the parser's AST
onto them. A request is compiled once per command into a :class:`Fetch`
(response names, per-item renderers, what it needs: :attr:`Fetch.needs_meta`,
:meth:`Fetch.needs_body`, :attr:`Fetch.sets_seen`), then rendered per message
into the ``msg-att`` octets with a single ``bytes.join``.

Protocol versions. IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051) share the
FETCH grammar except that (a) rev2 and UTF8=ACCEPT allow UTF-8 in quoted
strings (``utf8``), (b) rev2's ``media-message`` includes ``message/global``
(``rev2``: a message/global part gets the envelope, body and line count of
``body-type-msg``; in rev1 it is a ``body-type-basic``, as RFC 3501's
grammar demands), and (c) rev2 no longer lists RFC822, RFC822.HEADER and
RFC822.TEXT (RFC 9051 Appendix E item 18); they are still rendered when a
client asks. Both grammars keep ``body-fld-md5`` in ``body-ext-1part``;
extension data is always sent in full (md5, disposition, language,
location), ``NIL`` where absent.

Choices where the RFCs leave room, all valid in both grammars:

* media type, subtype, parameter and disposition names are sent in upper
  case (as RFC 9051's examples, Cyrus and UW-IMAP do), values as stored; an
  empty parameter list is ``NIL`` (``()`` is not allowed); a language list
  is always parenthesized;
* NUL octets, which no IMAP string may hold (RFC 9051 §9 note 3), are
  dropped from ENVELOPE and BODYSTRUCTURE strings; section contents are
  never altered, so a stored message with NUL is served with NUL inside
  the literal (Dovecot would send 0x80 instead; BINARY is the clean way);
* section contents are literals (``""`` when empty), ``NIL`` for a part
  that does not exist (RFC 9051 §4.5); BINARY data with NUL is a
  ``literal8`` (RFC 9051 §7.5.2); BINARY.SIZE of a missing part is 0;
* HEADER.FIELDS names are echoed as the client spelled them (as astrings);
* ``BINARY[]`` is the whole message as stored (the message entity itself
  has an identity encoding); BINARY of a multipart or message/rfc822 part
  returns its body unchanged (RFC 2046 §5 allows them only identity
  encodings), a message/global part is decoded like a leaf (RFC 6532 §3.5);
  decoded text/* data goes out with CRLF line ends (RFC 9051 §7.5.2);
* a partial BINARY response echoes ``<origin>`` like BODY does (RFC 9051
  §6.4.5 gives it BODY's semantics).

Failure: an unknown Content-Transfer-Encoding under BINARY or BINARY.SIZE
raises :class:`UnknownCTE`, which the session answers with a tagged
``NO [UNKNOWN-CTE]`` (RFC 9051 §7.5.2). Rendering without the meta or
bytes that :attr:`Fetch.needs_meta` / :meth:`Fetch.needs_body` asked for
raises ``ValueError`` (a session bug).
"""

from __future__ import annotations

import binascii
import enum
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from pochta.imap.encode import NOT_PLAIN, astring, date_time, flag_list, string_text, wire
from pochta.mime import Address, Envelope, MessageMeta, Part, part
from pochta.store.interface import MessageInfo

# --- requests -----------------------------------------------------------------


class Item(enum.StrEnum):
    """Fetch attributes without a section (RFC 9051 §6.4.5; MODSEQ: RFC 7162 §3.1.4, §7)."""

    UID = "UID"
    FLAGS = "FLAGS"
    INTERNALDATE = "INTERNALDATE"
    RFC822_SIZE = "RFC822.SIZE"
    ENVELOPE = "ENVELOPE"
    BODY = "BODY"  # non-extensible BODYSTRUCTURE
    BODYSTRUCTURE = "BODYSTRUCTURE"
    MODSEQ = "MODSEQ"
    RFC822 = "RFC822"  # = BODY[] (RFC 3501 §6.4.5; deprecated in RFC 9051)
    RFC822_HEADER = "RFC822.HEADER"  # = BODY.PEEK[HEADER]
    RFC822_TEXT = "RFC822.TEXT"  # = BODY[TEXT]


#: The FETCH macros (RFC 9051 §6.4.5).
MACROS: Final[dict[str, tuple[Item, ...]]] = {
    "ALL": (Item.FLAGS, Item.INTERNALDATE, Item.RFC822_SIZE, Item.ENVELOPE),
    "FAST": (Item.FLAGS, Item.INTERNALDATE, Item.RFC822_SIZE),
    "FULL": (Item.FLAGS, Item.INTERNALDATE, Item.RFC822_SIZE, Item.ENVELOPE, Item.BODY),
}

# Section specifiers (RFC 9051 §6.4.5.1, §9 section-msgtext / section-text).
HEADER: Final = "HEADER"
HEADER_FIELDS: Final = "HEADER.FIELDS"
HEADER_FIELDS_NOT: Final = "HEADER.FIELDS.NOT"
TEXT: Final = "TEXT"
MIME: Final = "MIME"
SPECIFIERS: Final = frozenset({"", HEADER, HEADER_FIELDS, HEADER_FIELDS_NOT, TEXT, MIME})


@dataclass(frozen=True, slots=True)
class BodySection:
    """``BODY[...]``, ``BODY.PEEK[...]``, ``BINARY[...]``, ``BINARY.PEEK[...]``.

    RFC 9051 §6.4.5. ``path`` is the part number (``(2, 1)`` for ``2.1``,
    ``()`` for the whole message); ``specifier`` one of :data:`SPECIFIERS`
    (upper case); ``fields`` the header names of HEADER.FIELDS(.NOT), as the
    client spelled them (the response echoes them); ``partial`` is
    ``(origin, octets)`` from ``<origin.octets>``; ``binary`` selects
    BINARY (decoded; only ``specifier == ""``). ``ValueError`` for a
    combination the grammar does not allow.
    """

    path: tuple[int, ...] = ()
    specifier: str = ""
    fields: tuple[str, ...] = ()
    peek: bool = False
    partial: tuple[int, int] | None = None
    binary: bool = False

    def __post_init__(self) -> None:
        if any(n < 1 for n in self.path):
            raise ValueError("part numbers start at 1")
        if self.specifier not in SPECIFIERS:
            raise ValueError(f"unknown section specifier {self.specifier!r}")
        if self.binary and self.specifier:
            raise ValueError("BINARY takes a part number only")
        if self.specifier == MIME and not self.path:
            raise ValueError("MIME needs a part number")
        if (self.specifier in (HEADER_FIELDS, HEADER_FIELDS_NOT)) != bool(self.fields):
            raise ValueError("header field names go with HEADER.FIELDS(.NOT) only")
        if self.partial is not None and (self.partial[0] < 0 or self.partial[1] < 0):
            raise ValueError("negative partial range")


@dataclass(frozen=True, slots=True)
class BinarySize:
    """``BINARY.SIZE[path]`` (RFC 9051 §6.4.5)."""

    path: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(n < 1 for n in self.path):
            raise ValueError("part numbers start at 1")


FetchItem = Item | BodySection | BinarySize


class FetchError(Exception):
    """A FETCH that must fail with a tagged NO; ``code`` is its response code."""

    code: str | None = None


class UnknownCTE(FetchError):
    """BINARY of a part whose transfer encoding we cannot decode (RFC 9051 §7.5.2)."""

    code = "UNKNOWN-CTE"

    def __init__(self, encoding: str) -> None:
        super().__init__(f"unknown Content-Transfer-Encoding {encoding!r}")
        self.encoding = encoding


# --- ENVELOPE (RFC 9051 §7.5.2, §9 envelope) ----------------------------------------


_not_plain = NOT_PLAIN.search


def _s(value: str, utf8: bool) -> str:
    """A metadata string: quoted or literal, NUL dropped (see the module note)."""
    if _not_plain(value) is None:
        return '"' + value + '"'
    return string_text(value, utf8=utf8, drop_nul=True)


def _ns(value: str | None, utf8: bool) -> str:
    if value is None:
        return "NIL"
    if _not_plain(value) is None:
        return '"' + value + '"'
    return string_text(value, utf8=utf8, drop_nul=True)


# Media types, subtypes, parameter names, encodings and disposition types come
# from a small vocabulary: their upper-cased string forms are remembered.
_UPPER: dict[str, str] = {}
_UPPER_MAX = 4096


def _upper(value: str, utf8: bool) -> str:
    """``_s(value.upper())``, memoized for ASCII values (the same in every mode)."""
    got = _UPPER.get(value)
    if got is None:
        got = _s(value.upper(), utf8)
        if value.isascii() and len(_UPPER) < _UPPER_MAX:
            _UPPER[value] = got
    return got


def _addresses(addresses: tuple[Address, ...], utf8: bool) -> str:
    """``"(" 1*address ")" / nil``: structures side by side, no SP between them."""
    if not addresses:
        return "NIL"
    return (
        "("
        + "".join(
            [
                f"({_ns(name, utf8)} {_ns(adl, utf8)} {_ns(mailbox, utf8)} {_ns(host, utf8)})"
                for name, adl, mailbox, host in addresses
            ]
        )
        + ")"
    )


def envelope_text(env: Envelope, *, utf8: bool) -> str:
    """The ``envelope`` production as text; :func:`~pochta.imap.encode.wire` it.

    Members in RFC 9051 §7.5.2 order. The analysis already applied the
    RFC's defaulting (Sender and Reply-To from From; NIL for absent
    strings, ``""`` for present but empty ones; NIL for empty address lists).
    Group syntax arrives as the start/end marker addresses of
    :mod:`pochta.mime.address` and is written as they are.
    """
    from_ = _addresses(env.from_, utf8)
    sender = from_ if env.sender is env.from_ else _addresses(env.sender, utf8)
    reply_to = from_ if env.reply_to is env.from_ else _addresses(env.reply_to, utf8)
    return (
        f"({_ns(env.date, utf8)} {_ns(env.subject, utf8)} {from_} {sender} {reply_to} "
        f"{_addresses(env.to, utf8)} {_addresses(env.cc, utf8)} {_addresses(env.bcc, utf8)} "
        f"{_ns(env.in_reply_to, utf8)} {_ns(env.message_id, utf8)})"
    )


def envelope(env: Envelope, *, utf8: bool) -> bytes:
    """ENVELOPE value octets (RFC 9051 §7.5.2)."""
    return wire(envelope_text(env, utf8=utf8))


# --- BODYSTRUCTURE / BODY (RFC 9051 §7.5.2, §9 body) ------------------------------


def _params(params: tuple[tuple[str, str], ...], utf8: bool) -> str:
    """``body-fld-param``: ``NIL`` when empty, never ``()``."""
    if not params:
        return "NIL"
    return "(" + " ".join(_upper(k, utf8) + " " + _s(v, utf8) for k, v in params) + ")"


def _extension(p: Part, utf8: bool) -> str:
    """``body-fld-dsp SP body-fld-lang SP body-fld-loc``."""
    if p.disposition is None:
        dsp = "NIL"
    else:
        dsp = "(" + _upper(p.disposition, utf8) + " " + _params(p.disposition_params, utf8)
        dsp += ")"
    if p.language is None:
        lang = "NIL"
    else:
        lang = "(" + " ".join(_s(tag, utf8) for tag in p.language) + ")"
    return dsp + " " + lang + " " + _ns(p.location, utf8)


def _body(p: Part, extensible: bool, utf8: bool, rev2: bool, out: list[str]) -> None:
    if p.parts:  # body-type-mpart = 1*body SP media-subtype [SP body-ext-mpart]
        out.append("(")
        for child in p.parts:
            _body(child, extensible, utf8, rev2, out)
        out.append(" " + _upper(p.subtype, utf8))
        if extensible:
            out.append(" " + _params(p.params, utf8) + " " + _extension(p, utf8))
        out.append(")")
        return
    # body-type-1part: media type, body-fields, then type-specific fields.
    out.append(
        f"({_upper(p.type, utf8)} {_upper(p.subtype, utf8)} {_params(p.params, utf8)} "
        f"{_ns(p.id, utf8)} {_ns(p.description, utf8)} {_upper(p.encoding, utf8)} "
        f"{p.end - p.body_start}"
    )
    if p.message is not None and (rev2 or p.subtype == "rfc822"):
        # body-type-msg: envelope, body and lines of the encapsulated message.
        assert p.envelope is not None
        out.append(" " + envelope_text(p.envelope, utf8=utf8) + " ")
        _body(p.message, extensible, utf8, rev2, out)
        out.append(" " + str(p.lines or 0))
    elif p.type == "text":
        out.append(" " + str(p.lines or 0))
    if extensible:  # body-ext-1part: md5 dsp lang loc
        out.append(" " + _ns(p.md5, utf8) + " " + _extension(p, utf8))
    out.append(")")


def body_text(body: Part, *, extensible: bool, utf8: bool, rev2: bool) -> str:
    """The ``body`` production as text: BODYSTRUCTURE, or BODY without extensions.

    ``rev2``: IMAP4rev2 is enabled, so message/global is a
    ``body-type-msg`` (see the module note).
    """
    out: list[str] = []
    _body(body, extensible, utf8, rev2, out)
    return "".join(out)


def body_structure(body: Part, *, extensible: bool, utf8: bool, rev2: bool) -> bytes:
    """BODYSTRUCTURE (``extensible``) or BODY value octets (RFC 9051 §7.5.2)."""
    return wire(body_text(body, extensible=extensible, utf8=utf8, rev2=rev2))


# --- sections (RFC 9051 §6.4.5.1) -------------------------------------------------


def _ends_with_empty_line(data: bytes, start: int, end: int) -> bool:
    """Whether the header block ``data[start:end]`` ends with its empty line."""
    if end <= start or data[end - 1] != 0x0A:
        return False
    j = end - 1
    if j > start and data[j - 1] == 0x0D:
        j -= 1
    return j == start or data[j - 1] == 0x0A


def _header_block(meta: MessageMeta, path: tuple[int, ...]) -> tuple[int, int, int] | None:
    """``(start, end, entity end)`` of the RFC 5322 header that HEADER names."""
    if not path:
        return 0, meta.body.body_start, meta.size
    p = part(meta, path)
    if p is None or p.message is None:
        return None
    return p.body_start, p.message.body_start, p.end


def section_span(
    meta: MessageMeta, path: tuple[int, ...], specifier: str
) -> tuple[int, int] | None:
    """Byte range of ``BODY[path.specifier]`` in the stored message, or None.

    For every specifier but HEADER.FIELDS(.NOT), which :func:`header_fields`
    composes. None when the part does not exist or has no such text
    (HEADER and TEXT exist for the message and message/rfc822|global parts
    only, RFC 9051 §6.4.5.1).
    """
    if specifier == "":
        if not path:
            return 0, meta.size
        p = part(meta, path)
        return None if p is None else (p.body_start, p.end)
    if specifier == MIME:
        p = part(meta, path)
        return None if p is None else (p.header_start, p.body_start)
    block = _header_block(meta, path)
    if block is None:
        return None
    start, end, entity_end = block
    if specifier == HEADER:
        return start, end
    if specifier == TEXT:
        return end, entity_end
    return None


# A field and its continuation lines, as pochta.mime.headers scans them.
_FIELD_REST = rb"[ \t]*:[^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*"
_FIELD_NAME = rb"[^\x00-\x20\x7f:]+"


@functools.lru_cache(maxsize=256)
def field_matcher(names: tuple[str, ...], exclude: bool) -> re.Pattern[bytes]:
    """One regex that finds the HEADER.FIELDS (or .NOT) lines in a header block.

    Inside a header block as the analysis delimited it every line is a field,
    a continuation or the final empty line, so a multiline search over the
    block finds exactly the fields :func:`pochta.mime.select_fields` would
    select, in one pass in C. Names match ASCII case-insensitively (RFC 9051
    §6.4.5.1); compiled once per distinct name list.
    """
    alternatives = b"|".join(re.escape(n.encode("utf-8", "surrogateescape")) for n in names)
    if exclude:
        pattern = rb"^(?!(?:" + alternatives + rb")[ \t]*:)" + _FIELD_NAME + _FIELD_REST
    else:
        pattern = rb"^(?:" + alternatives + rb")" + _FIELD_REST
    return re.compile(pattern, re.MULTILINE | re.IGNORECASE)


def header_fields(
    meta: MessageMeta,
    data: bytes,
    path: tuple[int, ...],
    names: Iterable[str],
    *,
    exclude: bool,
) -> bytes | None:
    """``BODY[path.HEADER.FIELDS (names)]`` or ``.NOT`` (RFC 9051 §6.4.5.1).

    The matching fields as stored, in order (a last field stored without a
    line end gets CRLF), then the empty line, which is left out only for a
    message with no body and no empty line (RFC 9051 §7.5.2). None when
    ``path`` is not a message.
    """
    block = _header_block(meta, path)
    if block is None:
        return None
    start, end, entity_end = block
    chunks = [m.group() for m in field_matcher(tuple(names), exclude).finditer(data, start, end)]
    if chunks and not chunks[-1].endswith(b"\n"):
        chunks[-1] += b"\r\n"
    if end != entity_end or _ends_with_empty_line(data, start, end):
        chunks.append(b"\r\n")
    return b"".join(chunks)


# --- BINARY (RFC 9051 §6.4.5, §7.5.2; RFC 3516) ----------------------------------------

_IDENTITY = frozenset({"7BIT", "8BIT", "BINARY"})
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_B64_JUNK = bytes(sorted(set(range(256)) - set(_B64_ALPHABET)))
_QP_TRAILING_BLANKS = re.compile(rb"[ \t]+(?=\r?\n|\Z)")
_BARE_LF = re.compile(rb"(?<!\r)\n")


def decode_base64(raw: bytes) -> bytes:
    """Lenient base64 (RFC 2045 §6.8): junk ignored, padding repaired.

    Characters outside the alphabet are skipped as RFC 2045 asks; ``=``
    ends a run, so concatenated padded chunks decode one after the other; a
    truncated final quantum is decoded as far as it goes.
    """
    clean = raw.translate(None, _B64_JUNK)
    runs = clean.split(b"=") if b"=" in clean.rstrip(b"=") else [clean.rstrip(b"=")]
    out: list[bytes] = []
    for run in runs:
        extra = len(run) % 4
        if extra == 1:
            run = run[:-1]
        elif extra:
            run += b"=" * (4 - extra)
        if run:
            out.append(binascii.a2b_base64(run))
    return out[0] if len(out) == 1 else b"".join(out)


def decode_quoted_printable(raw: bytes) -> bytes:
    """Quoted-printable (RFC 2045 §6.7): trailing blanks dropped, soft breaks joined."""
    return binascii.a2b_qp(_QP_TRAILING_BLANKS.sub(b"", raw))


def _crlf(data: bytes) -> bytes:
    """Text with every bare LF made CRLF (RFC 9051 §7.5.2 BINARY)."""
    lf = data.count(b"\n")
    if lf == 0 or lf == data.count(b"\r\n"):
        return data
    return _BARE_LF.sub(b"\r\n", data)


def _undecoded(p: Part) -> bool:
    """A part BINARY sends as stored, before any CRLF repair of text."""
    return (
        bool(p.parts)
        or (p.message is not None and p.subtype != "global")
        or (p.encoding in _IDENTITY)
    )


def binary_content(meta: MessageMeta, data: bytes, path: tuple[int, ...]) -> bytes | None:
    """``BINARY[path]``: the part's body with its transfer encoding removed.

    None for a part that does not exist; :class:`UnknownCTE` for an encoding
    other than 7BIT, 8BIT, BINARY, BASE64 and QUOTED-PRINTABLE. See the
    module note for ``BINARY[]`` and container parts.
    """
    if not path:
        return data
    p = part(meta, path)
    if p is None:
        return None
    raw = data[p.body_start : p.end]
    if _undecoded(p):
        decoded = raw
    elif p.encoding == "BASE64":
        decoded = decode_base64(raw)
    elif p.encoding == "QUOTED-PRINTABLE":
        decoded = decode_quoted_printable(raw)
    else:
        raise UnknownCTE(p.encoding)
    return _crlf(decoded) if p.type == "text" else decoded


def _known_binary_size(meta: MessageMeta, path: tuple[int, ...]) -> int | None:
    """BINARY.SIZE when the cached offsets suffice, else None (bytes needed)."""
    if not path:
        return meta.size
    p = part(meta, path)
    if p is None:
        return 0
    if _undecoded(p) and p.type != "text":
        return p.size
    if p.encoding not in _IDENTITY and p.encoding not in ("BASE64", "QUOTED-PRINTABLE"):
        raise UnknownCTE(p.encoding)
    return None


def binary_size(meta: MessageMeta, data: bytes | None, path: tuple[int, ...]) -> int:
    """``BINARY.SIZE[path]``: the length of :func:`binary_content` (0 if no part).

    ``data`` may be None when :func:`needs_body` said the offsets suffice.
    """
    known = _known_binary_size(meta, path)
    if known is not None:
        return known
    if data is None:
        raise ValueError("BINARY.SIZE of this part needs the message bytes")
    content = binary_content(meta, data, path)
    return 0 if content is None else len(content)


# --- request analysis -------------------------------------------------------

_NO_META = frozenset(
    {Item.UID, Item.FLAGS, Item.INTERNALDATE, Item.RFC822_SIZE, Item.MODSEQ, Item.RFC822}
)
_BODY_ITEMS = frozenset({Item.RFC822, Item.RFC822_HEADER, Item.RFC822_TEXT})
_ROW_ONLY = frozenset({Item.UID, Item.FLAGS, Item.INTERNALDATE, Item.RFC822_SIZE, Item.MODSEQ})
_UID_FLAGS = frozenset({(Item.UID, Item.FLAGS), (Item.UID, Item.FLAGS, Item.MODSEQ)})


def needs_meta(items: Iterable[FetchItem]) -> bool:
    """Whether rendering needs the cached :class:`MessageMeta`.

    False for FLAGS, UID, INTERNALDATE, RFC822.SIZE, MODSEQ, RFC822,
    ``BODY[]``, ``BINARY[]`` and ``BINARY.SIZE[]``, which the index row and
    the bytes answer alone.
    """
    for item in items:
        if isinstance(item, Item):
            if item not in _NO_META:
                return True
        elif item.path or (isinstance(item, BodySection) and item.specifier):
            return True
    return False


def needs_body(items: Iterable[FetchItem], meta: MessageMeta | None = None) -> bool:
    """Whether rendering needs the stored bytes (``Mailboxes.read``).

    True for every section item and RFC822, RFC822.HEADER, RFC822.TEXT;
    BINARY.SIZE needs them only when the part must be decoded or is text,
    which is known from ``meta``; without ``meta`` it answers True.
    Raises :class:`UnknownCTE` (given ``meta``) when a BINARY.SIZE cannot
    be answered at all.
    """
    for item in items:
        if isinstance(item, BinarySize):
            if item.path and (meta is None or _known_binary_size(meta, item.path) is None):
                return True
        elif isinstance(item, BodySection) or item in _BODY_ITEMS:
            return True
    return False


def sets_seen(items: Iterable[FetchItem]) -> bool:
    """Whether the FETCH implicitly sets ``\\Seen`` (RFC 9051 §6.4.5).

    BODY[...] and BINARY[...] without .PEEK, RFC822 and RFC822.TEXT do.
    The session stores the flag (unless the mailbox is read-only) before
    rendering, and asks for FLAGS in the response when they changed.
    """
    for item in items:
        if isinstance(item, BodySection):
            if not item.peek:
                return True
        elif item is Item.RFC822 or item is Item.RFC822_TEXT:
            return True
    return False


# --- rendering ----------------------------------------------------------------


class Message(NamedTuple):
    """The message being rendered: its index row, cached analysis and bytes."""

    info: MessageInfo
    meta: MessageMeta | None
    data: bytes | None
    recent: bool  # add \\Recent to FLAGS (IMAP4rev1 only)

    @property
    def analysis(self) -> MessageMeta:
        if self.meta is None:
            raise ValueError("this FETCH item needs the message's MessageMeta")
        return self.meta

    @property
    def octets(self) -> bytes:
        if self.data is None:
            raise ValueError("this FETCH item needs the message bytes")
        return self.data


#: A compiled item: appends its ``NAME value`` octets to the output list.
Renderer = Callable[[list[bytes], Message], None]


def section_label(item: BodySection | BinarySize, *, utf8: bool) -> bytes:
    """The response name of a section item, e.g. ``BODY[1.HEADER.FIELDS (TO)]<0>``.

    RFC 9051 §9 msg-att-static: BODY.PEEK is answered as BODY, BINARY.PEEK
    as BINARY; ``<origin>`` only when a partial was asked for (also when it
    is 0, RFC 9051 §6.4.5).
    """
    spec = ".".join(str(n) for n in item.path)
    if isinstance(item, BinarySize):
        return b"BINARY.SIZE[" + spec.encode("ascii") + b"]"
    if item.specifier:
        spec = spec + "." + item.specifier if spec else item.specifier
    label = (b"BINARY[" if item.binary else b"BODY[") + spec.encode("ascii")
    if item.fields:
        label += b" (" + b" ".join(astring(f, utf8=utf8) for f in item.fields) + b")"
    label += b"]"
    if item.partial is not None:
        label += b"<%d>" % item.partial[0]
    return label


def _content(
    out: list[bytes],
    data: bytes | None,
    span: tuple[int, int] | None,
    partial: tuple[int, int] | None,
    literal8: bool = False,
) -> None:
    """`` SP nstring`` for ``data[span]`` cut to ``<origin.octets>`` (RFC 9051 §6.4.5).

    NIL without a span, ``""`` when empty (an origin past the end included),
    else a literal, or a literal8 for BINARY data with NUL.
    """
    if data is None or span is None:
        out.append(b" NIL")
        return
    start, end = span
    if partial is not None:
        origin, octets = partial
        start, end = min(start + origin, end), min(start + origin + octets, end)
    if start >= end:
        out.append(b' ""')
        return
    chunk = data[start:end]  # the object itself when it is all of it: no copy
    out.append((b" ~{%d}\r\n" if literal8 and b"\x00" in chunk else b" {%d}\r\n") % len(chunk))
    out.append(chunk)


def _whole(data: bytes | None) -> tuple[int, int] | None:
    return None if data is None else (0, len(data))


def _section_renderer(item: BodySection, utf8: bool) -> Renderer:
    label = section_label(item, utf8=utf8)
    path, specifier, partial = item.path, item.specifier, item.partial

    if item.binary:

        def binary(out: list[bytes], m: Message) -> None:
            data = binary_content(m.analysis, m.octets, path) if path else m.octets
            out.append(label)
            _content(out, data, _whole(data), partial, literal8=True)

        return binary

    if specifier in (HEADER_FIELDS, HEADER_FIELDS_NOT):
        fields, exclude = item.fields, specifier == HEADER_FIELDS_NOT

        def subset(out: list[bytes], m: Message) -> None:
            data = header_fields(m.analysis, m.octets, path, fields, exclude=exclude)
            out.append(label)
            _content(out, data, _whole(data), partial)

        return subset

    def section(out: list[bytes], m: Message) -> None:
        data = m.octets
        span = section_span(m.analysis, path, specifier) if path or specifier else _whole(data)
        out.append(label)
        _content(out, data, span, partial)

    return section


def _binary_size_renderer(item: BinarySize, utf8: bool) -> Renderer:
    label = section_label(item, utf8=utf8) + b" "
    path = item.path

    def binary_size_(out: list[bytes], m: Message) -> None:
        size = binary_size(m.analysis, m.data, path) if path else m.info.size
        out.append(label + b"%d" % size)

    return binary_size_


def _uid(out: list[bytes], m: Message) -> None:
    out.append(b"UID %d" % m.info.uid)


def _flags(out: list[bytes], m: Message) -> None:
    out.append(b"FLAGS " + flag_list(m.info.flags, recent=m.recent))


def _internaldate(out: list[bytes], m: Message) -> None:
    out.append(b"INTERNALDATE " + date_time(m.info.internal_date))


def _rfc822_size(out: list[bytes], m: Message) -> None:
    out.append(b"RFC822.SIZE %d" % m.info.size)


def _modseq(out: list[bytes], m: Message) -> None:
    out.append(b"MODSEQ (%d)" % m.info.modseq)


def _rfc822(name: bytes, specifier: str) -> Renderer:
    """RFC822, RFC822.HEADER, RFC822.TEXT (RFC 3501 §6.4.5): BODY[], BODY.PEEK[HEADER]
    and BODY[TEXT] under their own names, never partial."""

    def rfc822(out: list[bytes], m: Message) -> None:
        data = m.octets
        out.append(name)
        _content(
            out, data, section_span(m.analysis, (), specifier) if specifier else _whole(data), None
        )

    return rfc822


_FIXED: dict[Item, Renderer] = {
    Item.UID: _uid,
    Item.FLAGS: _flags,
    Item.INTERNALDATE: _internaldate,
    Item.RFC822_SIZE: _rfc822_size,
    Item.MODSEQ: _modseq,
    Item.RFC822: _rfc822(b"RFC822", ""),
    Item.RFC822_HEADER: _rfc822(b"RFC822.HEADER", HEADER),
    Item.RFC822_TEXT: _rfc822(b"RFC822.TEXT", TEXT),
}


def compile_item(item: FetchItem, *, utf8: bool, rev2: bool) -> Renderer:
    """The :data:`Renderer` of one item; request-dependent work is done here, once."""
    if isinstance(item, BodySection):
        return _section_renderer(item, utf8)
    if isinstance(item, BinarySize):
        return _binary_size_renderer(item, utf8)
    if item is Item.ENVELOPE:

        def envelope_(out: list[bytes], m: Message) -> None:
            out.append(b"ENVELOPE " + wire(envelope_text(m.analysis.envelope, utf8=utf8)))

        return envelope_
    if item is Item.BODY or item is Item.BODYSTRUCTURE:
        extensible = item is Item.BODYSTRUCTURE
        name = b"BODYSTRUCTURE " if extensible else b"BODY "

        def structure(out: list[bytes], m: Message) -> None:
            text = body_text(m.analysis.body, extensible=extensible, utf8=utf8, rev2=rev2)
            out.append(name + wire(text))

        return structure
    return _FIXED[item]


def response_name(item: FetchItem, *, utf8: bool = False) -> bytes:
    """The name an item is answered under (``BODY.PEEK[1]`` → ``BODY[1]``)."""
    return item.value.encode("ascii") if isinstance(item, Item) else section_label(item, utf8=utf8)


class Fetch:
    """One FETCH request, compiled once per command and rendered per message.

    ``items`` keep the order asked; an item answered under the same name as
    an earlier one (``BODY[]`` after ``BODY.PEEK[]``, a second ``FLAGS``) is
    answered once. ``utf8``: IMAP4rev2 or UTF8=ACCEPT is enabled (UTF-8 in
    quoted strings); ``rev2``: IMAP4rev2 is enabled (message/global as
    body-type-msg; implies ``utf8``). See the module note.
    """

    __slots__ = ("_renderers", "items", "needs_meta", "rev2", "row_only", "sets_seen", "utf8")

    def __init__(
        self, items: Sequence[FetchItem], *, utf8: bool = False, rev2: bool = False
    ) -> None:
        utf8 = utf8 or rev2
        names: set[bytes] = set()
        kept: list[FetchItem] = []
        for item in items:
            name = response_name(item, utf8=utf8)
            if name not in names:
                names.add(name)
                kept.append(item)
        self.items: tuple[FetchItem, ...] = tuple(kept)
        self.utf8 = utf8
        self.rev2 = rev2
        #: Whether rendering needs the message's MessageMeta (:func:`needs_meta`).
        self.needs_meta: bool = needs_meta(self.items)
        #: Whether the FETCH implicitly sets \\Seen (:func:`sets_seen`).
        self.sets_seen: bool = sets_seen(items)
        self._renderers = tuple(compile_item(i, utf8=utf8, rev2=rev2) for i in self.items)
        #: Every item comes from the index row alone (see :meth:`rows`).
        self.row_only: bool = all(isinstance(i, Item) and i in _ROW_ONLY for i in self.items)

    def rows(self, numbered: Iterable[tuple[int, MessageInfo]]) -> bytes:
        """The responses for many messages at once, when :attr:`row_only`.

        Why: ``FETCH 1:* (FLAGS)`` -- how clients resync flags -- renders
        every message of the mailbox; the common item lists are formatted
        in one step each instead of through the per-item renderers.
        """
        if self.items in _UID_FLAGS:  # (UID FLAGS), with MODSEQ once CONDSTORE is on
            modseq = len(self.items) == 3
            return b"".join(
                [
                    b"* %d FETCH (UID %d FLAGS %s%s)\r\n"
                    % (
                        seq,
                        info.uid,
                        flag_list(info.flags),
                        b" MODSEQ (%d)" % info.modseq if modseq else b"",
                    )
                    for seq, info in numbered
                ]
            )
        out: list[bytes] = []
        for seq, info in numbered:
            out += self.chunks(seq, info)
        return b"".join(out)

    def needs_body(self, meta: MessageMeta | None = None) -> bool:
        """Whether rendering needs the stored bytes (:func:`needs_body`)."""
        return needs_body(self.items, meta)

    def with_flags(self) -> Fetch:
        """This request plus FLAGS, for when it changed \\Seen (RFC 9051 §6.4.5)."""
        if Item.FLAGS in self.items:
            return self
        return Fetch((*self.items, Item.FLAGS), utf8=self.utf8, rev2=self.rev2)

    def _into(self, out: list[bytes], m: Message) -> None:
        renderers = self._renderers
        if renderers:
            renderers[0](out, m)
            for render_item in renderers[1:]:
                out.append(b" ")
                render_item(out, m)

    def chunks(
        self,
        seq: int,
        info: MessageInfo,
        meta: MessageMeta | None = None,
        data: bytes | None = None,
        *,
        recent: bool = False,
    ) -> list[bytes]:
        """:meth:`response` as chunks for ``writelines``: message bytes not copied."""
        out = [b"* %d FETCH (" % seq]
        self._into(out, Message(info, meta, data, recent))
        out.append(b")\r\n")
        return out

    def response(
        self,
        seq: int,
        info: MessageInfo,
        meta: MessageMeta | None = None,
        data: bytes | None = None,
        *,
        recent: bool = False,
    ) -> bytes:
        """``* seq FETCH (...)\\r\\n`` for one message (RFC 9051 §7.5.2).

        ``seq`` is the message sequence number; ``recent`` adds ``\\Recent``
        to FLAGS (IMAP4rev1 only). Raises :class:`UnknownCTE`, and
        ``ValueError`` if ``meta``/``data`` are missing but needed.
        """
        return b"".join(self.chunks(seq, info, meta, data, recent=recent))

    def render(
        self,
        info: MessageInfo,
        meta: MessageMeta | None = None,
        data: bytes | None = None,
        *,
        recent: bool = False,
    ) -> bytes:
        """Only the ``msg-att`` list, ``(NAME value ...)`` (RFC 9051 §9)."""
        out = [b"("]
        self._into(out, Message(info, meta, data, recent))
        out.append(b")")
        return b"".join(out)


def render(
    items: Sequence[FetchItem],
    info: MessageInfo,
    meta: MessageMeta | None = None,
    data: bytes | None = None,
    *,
    utf8: bool = False,
    rev2: bool = False,
    recent: bool = False,
) -> bytes:
    """One-off ``msg-att`` rendering; a session compiles a :class:`Fetch` instead."""
    return Fetch(items, utf8=utf8, rev2=rev2).render(info, meta, data, recent=recent)
