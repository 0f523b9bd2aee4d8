"""The POP3 command parser: one line of bytes in, a ``Command`` or a ``ParseError`` out.

Design note
-----------
Pure functions, no I/O and no state, so hypothesis can throw any bytes at
them (``tests/unit/test_pop3_parser.py``). They never raise: every input is
either a well-formed ``Command`` whose arguments already have the types the
handler needs, or a ``ParseError`` whose ``reply`` is the ``-ERR`` line to
send. Whether a valid command is allowed *now* (its state) is the session's
business, not the parser's.

Grammar (RFC 1939 §3, RFC 2449 §3-§4): a case-insensitive keyword, then
arguments separated by spaces, then CRLF (a bare LF is tolerated, as every
widespread server does). Lines are at most 255 octets with the CRLF
(RFC 2449 §4), except ``AUTH``, whose initial response may be longer
(RFC 5034 §4); the session bounds every line by ``MAX_SASL_LINE`` before it
gets here. ``PASS`` takes the rest of the line, spaces included
(RFC 1939 §7). Message numbers and line counts are plain decimal numbers;
anything else (signs, blanks, huge values) is a syntax error, so a handler
never sees a malformed number. NUL and stray CR are refused everywhere.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from enum import Enum

from pochta.pop3.replies import MAX_COMMAND_LINE, err

__all__ = ["CANCEL", "Command", "ParseError", "decode_base64", "parse_command", "parse_sasl"]


@dataclass(frozen=True, slots=True)
class Command:
    """A syntactically valid command: upper-case ``verb``, typed arguments."""

    verb: str
    args: tuple[str, ...] = ()
    numbers: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ParseError:
    """Why a line is not a valid command; ``reply`` is the ``-ERR`` line to send."""

    message: str

    @property
    def reply(self) -> bytes:
        return err(self.message)


class _Cancel(Enum):
    CANCEL = "*"


#: A client's ``*`` line that aborts a SASL exchange (RFC 5034 §4).
CANCEL = _Cancel.CANCEL


class _Syntax(Enum):
    NONE = "no arguments"
    MSG = "a message number"
    OPT_MSG = "an optional message number"
    TOP = "a message number and a number of lines"
    NAME = "a user name"
    REST = "a password"
    AUTH = "[mechanism [initial-response]]"


#: Every command we know and the shape of its arguments. APOP is not here:
#: it is not offered (issue 6), so it is as unknown as any other word.
SYNTAX: dict[str, _Syntax] = {
    # RFC 1939 §5-§7
    "USER": _Syntax.NAME,
    "PASS": _Syntax.REST,
    "QUIT": _Syntax.NONE,
    "STAT": _Syntax.NONE,
    "LIST": _Syntax.OPT_MSG,
    "RETR": _Syntax.MSG,
    "DELE": _Syntax.MSG,
    "NOOP": _Syntax.NONE,
    "RSET": _Syntax.NONE,
    "TOP": _Syntax.TOP,
    "UIDL": _Syntax.OPT_MSG,
    # RFC 2449 §5, RFC 2595 §4, RFC 5034 §4
    "CAPA": _Syntax.NONE,
    "STLS": _Syntax.NONE,
    "AUTH": _Syntax.AUTH,
}

_VERB = re.compile(rb"[A-Za-z]{3,4}")
_NUMBER = re.compile(r"[0-9]{1,10}")
_MECHANISM = re.compile(r"[A-Za-z0-9_-]{1,20}")
_BASE64 = re.compile(rb"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# Control characters other than SP may not appear in any argument.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith(b"\n"):
        return line[:-1]
    return line


def parse_command(line: bytes) -> Command | ParseError:
    """Parse one command line (with or without its CRLF). Never raises."""
    text = _strip_eol(bytes(line))
    verb_bytes, _, rest_bytes = text.partition(b" ")
    if not _VERB.fullmatch(verb_bytes):
        if not verb_bytes:
            return ParseError("empty command")
        return ParseError("unknown command")
    verb = verb_bytes.decode("ascii").upper()
    syntax = SYNTAX.get(verb)
    if syntax is None:
        return ParseError("unknown command")
    if len(text) + 2 > MAX_COMMAND_LINE and verb != "AUTH":
        return ParseError(f"line too long (at most {MAX_COMMAND_LINE} octets, RFC 2449 §4)")
    try:
        rest = rest_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return ParseError("arguments are not valid UTF-8")
    if _CONTROL.search(rest):
        return ParseError("control characters are not allowed in arguments")
    return _arguments(verb, syntax, rest)


def _arguments(verb: str, syntax: _Syntax, rest: str) -> Command | ParseError:
    usage = ParseError(f"syntax: {verb} takes {syntax.value}")
    if syntax is _Syntax.REST:
        # RFC 1939 §7: the password is the whole rest of the line.
        return Command(verb, (rest,)) if rest else usage
    if syntax is _Syntax.NAME:
        name = rest.strip(" ")
        return Command(verb, (name,)) if name and len(name) <= 320 else usage
    words = [w for w in rest.split(" ") if w]
    if syntax is _Syntax.NONE:
        return Command(verb) if not words else usage
    if syntax is _Syntax.AUTH:
        if len(words) > 2 or (words and not _MECHANISM.fullmatch(words[0])):
            return usage
        return Command(verb, (words[0].upper(), *words[1:]) if words else ())
    if not all(_NUMBER.fullmatch(w) for w in words):
        return usage
    numbers = tuple(int(w) for w in words)
    wanted = {_Syntax.MSG: (1,), _Syntax.OPT_MSG: (0, 1), _Syntax.TOP: (2,)}[syntax]
    return Command(verb, numbers=numbers) if len(numbers) in wanted else usage


def decode_base64(data: bytes | str) -> bytes | None:
    """Strict base64 (RFC 4648 §4) as SASL uses it; ``=`` alone is empty (RFC 5034 §4).

    None if it is not canonical base64.
    """
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if raw == b"=":
        return b""
    if not _BASE64.fullmatch(raw):
        return None
    try:
        return binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        return None


def parse_sasl(line: bytes) -> bytes | _Cancel | ParseError:
    """A client's SASL response line (RFC 5034 §4): decoded bytes, ``CANCEL`` or an error."""
    text = _strip_eol(bytes(line))
    if text == b"*":
        return CANCEL
    decoded = decode_base64(text) if text != b"=" else None
    if decoded is None:
        return ParseError("invalid base64 in SASL response (RFC 5034 §4)")
    return decoded
