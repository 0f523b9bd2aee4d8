"""Policy shared by every SMTP listener: limits, trace headers, smuggling defence.

Inbound (MX) and submission apply the same rules through this module so the
two never drift apart:

* bare CR or LF inside DATA is refused (RFC 5321 §2.3.8 requires CRLF; a
  lone LF or CR is how "SMTP smuggling" hides a second message inside the
  first one, so we never accept it rather than normalise it);
* Return-Path (RFC 5321 §4.4, added by the delivering server) and Received
  (RFC 5321 §4.4, RFC 3848 protocol names) trace headers;
* per-listener and per-address connection limits that answer 421 4.7.0
  instead of dropping the connection.
"""

from __future__ import annotations

import base64
import email.utils
import itertools
import os
import time
from dataclasses import dataclass

from pochta.limits import ConnectionLimiter, HourlyLimit

__all__ = [
    "MAX_LINE_LENGTH",
    "ConnectionLimiter",
    "HourlyLimit",
    "TraceInfo",
    "has_bare_newline",
    "new_queue_id",
    "protocol_name",
    "received_header",
    "return_path_header",
]

#: RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets with the CRLF.
MAX_LINE_LENGTH = 1000

_queue_counter = itertools.count()
_QID_PID = os.getpid() & 0xFFFF


def new_queue_id() -> str:
    """A short, unique, roughly time-ordered id for log lines and Received."""
    raw = (
        time.time_ns().to_bytes(8, "big")
        + _QID_PID.to_bytes(2, "big")
        + (next(_queue_counter) & 0xFFFF).to_bytes(2, "big")
    )
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def has_bare_newline(data: bytes) -> bool:
    """True if ``data`` has a CR not followed by LF or an LF not preceded by CR.

    Counting is done by C loops over the buffer (three passes) rather than a
    Python-level scan, because this runs on every message.
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def _clean(text: str, limit: int = 255) -> str:
    """Make client-chosen text (the EHLO name) safe inside a header."""
    out = "".join(ch if 32 < ord(ch) < 127 and ch not in "()\\;" else "?" for ch in text)
    return out[:limit] or "unknown"


def protocol_name(*, extended: bool, tls: bool, authenticated: bool, lmtp: bool = False) -> str:
    """The ``with`` keyword of Received, RFC 3848 §2 (SMTP/ESMTP/+S/+A, LMTP)."""
    if lmtp:
        base = "LMTP"
    elif extended:
        base = "ESMTP"
    else:
        return "SMTP"
    if tls:
        base += "S"
    if authenticated:
        base += "A"
    return base


@dataclass(frozen=True, slots=True)
class TraceInfo:
    """What a Received header says about one SMTP transaction."""

    helo: str
    peer_ip: str
    hostname: str
    protocol: str
    queue_id: str
    recipient: str | None  # only named when there is exactly one (privacy)
    tls: str | None = None  # e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384"
    timestamp: float | None = None


def received_header(info: TraceInfo) -> bytes:
    """A Received header per RFC 5321 §4.4, folded, ending with CRLF."""
    when = email.utils.formatdate(info.timestamp, localtime=False)
    tls = f" ({info.tls})" if info.tls else ""
    lines = [
        f"Received: from {_clean(info.helo)} ([{info.peer_ip}])",
        f"\tby {info.hostname} (Pochta) with {info.protocol}{tls} id {info.queue_id}",
    ]
    if info.recipient is not None:
        lines.append(f"\tfor <{_clean(info.recipient, 320)}>; {when}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{when}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def return_path_header(mail_from: str) -> bytes:
    """Return-Path as the final delivery adds it (RFC 5321 §4.4); ``""`` is the null path."""
    return f"Return-Path: <{mail_from}>\r\n".encode("utf-8", "surrogateescape")
