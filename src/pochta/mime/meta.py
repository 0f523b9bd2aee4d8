"""``MessageMeta``: the per-message analysis the store caches as a JSON blob.

Design note
-----------
:func:`analyze` runs once per message at delivery; the store keeps
:meth:`MessageMeta.to_json` and IMAP rebuilds the object with
:meth:`MessageMeta.from_json`, then answers ENVELOPE, BODYSTRUCTURE, BODY,
RFC822.SIZE and every ``BODY[section]`` from it plus byte slices of the
stored message, never parsing the message again.

:func:`analyze` never raises: the parser is total by construction (see
:mod:`pochta.mime.structure`), and as a last resort any unexpected error
yields a one-part text/plain structure with an empty envelope, so delivery
never fails because of MIME.

JSON layout (compact, positional, versioned): ``[1, size, lines, envelope,
body]``; an envelope is its 10 members in order, an address a 4-item list;
Sender or Reply-To equal to From is written ``0``;
a part is a list of its fields in :class:`~pochta.mime.structure.Part`
order with trailing default values left out. ``from_json`` raises
``ValueError`` on anything else; the store can then re-analyze the message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

from pochta.mime.address import Address
from pochta.mime.envelope import EMPTY_ENVELOPE, Envelope, build_envelope
from pochta.mime.headers import count_lines
from pochta.mime.structure import Part, parse

JSON_VERSION = 1


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What IMAP needs to know about one stored message.

    ``size`` is RFC822.SIZE (octets as stored), ``lines`` the message's line
    count, ``envelope`` its ENVELOPE and ``body`` the root of its
    BODYSTRUCTURE tree; ``body.header_start`` is 0 and ``body.end`` is
    ``size``, so the header block is ``header_span`` and the text
    ``text_span``.
    """

    size: int
    lines: int
    envelope: Envelope
    body: Part

    @property
    def header_span(self) -> tuple[int, int]:
        """``BODY[HEADER]``: the header block with its empty line."""
        return 0, self.body.body_start

    @property
    def text_span(self) -> tuple[int, int]:
        """``BODY[TEXT]``: everything after the header block."""
        return self.body.body_start, self.size

    def to_json(self) -> bytes:
        """Compact ASCII JSON; exact round trip through :meth:`from_json`."""
        doc = [
            JSON_VERSION,
            self.size,
            self.lines,
            _envelope_out(self.envelope),
            _part_out(self.body),
        ]
        return json.dumps(doc, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_json(cls, raw: bytes) -> MessageMeta:
        """Rebuild what :meth:`to_json` wrote; ``ValueError`` if it is not that."""
        try:
            doc = json.loads(raw)
            version, size, lines, envelope, body = doc
            if version != JSON_VERSION:
                raise ValueError(f"unknown MessageMeta JSON version {version!r}")
            return cls(
                size=_int(size),
                lines=_int(lines),
                envelope=_envelope_in(envelope),
                body=_part_in(body),
            )
        except (TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"malformed MessageMeta JSON: {exc}") from exc


def analyze(data: bytes) -> MessageMeta:
    """Analyze one message; never raises (see the module note)."""
    try:
        return _analyze(data)
    except Exception:  # a parser bug must not lose mail
        size = len(data)
        return MessageMeta(
            size=size,
            lines=count_lines(data, 0, size),
            envelope=EMPTY_ENVELOPE,
            body=Part(0, 0, size, lines=count_lines(data, 0, size)),
        )


def _analyze(data: bytes) -> MessageMeta:
    body, fields = parse(data)
    size = len(data)
    return MessageMeta(
        size=size, lines=count_lines(data, 0, size), envelope=build_envelope(fields), body=body
    )


def part(meta: MessageMeta, section: tuple[int, ...]) -> Part | None:
    """The part a section number names (RFC 9051 §6.4.5), or None.

    ``()`` is the whole message's body part. Numbering: in a multipart, ``n``
    is its n-th child; a message (the top level, or a message/rfc822 part)
    numbers the parts of its body: the children if the body is multipart,
    else the body itself as ``1``. A non-multipart message's part 1 is
    therefore its body, and a message/rfc822 part's sub-parts number its
    encapsulated body. Leaves have no sub-parts.
    """
    node: Part | None = None  # None: at the top-level message
    for n in section:
        if node is None or node.message is not None:
            body = meta.body if node is None else node.message
            assert body is not None
            if body.parts:
                node = body.parts[n - 1] if 1 <= n <= len(body.parts) else None
            else:
                node = body if n == 1 else None
        elif node.parts:
            node = node.parts[n - 1] if 1 <= n <= len(node.parts) else None
        else:
            return None
        if node is None:
            return None
    return meta.body if node is None else node


def section_span(
    meta: MessageMeta, section: tuple[int, ...], text: str = ""
) -> tuple[int, int] | None:
    """Byte range of ``BODY[<section>.<text>]`` (RFC 9051 §6.4.5), or None.

    ``text`` is ``""``, ``"HEADER"``, ``"TEXT"`` or ``"MIME"`` (upper case);
    for ``HEADER.FIELDS`` use the ``"HEADER"`` span with
    :func:`pochta.mime.headers.select_fields`. ``HEADER``/``TEXT`` of a part
    exist only for message/rfc822 parts; ``MIME`` only for a part number.
    """
    if not section:
        if text == "":
            return 0, meta.size
        if text == "HEADER":
            return meta.header_span
        if text == "TEXT":
            return meta.text_span
        return None
    p = part(meta, section)
    if p is None:
        return None
    if text == "":
        return p.body_start, p.end
    if text == "MIME":
        return p.header_start, p.body_start
    if p.message is not None:
        if text == "HEADER":
            return p.body_start, p.message.body_start
        if text == "TEXT":
            return p.message.body_start, p.end
    return None


# --- JSON ------------------------------------------------------------------

_PART_FIELDS = tuple(f.name for f in fields(Part))
_PART_DEFAULTS: tuple[Any, ...] = tuple(getattr(Part(0, 0, 0), name) for name in _PART_FIELDS)
_PARAM_FIELDS = frozenset({"params", "disposition_params"})


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _str(value: Any) -> str | None:
    if value is not None and type(value) is not str:
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _req(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _addresses_out(addresses: tuple[Address, ...]) -> list[list[str | None]]:
    return [list(a) for a in addresses]


def _addresses_in(value: Any) -> tuple[Address, ...]:
    return tuple(Address(_str(n), _str(a), _str(m), _str(h)) for n, a, m, h in value)


def _envelope_out(e: Envelope) -> list[Any]:
    # Sender and Reply-To usually repeat From (RFC 9051 §7.5.2 defaulting):
    # 0 stands for "same as From".
    return [
        e.date,
        e.subject,
        _addresses_out(e.from_),
        0 if e.sender == e.from_ else _addresses_out(e.sender),
        0 if e.reply_to == e.from_ else _addresses_out(e.reply_to),
        _addresses_out(e.to),
        _addresses_out(e.cc),
        _addresses_out(e.bcc),
        e.in_reply_to,
        e.message_id,
    ]


def _envelope_in(value: Any) -> Envelope:
    date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = value
    from_list = _addresses_in(from_)
    return Envelope(
        date=_str(date),
        subject=_str(subject),
        from_=from_list,
        sender=from_list if sender == 0 else _addresses_in(sender),
        reply_to=from_list if reply_to == 0 else _addresses_in(reply_to),
        to=_addresses_in(to),
        cc=_addresses_in(cc),
        bcc=_addresses_in(bcc),
        in_reply_to=_str(in_reply_to),
        message_id=_str(message_id),
    )


def _params_in(value: Any) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for k, v in value:
        if type(k) is not str or type(v) is not str:
            raise TypeError(f"bad parameter {k!r}={v!r}")
        out.append((k, v))
    return tuple(out)


def _json_value(name: str, value: Any) -> Any:
    """One Part field in its JSON form."""
    if name == "parts":
        return [_part_out(c) for c in value]
    if name == "envelope":
        return None if value is None else _envelope_out(value)
    if name == "message":
        return None if value is None else _part_out(value)
    if name in _PARAM_FIELDS:
        return [list(kv) for kv in value]
    if name == "language" and value is not None:
        return list(value)
    return value


def _part_out(p: Part) -> list[Any]:
    out = [_json_value(name, getattr(p, name)) for name in _PART_FIELDS]
    # Drop trailing values equal to the defaults (compared in JSON form).
    n = len(out)
    while n > 3 and out[n - 1] == _JSON_DEFAULTS[n - 1]:
        n -= 1
    del out[n:]
    return out


def _part_in(value: Any) -> Part:
    if type(value) is not list or not 3 <= len(value) <= len(_PART_FIELDS):
        raise TypeError(f"bad part {value!r}")
    v = list(value) + list(_JSON_DEFAULTS[len(value) :])
    (
        header_start,
        body_start,
        end,
        ctype,
        subtype,
        params,
        encoding,
        lines,
        parts,
        envelope,
        message,
        id_,
        description,
        disposition,
        disposition_params,
        language,
        md5,
        location,
    ) = v
    return Part(
        header_start=_int(header_start),
        body_start=_int(body_start),
        end=_int(end),
        type=_req(ctype),
        subtype=_req(subtype),
        params=_params_in(params),
        encoding=_req(encoding),
        lines=None if lines is None else _int(lines),
        parts=tuple(_part_in(c) for c in parts),
        envelope=None if envelope is None else _envelope_in(envelope),
        message=None if message is None else _part_in(message),
        id=_str(id_),
        description=_str(description),
        disposition=_str(disposition),
        disposition_params=_params_in(disposition_params),
        language=None if language is None else tuple(_req(t) for t in language),
        md5=_str(md5),
        location=_str(location),
    )


_JSON_DEFAULTS: tuple[Any, ...] = tuple(
    _json_value(name, default) for name, default in zip(_PART_FIELDS, _PART_DEFAULTS, strict=True)
)
