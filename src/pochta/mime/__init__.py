"""MIME analysis done once per message at delivery, cached by the store.

Design note
-----------
``analyze(data) -> MessageMeta`` reads the exact stored octets once and
records everything IMAP needs to answer FETCH without parsing again:
RFC822.SIZE, the ENVELOPE (RFC 9051 §7.5.2), the BODYSTRUCTURE tree
(RFC 9051 §7.5.2, RFC 2045, RFC 2046) and, for every part, the byte offsets
of its MIME header, body start and end, so every ``BODY[section]``
(RFC 9051 §6.4.5) is a slice of the stored message. The store keeps
``MessageMeta.to_json()`` and hands back ``MessageMeta.from_json(raw)``.

Modules: :mod:`~pochta.mime.headers` (byte-level header scanning, also used by
IMAP for ``HEADER.FIELDS``), :mod:`~pochta.mime.params` (Content-Type and
parameters, RFC 2231), :mod:`~pochta.mime.address` (RFC 5322 address lists),
:mod:`~pochta.mime.envelope`, :mod:`~pochta.mime.structure` (the part tree)
and :mod:`~pochta.mime.meta` (``MessageMeta``, JSON, section lookup).

Everything is total: malformed, truncated or hostile input gives a valid
structure whose offsets lie inside the message, never an exception.
"""

from __future__ import annotations

from pochta.mime.address import GROUP_END, Address, parse_address_list
from pochta.mime.envelope import Envelope
from pochta.mime.headers import (
    count_lines,
    field_spans,
    header_fields,
    select_fields,
    unfold,
)
from pochta.mime.meta import MessageMeta, analyze, part, section_span
from pochta.mime.structure import MAX_DEPTH, MAX_PARTS, Part

__all__ = [
    "GROUP_END",
    "MAX_DEPTH",
    "MAX_PARTS",
    "Address",
    "Envelope",
    "MessageMeta",
    "Part",
    "analyze",
    "count_lines",
    "field_spans",
    "header_fields",
    "parse_address_list",
    "part",
    "section_span",
    "select_fields",
    "unfold",
]
