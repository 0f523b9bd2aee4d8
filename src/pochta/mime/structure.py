"""The MIME part tree with byte offsets: what BODYSTRUCTURE and BODY[...] need.

Design note
-----------
One pass over the exact stored bytes. Each entity's header block is scanned
with :func:`pochta.mime.headers.scan`; a multipart body is split by searching
its delimiter with ``bytes.find`` (C speed, no copies); message/rfc822 and
message/global bodies are parsed as messages. Every :class:`Part` records

* ``header_start``: first octet of its MIME header (for the top-level body
  and an encapsulated message's body, the RFC 5322 header);
* ``body_start``: first octet after that header's empty line;
* ``end``: one past its last octet. In a multipart the line end before a
  delimiter line belongs to the delimiter (RFC 2046 §5.1.1), so it is not in
  the part.

so ``BODY[n]``, ``BODY[n.MIME]``, ``BODY[n.HEADER]`` and ``BODY[n.TEXT]`` are
slices (see :func:`pochta.mime.meta.section_span`). Invariant for every part:
``0 <= header_start <= body_start <= end <= len(data)``, children lie inside
their parent's body, in order.

Defaults (RFC 2045 §5.2): no or unreadable Content-Type means text/plain with
``charset=us-ascii`` (the parameter is added only then; a declared
``text/html`` without charset keeps its parameters as written); inside
multipart/digest the default is message/rfc822 (RFC 2046 §5.1.5). No
Content-Transfer-Encoding means ``7BIT``.

Malformed input never raises and always gives a tree IMAP can write:

* a multipart always has at least one child: when its boundary parameter is
  missing or no delimiter line is found, its whole body becomes one child of
  type text/plain with an empty MIME header (Dovecot writes a similar stand-in);
* an unterminated multipart's last part runs to the end of its parent; text
  after the close delimiter (epilogue) and before the first one (preamble)
  belongs to no part;
* delimiter lines are matched strictly: ``--boundary``, optional ``--``,
  optional blanks, then the line end (CRLF, LF or end of data), so a nested
  boundary that extends the outer one is never mistaken for it;
* work is bounded: after :data:`MAX_PARTS` parts the remaining delimiters
  of a multipart are ignored (the rest reads like an epilogue); after
  :data:`MAX_PROBES` near-miss delimiter lines splitting stops and the part
  being read runs to the end of its multipart; containers deeper than
  :data:`MAX_DEPTH`, or met once the part budget is spent, are kept as
  leaves of type application/octet-stream (a multipart or message/rfc822
  part without its children would break the BODYSTRUCTURE grammar);
* a message part's header scan, missing separators and bare LF line ends are
  handled as described in :mod:`pochta.mime.headers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pochta.mime.envelope import ENVELOPE_FIELDS, Envelope, build_envelope
from pochta.mime.headers import count_lines, scan, text
from pochta.mime.params import (
    Params,
    parse_content_type,
    parse_disposition,
    parse_encoding,
    parse_language,
)

#: Containers nested deeper than this are leaves (a hostile message cannot
#: exhaust the stack or CPU by nesting).
MAX_DEPTH = 32
#: At most this many parts per message; later delimiters are ignored.
MAX_PARTS = 10_000
#: At most this many lines per message that start like a delimiter but are
#: not one; after that, multipart splitting stops (bounds the work nested
#: multiparts with prefix-sharing boundaries can cause).
MAX_PROBES = 100_000

DEFAULT_PARAMS: Params = (("charset", "us-ascii"),)
#: Subtypes of ``message`` whose body is itself a message (RFC 9051 §7.5.2).
MESSAGE_SUBTYPES = frozenset({"rfc822", "global"})

_CONTENT_FIELDS = frozenset(
    {
        b"content-type",
        b"content-transfer-encoding",
        b"content-id",
        b"content-description",
        b"content-md5",
        b"content-disposition",
        b"content-language",
        b"content-location",
    }
)
_WANTED = _CONTENT_FIELDS | ENVELOPE_FIELDS
_LF = 0x0A
_CR = 0x0D


@dataclass(frozen=True, slots=True)
class Part:
    """One node of the BODYSTRUCTURE tree (RFC 9051 §7.5.2 BODYSTRUCTURE).

    String values are raw (unfolded, stripped, not decoded; see
    :func:`pochta.mime.headers.text`). ``parts`` is non-empty exactly for
    multipart parts; ``message`` and ``envelope`` are set exactly for
    message/rfc822 and message/global parts, where ``message`` is the
    encapsulated message's body part: its ``header_start`` is this part's
    ``body_start`` and its ``end`` this part's ``end``.
    """

    header_start: int
    body_start: int
    end: int
    type: str = "text"
    subtype: str = "plain"
    params: Params = DEFAULT_PARAMS
    encoding: str = "7BIT"
    #: body-fld-lines, set for text/* and message/rfc822|global parts only.
    lines: int | None = None
    parts: tuple[Part, ...] = ()
    envelope: Envelope | None = None
    message: Part | None = None
    id: str | None = None
    description: str | None = None
    disposition: str | None = None
    disposition_params: Params = ()
    language: tuple[str, ...] | None = None
    md5: str | None = None
    location: str | None = None

    @property
    def size(self) -> int:
        """body-fld-octets: the body's size in its transfer encoding."""
        return self.end - self.body_start

    @property
    def is_multipart(self) -> bool:
        return bool(self.parts)

    @property
    def is_message(self) -> bool:
        return self.message is not None

    def param(self, name: str) -> str | None:
        """The Content-Type parameter ``name`` (lower-case), or None."""
        for key, value in self.params:
            if key == name:
                return value
        return None


