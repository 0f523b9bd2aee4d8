"""pochta.imap.fetch and pochta.imap.encode: FETCH responses from cached metadata.

The expected ENVELOPE and BODYSTRUCTURE strings below were worked out by
hand (octet counts in the comments next to each line); two of them are the
examples RFC 9051 itself gives (§8 and §7.5.2), rebuilt as real messages.
Every rendered value is also run through ``Checker``, a small
recursive-descent reader of the RFC 9051 §9 grammar (and of RFC 3501's for
IMAP4rev1 sessions), and hypothesis throws arbitrary and generated messages
at both.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any, TypeAlias

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pochta.imap import encode
from pochta.imap.fetch import (
    HEADER,
    HEADER_FIELDS,
    HEADER_FIELDS_NOT,
    MACROS,
    MIME,
    TEXT,
    BinarySize,
    BodySection,
    Fetch,
    FetchError,
    FetchItem,
    Item,
    UnknownCTE,
    binary_content,
    binary_size,
    body_structure,
    decode_base64,
    decode_quoted_printable,
    envelope,
    needs_body,
    needs_meta,
    render,
    section_label,
    section_span,
    sets_seen,
)
from pochta.mime import MessageMeta, Part, analyze, select_fields
from pochta.mime import section_span as mime_section_span
from pochta.store.interface import MessageInfo

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

UTC = dt.UTC
DATE = dt.datetime(2024, 3, 5, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=-7)))

# --- a reader of the RFC 9051 §9 grammar --------------------------------------------


class GrammarError(AssertionError):
    pass


_NUMBER = re.compile(rb"[0-9]+")
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
_DATE_TIME = re.compile(
    rb'"(?:[ 0-9][0-9])-(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-[0-9]{4} '
    rb'[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}"'
)
_UTF8_LEN = [1] * 0x80 + [0] * 0x40 + [2] * 0x20 + [3] * 0x10 + [4] * 0x08 + [0] * 0x08

Value: TypeAlias = Any


class Checker:
    """Recursive descent over RFC 9051 §9 (``rev2``) or RFC 3501 §9 productions.

    ``utf8``: UTF-8 is allowed inside quoted strings (RFC 9051 QUOTED-CHAR);
    ``rev2``: ``media-message`` includes GLOBAL. Every method consumes
    exactly its production or raises :class:`GrammarError`.
    """

    def __init__(self, data: bytes, *, utf8: bool = False, rev2: bool = False) -> None:
        self.d = data
        self.i = 0
        self.utf8 = utf8
        self.rev2 = rev2

    # lexical -------------------------------------------------------------
    def fail(self, what: str) -> GrammarError:
        return GrammarError(f"{what} at {self.i}: {self.d[self.i : self.i + 60]!r}")

    def peek(self, token: bytes) -> bool:
        return self.d.startswith(token, self.i)

    def take(self, token: bytes) -> None:
        if not self.peek(token):
            raise self.fail(f"expected {token!r}")
        self.i += len(token)

    def sp(self) -> None:
        self.take(b" ")

    def end(self) -> None:
        if self.i != len(self.d):
            raise self.fail("trailing data")

    def number(self) -> int:
        m = _NUMBER.match(self.d, self.i)
        if m is None:
            raise self.fail("expected a number")
        self.i = m.end()
        return int(m.group())

    def nil(self) -> bool:
        if self.peek(b"NIL"):
            self.i += 3
            return True
        return False

    def quoted(self) -> bytes:
        self.take(b'"')
        out = bytearray()
        d = self.d
        while True:
            if self.i >= len(d):
                raise self.fail("unterminated quoted string")
            c = d[self.i]
            if c == 0x22:
                self.i += 1
                return bytes(out)
            if c == 0x5C:
                nxt = d[self.i + 1 : self.i + 2]
                if nxt not in (b'"', b"\\"):
                    raise self.fail("bad quoted-pair")
                out += nxt
                self.i += 2
            elif c in (0x00, 0x0A, 0x0D):
                raise self.fail("NUL/CR/LF in quoted string")
            elif c < 0x80:
                out.append(c)
                self.i += 1
            else:
                n = _UTF8_LEN[c]
                chunk = d[self.i : self.i + n]
                if not self.utf8 or n < 2:
                    raise self.fail("8-bit octet in quoted string")
                try:
                    chunk.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.fail("invalid UTF-8 in quoted string") from None
                out += chunk
                self.i += n

    def literal(self, *, eight: bool = False, nul_ok: bool = False) -> bytes:
        self.take(b"~{" if eight else b"{")
        n = self.number()
        self.take(b"}\r\n")
        chunk = self.d[self.i : self.i + n]
        if len(chunk) != n:
            raise self.fail("short literal")
        if not (eight or nul_ok) and b"\x00" in chunk:
            raise self.fail("NUL in literal")
        self.i += n
        return chunk

    def string(self) -> bytes:
        return self.string_kind()[0]

    def string_kind(self) -> tuple[bytes, bool]:
        """A string and whether it was quoted."""
        if self.peek(b'"'):
            return self.quoted(), True
        if self.peek(b"{"):
            return self.literal(), False
        raise self.fail("expected a string")

    def nstring(self) -> bytes | None:
        return None if self.nil() else self.string()

    def astring(self) -> bytes:
        m = _ASTRING_ATOM.match(self.d, self.i)
        if m is not None:
            self.i = m.end()
            return m.group()
        return self.string()

    # envelope -------------------------------------------------------------
    def address(self) -> tuple[bytes | None, ...]:
        self.take(b"(")
        name = self.nstring()
        self.sp()
        adl = self.nstring()
        self.sp()
        mailbox = self.nstring()
        self.sp()
        host = self.nstring()
        self.take(b")")
        return name, adl, mailbox, host

    def address_list(self) -> list[tuple[bytes | None, ...]] | None:
        if self.nil():
            return None
        self.take(b"(")
        out = [self.address()]
        while not self.peek(b")"):
            out.append(self.address())  # 1*address: no SP between them
        self.take(b")")
        return out

    def envelope(self) -> list[Value]:
        self.take(b"(")
        out: list[Value] = [self.nstring()]
        self.sp()
        out.append(self.nstring())
        for _ in range(6):
            self.sp()
            out.append(self.address_list())
        self.sp()
        out.append(self.nstring())
        self.sp()
        out.append(self.nstring())
        self.take(b")")
        return out

    # body -----------------------------------------------------------------
    def params(self) -> list[bytes] | None:
        if self.nil():
            return None
        self.take(b"(")
        out = [self.string()]
        self.sp()
        out.append(self.string())
        while self.peek(b" "):
            self.sp()
            out.append(self.string())
            self.sp()
            out.append(self.string())
        self.take(b")")
        return out

    def disposition(self) -> Value:
        if self.nil():
            return None
        self.take(b"(")
        kind = self.string()
        self.sp()
        params = self.params()
        self.take(b")")
        return kind, params

    def language(self) -> Value:
        if self.peek(b"("):
            self.take(b"(")
            out = [self.string()]
            while self.peek(b" "):
                self.sp()
                out.append(self.string())
            self.take(b")")
            return out
        return self.nstring()

    def extension(self) -> Value:
        if self.peek(b"("):
            self.take(b"(")
            out = [self.extension()]
            while self.peek(b" "):
                self.sp()
                out.append(self.extension())
            self.take(b")")
            return out
        if _NUMBER.match(self.d, self.i):
            return self.number()
        return self.nstring()

    def ext_tail(self, out: dict[str, Value]) -> None:
        """``[SP body-fld-dsp [SP body-fld-lang [SP body-fld-loc *(SP body-extension)]]]``."""
        for key, parse in (
            ("disposition", self.disposition),
            ("language", self.language),
            ("location", self.nstring),
        ):
            if not self.peek(b" "):
                return
            self.sp()
            out[key] = parse()
        extra = []
        while self.peek(b" "):
            self.sp()
            extra.append(self.extension())
        out["extra"] = extra

    def body(self, *, extensible: bool) -> dict[str, Value]:
        self.take(b"(")
        out: dict[str, Value] = {}
        if self.peek(b"("):  # body-type-mpart
            parts = [self.body(extensible=extensible)]
            while self.peek(b"("):
                parts.append(self.body(extensible=extensible))
            self.sp()
            out.update(parts=parts, subtype=self.string())
            if extensible and self.peek(b" "):
                self.sp()
                out["params"] = self.params()
                self.ext_tail(out)
            self.take(b")")
            return out
        kind, kind_quoted = self.string_kind()
        self.sp()
        subtype = self.string()
        self.sp()
        out.update(type=kind, subtype=subtype, params=self.params())
        self.sp()
        out["id"] = self.nstring()
        self.sp()
        out["description"] = self.nstring()
        self.sp()
        out["encoding"] = self.string()
        self.sp()
        out["octets"] = self.number()
        upper_type, upper_sub = kind.upper(), subtype.upper()
        messages = (b"RFC822", b"GLOBAL") if self.rev2 else (b"RFC822",)
        if upper_type == b"MESSAGE" and upper_sub in messages:  # body-type-msg
            if not kind_quoted:
                raise self.fail("media-message must be quoted")
            self.sp()
            out["envelope"] = self.envelope()
            self.sp()
            out["body"] = self.body(extensible=extensible)
            self.sp()
            out["lines"] = self.number()
        elif upper_type == b"TEXT":  # body-type-text
            if not kind_quoted:
                raise self.fail("media-text must be quoted")
            self.sp()
            out["lines"] = self.number()
        if extensible and self.peek(b" "):
            self.sp()
            out["md5"] = self.nstring()
            self.ext_tail(out)
        self.take(b")")
        return out

    # fetch responses -------------------------------------------------------
    def section(self) -> bytes:
        """``"[" [section-spec] "]"`` and an optional ``"<" number ">"``; the text."""
        start = self.i
        self.take(b"[")
        if not self.peek(b"]"):
            numbered = bool(_NUMBER.match(self.d, self.i))
            while _NUMBER.match(self.d, self.i):
                if self.number() == 0:
                    raise self.fail("part number 0")
                if not self.peek(b"."):
                    break
                self.take(b".")
            else:
                m = re.compile(rb"HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME").match(
                    self.d, self.i
                )
                if m is None or (m.group() == b"MIME" and not numbered):
                    raise self.fail("bad section text")
                self.i = m.end()
                if m.group().startswith(b"HEADER.FIELDS"):
                    self.sp()
                    self.take(b"(")
                    self.astring()
                    while self.peek(b" "):
                        self.sp()
                        self.astring()
                    self.take(b")")
        self.take(b"]")
        if self.peek(b"<"):
            self.take(b"<")
            self.number()
            self.take(b">")
        return self.d[start : self.i]

    def flag_list(self) -> list[bytes]:
        self.take(b"(")
        out: list[bytes] = []
        while not self.peek(b")"):
            if out:
                self.sp()
            backslash = self.peek(b"\\")
            if backslash:
                self.i += 1
            m = _ATOM.match(self.d, self.i)
            if m is None:
                raise self.fail("bad flag")
            self.i = m.end()
            out.append(b"\\" * backslash + m.group())
        self.take(b")")
        return out

    def msg_att(self) -> dict[bytes, Value]:
        """``"(" att *(SP att) ")"`` as {response name: value} (RFC 9051 §9 msg-att)."""
        self.take(b"(")
        out: dict[bytes, Value] = {}
        while True:
            m = re.compile(rb"[A-Z0-9.]+").match(self.d, self.i)
            if m is None:
                raise self.fail("expected an attribute name")
            self.i = m.end()
            name = m.group()
            if name in (b"BODY", b"BINARY", b"BINARY.SIZE") and self.peek(b"["):
                name += self.section()
            if name in out:
                raise self.fail(f"{name!r} twice")
            self.sp()
            value: Value
            if name in (b"UID", b"RFC822.SIZE") or name.startswith(b"BINARY.SIZE["):
                value = self.number()
            elif name == b"FLAGS":
                value = self.flag_list()
            elif name == b"MODSEQ":
                self.take(b"(")
                value = self.number()
                self.take(b")")
            elif name == b"INTERNALDATE":
                dm = _DATE_TIME.match(self.d, self.i)
                if dm is None:
                    raise self.fail("bad date-time")
                self.i = dm.end()
                value = dm.group()
            elif name == b"ENVELOPE":
                value = self.envelope()
            elif name in (b"BODY", b"BODYSTRUCTURE"):
                value = self.body(extensible=name == b"BODYSTRUCTURE")
            elif name.startswith(b"BINARY["):
                value = self.literal(eight=True) if self.peek(b"~{") else self.nstring()
            elif name.startswith(b"BODY[") or name.startswith(b"RFC822"):
                # Deliberate deviation (see pochta.imap.fetch): section contents are
                # the stored octets, NUL included, so only there a literal may hold NUL.
                value = self.literal(nul_ok=True) if self.peek(b"{") else self.nstring()
            else:
                raise self.fail(f"unknown attribute {name!r}")
            out[name] = value
            if self.peek(b")"):
                self.i += 1
                return out
            self.sp()


def check_envelope(raw: bytes, *, utf8: bool = False, rev2: bool = False) -> list[Value]:
    c = Checker(raw, utf8=utf8, rev2=rev2)
    out = c.envelope()
    c.end()
    return out


def check_body(
    raw: bytes, *, extensible: bool, utf8: bool = False, rev2: bool = False
) -> dict[str, Value]:
    c = Checker(raw, utf8=utf8, rev2=rev2)
    out = c.body(extensible=extensible)
    c.end()
    return out


def check_response(raw: bytes, *, utf8: bool = False, rev2: bool = False) -> dict[bytes, Value]:
    """``* n FETCH msg-att CRLF`` (RFC 9051 §7.5.2) → the attributes."""
    c = Checker(raw, utf8=utf8, rev2=rev2)
    c.take(b"* ")
    if c.number() == 0:
        raise c.fail("sequence number 0")
    c.take(b" FETCH ")
    out = c.msg_att()
    c.take(b"\r\n")
    c.end()
    return out


def test_checker_rejects_what_the_grammar_forbids() -> None:
    bad_bodies = [
        b'("TEXT" "PLAIN" () NIL NIL "7BIT" 1 1)',  # () is not a body-fld-param
        b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 1)',  # text without lines
        b'(TEXT "PLAIN" NIL NIL NIL "7BIT" 1 1)',  # atom for a string
        b'("TEXT"  "PLAIN" NIL NIL NIL "7BIT" 1 1)',  # two spaces
        b'(("A" "B" NIL NIL NIL "7BIT" 1) ("A" "B" NIL NIL NIL "7BIT" 1) "MIXED")',  # SP
        b'("A" "B" NIL NIL NIL "7BIT" 1 "\xc3\xa9")',  # 8-bit quoted without utf8
        b'("A" "B" NIL NIL NIL {1}\r\n\x00 1)',  # NUL in a literal
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 1)',  # message without envelope
    ]
    for raw in bad_bodies:
        with pytest.raises(GrammarError):
            check_body(raw, extensible=True)
    with pytest.raises(GrammarError):  # extension data in BODY
        check_body(b'("A" "B" NIL NIL NIL "7BIT" 1 NIL)', extensible=False)
    with pytest.raises(GrammarError):  # empty address list
        check_envelope(b"(NIL NIL () NIL NIL NIL NIL NIL NIL NIL)")
    with pytest.raises(GrammarError):  # SP between addresses
        check_envelope(
            b"(NIL NIL ((NIL NIL NIL NIL) (NIL NIL NIL NIL)) NIL NIL NIL NIL NIL NIL NIL)"
        )
    # rev1 has no message/global body-type-msg; rev2 does.
    glob = (
        b'("MESSAGE" "GLOBAL" NIL NIL NIL "8BIT" 1 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0) 1)'
    )
    check_body(glob, extensible=False, rev2=True)
    with pytest.raises(GrammarError):
        check_body(glob, extensible=False, rev2=False)
    assert check_body(b'("A" "B" NIL NIL NIL "7BIT" 1 "\xc3\xa9")', extensible=True, utf8=True)


# --- helpers ------------------------------------------------------------------------


def info_for(data: bytes, *, uid: int = 7, flags: frozenset[str] = frozenset()) -> MessageInfo:
    return MessageInfo(uid=uid, flags=flags, modseq=42, size=len(data), internal_date=DATE)


def fetch(
    data: bytes, *items: FetchItem, utf8: bool = False, rev2: bool = False
) -> dict[bytes, Value]:
    """Render ``items`` for ``data`` and parse the response back with the checker."""
    meta = analyze(data)
    f = Fetch(items, utf8=utf8, rev2=rev2)
    raw = f.response(1, info_for(data), meta, data)
    return check_response(raw, utf8=utf8, rev2=rev2)


def one(data: bytes, item: FetchItem, *, utf8: bool = False, rev2: bool = False) -> Value:
    (value,) = fetch(data, item, utf8=utf8, rev2=rev2).values()
    return value


def structure(
    data: bytes, *, extensible: bool = True, utf8: bool = False, rev2: bool = False
) -> bytes:
    raw = body_structure(analyze(data).body, extensible=extensible, utf8=utf8, rev2=rev2)
    check_body(raw, extensible=extensible, utf8=utf8, rev2=rev2)
    return raw


def env(data: bytes, *, utf8: bool = False) -> bytes:
    raw = envelope(analyze(data).envelope, utf8=utf8)
    check_envelope(raw, utf8=utf8)
    return raw


# --- the RFC's own examples, rebuilt ------------------------------------------------

RFC_HEADER = (
    b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
    b"From: Terry Gray <gray@cac.washington.edu>\r\n"
    b"Subject: IMAP4rev2 WG mtg summary and minutes\r\n"
    b"To: imap@cac.washington.edu\r\n"
    b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
    b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n"
    b"\r\n"
)
# 91 lines of 31 + CRLF = 3003 octets, then 23 + CRLF: 3028 octets in 92 lines.
RFC_MESSAGE = RFC_HEADER + (b"x" * 31 + b"\r\n") * 91 + b"y" * 23 + b"\r\n"


def test_rfc9051_section_8_sample_fetch_full() -> None:
    """``a003 fetch 12 full`` of RFC 9051 §8, value for value."""
    gray = b'(("Terry Gray" NIL "gray" "cac.washington.edu"))'
    expected_envelope = (
        b'("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev2 WG mtg summary and minutes" '
        + gray
        + b" "
        + gray
        + b" "
        + gray
        + b' ((NIL NIL "imap" "cac.washington.edu")) '
        b'((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) '
        b'NIL NIL "<B27397-0100000@cac.washington.edu>")'
    )
    assert env(RFC_MESSAGE) == expected_envelope
    expected_body = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
    assert structure(RFC_MESSAGE, extensible=False) == expected_body
    assert structure(RFC_MESSAGE) == expected_body[:-1] + b" NIL NIL NIL NIL)"

    info = MessageInfo(
        uid=12,
        flags=frozenset({"\\Seen"}),
        modseq=1,
        size=len(RFC_MESSAGE),
        internal_date=dt.datetime(
            1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7))
        ),
    )
    full = Fetch(MACROS["FULL"])
    assert not full.needs_body() and full.needs_meta
    line = full.response(12, info, analyze(RFC_MESSAGE))
    assert line == (
        b'* 12 FETCH (FLAGS (\\Seen) INTERNALDATE "17-Jul-1996 02:44:25 -0700" RFC822.SIZE '
        + str(len(RFC_MESSAGE)).encode()
        + b" ENVELOPE "
        + expected_envelope
        + b" BODY "
        + expected_body
        + b")\r\n"
    )
    check_response(line)
    header = one(RFC_MESSAGE, BodySection((), HEADER))
    assert header == RFC_HEADER


def rfc_two_part() -> bytes:
    """The two-part example of RFC 9051 §7.5.2 BODYSTRUCTURE, as a message."""
    # 22 lines of 48 + CRLF = 1100, then 52 octets without line end: 1152 in 23 lines
    # (the CRLF before a delimiter belongs to the delimiter, RFC 2046 §5.1.1).
    text = (b"a" * 48 + b"\r\n") * 22 + b"b" * 52
    # 72 lines of 61 + CRLF = 4536, then 18 octets: 4554 in 73 lines.
    attachment = (b"QUJD" * 15 + b"Q\r\n") * 72 + b"QUJD" * 4 + b"QQ"
    return (
        b"From: gray@cac.washington.edu\r\n"
        b'Content-Type: multipart/mixed; boundary="xyz"\r\n'
        b"\r\n"
        b"--xyz\r\n"
        b"Content-Type: text/plain; charset=US-ASCII\r\n"
        b"\r\n" + text + b"\r\n--xyz\r\n"
        b"Content-Type: text/plain; charset=US-ASCII; name=cc.diff\r\n"
        b"Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
        b"Content-Description: Compiler diff\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n" + attachment + b"\r\n--xyz--\r\n"
    )


def test_rfc9051_two_part_bodystructure_example() -> None:
    data = rfc_two_part()
    assert structure(data, extensible=False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
    )
    assert structure(data) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23 NIL NIL NIL NIL)'
        b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
        b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73 '
        b'NIL NIL NIL NIL) "MIXED" ("BOUNDARY" "xyz") NIL NIL NIL)'
    )


# --- a corpus of tricky messages -------------------------------------------------------

MIXED = (
    b'From: "Doe, Jane" <jane@example.com>\r\n'
    b"To: undisclosed-recipients:;\r\n"
    b"Subject: =?UTF-8?Q?caf=C3=A9?=\r\n"
    b"Message-ID: <c@example.com>\r\n"
    b"In-Reply-To: <b@example.com>\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n'
    b"\r\n"
    b"preamble\r\n"
    b"--outer\r\n"
    b"Content-Type: multipart/alternative; boundary=inner\r\n"
    b"\r\n"
    b"--inner\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"caf=C3=A9\r\n"  # 9 octets, 1 line
    b"--inner\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>caf&eacute;</p>\r\n"  # 18 octets, 1 line
    b"--inner--\r\n"
    b"\r\n"
    b"--outer\r\n"
    b'Content-Type: application/pdf; name="r.pdf"\r\n'
    b'Content-Disposition: attachment; filename="r.pdf"; size=3\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b"Content-Language: en, de\r\n"
    b"Content-Location: http://example.com/r.pdf\r\n"
    b"Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\r\n"
    b"\r\n"
    b"AAEC\r\n"  # 4 octets: 00 01 02
    b"--outer--\r\n"
    b"epilogue\r\n"
)


def test_mixed_alternative_and_base64_attachment() -> None:
    jane = b'(("Doe, Jane" NIL "jane" "example.com"))'
    assert env(MIXED) == (
        b'(NIL "=?UTF-8?Q?caf=C3=A9?=" ' + jane + b" " + jane + b" " + jane + b" "
        b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL '
        b'"<b@example.com>" "<c@example.com>")'
    )
    assert structure(MIXED) == (
        b'((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 9 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 18 1 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "inner") NIL NIL NIL)'
        b'("APPLICATION" "PDF" ("NAME" "r.pdf") NIL NIL "BASE64" 4 "Q2hlY2sgSW50ZWdyaXR5IQ==" '
        b'("ATTACHMENT" ("FILENAME" "r.pdf" "SIZE" "3")) ("en" "de") "http://example.com/r.pdf")'
        b' "MIXED" ("BOUNDARY" "outer") NIL NIL NIL)'
    )
    assert structure(MIXED, extensible=False) == (
        b'((("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 9 1)'
        b'("TEXT" "HTML" ("CHARSET" "utf-8") NIL NIL "7BIT" 18 1) "ALTERNATIVE")'
        b'("APPLICATION" "PDF" ("NAME" "r.pdf") NIL NIL "BASE64" 4) "MIXED")'
    )
    got = fetch(
        MIXED,
        BodySection((1, 1)),
        BodySection((1, 2), MIME),
        BodySection((2,), binary=True),
        BodySection((1, 1), binary=True),
        BinarySize((2,)),
        BinarySize((1, 1)),
        BodySection((), TEXT, partial=(0, 8)),
    )
    assert got == {
        b"BODY[1.1]": b"caf=C3=A9",
        b"BODY[1.2.MIME]": b"Content-Type: text/html; charset=utf-8\r\n\r\n",
        b"BINARY[2]": b"\x00\x01\x02",  # NUL: sent as literal8
        b"BINARY[1.1]": "café".encode(),
        b"BINARY.SIZE[2]": 3,
        b"BINARY.SIZE[1.1]": 5,
        b"BODY[TEXT]<0>": b"preamble",
    }
    raw = Fetch([BodySection((2,), binary=True)]).response(
        1, info_for(MIXED), analyze(MIXED), MIXED
    )
    assert raw == b"* 1 FETCH (BINARY[2] ~{3}\r\n\x00\x01\x02)\r\n"


FORWARD = (
    b"From: bob@example.org\r\n"
    b"Subject: Fwd: report\r\n"
    b"Date: Tue, 1 Oct 2024 10:00:00 +0000\r\n"
    b"Content-Type: multipart/mixed; boundary=X\r\n"
    b"\r\n"
    b"--X\r\n"
    b"\r\n"  # part 1: no MIME header at all
    b"See attached.\r\n"  # 13 octets, 1 line
    b"--X\r\n"
    b"Content-Type: message/rfc822\r\n"
    b"Content-Description: forwarded\r\n"
    b"\r\n"
    b"From: Carol <carol@example.net>\r\n"  # 33
    b"To: bob@example.org\r\n"  # 21 -> 54
    b"Subject: report\r\n"  # 17 -> 71
    b"Content-Type: multipart/alternative; boundary=Y\r\n"  # 49 -> 120
    b"\r\n"  # 2 -> 122: 2.HEADER
    b"--Y\r\n"  # 5 -> 127
    b"Content-Type: text/plain\r\n"  # 26 -> 153
    b"\r\n"  # 155
    b"plain\r\n"  # 7 -> 162 (2.1 is "plain": 5 octets, 1 line)
    b"--Y\r\n"  # 167
    b"Content-Type: text/html\r\n"  # 25 -> 192
    b"\r\n"  # 194
    b"<b>html</b>\r\n"  # 13 -> 207 (2.2: 11 octets, 1 line)
    b"--Y--\r\n"  # 214; its CRLF belongs to "--X--": part 2 is 212 octets, 14 lines
    b"--X--\r\n"
)


def test_nested_message_rfc822_with_multipart() -> None:
    carol = b'(("Carol" NIL "carol" "example.net"))'
    inner_envelope = (
        b'(NIL "report" '
        + carol
        + b" "
        + carol
        + b" "
        + carol
        + b' ((NIL NIL "bob" "example.org"))'
        b" NIL NIL NIL NIL)"
    )
    assert structure(FORWARD) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 13 1 NIL NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL "forwarded" "7BIT" 212 ' + inner_envelope + b" "
        b'(("TEXT" "PLAIN" NIL NIL NIL "7BIT" 5 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" NIL NIL NIL "7BIT" 11 1 NIL NIL NIL NIL)'
        b' "ALTERNATIVE" ("BOUNDARY" "Y") NIL NIL NIL) 14 NIL NIL NIL NIL)'
        b' "MIXED" ("BOUNDARY" "X") NIL NIL NIL)'
    )
    bob = b'((NIL NIL "bob" "example.org"))'
    assert env(FORWARD) == (
        b'("Tue, 1 Oct 2024 10:00:00 +0000" "Fwd: report" '
        + bob
        + b" "
        + bob
        + b" "
        + bob
        + b" NIL NIL NIL NIL NIL)"
    )
    start = FORWARD.index(b"From: Carol")
    message = FORWARD[start : start + 212]
    got = fetch(
        FORWARD,
        BodySection((1,)),
        BodySection((1,), MIME),
        BodySection((2,)),
        BodySection((2,), HEADER),
        BodySection((2,), TEXT),
        BodySection((2,), MIME),
        BodySection((2,), HEADER_FIELDS, ("SUBJECT", "x-none")),
        BodySection((2,), HEADER_FIELDS_NOT, ("Content-Type", "from")),
        BodySection((2, 1)),
        BodySection((2, 2), MIME),
        BodySection((2, 2, 1)),
        BodySection((3,)),
        BodySection((1,), HEADER),
        BodySection((2, 1), TEXT),
        BodySection((2,), binary=True),
        BinarySize((2,)),
    )
    assert got == {
        b"BODY[1]": b"See attached.",
        b"BODY[1.MIME]": b"\r\n",
        b"BODY[2]": message,
        b"BODY[2.HEADER]": message[:122],
        b"BODY[2.TEXT]": message[122:],
        b"BODY[2.MIME]": b"Content-Type: message/rfc822\r\nContent-Description: forwarded\r\n\r\n",
        b"BODY[2.HEADER.FIELDS (SUBJECT x-none)]": b"Subject: report\r\n\r\n",
        b"BODY[2.HEADER.FIELDS.NOT (Content-Type from)]": (
            b"To: bob@example.org\r\nSubject: report\r\n\r\n"
        ),
        b"BODY[2.1]": b"plain",
        b"BODY[2.2.MIME]": b"Content-Type: text/html\r\n\r\n",
        b"BODY[2.2.1]": None,  # a leaf has no sub-parts
        b"BODY[3]": None,
        b"BODY[1.HEADER]": None,  # HEADER only for message parts
        b"BODY[2.1.TEXT]": None,
        b"BINARY[2]": message,  # message/rfc822 is never decoded
        b"BINARY.SIZE[2]": 212,
    }


def test_message_global_is_body_type_msg_only_in_rev2() -> None:
    data = (
        b"Content-Type: multipart/mixed; boundary=g\r\n\r\n--g\r\n"
        b"Content-Type: message/global\r\n\r\n"
        b"Subject: \xe2\x82\xac\r\n\r\nhi\r\n--g--\r\n"
    )
    # The part is "Subject: <3 octets>\r\n\r\nhi" = 18 octets, 3 lines.
    assert structure(data, extensible=False) == (
        b'(("MESSAGE" "GLOBAL" NIL NIL NIL "7BIT" 18) "MIXED")'
    )
    assert structure(data, extensible=False, utf8=True, rev2=True) == (
        b'(("MESSAGE" "GLOBAL" NIL NIL NIL "7BIT" 18 '
        b'(NIL "\xe2\x82\xac" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 2 1) 3) "MIXED")'
    )


def test_multipart_digest_defaults_to_message_rfc822() -> None:
    data = (
        b"Content-Type: multipart/digest; boundary=d\r\n\r\n"
        b"--d\r\n\r\nSubject: in\r\n\r\nbody\r\n--d--\r\n"
    )
    assert structure(data, extensible=False) == (
        b'(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 19 (NIL "in" NIL NIL NIL NIL NIL NIL NIL NIL) '
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 4 1) 3) "DIGEST")'
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # multipart without a boundary: one text/plain stand-in child; no params -> NIL.
        (
            b"Content-Type: multipart/mixed\r\n\r\njust text\r\n",
            b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 11 1 NIL NIL NIL NIL)'
            b' "MIXED" NIL NIL NIL NIL)',
        ),
        # unreadable Content-Type: the RFC 2045 default.
        (
            b"Content-Type: garbage\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nabc",
            b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "X-UUENCODE" 3 1 NIL NIL NIL NIL)',
        ),
        # unterminated multipart: the last part runs to the end.
        (
            b"Content-Type: multipart/mixed; boundary=q\r\n\r\n"
            b"--q\r\nContent-Type: image/png\r\n\r\nPNG",
            b'(("IMAGE" "PNG" NIL NIL NIL "7BIT" 3 NIL NIL NIL NIL)'
            b' "MIXED" ("BOUNDARY" "q") NIL NIL NIL)',
        ),
        # no header at all, empty body.
        (b"", b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'),
        # RFC 2231 continuations, quoted-pair and a "]" in values; inline disposition, one language.
        (
            b'Content-Type: text/plain; name*0="a b"; name*1=c; x="q\\"\\\\]"\r\n'
            b"Content-Disposition: INLINE\r\nContent-Language: fr\r\n\r\nx\n",
            b'("TEXT" "PLAIN" ("NAME" "a bc" "X" "q\\"\\\\]") NIL NIL "7BIT" 2 1 NIL '
            b'("INLINE" NIL) ("fr") NIL)',
        ),
    ],
)
def test_malformed_and_unusual_mime(data: bytes, expected: bytes) -> None:
    assert structure(data) == expected
    structure(data, extensible=False)


EIGHT_BIT = (
    "From: Jörg <joerg@example.de>\r\nSubject: Grüße\r\n".encode()
    + b"To: \xe9t\xe9 <ete@example.fr>\r\n"  # Latin-1, not UTF-8
    + b'Content-Type: text/plain; charset=utf-8; name="r\xc3\xa9sum\xc3\xa9.txt"\r\n\r\nbody\r\n'
)


def test_8bit_headers_are_literals_in_rev1_and_utf8_in_rev2() -> None:
    joerg_rev1 = b'(({5}\r\nJ\xc3\xb6rg NIL "joerg" "example.de"))'
    assert env(EIGHT_BIT) == (
        b"(NIL {7}\r\nGr\xc3\xbc\xc3\x9fe "
        + joerg_rev1
        + b" "
        + joerg_rev1
        + b" "
        + joerg_rev1
        + b' (({3}\r\n\xe9t\xe9 NIL "ete" "example.fr")) NIL NIL NIL NIL)'
    )
    joerg = b'(("J\xc3\xb6rg" NIL "joerg" "example.de"))'
    assert env(EIGHT_BIT, utf8=True) == (
        b'(NIL "Gr\xc3\xbc\xc3\x9fe" '
        + joerg
        + b" "
        + joerg
        + b" "
        + joerg
        + b' (({3}\r\n\xe9t\xe9 NIL "ete" "example.fr")) NIL NIL NIL NIL)'
    )
    assert structure(EIGHT_BIT) == (
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8" "NAME" {12}\r\nr\xc3\xa9sum\xc3\xa9.txt) NIL NIL '
        b'"7BIT" 6 1 NIL NIL NIL NIL)'
    )
    assert structure(EIGHT_BIT, utf8=True, rev2=True) == (
        b'("TEXT" "PLAIN" ("CHARSET" "utf-8" "NAME" "r\xc3\xa9sum\xc3\xa9.txt") NIL NIL '
        b'"7BIT" 6 1 NIL NIL NIL NIL)'
    )


def test_group_addresses_routes_and_quoting() -> None:
    data = (
        b'To: A Group: ann@x.org, "Bo, B" <bo@y.org>;, solo@z.org\r\n'
        b"Cc: empty:;\r\n"
        b'Bcc: <@relay.example,@r2.example:joe@example.com>, "john doe"@example.com\r\n'
        b'Reply-To: "Q \\"x\\" \\\\ y" <q@example.com>\r\n'
        b"\r\n"
    )
    assert env(data) == (
        b"(NIL NIL NIL NIL "
        b'(("Q \\"x\\" \\\\ y" NIL "q" "example.com")) '
        b'((NIL NIL "A Group" NIL)(NIL NIL "ann" "x.org")("Bo, B" NIL "bo" "y.org")'
        b'(NIL NIL NIL NIL)(NIL NIL "solo" "z.org")) '
        b'((NIL NIL "empty" NIL)(NIL NIL NIL NIL)) '
        b'((NIL "@relay.example,@r2.example" "joe" "example.com")'
        b'(NIL NIL "\\"john doe\\"" "example.com")) NIL NIL)'
    )


def test_missing_and_empty_headers() -> None:
    data = b"Subject:\r\nX-Junk: 1\r\n\r\n"
    assert env(data) == b'(NIL "" NIL NIL NIL NIL NIL NIL NIL NIL)'
    assert structure(data) == (
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0 NIL NIL NIL NIL)'
    )


def test_nul_and_bare_cr_in_headers_stay_inside_the_grammar() -> None:
    data = b"Subject: a\x00b\r\nIn-Reply-To: x\ry\r\nFrom: q@\x00e\r\n\r\nhi"
    got = env(data)
    assert b"\x00" not in got
    assert (
        got == b'(NIL "ab" ((NIL NIL "q" "e")) ((NIL NIL "q" "e")) ((NIL NIL "q" "e")) NIL NIL NIL '
        b"{3}\r\nx\ry NIL)"
    )


# --- sections ---------------------------------------------------------------------------

SIMPLE = (
    b"From: Alice <alice@example.org>\r\n"  # 33
    b"To: bob@example.test\r\n"  # 22 -> 55
    b"Subject: Hi\r\n"  # 13 -> 68
    b"\r\n"  # 70 = body start
    b"Hello Bob,\r\n"  # 12 -> 82
    b"bye\r\n"  # 5 -> 87
)


def test_same_as_dovecot_modulo_case() -> None:
    """Dovecot 2.3 writes names in the case the message used (lower for defaults).

    The expected strings are Dovecot's output shape for these messages as its
    imap-bodystructure.c / imap-envelope.c write them; clients compare media
    types, subtypes, parameter names and encodings case-insensitively.
    """
    alice = b'(("Alice" NIL "alice" "example.org"))'
    assert env(SIMPLE) == (
        b'(NIL "Hi" ' + alice + b" " + alice + b" " + alice + b' ((NIL NIL "bob" "example.test"))'
        b" NIL NIL NIL NIL)"
    )
    dovecot = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 17 2 NIL NIL NIL NIL)'
    assert structure(SIMPLE).lower() == dovecot.lower()
    dovecot = (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1 NIL NIL NIL NIL)'
        b'("message" "rfc822" NIL NIL "forwarded" "7bit" 212'
    )
    assert structure(FORWARD).lower().startswith(dovecot.lower())


def test_every_top_level_section_form() -> None:
    got = fetch(
        SIMPLE,
        BodySection(),
        BodySection((), HEADER),
        BodySection((), TEXT),
        BodySection((1,)),
        BodySection((1,), MIME),
        BodySection((), HEADER_FIELDS, ("subject", "FROM")),
        BodySection((), HEADER_FIELDS_NOT, ("subject", "FROM")),
        Item.RFC822,
        Item.RFC822_HEADER,
        Item.RFC822_TEXT,
        Item.RFC822_SIZE,
    )
    assert (
        got
        == {
            b"BODY[]": SIMPLE,
            b"BODY[HEADER]": SIMPLE[:70],
            b"BODY[TEXT]": SIMPLE[70:],
            b"BODY[1]": SIMPLE[70:],  # a non-multipart message's part 1 is its body
            b"BODY[1.MIME]": SIMPLE[:70],
            b"BODY[HEADER.FIELDS (subject FROM)]": (
                b"From: Alice <alice@example.org>\r\nSubject: Hi\r\n\r\n"
            ),
            b"BODY[HEADER.FIELDS.NOT (subject FROM)]": b"To: bob@example.test\r\n\r\n",
            b"RFC822": SIMPLE,
            b"RFC822.HEADER": SIMPLE[:70],
            b"RFC822.TEXT": SIMPLE[70:],
            b"RFC822.SIZE": 87,
        }
    )


def test_body_is_the_stored_bytes_unchanged() -> None:
    data = b"Subject: x\n\nbare LF\nand\x00NUL and \xff\r\nend"
    raw = Fetch([BodySection()]).response(3, info_for(data), None, data)
    assert raw == b"* 3 FETCH (BODY[] {%d}\r\n" % len(data) + data + b")\r\n"
    chunks = Fetch([BodySection(peek=True)]).chunks(3, info_for(data), None, data)
    assert any(c is data for c in chunks)  # handed on without a copy


@pytest.mark.parametrize(
    ("partial", "label", "content"),
    [
        ((0, 5), b"BODY[]<0>", b"From:"),  # <0> is echoed too (RFC 9051 §6.4.5)
        ((70, 1000), b"BODY[]<70>", SIMPLE[70:]),  # truncated at the end
        ((86, 1), b"BODY[]<86>", b"\n"),
        ((87, 10), b"BODY[]<87>", b""),  # origin at the end: empty string
        ((500, 10), b"BODY[]<500>", b""),  # origin past the end: empty string
        ((0, 0), b"BODY[]<0>", b""),
    ],
)
def test_partial_fetch(partial: tuple[int, int], label: bytes, content: bytes) -> None:
    assert fetch(SIMPLE, BodySection(partial=partial)) == {label: content}
    raw = Fetch([BodySection(partial=partial)]).response(1, info_for(SIMPLE), None, SIMPLE)
    if not content:
        assert raw == b"* 1 FETCH (" + label + b' "")\r\n'


def test_partial_of_header_fields_is_taken_after_subsetting() -> None:
    item = BodySection((), HEADER_FIELDS, ("To",), partial=(4, 3))
    assert fetch(SIMPLE, item) == {b"BODY[HEADER.FIELDS (To)]<4>": b"bob"}
    assert fetch(SIMPLE, BodySection((7,), partial=(0, 3))) == {b"BODY[7]<0>": None}
    assert fetch(SIMPLE, BodySection((1,), TEXT, partial=(0, 3))) == {b"BODY[1.TEXT]<0>": None}


def test_header_fields_blank_line_rule() -> None:
    """The empty line is always sent, except for a message without body and empty line."""
    no_body = b"From: a@b\r\nSubject: x\r\n"
    item = BodySection((), HEADER_FIELDS, ("from",))
    assert one(no_body, item) == b"From: a@b\r\n"
    assert one(b"From: a@b\r\n\r\n", item) == b"From: a@b\r\n\r\n"
    assert one(b"From: a@b\n\n", item) == b"From: a@b\n\r\n"
    assert one(b"\r\n", item) == b"\r\n"  # empty header, empty line, no body
    assert one(b"", item) == b""
    # A header that ends at a junk line (no empty line) but has a body still gets one.
    assert one(b"From: a@b\r\njunk line\r\n", item) == b"From: a@b\r\n\r\n"
    # No field matched: just the empty line; for the bodiless message, nothing.
    assert one(no_body, BodySection((), HEADER_FIELDS, ("none",))) == b""
    assert one(SIMPLE, BodySection((), HEADER_FIELDS, ("none",))) == b"\r\n"


def test_header_field_names_are_matched_literally() -> None:
    data = b"XaY: 1\r\nX.Y: 2\r\nx.y : 3\r\nX.Yz: 4\r\n(a|b): 5\r\nb: 6\r\n  b: 7\r\n\r\n"
    assert one(data, BodySection((), HEADER_FIELDS, ("X.Y", "(a|b)"))) == (
        b"X.Y: 2\r\nx.y : 3\r\n(a|b): 5\r\n\r\n"
    )
    assert one(data, BodySection((), HEADER_FIELDS_NOT, ("X.Y", "(a|b)", "XAY"))) == (
        b"X.Yz: 4\r\nb: 6\r\n  b: 7\r\n\r\n"
    )


def test_header_field_names_are_echoed_as_astrings() -> None:
    item = BodySection((), HEADER_FIELDS, ("X-Odd]", "with space", 'q"'))
    label = section_label(item, utf8=False)
    assert label == b'BODY[HEADER.FIELDS (X-Odd] "with space" "q\\"")]'
    check_response(Fetch([item]).response(1, info_for(SIMPLE), analyze(SIMPLE), SIMPLE))


def test_section_span_agrees_with_pochta_mime() -> None:
    for data in (SIMPLE, MIXED, FORWARD, rfc_two_part()):
        meta = analyze(data)
        for path in [*all_sections(meta), (), (99,), (1, 99)]:
            for spec, mime_spec in (("", ""), (HEADER, "HEADER"), (TEXT, "TEXT"), (MIME, "MIME")):
                if spec == MIME and not path:
                    continue
                assert section_span(meta, path, spec) == mime_section_span(meta, path, mime_spec)


def test_body_section_validation() -> None:
    for kwargs in (
        {"specifier": "BOGUS"},
        {"specifier": MIME},
        {"specifier": HEADER_FIELDS},
        {"specifier": HEADER, "fields": ("a",)},
        {"binary": True, "specifier": TEXT},
        {"path": (0,)},
        {"partial": (-1, 2)},
    ):
        with pytest.raises(ValueError):
            BodySection(**kwargs)
    with pytest.raises(ValueError):
        BinarySize((1, 0))


# --- BINARY --------------------------------------------------------------------------

BINARY_MESSAGE = (
    b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
    b"--B\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"soft=\r\nbreak =C3=A9 =3D  \nbare LF=  \r\nend\r\n"
    b"--B\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"bGluZTEKbGluZTIK\r\n"  # "line1\nline2\n"
    b"--B\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"AP8A\r\n/w==\r\n"  # 00 ff 00 ff
    b"--B\r\n"
    b"Content-Type: application/x-thing\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
    b"begin 644 x\r\n"
    b"--B\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"caf\xc3\xa9\nline\r\n"
    b"--B\r\n"
    b"Content-Type: image/gif\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    b"GIF\x00\x01"
    b"\r\n--B--\r\n"
)


def test_binary_decoding() -> None:
    got = fetch(
        BINARY_MESSAGE,
        BodySection((1,), binary=True),
        BodySection((2,), binary=True, peek=True),
        BodySection((3,), binary=True),
        BodySection((5,), binary=True),
        BodySection((6,), binary=True),
        BodySection((3,), binary=True, partial=(1, 2)),
        BodySection((9,), binary=True),
        BinarySize((1,)),
        BinarySize((2,)),
        BinarySize((3,)),
        BinarySize((5,)),
        BinarySize((6,)),
        BinarySize((9,)),
        BinarySize(),
        BodySection(binary=True, partial=(0, 12)),
    )
    assert (
        got
        == {
            b"BINARY[1]": b"softbreak \xc3\xa9 =\r\nbare LFend",  # CRLF for text
            b"BINARY[2]": b"line1\r\nline2\r\n",
            b"BINARY[3]": b"\x00\xff\x00\xff",
            b"BINARY[5]": b"caf\xc3\xa9\r\nline",
            b"BINARY[6]": b"GIF\x00\x01",
            b"BINARY[3]<1>": b"\xff\x00",
            b"BINARY[9]": None,
            b"BINARY.SIZE[1]": 26,
            b"BINARY.SIZE[2]": 14,
            b"BINARY.SIZE[3]": 4,
            b"BINARY.SIZE[5]": 11,
            b"BINARY.SIZE[6]": 5,
            b"BINARY.SIZE[9]": 0,
            b"BINARY.SIZE[]": len(BINARY_MESSAGE),
            b"BINARY[]<0>": BINARY_MESSAGE[:12],
        }
    )
    # Without NUL the data is a plain literal, with NUL a literal8.
    meta = analyze(BINARY_MESSAGE)
    info = info_for(BINARY_MESSAGE)
    plain = Fetch([BodySection((2,), binary=True)]).response(1, info, meta, BINARY_MESSAGE)
    assert plain == b"* 1 FETCH (BINARY[2] {14}\r\nline1\r\nline2\r\n)\r\n"
    nul = Fetch([BodySection((6,), binary=True)]).response(1, info, meta, BINARY_MESSAGE)
    assert nul == b"* 1 FETCH (BINARY[6] ~{5}\r\nGIF\x00\x01)\r\n"


def test_unknown_transfer_encoding_raises_a_typed_error() -> None:
    meta = analyze(BINARY_MESSAGE)
    info = info_for(BINARY_MESSAGE)
    for item in (BodySection((4,), binary=True), BinarySize((4,))):
        with pytest.raises(UnknownCTE) as caught:
            Fetch([item]).response(1, info, meta, BINARY_MESSAGE)
        assert isinstance(caught.value, FetchError)
        assert caught.value.code == "UNKNOWN-CTE"
        assert caught.value.encoding == "X-UUENCODE"
    with pytest.raises(UnknownCTE):
        needs_body([BinarySize((4,))], meta)
    # BODY of the same part is fine: no decoding.
    assert one(BINARY_MESSAGE, BodySection((4,))) == b"begin 644 x"


def test_binary_size_reads_bytes_only_when_it_must() -> None:
    meta = analyze(BINARY_MESSAGE)
    assert not needs_body([BinarySize((6,))], meta)  # identity, not text: the offsets say it
    assert not needs_body([BinarySize(())], meta)
    assert needs_body([BinarySize((5,))], meta)  # 8bit text: CRLF repair may change the size
    assert needs_body([BinarySize((3,))], meta)  # base64
    assert needs_body([BinarySize((6,))])  # no meta: assume so
    info = info_for(BINARY_MESSAGE)
    raw = Fetch([BinarySize((6,)), BinarySize()]).response(1, info, meta, None)
    assert raw == b"* 1 FETCH (BINARY.SIZE[6] 5 BINARY.SIZE[] %d)\r\n" % len(BINARY_MESSAGE)
    assert binary_size(meta, BINARY_MESSAGE, (1,)) == len(
        binary_content(meta, BINARY_MESSAGE, (1,)) or b""
    )
    with pytest.raises(ValueError):
        binary_size(meta, None, (3,))


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b"aGVsbG8=", b"hello"),
        (b"aGVs\r\nbG8=\r\n", b"hello"),
        (b"aGVsbG8=\r\nd29ybGQ=", b"helloworld"),  # concatenated padded chunks
        (b"aGVsbG8", b"hello"),  # missing padding
        (b"aGVsb", b"hel"),  # truncated quantum
        (b"a*G#V s\tbG8!", b"hello"),  # junk skipped
        (b"", b""),
        (b"====", b""),
    ],
)
def test_lenient_base64(raw: bytes, decoded: bytes) -> None:
    assert decode_base64(raw) == decoded


def test_quoted_printable() -> None:
    assert decode_quoted_printable(b"a=3Db=\r\nc=\nd e=  \r\nf  \r\n") == b"a=bcd ef\r\n"


# --- items, flags, dates --------------------------------------------------------------


def test_simple_items() -> None:
    info = MessageInfo(
        uid=4827313,
        flags=frozenset({"$Junk", "\\Seen", "\\Answered", "$Forwarded", "\\Deleted"}),
        modseq=624140003,
        size=44827,
        internal_date=dt.datetime(
            2001, 2, 3, 4, 5, 6, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
        ),
    )
    f = Fetch([Item.UID, Item.FLAGS, Item.INTERNALDATE, Item.RFC822_SIZE, Item.MODSEQ])
    assert not f.needs_meta and not f.needs_body() and not f.sets_seen
    line = f.response(23, info)
    assert line == (
        b"* 23 FETCH (UID 4827313 FLAGS (\\Answered \\Deleted \\Seen $Forwarded $Junk) "
        b'INTERNALDATE "03-Feb-2001 04:05:06 +0530" RFC822.SIZE 44827 MODSEQ (624140003))\r\n'
    )
    check_response(line)
    assert f.render(info, recent=True).startswith(b"(UID 4827313 FLAGS (\\Answered")
    assert b"$Junk \\Recent)" in f.render(info, recent=True)
    assert render([Item.FLAGS], info_for(b"")) == b"(FLAGS ())"


def test_duplicates_answered_once_and_seen_rules() -> None:
    f = Fetch([BodySection(peek=True), BodySection(), Item.FLAGS, Item.FLAGS])
    assert f.items == (BodySection(peek=True), Item.FLAGS)
    assert f.sets_seen  # the non-peek duplicate still sets \Seen
    assert sets_seen([Item.RFC822]) and sets_seen([Item.RFC822_TEXT])
    assert sets_seen([BodySection((1,), binary=True)])
    assert not sets_seen([Item.RFC822_HEADER, BodySection(peek=True), BinarySize()])
    assert Fetch([BodySection()]).with_flags().items == (BodySection(), Item.FLAGS)
    g = Fetch([Item.FLAGS])
    assert g.with_flags() is g


def test_needs_meta_and_body() -> None:
    assert not needs_meta([Item.UID, Item.FLAGS, Item.RFC822, BodySection(), BinarySize()])
    assert needs_meta([Item.ENVELOPE]) and needs_meta([BodySection((), HEADER)])
    assert needs_meta([BodySection((1,))]) and needs_meta([Item.RFC822_HEADER])
    assert not needs_body([Item.ENVELOPE, Item.BODYSTRUCTURE, Item.BODY, Item.RFC822_SIZE])
    assert needs_body([Item.RFC822_HEADER]) and needs_body([BodySection(peek=True)])
    with pytest.raises(ValueError, match="bytes"):
        Fetch([BodySection()]).response(1, info_for(SIMPLE), analyze(SIMPLE), None)
    with pytest.raises(ValueError, match="MessageMeta"):
        Fetch([Item.ENVELOPE]).response(1, info_for(SIMPLE))


@pytest.mark.parametrize(
    ("when", "text"),
    [
        (
            dt.datetime(1996, 7, 17, 2, 44, 25, tzinfo=dt.timezone(-dt.timedelta(hours=7))),
            "17-Jul-1996 02:44:25 -0700",
        ),
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "02-Jan-2024 03:04:05 +0000"),
        (dt.datetime(2024, 12, 31, 23, 59, 59), "31-Dec-2024 23:59:59 +0000"),  # naive: UTC
        (
            dt.datetime(2024, 6, 1, tzinfo=dt.timezone(-dt.timedelta(hours=3, minutes=30))),
            "01-Jun-2024 00:00:00 -0330",
        ),
        (
            dt.datetime(2024, 6, 1, tzinfo=dt.timezone(dt.timedelta(hours=14))),
            "01-Jun-2024 00:00:00 +1400",
        ),
    ],
)
def test_internaldate(when: dt.datetime, text: str) -> None:
    assert encode.date_time_text(when) == text
    assert encode.date_time(when) == b'"' + text.encode() + b'"'
    assert _DATE_TIME.fullmatch(encode.date_time(when))


# --- encode ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "utf8", "wire"),
    [
        ("plain", False, b'"plain"'),
        ("", False, b'""'),
        ('say "hi" \\ bye', False, b'"say \\"hi\\" \\\\ bye"'),
        ("tab\tand ctl\x01", False, b'"tab\tand ctl\x01"'),  # TEXT-CHAR allows them
        ("two\r\nlines", False, b"{10}\r\ntwo\r\nlines"),
        ("caf\u00e9", False, b"{5}\r\ncaf\xc3\xa9"),
        ("caf\u00e9", True, b'"caf\xc3\xa9"'),
        ('caf\u00e9 "x"', True, b'"caf\xc3\xa9 \\"x\\""'),
        ("\udce9t\udce9", True, b"{3}\r\n\xe9t\xe9"),  # surrogateescape: raw Latin-1
        ("\ud800", True, b"{1}\r\n?"),  # a lone surrogate that is no escaped octet
        ("nul\x00", True, b"{4}\r\nnul\x00"),  # exact, even NUL
        (b"bytes", False, b'"bytes"'),
        (b"caf\xc3\xa9", True, b'"caf\xc3\xa9"'),
        (b"caf\xc3\xa9", False, b"{5}\r\ncaf\xc3\xa9"),
        (b"\xe9", True, b"{1}\r\n\xe9"),
        (b'q"\\', True, b'"q\\"\\\\"'),
        (b"a\nb", True, b"{3}\r\na\nb"),
    ],
)
def test_quoted_or_literal(value: bytes | str, utf8: bool, wire: bytes) -> None:
    assert encode.quoted_or_literal(value, utf8=utf8) == wire
    if isinstance(value, str):
        assert encode.wire(encode.string_text(value, utf8=utf8)) == wire


def test_binary_strings_and_nstring() -> None:
    assert encode.quoted_or_literal(b"a\x00b", utf8=True, binary=True) == b"~{3}\r\na\x00b"
    assert encode.quoted_or_literal(b"a\x00b", utf8=True) == b"{3}\r\na\x00b"
    assert encode.literal(b"") == b"{0}\r\n" and encode.literal8(b"x") == b"~{1}\r\nx"
    assert encode.nstring(None, utf8=False) == b"NIL"
    assert encode.nstring("NIL", utf8=False) == b'"NIL"'  # a string, never the atom
    assert encode.string_text("a\x00b", utf8=False, drop_nul=True) == '"ab"'


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ("INBOX", b"INBOX"),
        ("X-Odd]", b"X-Odd]"),
        ("a b", b'"a b"'),
        ("", b'""'),
        ("50%", b'"50%"'),
        ("x*", b'"x*"'),
        ("{x", b'"{x"'),
        ("(x)", b'"(x)"'),
        ("caf\u00e9", b"{5}\r\ncaf\xc3\xa9"),
    ],
)
def test_astring(value: str, wire: bytes) -> None:
    assert encode.astring(value, utf8=False) == wire


def test_mailbox_names() -> None:
    assert encode.mailbox("INBOX", utf8=False) == b'"INBOX"'
    assert encode.mailbox("Archive/2024", utf8=False) == b'"Archive/2024"'
    assert encode.mailbox("Entwürfe & Co", utf8=False) == b'"Entw&APw-rfe &- Co"'
    assert encode.mailbox("Entwürfe & Co", utf8=True) == '"Entwürfe & Co"'.encode()
    assert encode.mailbox('we "quote"', utf8=False) == b'"we \\"quote\\""'
    assert encode.mailbox("日本", utf8=False) == b'"&ZeVnLA-"'


def test_flag_list() -> None:
    assert encode.flag_list([]) == b"()"
    assert encode.flag_list(["b", "\\Seen", "a", "\\Draft", "\\Flagged"]) == (
        b"(\\Flagged \\Seen \\Draft a b)"
    )
    assert encode.flag_list(["\\Seen"], recent=True) == b"(\\Seen \\Recent)"


def test_response_lines() -> None:
    assert encode.untagged(b"3", b"EXISTS") == b"* 3 EXISTS\r\n"
    assert encode.tagged("A1", "OK", "FETCH completed") == b"A1 OK FETCH completed\r\n"
    assert (
        encode.tagged(b"A2", "NO", "can't", code="UNKNOWN-CTE") == b"A2 NO [UNKNOWN-CTE] can't\r\n"
    )
    assert encode.tagged("A3", "BAD", "") == b"A3 BAD done\r\n"
    assert encode.tagged("A4", "NO", "évil\r\n* 1 EXISTS") == b"A4 NO ?vil  * 1 EXISTS\r\n"
    assert encode.tagged("A4", "NO", "évil", utf8=True) == "A4 NO évil\r\n".encode()
    assert encode.continuation() == b"+ Ready\r\n"
    assert encode.continuation("go on") == b"+ go on\r\n"


def test_response_writer_batches_and_bounds_memory() -> None:
    writes: list[bytes] = []
    w = encode.ResponseWriter(writes.append, limit=30)
    w.untagged(b"1", b"EXISTS")
    w.untagged(b"2", b"EXISTS")
    assert writes == [] and w.pending == 24
    w.untagged(b"3", b"EXISTS")  # crosses the limit
    assert writes == [b"* 1 EXISTS\r\n* 2 EXISTS\r\n* 3 EXISTS\r\n"] and w.pending == 0
    w.untagged(b"4", b"EXISTS")
    w.tagged("a", "OK", "done")
    assert writes[1] == b"* 4 EXISTS\r\na OK done\r\n"
    w.continuation("more")
    w.raw(b"* OK x\r\n")
    w.flush()
    w.flush()
    assert writes[2:] == [b"+ more\r\n", b"* OK x\r\n"]


# --- property tests ------------------------------------------------------------------------


def all_sections(meta: MessageMeta) -> list[tuple[int, ...]]:
    """Every part number that resolves (RFC 9051 §6.4.5.1)."""
    out: list[tuple[int, ...]] = []

    def message(body: Part, prefix: tuple[int, ...]) -> None:
        if body.parts:
            for i, child in enumerate(body.parts, 1):
                node(child, (*prefix, i))
        else:
            node(body, (*prefix, 1))

    def node(p: Part, number: tuple[int, ...]) -> None:
        out.append(number)
        if p.message is not None:
            message(p.message, number)
        for i, child in enumerate(p.parts, 1):
            node(child, (*number, i))

    message(meta.body, ())
    return out


MODES = [(False, False), (True, False), (True, True)]


def expected_fields(meta: MessageMeta, data: bytes, item: BodySection) -> bytes | None:
    """HEADER.FIELDS(.NOT) the slow way: pochta.mime.select_fields + the empty-line rule."""
    header = section_span(meta, item.path, HEADER)
    text = section_span(meta, item.path, TEXT)
    if header is None or text is None:
        return None
    out = select_fields(data, *header, item.fields, exclude=item.specifier == HEADER_FIELDS_NOT)
    block = data[header[0] : header[1]]
    has_empty_line = block in (b"\r\n", b"\n") or block.endswith((b"\n\n", b"\n\r\n"))
    return out[:-2] if text[0] == text[1] and not has_empty_line else out


def check_message(data: bytes) -> None:
    """Grammar, and sections inside the message, for every rendering mode."""
    meta = analyze(data)
    info = info_for(data)
    for utf8, rev2 in MODES:
        check_envelope(envelope(meta.envelope, utf8=utf8), utf8=utf8, rev2=rev2)
        for extensible in (False, True):
            raw = body_structure(meta.body, extensible=extensible, utf8=utf8, rev2=rev2)
            check_body(raw, extensible=extensible, utf8=utf8, rev2=rev2)
        line = Fetch(
            [*MACROS["FULL"], Item.BODYSTRUCTURE, Item.UID, Item.MODSEQ], utf8=utf8, rev2=rev2
        ).response(1, info, meta)
        check_response(line, utf8=utf8, rev2=rev2)
    paths = all_sections(meta)
    items: list[FetchItem] = [BodySection(), BodySection((), HEADER), BodySection((), TEXT)]
    for path in [*paths, (len(paths) + 1,), (1, 1, 1, 1)]:
        items.append(BodySection(path))
        items.append(BodySection(path, MIME))
        items.append(BodySection(path, HEADER))
        items.append(BodySection(path, TEXT))
        items.append(BodySection(path, HEADER_FIELDS, ("subject", "content-type", "FROM")))
        items.append(BodySection(path, HEADER_FIELDS_NOT, ("subject",), partial=(3, 40)))
        items.append(BodySection(path, partial=(1, 7)))
    got = check_response(Fetch(items).response(1, info, meta, data))
    for item in items:
        assert isinstance(item, BodySection)
        content = got[section_label(item, utf8=False)]
        if item.specifier in (HEADER_FIELDS, HEADER_FIELDS_NOT):
            expected = expected_fields(meta, data, item)
            if expected is not None and item.partial is not None:
                origin, octets = item.partial
                expected = expected[origin : origin + octets]
            assert content == expected
            continue
        span = section_span(meta, item.path, item.specifier)
        if span is None:
            assert content is None
            continue
        start, end = span
        assert 0 <= start <= end <= len(data)
        if item.partial is not None:
            origin, octets = item.partial
            start, end = min(start + origin, end), min(start + origin + octets, end)
        assert content == data[start:end]
    for path in paths:
        try:
            decoded = binary_content(meta, data, path)
            size = binary_size(meta, data, path)
        except UnknownCTE:
            continue
        assert decoded is not None and size == len(decoded)
        pair = Fetch([BodySection(path, binary=True), BinarySize(path)])
        values = check_response(pair.response(1, info, meta, data))
        assert list(values.values()) == [decoded, size]


@SETTINGS
@given(st.binary(max_size=1500))
def test_arbitrary_bytes(data: bytes) -> None:
    check_message(data)


HEADER_LINES = st.sampled_from(
    [
        b"From: a <b@c>, g: d@e;\r\n",
        b'To: (x) "y\\" z" <@r:q@[1.2]>\n',
        b"Cc: \xc3\xa9l\xc3\xa8ve <e@x>\r\n",
        b"Bcc: \xe9t\xe9 <\x00@x>\r\n",
        b"Subject: a\rb\x00c\r\n",
        b"Subject: \xf0\x9f\x98\x80 \xed\xa0\x80\r\n",
        b"Date:\r\n",
        b"Message-ID: <x@y>\r\n",
        b"Content-Type: text/plain; name*0*=utf-8''%E2%82; name*1*=%AC\r\n",
        b'Content-Disposition: attachment; filename="\\"q\\""\r\n',
        b"Content-Language: en, \xff\r\n",
        b"Content-ID: \r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Transfer-Encoding: x-weird\r\n",
        b" folded\r\n",
    ]
)
BODY_PIECES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b'Content-Type: multipart/digest; boundary="c"\n',
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: message/global\r\n",
        b"\r\n",
        b"\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"--c\n",
        b"--c--",
        b"aGVsbG8=\r\n",
        b"=C3=A9=\r\n",
        b"body\x00text\r\n",
    ]
)


@SETTINGS
@given(st.lists(st.one_of(HEADER_LINES, BODY_PIECES, st.binary(max_size=6)), max_size=40))
def test_line_soup(pieces: list[bytes]) -> None:
    check_message(b"".join(pieces))


@dataclass
class Leaf:
    headers: list[bytes]
    body: bytes


@dataclass
class Multi:
    subtype: bytes
    children: list[Node]


@dataclass
class Wrapped:
    subtype: bytes
    headers: list[bytes]
    inner: Node


Node: TypeAlias = Leaf | Multi | Wrapped

leaves = st.builds(
    Leaf,
    st.lists(HEADER_LINES, max_size=4),
    st.sampled_from([b"", b"hi\r\nthere", b"aGk=\r\n", b"=E9t=\r\n=E9", b"\x00\xff\n"]),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return st.one_of(
        st.builds(
            Multi,
            st.sampled_from([b"mixed", b"alternative", b"digest"]),
            st.lists(children, min_size=1, max_size=3),
        ),
        st.builds(
            Wrapped,
            st.sampled_from([b"rfc822", b"global"]),
            st.lists(HEADER_LINES, max_size=3),
            children,
        ),
    )


nodes: st.SearchStrategy[Node] = st.recursive(leaves, _extend, max_leaves=8)


def build(node: Node, counter: list[int]) -> bytes:
    if isinstance(node, Leaf):
        return b"".join(node.headers) + b"\r\n" + node.body
    if isinstance(node, Wrapped):
        head = b"Content-Type: message/" + node.subtype + b"\r\n"
        return head + b"\r\n" + b"".join(node.headers) + build(node.inner, counter)
    counter[0] += 1
    boundary = b"=_%d" % counter[0]
    head = b"Content-Type: multipart/" + node.subtype + b'; boundary="' + boundary + b'"\r\n'
    body = b"".join(b"--" + boundary + b"\r\n" + build(c, counter) + b"\r\n" for c in node.children)
    return head + b"\r\n" + body + b"--" + boundary + b"--\r\n"


@SETTINGS
@given(nodes)
def test_generated_mime(node: Node) -> None:
    data = build(node, [0])
    check_message(data)
    meta = analyze(data)
    if isinstance(node, Multi):
        assert len(meta.body.parts) == len(node.children)


@SETTINGS
@given(st.text(st.characters(blacklist_characters="\x00"), max_size=40), st.booleans())
def test_any_text_is_a_valid_string(value: str, utf8: bool) -> None:
    raw = encode.quoted_or_literal(value, utf8=utf8)
    c = Checker(raw, utf8=utf8)
    assert c.string() == encode.wire(value)
    c.end()
    a = encode.astring(value, utf8=utf8)
    c = Checker(a, utf8=utf8)
    assert c.astring() == encode.wire(value)
    c.end()


# --- speed (a guard against accidental quadratic work, not a benchmark) -----------------


def test_rendering_is_cheap() -> None:
    meta = analyze(MIXED)
    info = info_for(MIXED)
    f = Fetch([Item.UID, Item.FLAGS, Item.ENVELOPE, Item.BODYSTRUCTURE])
    start = time.perf_counter()
    for _ in range(2000):
        f.response(1, info, meta)
    per_message = (time.perf_counter() - start) / 2000
    assert per_message < 500e-6, per_message


_ROW_ITEMS = [Item.UID, Item.FLAGS, Item.MODSEQ, Item.INTERNALDATE, Item.RFC822_SIZE]


@SETTINGS
@given(
    items=st.lists(st.sampled_from(_ROW_ITEMS), min_size=1, max_size=5, unique=True),
    rows=st.lists(
        st.tuples(
            st.integers(1, 10**6),
            st.frozensets(st.sampled_from(["\\Seen", "\\Deleted", "$Label", "\\Answered"])),
        ),
        max_size=20,
    ),
)
def test_rows_is_each_response_joined(
    items: list[Item], rows: list[tuple[int, frozenset[str]]]
) -> None:
    """``Fetch.rows`` (many messages in one step) renders exactly what
    ``response`` renders one message at a time, for every row-only item list
    (the two formatted directly included)."""
    request = Fetch(items)
    assert request.row_only
    numbered = [
        (seq, MessageInfo(uid=uid, flags=flags, modseq=uid * 3, size=uid % 977, internal_date=DATE))
        for seq, (uid, flags) in enumerate(rows, 1)
    ]
    assert request.rows(numbered) == b"".join(request.response(n, info) for n, info in numbered)


def test_row_only_items() -> None:
    assert Fetch([Item.UID, Item.FLAGS]).row_only
    assert Fetch([Item.UID, Item.FLAGS, Item.MODSEQ]).row_only
    assert not Fetch([Item.UID, Item.ENVELOPE]).row_only
    assert not Fetch([Item.UID, BodySection((), "", (), True, None)]).row_only
    assert not Fetch([Item.RFC822]).row_only
