"""The Authentication-Results header field (RFC 8601): build, parse, de-forge.

Design note
-----------
We add one ``Authentication-Results`` field to every message we accept,
naming ourselves by our *authserv-id* (RFC 8601 §2.5, the host name), and
we delete any such field arriving from outside that claims to be ours (§5),
so a downstream filter or user never trusts a forged verdict.

Building (:func:`authentication_results`). Method, result, ptype and
property names are our own code's and must be Keywords (§2.2, RFC 5321
§4.1.2 ``Ldh-str``); they are written in lower case. Values -- the
authserv-id, ``reason``, property values -- may come from the message or
the SMTP session, so they are untrusted: control characters (CR and LF
above all, which could start a new header field) become spaces, lone
surrogates U+FFFD, anything longer than :data:`MAX_VALUE_OCTETS` octets is
cut, and a value is written bare only when it is an RFC 2045 ``token`` or
a plain ``local-part@domain`` (§2.2 ``pvalue``), otherwise as a
quoted-string with ``"`` and ``\\`` escaped (RFC 5322 §3.2.4). Each
``resinfo`` starts a new folded line (RFC 5322 §2.2.3) and long ones fold
between their parts, so lines stay near 78 characters (§2.1.1) and always
below 998. Non-ASCII text is written as UTF-8 (RFC 6532 §3.2).

Parsing (:func:`parse_authentication_results`) follows the §2.2 grammar,
with comments (CFWS) allowed wherever it allows them, and is lenient where
deployed software is not exact: bare property values may contain any
character but blanks, ``;``, parentheses and quotes (``header.b=ab/c+=``),
a ``none`` result list may be followed by nothing, ``key=value`` without a
``ptype.`` prefix is accepted as a property named ``key`` (seen in the
wild as ``action=none``). Method versions (``dkim/1``) are dropped: 1 is
the only version defined. Names come back in lower case, values as
written. An ``authres-version`` other than 1 is a :class:`ValueError`,
since we cannot know what such a field means.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from pochta.mime.headers import scan

__all__ = [
    "MAX_VALUE_OCTETS",
    "MethodResult",
    "authentication_results",
    "authserv_id_of",
    "parse_authentication_results",
    "remove_forged",
]

#: Longest value (authserv-id, reason, property value) written, in UTF-8
#: octets; with quoting at worst doubling it a line stays below the 998
#: octets of RFC 5322 §2.1.1.
MAX_VALUE_OCTETS = 400
#: RFC 5322 §2.1.1: lines SHOULD be no more than 78 characters.
_LINE = 78
_FIELD_NAME = "Authentication-Results"

# RFC 5321 §4.1.2 Keyword = Ldh-str (we read "_" too, seen in the wild).
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_KEYWORD_LENIENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# RFC 2045 §5.1 token: printable ASCII except SPACE and tspecials.
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
# RFC 5322 §3.2.3 dot-atom-text "@" domain-name: the bare pvalue form of §2.2.
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_MAILBOX = re.compile(
    rf"(?:{_ATEXT}(?:\.{_ATEXT})*)?@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
# A bare value when parsing: anything up to a blank, ";", comment or quote.
_BARE = re.compile(r'[^ \t\r\n;()"]+')
_DIGITS = re.compile(r"[0-9]+")
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One ``resinfo`` (RFC 8601 §2.2): ``method=result reason="..." ptype.prop=value``."""

    method: str
    """``spf``, ``dkim``, ``dmarc``, ``arc``, ``iprev``, ``auth``, ..."""
    result: str
    """``pass``, ``fail``, ``none``, ``temperror``, ... (§2.7)."""
    reason: str = ""
    """Free text for ``reason=``; empty means no reason is written."""
    properties: tuple[tuple[str, str], ...] = ()
    """``("smtp.mailfrom", "a@b.example")``, ``("header.d", "b.example")``, ..."""


# --- building ----------------------------------------------------------------


def _sanitize(value: str) -> str:
    """Untrusted text made safe for a header: see the module note."""
    out = []
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            out.append(" ")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")
        else:
            out.append(ch)
    cleaned = "".join(out)
    data = cleaned.encode("utf-8")
    if len(data) > MAX_VALUE_OCTETS:
        cleaned = data[:MAX_VALUE_OCTETS].decode("utf-8", "ignore")
    return cleaned