class _Parser:
    """Holds the message bytes and the part budget for one :func:`parse`."""

    __slots__ = ("budget", "data", "probes")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.budget = MAX_PARTS
        self.probes = MAX_PROBES

    def headers(self, start: int, end: int) -> tuple[dict[bytes, bytes], int]:
        """First raw value of each wanted field, and where the body starts."""
        matches, body_start = scan(self.data, start, end)
        fields: dict[bytes, bytes] = {}
        for m in matches:
            name = m.group(1).lower()
            if name in _WANTED and name not in fields:
                fields[name] = m.group(2)
        return fields, body_start

    def entity(
        self, start: int, end: int, depth: int, in_digest: bool
    ) -> tuple[Part, dict[bytes, bytes]]:
        """Parse the MIME entity ``data[start:end]``; also return its fields."""
        self.budget -= 1
        data = self.data
        fields, body_start = self.headers(start, end)

        raw = fields.get(b"content-type")
        parsed = parse_content_type(text(raw)) if raw is not None else None
        if parsed is not None:
            ctype, subtype, params = parsed
        elif in_digest:
            ctype, subtype, params = "message", "rfc822", ()
        else:
            ctype, subtype, params = "text", "plain", DEFAULT_PARAMS

        encoding = "7BIT"
        raw = fields.get(b"content-transfer-encoding")
        if raw is not None:
            encoding = parse_encoding(text(raw)) or "7BIT"

        parts: tuple[Part, ...] = ()
        envelope: Envelope | None = None
        message: Part | None = None
        lines: int | None = None
        container = ctype == "multipart" or (ctype == "message" and subtype in MESSAGE_SUBTYPES)
        if container and (depth >= MAX_DEPTH or self.budget <= 0):
            ctype, subtype = "application", "octet-stream"
        elif ctype == "multipart":
            boundary = dict(params).get("boundary", "")
            parts = self.multipart(body_start, end, boundary, depth + 1, subtype == "digest")
        elif container:
            message, inner = self.entity(body_start, end, depth + 1, False)
            envelope = build_envelope(inner)
            lines = count_lines(data, body_start, end)
        if ctype == "text":
            lines = count_lines(data, body_start, end)

        disposition: str | None = None
        disposition_params: Params = ()
        raw = fields.get(b"content-disposition")
        if raw is not None:
            parsed_disposition = parse_disposition(text(raw))
            if parsed_disposition is not None:
                disposition, disposition_params = parsed_disposition
        raw = fields.get(b"content-language")
        part = Part(
            header_start=start,
            body_start=body_start,
            end=end,
            type=ctype,
            subtype=subtype,
            params=params,
            encoding=encoding,
            lines=lines,
            parts=parts,
            envelope=envelope,
            message=message,
            id=_string(fields, b"content-id"),
            description=_string(fields, b"content-description"),
            disposition=disposition,
            disposition_params=disposition_params,
            language=parse_language(text(raw)) if raw is not None else None,
            md5=_string(fields, b"content-md5"),
            location=_string(fields, b"content-location"),
        )
        return part, fields

    def multipart(
        self, start: int, end: int, boundary: str, depth: int, digest: bool
    ) -> tuple[Part, ...]:
        """Split the multipart body ``data[start:end]`` (RFC 2046 §5.1.1)."""
        data = self.data
        children: list[Part] = []
        if boundary:
            delimiter = b"--" + boundary.encode("utf-8", "surrogateescape")
            width = len(delimiter)
            find = data.find
            at_line_start = b"\n" + delimiter  # found in C, mid-line hits skipped
            i = start if data.startswith(delimiter, start, end) else -1
            if i < 0:
                i = find(at_line_start, start, end)
                i = i + 1 if i >= 0 else -1
            open_at = -1  # header start of the part being read, if any
            while i >= 0:
                k = i + width
                close = data.startswith(b"--", k, end)
                if close:
                    k += 2
                while k < end and data[k] in b" \t":
                    k += 1
                valid = True
                if k < end:
                    c = data[k]
                    if c == _LF:
                        k += 1
                    elif c == _CR and (k + 1 == end or data[k + 1] == _LF):
                        k = min(k + 2, end)
                    else:
                        valid = False
                if valid:
                    if open_at >= 0:
                        child = self.entity(open_at, _before_eol(data, open_at, i), depth, digest)
                        children.append(child[0])
                    open_at = -1
                    if close or self.budget <= 0:
                        break
                    open_at = k
                else:
                    self.probes -= 1
                    if self.probes <= 0:
                        break
                i = find(at_line_start, max(i, k - 1), end)
                i = i + 1 if i >= 0 else -1
            if open_at >= 0:
                children.append(self.entity(open_at, end, depth, digest)[0])
        if not children:
            self.budget -= 1
            children.append(
                Part(
                    header_start=start,
                    body_start=start,
                    end=end,
                    lines=count_lines(data, start, end),
                )
            )
        return tuple(children)


def _before_eol(data: bytes, lo: int, i: int) -> int:
    """``i`` less the CRLF or LF just before it, but not below ``lo``."""
    if i > lo and data[i - 1] == _LF:
        i -= 1
        if i > lo and data[i - 1] == _CR:
            i -= 1
    return i


def _string(fields: Mapping[bytes, bytes], name: bytes) -> str | None:
    value = fields.get(name)
    return None if value is None else text(value)


def parse(data: bytes) -> tuple[Part, dict[bytes, bytes]]:
    """The body tree of the whole message, and its top-level header fields."""
    return _Parser(data).entity(0, len(data), 0, False)
