"""Byte-level scanning of header blocks (RFC 5322 §2.2, RFC 2045 §3).

Design note
-----------
Everything here works on ``(data, start, end)``: the exact bytes of the
message and a range inside it, so that callers get offsets into the stored
message and never copy it. A header block is a run of fields; a field is a
name, optional blanks, a colon and a value that continues on every following
line that starts with a space or a tab (RFC 5322 §2.2.3 folding).

The block ends at the first empty line, which belongs to the header (IMAP
``BODY[HEADER]`` includes it, RFC 9051 §6.4.5). Tolerated damage:

* bare LF line ends instead of CRLF, anywhere;
* a line that is neither a field nor a continuation (junk, or a body that
  follows without the empty separator line) ends the header *before* that
  line, as the standard ``email`` package does; the body starts there;
* no separator at all: the whole range is header and the body is empty;
* 8-bit octets in names and values (kept as they are).

Nothing here raises on any input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# A field: name (no controls, space or colon), optional blanks (obs-hdr,
# RFC 5322 §4.5), colon, value up to the line end, then continuation lines.
# "\Z" matches at ``endpos``, so a last line without its line end still counts.
_FIELD = re.compile(rb"([^\x00-\x20\x7f:]+)[ \t]*:([^\n]*(?:\n|\Z)(?:[ \t][^\n]*(?:\n|\Z))*)")

_LF = 0x0A
_CR = 0x0D


def scan(data: bytes, start: int, end: int) -> tuple[list[re.Match[bytes]], int]:
    """Scan the header block at ``data[start:end]``.

    Returns the fields as regex matches (group 1 the name as written, group 2
    the raw value after the colon including folding and the final line end;
    ``m.start()``/``m.end()`` delimit the whole field) and the offset where the
    body starts, i.e. just after the empty separator line, or where the header
    stopped (see the module note), or ``end``.
    """
    fields: list[re.Match[bytes]] = []
    match = _FIELD.match
    pos = start
    while pos < end:
        m = match(data, pos, end)
        if m is not None:
            fields.append(m)
            pos = m.end()
            continue
        c = data[pos]
        if c == _LF:
            return fields, pos + 1
        if c == _CR and (pos + 1 == end or data[pos + 1] == _LF):
            return fields, min(pos + 2, end)
        return fields, pos
    return fields, end


def body_start(data: bytes, start: int, end: int) -> int:
    """Where the body after the header block at ``data[start:end]`` starts."""
    return scan(data, start, end)[1]


def unfold(value: bytes) -> bytes:
    """Unfold a raw field value and strip surrounding blanks (RFC 5322 §2.2.3).

    Every line break inside a scanned value is followed by a blank, so removing
    all CR LF / LF is exactly unfolding; the final line end is removed too.
    """
    if b"\n" in value:
        value = value.replace(b"\r\n", b"").replace(b"\n", b"")
    return value.strip(b" \t\r")


def text(value: bytes) -> str:
    """A raw field value as ``str``: unfolded, stripped, not decoded.

    Octets are decoded as UTF-8 with ``surrogateescape``, so
    ``s.encode("utf-8", "surrogateescape")`` gives back the exact octets, even
    for 8-bit junk that is not UTF-8 (RFC 6532 allows UTF-8 in headers).
    """
    return unfold(value).decode("utf-8", "surrogateescape")


def header_fields(data: bytes, start: int, end: int) -> list[tuple[bytes, bytes]]:
    """Each field of the header block at ``data[start:end]`` in order.

    Returns ``(name, value)``: the name as written, and the raw value after the
    colon with folding kept and the field's final line end removed. Use
    :func:`unfold` on the value for the logical field body.
    """
    out: list[tuple[bytes, bytes]] = []
    for m in scan(data, start, end)[0]:
        value = m.group(2)
        if value.endswith(b"\n"):
            value = value[:-2] if value.endswith(b"\r\n") else value[:-1]
        out.append((m.group(1), value))
    return out


def field_spans(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """``(lower-case name, start, end)`` of each field of the header block.

    ``data[start:end]`` of one entry is the complete field as stored, name to
    final line end inclusive, ready to be sent as part of
    ``BODY[HEADER.FIELDS (...)]``.
    """
    return [(m.group(1).lower(), m.start(), m.end()) for m in scan(data, start, end)[0]]


def select_fields(
    data: bytes,
    start: int,
    end: int,
    names: Iterable[bytes | str],
    *,
    exclude: bool = False,
) -> bytes:
    """The ``HEADER.FIELDS`` / ``HEADER.FIELDS.NOT`` subset (RFC 9051 §6.4.5).

    ``data[start:end]`` is a header block (e.g. ``(0, meta.body.body_start)``
    or a message/rfc822 part's ``(body_start, message.body_start)``). Field
    names match case-insensitively; the fields keep their stored form and
    order; a field stored without a line end gets CRLF; the result always ends
    with the empty line that ends a header.
    """
    wanted = {n.encode("ascii", "replace") if isinstance(n, str) else n for n in names}
    wanted = {n.lower() for n in wanted}
    chunks: list[bytes] = []
    for m in scan(data, start, end)[0]:
        if (m.group(1).lower() in wanted) != exclude:
            field = data[m.start() : m.end()]
            chunks.append(field if field.endswith(b"\n") else field + b"\r\n")
    chunks.append(b"\r\n")
    return b"".join(chunks)


def count_lines(data: bytes, start: int, end: int) -> int:
    """Lines in ``data[start:end]``: line ends, plus one for a final partial line.

    This is the body-fld-lines value of BODYSTRUCTURE (RFC 9051 §7.5.2).
    """
    if end <= start:
        return 0
    n = data.count(b"\n", start, end)
    return n if data[end - 1] == _LF else n + 1