def _value(value: str, *, mailbox: bool = False) -> str:
    """``value`` as an RFC 2045 value (or §2.2 pvalue when ``mailbox``)."""
    cleaned = _sanitize(value)
    if _TOKEN.fullmatch(cleaned) or (mailbox and _MAILBOX.fullmatch(cleaned)):
        return cleaned
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _keyword(name: str, what: str) -> str:
    if not _KEYWORD.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not a Keyword (RFC 8601 §2.2)")
    return name.lower()


def _words(result: MethodResult) -> list[str]:
    """The parts of one resinfo, each kept on one line."""
    words = [f"{_keyword(result.method, 'method')}={_keyword(result.result, 'result')}"]
    if result.reason:
        words.append(f"reason={_value(result.reason)}")
    for name, value in result.properties:
        ptype, dot, prop = name.partition(".")
        if not dot:
            raise ValueError(f"property {name!r} is not ptype.property (RFC 8601 §2.2)")
        key = f"{_keyword(ptype, 'ptype')}.{_keyword(prop, 'property')}"
        words.append(f"{key}={_value(value, mailbox=True)}")
    return words


def authentication_results(authserv_id: str, results: Sequence[MethodResult]) -> bytes:
    """A complete ``Authentication-Results`` field, folded and CRLF-terminated.

    With no results the field says ``none`` (§2.2 ``no-result``): no
    authentication was done, which is itself worth recording. Raises
    ValueError when a method, result or property name is not a Keyword.
    """
    header = f"{_FIELD_NAME}: {_value(authserv_id)};"
    if not results:
        return f"{header} none\r\n".encode()
    lines = [header]
    for index, result in enumerate(results):
        words = _words(result)
        if index < len(results) - 1:
            words[-1] += ";"
        joined = " ".join(words)
        # Each resinfo starts its own line, except that the first shares the
        # header's line when it fits, as in the §B examples.
        if index == 0 and len(header) + 1 + len(joined) <= _LINE:
            lines[0] = f"{header} {joined}"
            continue
        current = "\t" + words[0]
        for word in words[1:]:
            if len(current) + 1 + len(word) > _LINE:
                # Deeper indent: a reader sees the resinfo continues.
                lines.append(current)
                current = "\t  " + word
            else:
                current += " " + word
        lines.append(current)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


# --- parsing -----------------------------------------------------------------


class _Scanner:
    """A cursor over an unfolded field value; every error is a ValueError."""

    def __init__(self, value: str) -> None:
        self.s = value
        self.pos = 0

    def fail(self, what: str) -> ValueError:
        return ValueError(f"Authentication-Results: {what} at offset {self.pos}")

    def at_end(self) -> bool:
        return self.pos >= len(self.s)

    def peek(self) -> str:
        return self.s[self.pos] if self.pos < len(self.s) else ""

    def cfws(self) -> None:
        """Skip blanks and (nested) comments (RFC 5322 §3.2.2)."""
        s = self.s
        while self.pos < len(s):
            ch = s[self.pos]
            if ch in " \t\r\n":
                self.pos += 1
            elif ch == "(":
                depth = 0
                while True:
                    if self.pos >= len(s):
                        raise self.fail("unterminated comment")
                    c = s[self.pos]
                    if c == "\\":
                        self.pos += 2
                        continue
                    self.pos += 1
                    if c == "(":
                        depth += 1
                    elif c == ")":
                        depth -= 1
                        if depth == 0:
                            break
            else:
                return

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}")
        self.pos += 1

    def keyword(self, what: str) -> str:
        m = _KEYWORD_LENIENT.match(self.s, self.pos)
        if m is None:
            raise self.fail(f"expected a {what}")
        self.pos = m.end()
        return m.group().lower()

    def quoted(self) -> str:
        """A quoted-string at the cursor, returned without quotes and escapes."""
        s = self.s
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(s):
                raise self.fail("unterminated quoted-string")
            c = s[self.pos]
            if c == "\\":
                if self.pos + 1 >= len(s):
                    raise self.fail("unterminated quoted-string")
                out.append(s[self.pos + 1])
                self.pos += 2
            elif c == '"':
                self.pos += 1
                return "".join(out)
            else:
                out.append(c)
                self.pos += 1

    def value(self, what: str) -> str:
        """An RFC 2045 value (token or quoted-string), leniently any bare run."""
        if self.peek() == '"':
            return self.quoted()
        m = _BARE.match(self.s, self.pos)
        if m is None:
            raise self.fail(f"expected a {what}")
        self.pos = m.end()
        return m.group()

    def pvalue(self) -> str:
        """§2.2 pvalue: a value, or ``[local-part] "@" domain``."""
        if self.peek() != '"':
            return self.value("property value")
        start = self.pos
        inner = self.quoted()
        if self.peek() != "@":
            return inner
        # A quoted local part: keep it as written so the address stays valid.
        local = self.s[start : self.pos]
        m = _BARE.match(self.s, self.pos)
        assert m is not None  # "@" itself matches
        self.pos = m.end()
        return local + m.group()


