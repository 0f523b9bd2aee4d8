"""Delivery Status Notifications (RFC 3464) for failed and delayed mail.

A DSN is ``multipart/report; report-type=delivery-status`` (RFC 6522) with
three parts: a human-readable explanation, the ``message/delivery-status``
fields (per-message: Reporting-MTA, Arrival-Date; per-recipient:
Final-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
Last-Attempt-Date, Will-Retry-Until), and the original message's header as
``text/rfc822-headers`` (RFC 6522 §4). It is sent from the null reverse-path
(RFC 5321 §4.5.5) so that it can never cause another bounce, and marked
``Auto-Submitted: auto-replied`` (RFC 3834 §5).
"""

from __future__ import annotations

import email.utils
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from pochta.queue.outcome import Outcome


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    rcpt: str
    outcome: Outcome


def _header_block(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    return head if head.endswith(b"\r\n") else head + b"\r\n"


def _diagnostic(outcome: Outcome) -> str:
    # RFC 3464 §2.3.6: diagnostic-type "smtp" with the reply as received;
    # keep it on one line and ASCII.
    text = outcome.reply().encode("ascii", "replace").decode().replace("\r", " ").replace("\n", " ")
    return f"smtp; {text}"


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    original: bytes,
    arrival: float,
    recipients: Sequence[RecipientStatus],
    delayed_until: float | None = None,
    now: float | None = None,
) -> bytes:
    """The DSN message (CRLF line ends) to send to ``sender``.

    ``delayed_until`` set means a "delayed" notice (Action: delayed, with
    Will-Retry-Until); otherwise every recipient listed has failed.
    """
    boundary = f"=_pochta_{secrets.token_hex(12)}"
    date = email.utils.formatdate(now, localtime=False)
    delayed = delayed_until is not None
    if delayed:
        subject = "Delayed Mail (still being retried)"
        explain = (
            "This is the mail system at host {mta}.\r\n\r\n"
            "Your message could not be delivered yet to the recipients below.\r\n"
            "It will be retried until {until}; you need not send it again.\r\n"
        )
    else:
        subject = "Undelivered Mail Returned to Sender"
        explain = (
            "This is the mail system at host {mta}.\r\n\r\n"
            "Your message could not be delivered to the recipients below.\r\n"
            "The error each one gave is listed; the message header is attached.\r\n"
        )
    until = email.utils.formatdate(delayed_until, localtime=False) if delayed_until else ""
    human = explain.format(mta=reporting_mta, until=until)
    for status in recipients:
        human += f"\r\n<{status.rcpt}>: {status.outcome.reply()}\r\n"

    fields = [
        f"Reporting-MTA: dns; {reporting_mta}",
        f"Arrival-Date: {email.utils.formatdate(arrival, localtime=False)}",
        "",
    ]
    for status in recipients:
        outcome = status.outcome
        fields.append(f"Final-Recipient: rfc822; {status.rcpt}")
        fields.append(f"Action: {'delayed' if delayed else 'failed'}")
        fields.append(f"Status: {outcome.enhanced}")
        if outcome.remote_mta:
            fields.append(f"Remote-MTA: dns; {outcome.remote_mta}")
        fields.append(f"Diagnostic-Code: {_diagnostic(outcome)}")
        fields.append(f"Last-Attempt-Date: {date}")
        if delayed:
            fields.append(f"Will-Retry-Until: {until}")
        fields.append("")
    status_part = "\r\n".join(fields)

    head = (
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>\r\n"
        f"To: <{sender}>\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {date}\r\n"
        f"Message-ID: <{secrets.token_hex(12)}@{reporting_mta}>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        "\r\n"
        "This is a MIME-encapsulated message.\r\n\r\n"
    )
    parts = (
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "Content-Description: Notification\r\n\r\n"
        f"{human}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n"
        "Content-Description: Delivery report\r\n\r\n"
        f"{status_part}\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "Content-Description: Undelivered Message Headers\r\n\r\n"
    )
    tail = f"\r\n--{boundary}--\r\n"
    return (
        head.encode("ascii", "replace")
        + parts.encode("ascii", "replace")
        + _header_block(original)
        + tail.encode("ascii")
    )
