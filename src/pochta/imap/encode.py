"""IMAP wire encoding: strings, atoms, flag lists, dates and response lines.

Design note
-----------
Everything the server sends is built from a few data formats (RFC 9051 §4):
atoms, numbers, strings (quoted or literal), parenthesized lists and NIL.
This module turns Python values into those octets and nothing else; it knows
no commands and holds no state except what :class:`ResponseWriter` buffers.

String choice (RFC 9051 §4.3, §9 ``quoted`` / ``literal``):

* a *quoted* string when every character can appear between double quotes:
  no NUL, CR or LF, and ASCII only unless the session may receive UTF-8
  (``utf8=True``: IMAP4rev2 or UTF8=ACCEPT enabled, RFC 9051 Appendix A,
  RFC 6855 §3; then valid UTF-8 is quoted as well). ``"`` and ``\\`` are
  escaped with a backslash;
* otherwise a synchronizing *literal* ``{n}\\r\\n`` followed by the exact
  octets; servers never send non-synchronizing literals (RFC 9051 §4.3);
* ``literal8`` ``~{n}\\r\\n`` only for BINARY data that contains NUL
  (RFC 9051 §7.5.2 BINARY, RFC 3516 §4.2).

Values come in as ``bytes`` or as ``str`` holding raw octets decoded with
``surrogateescape`` (as :mod:`pochta.mime` stores header values), so 8-bit
junk that is not UTF-8 round-trips to its exact octets through
:func:`wire`. A literal is exact: its bytes are never altered, even NUL,
which RFC 9051 §9 forbids outside ``literal8``; callers that render derived
metadata (ENVELOPE, BODYSTRUCTURE) remove NUL themselves.

Nothing here raises on any string input.
"""

from __future__ import annotations

import codecs
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable

from pochta.store.names import mutf7_encode

CRLF = b"\r\n"
NIL = b"NIL"

#: System flags in the order FLAGS responses list them (RFC 9051 §2.3.2).
_SYSTEM_ORDER = {"\\Answered": 0, "\\Flagged": 1, "\\Deleted": 2, "\\Seen": 3, "\\Draft": 4}
RECENT = "\\Recent"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

#: Characters that take a ``str`` off the fast path (``'"' + value + '"'``): NUL,
#: CR, LF, the two quoted-specials and everything outside ASCII. Public so that
#: renderers of many small strings can inline the fast path.
NOT_PLAIN = re.compile('[\x00\r\n"\\\\\x80-\U0010ffff]')
_SPECIAL_BYTES = re.compile(b'[\x00\r\n"\\\\\x80-\xff]')
_SURROGATE = re.compile("[\ud800-\udfff]")
# ASTRING-CHAR (RFC 9051 §9): CHAR except atom-specials, plus "]".
_ASTRING_ATOM = re.compile(r'[^\x00-\x20\x7f-\U0010ffff(){%*"\\]+\Z')
_TEXT_UNSAFE = re.compile("[\r\n\x00]")
_NON_ASCII = re.compile("[^\x00-\x7f]")