def authserv_id_of(value: str) -> str:
    """The authserv-id of a field value (§2.5), as written; ValueError if none."""
    scanner = _Scanner(_UNFOLD.sub("", value))
    scanner.cfws()
    if scanner.at_end():
        raise scanner.fail("no authserv-id")
    return scanner.value("authserv-id")


def parse_authentication_results(value: str) -> tuple[str, list[MethodResult]]:
    """Parse a field value (after the colon) into (authserv-id, results).

    ``none`` (§2.2 ``no-result``) gives an empty list. Raises ValueError for
    anything that does not follow the grammar (see the module note for what
    is tolerated).
    """
    scanner = _Scanner(_UNFOLD.sub("", value))
    scanner.cfws()
    if scanner.at_end():
        raise scanner.fail("no authserv-id")
    authserv_id = scanner.value("authserv-id")
    scanner.cfws()
    version = _DIGITS.match(scanner.s, scanner.pos)
    if version is not None:
        if int(version.group()) != 1:
            raise scanner.fail(f"unsupported version {version.group()}")
        scanner.pos = version.end()
        scanner.cfws()
    if scanner.at_end():
        raise scanner.fail("expected ';' and results")
    results: list[MethodResult] = []
    saw_none = False
    while not scanner.at_end():
        scanner.expect(";")
        scanner.cfws()
        if scanner.at_end():
            break  # a trailing ";": tolerated
        method = scanner.keyword("method")
        scanner.cfws()
        if method == "none" and scanner.peek() in ("", ";"):
            saw_none = True
            continue
        if scanner.peek() == "/":
            # method-version (§2.2); 1 is the only one there is.
            scanner.pos += 1
            scanner.cfws()
            if _DIGITS.match(scanner.s, scanner.pos) is None:
                raise scanner.fail("expected a method version")
            scanner.keyword("method version")
            scanner.cfws()
        scanner.expect("=")
        scanner.cfws()
        result = scanner.keyword("result")
        scanner.cfws()
        reason = ""
        properties: list[tuple[str, str]] = []
        while scanner.peek() not in ("", ";"):
            name = scanner.keyword("property")
            scanner.cfws()
            if scanner.peek() == ".":
                scanner.pos += 1
                scanner.cfws()
                name += "." + scanner.keyword("property")
                scanner.cfws()
            scanner.expect("=")
            scanner.cfws()
            if name == "reason" and not properties and not reason:
                reason = scanner.value("reason")
            else:
                properties.append((name, scanner.pvalue()))
            scanner.cfws()
        results.append(MethodResult(method, result, reason, tuple(properties)))
    if not results and not saw_none:
        raise scanner.fail("no results and no 'none'")
    return authserv_id, results


# --- removing forged fields --------------------------------------------------


def remove_forged(message: bytes, authserv_id: str) -> bytes:
    """``message`` without the Authentication-Results fields that claim to be ours.

    RFC 8601 §5: a field carrying our authserv-id (compared case-insensitively,
    §2.5, and ignoring a final dot: ``mail.example.``, the same host name, would
    fool a reader that normalizes it) that is already in an arriving message
    was not added by us, or not for this delivery, and must not be believed
    downstream. Fields of other authserv-ids stay (they carry their own
    trust, §5 and §7.1). Only header fields are looked at; folded
    continuation lines go with their field; the body and every other octet
    are kept exactly. A field whose value does not even have an authserv-id
    is kept: it claims nothing.
    """
    ours = authserv_id.strip().lower()
    fields, _ = scan(message, 0, len(message))
    pieces: list[bytes] = []
    kept_from = 0
    for m in fields:
        if m.group(1).lower() != b"authentication-results":
            continue
        value = m.group(2).decode("utf-8", "surrogateescape")
        try:
            claimed = authserv_id_of(value)
        except ValueError:
            continue
        if claimed.lower().rstrip(".") != ours.rstrip("."):
            continue
        pieces.append(message[kept_from : m.start()])
        kept_from = m.end()
    if not pieces:
        return message
    pieces.append(message[kept_from:])
    return b"".join(pieces)
