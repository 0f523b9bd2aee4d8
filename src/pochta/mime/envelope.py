"""The IMAP ENVELOPE of a message (RFC 9051 §7.5.2, RFC 3501 §7.4.2).

Design note
-----------
Built once from a header block's fields. String members are the raw field
values, unfolded and stripped but not decoded (IMAP sends them as they are,
RFC 2047 encoded-words included); ``None`` means the field is absent, ``""``
that it is present and empty. When a field occurs more than once the first
occurrence counts.

Address members are tuples of :class:`~pochta.mime.address.Address`; an empty
tuple is IMAP ``NIL`` (absent, empty or unparseable field).

Sender and Reply-To defaulting is done *here*, at analysis time: when either
is absent or empty, it is set to the From value, as RFC 9051 §7.5.2 requires
of the server, so IMAP just writes the stored values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pochta.mime.address import Address, parse_address_list
from pochta.mime.headers import text

AddressList = tuple[Address, ...]

#: Lower-case names of the fields the envelope reads.
ENVELOPE_FIELDS = frozenset(
    {
        b"date",
        b"subject",
        b"from",
        b"sender",
        b"reply-to",
        b"to",
        b"cc",
        b"bcc",
        b"in-reply-to",
        b"message-id",
    }
)


@dataclass(frozen=True, slots=True)
class Envelope:
    """ENVELOPE members in RFC 9051 §7.5.2 order."""

    date: str | None = None
    subject: str | None = None
    from_: AddressList = ()
    sender: AddressList = ()
    reply_to: AddressList = ()
    to: AddressList = ()
    cc: AddressList = ()
    bcc: AddressList = ()
    in_reply_to: str | None = None
    message_id: str | None = None


EMPTY_ENVELOPE = Envelope()


def _string(fields: Mapping[bytes, bytes], name: bytes) -> str | None:
    raw = fields.get(name)
    return None if raw is None else text(raw)


def _addresses(fields: Mapping[bytes, bytes], name: bytes) -> AddressList:
    raw = fields.get(name)
    return () if raw is None else parse_address_list(text(raw))


def build_envelope(fields: Mapping[bytes, bytes]) -> Envelope:
    """The envelope from ``{lower-case name: raw value}`` of a header block."""
    if not fields.keys() & ENVELOPE_FIELDS:
        return EMPTY_ENVELOPE
    from_ = _addresses(fields, b"from")
    return Envelope(
        date=_string(fields, b"date"),
        subject=_string(fields, b"subject"),
        from_=from_,
        sender=_addresses(fields, b"sender") or from_,
        reply_to=_addresses(fields, b"reply-to") or from_,
        to=_addresses(fields, b"to"),
        cc=_addresses(fields, b"cc"),
        bcc=_addresses(fields, b"bcc"),
        in_reply_to=_string(fields, b"in-reply-to"),
        message_id=_string(fields, b"message-id"),
    )