def _wire_errors(exc: UnicodeError) -> tuple[bytes, int]:
    """Encode error handler: surrogateescape, and ``?`` for other lone surrogates."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    chunk = exc.object[exc.start : exc.end]
    out = bytes(ord(c) - 0xDC00 if 0xDC80 <= ord(c) <= 0xDCFF else 0x3F for c in chunk)
    return out, exc.end


codecs.register_error("pochta-imap-wire", _wire_errors)


def wire(text: str) -> bytes:
    """The octets a ``str`` stands for on the wire.

    UTF-8, with ``surrogateescape`` surrogates turned back into their raw
    octets; any other lone surrogate (only possible from damaged JSON)
    becomes ``?``. :func:`string_text` counts literal lengths the same way.
    """
    return text.encode("utf-8", "pochta-imap-wire")


# --- strings ----------------------------------------------------------------


def literal(data: bytes) -> bytes:
    """A synchronizing literal with the exact octets (RFC 9051 §4.3)."""
    return b"{%d}\r\n" % len(data) + data


def literal8(data: bytes) -> bytes:
    """A ``literal8`` for BINARY data with NUL (RFC 9051 §9, RFC 3516 §4.2)."""
    return b"~{%d}\r\n" % len(data) + data


def _utf8_ok(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def quoted_or_literal(value: bytes | str, *, utf8: bool, binary: bool = False) -> bytes:
    """``value`` as an IMAP string: quoted when safe, else a literal (RFC 9051 §4.3).

    ``utf8`` allows UTF-8 inside quoted strings (IMAP4rev2 or UTF8=ACCEPT
    enabled). ``binary`` marks BINARY fetch data (RFC 9051 §7.5.2): when it
    contains NUL it is sent as ``literal8``. See the module note.
    """
    if isinstance(value, str):
        if NOT_PLAIN.search(value) is None:
            return b'"' + value.encode("ascii") + b'"'
        return wire(string_text(value, utf8=utf8))
    if _SPECIAL_BYTES.search(value) is None:
        return b'"' + value + b'"'
    if b"\x00" in value:
        return literal8(value) if binary else literal(value)
    if b"\r" in value or b"\n" in value or (not value.isascii() and not (utf8 and _utf8_ok(value))):
        return literal(value)
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


#: The IMAP ``string`` rule: an alias of :func:`quoted_or_literal`.
string = quoted_or_literal


def string_text(value: str, *, utf8: bool, drop_nul: bool = False) -> str:
    """:func:`quoted_or_literal` in ``str`` form, for responses built as text.

    The result is what goes on the wire once the whole response is passed
    through :func:`wire`; a literal's count is already the octet count.
    ``drop_nul`` removes NUL characters first (for derived metadata).
    """
    if NOT_PLAIN.search(value) is None:
        return '"' + value + '"'
    if drop_nul and "\x00" in value:
        value = value.replace("\x00", "")
    if (
        "\r" in value
        or "\n" in value
        or "\x00" in value
        or (not value.isascii() and (not utf8 or _SURROGATE.search(value) is not None))
    ):
        return f"{{{len(wire(value))}}}\r\n" + value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def nstring(value: bytes | str | None, *, utf8: bool) -> bytes:
    """``NIL`` for None, else :func:`quoted_or_literal` (RFC 9051 §9 ``nstring``)."""
    return NIL if value is None else quoted_or_literal(value, utf8=utf8)


def astring(value: str, *, utf8: bool) -> bytes:
    """An atom when every character is an ASTRING-CHAR, else a string (RFC 9051 §9)."""
    if _ASTRING_ATOM.match(value) is not None:
        return value.encode("ascii")
    return quoted_or_literal(value, utf8=utf8)


def mailbox(name: str, *, utf8: bool) -> bytes:
    """A mailbox name as LIST, STATUS and friends send it (RFC 9051 §5.1).

    With ``utf8`` (IMAP4rev2 or UTF8=ACCEPT enabled, RFC 6855 §3) the name
    goes out as UTF-8; otherwise it is encoded in modified UTF-7 (RFC 9051
    Appendix A.1, RFC 3501 §5.1.3). Always a quoted string (or a literal for
    the impossible CR/LF), as Dovecot sends names; both are ``astring``.
    """
    if not utf8:
        name = mutf7_encode(name)
    return quoted_or_literal(name, utf8=utf8)


def number(value: int) -> bytes:
    """A ``number`` / ``number64`` (RFC 9051 §9)."""
    return b"%d" % value


# --- flags and dates --------------------------------------------------------


def _flag_key(flag: str) -> tuple[int, str]:
    return _SYSTEM_ORDER.get(flag, 5), flag


def flag_list(flags: Iterable[str], *, recent: bool = False) -> bytes:
    """``(\\Seen $Junk ...)``: system flags first, then keywords sorted (RFC 9051 §2.3.2).

    The order is fixed so that two FETCHes of the same flags give the same
    octets. ``recent`` adds ``\\Recent`` for IMAP4rev1 sessions (RFC 3501
    §2.3.2; obsolete in IMAP4rev2). Flags are atoms; the store has already
    refused anything that is not one.
    """
    if isinstance(flags, frozenset):
        # A mailbox has few distinct flag sets: FETCH FLAGS of thousands of
        # messages renders each set once.
        return _flag_list_of(flags, recent)
    return _render_flags(flags, recent)


@functools.lru_cache(maxsize=1024)
def _flag_list_of(flags: frozenset[str], recent: bool) -> bytes:
    return _render_flags(flags, recent)


def _render_flags(flags: Iterable[str], recent: bool) -> bytes:
    ordered = sorted(flags, key=_flag_key)
    if recent:
        ordered.append(RECENT)
    return ("(" + " ".join(ordered) + ")").encode("ascii", "replace")


_ZONES: dict[dt.timedelta | None, str] = {}


def _zone(offset: dt.timedelta | None) -> str:
    """``+hhmm`` for a UTC offset, truncated to whole minutes; few distinct values."""
    zone = _ZONES.get(offset)
    if zone is None:
        minutes = 0 if offset is None else int(offset.total_seconds()) // 60
        hours, mins = divmod(abs(minutes), 60)
        zone = f"{'+' if minutes >= 0 else '-'}{hours:02d}{mins:02d}"
        if len(_ZONES) < 1024:
            _ZONES[offset] = zone
    return zone


def date_time_text(when: dt.datetime) -> str:
    """``dd-Mon-yyyy hh:mm:ss +zzzz`` (RFC 9051 §9 ``date-time``, without quotes).

    English month names whatever the locale; a naive value is taken as UTC;
    the zone is the value's own offset, truncated to whole minutes.
    """
    return "%02d-%s-%04d %02d:%02d:%02d %s" % (  # noqa: UP031 - twice as fast as f-strings
        when.day,
        _MONTHS[when.month - 1],
        when.year,
        when.hour,
        when.minute,
        when.second,
        _zone(when.utcoffset()),
    )


def date_time(when: dt.datetime) -> bytes:
    """The quoted ``date-time`` of INTERNALDATE (RFC 9051 §7.5.2)."""
    return b'"' + date_time_text(when).encode("ascii") + b'"'


# --- response lines ---------------------------------------------------------


def text(value: str, *, utf8: bool) -> bytes:
    """Human-readable ``text`` (RFC 9051 §9): one line, never empty.

    CR, LF and NUL become spaces; without ``utf8`` (IMAP4rev1 text is
    ASCII-only, RFC 9051 Appendix E item 24) other characters become ``?``.
    """
    if _TEXT_UNSAFE.search(value) is not None:
        value = _TEXT_UNSAFE.sub(" ", value)
    if not value.isascii() and not utf8:
        value = _NON_ASCII.sub("?", value)
    return wire(value) if value else b"done"


def resp_text(value: str, *, code: str | None = None, utf8: bool = False) -> bytes:
    """``["[" resp-text-code "]" SP] text`` (RFC 9051 §7.1)."""
    body = text(value, utf8=utf8)
    if code is None:
        return body
    return b"[" + code.encode("ascii", "replace") + b"] " + body


def untagged(*parts: bytes) -> bytes:
    """``* part part ...\\r\\n``: parts joined by single spaces (RFC 9051 §2.2.2)."""
    return b"* " + b" ".join(parts) + CRLF


def tagged(
    tag: str | bytes, status: str, value: str, *, code: str | None = None, utf8: bool = False
) -> bytes:
    """``tag OK|NO|BAD [CODE] text\\r\\n`` (RFC 9051 §7.1)."""
    raw_tag = tag if isinstance(tag, bytes) else tag.encode("ascii", "replace")
    return (
        raw_tag + b" " + status.encode("ascii") + b" " + resp_text(value, code=code, utf8=utf8)
    ) + CRLF


def continuation(value: str = "", *, utf8: bool = False) -> bytes:
    """``+ text\\r\\n``, a command continuation request (RFC 9051 §7.6)."""
    return b"+ " + (text(value, utf8=utf8) if value else b"Ready") + CRLF


class ResponseWriter:
    """Collects response lines and hands them to ``write`` in few large writes.

    A command's untagged responses accumulate and go out together with its
    tagged completion (or sooner, once ``limit`` octets are pending, so a
    FETCH of a whole mailbox never sits in memory). ``write`` is typically
    ``transport.write`` or ``StreamWriter.write``.
    """

    __slots__ = ("_chunks", "_limit", "_pending", "_write")

    def __init__(self, write: Callable[[bytes], object], *, limit: int = 256 * 1024) -> None:
        self._write = write
        self._limit = limit
        self._chunks: list[bytes] = []
        self._pending = 0

    @property
    def pending(self) -> int:
        """Octets buffered and not yet written."""
        return self._pending

    def raw(self, data: bytes) -> None:
        """Queue complete response octets (they must end with CRLF)."""
        self._chunks.append(data)
        self._pending += len(data)
        if self._pending >= self._limit:
            self.flush()

    def untagged(self, *parts: bytes) -> None:
        """Queue ``* parts...`` (see :func:`untagged`)."""
        self.raw(untagged(*parts))

    def tagged(
        self,
        tag: str | bytes,
        status: str,
        value: str,
        *,
        code: str | None = None,
        utf8: bool = False,
    ) -> None:
        """Queue the tagged completion and flush everything (RFC 9051 §7.1)."""
        self.raw(tagged(tag, status, value, code=code, utf8=utf8))
        self.flush()

    def continuation(self, value: str = "", *, utf8: bool = False) -> None:
        """Queue ``+ text`` and flush: the client waits for it (RFC 9051 §7.6)."""
        self.raw(continuation(value, utf8=utf8))
        self.flush()

    def flush(self) -> None:
        """Write everything pending in one call."""
        if self._chunks:
            data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            self._chunks.clear()
            self._pending = 0
            self._write(data)
