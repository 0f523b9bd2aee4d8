"""SMTP replies as named constants, with their RFC source.

Every reply a client can see after EHLO carries an enhanced status code
(RFC 2034 §4, RFC 3463) because we advertise ENHANCEDSTATUSCODES. Tests assert
against these same constants, so a reply changes in one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    """An SMTP reply: basic code (RFC 5321 §4.2), enhanced code (RFC 3463), text."""

    code: int
    enhanced: str
    text: str

    @property
    def temporary(self) -> bool:
        """4xx replies ask the client to retry later (RFC 5321 §4.2.1)."""
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)


# Success
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
QUEUED = Reply(250, "2.0.0", "OK: queued as")  # text completed with the queue id
BYE = Reply(221, "2.0.0", "Bye")

# Temporary failures (the client keeps the message and retries)
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
#: After HARD_ERROR_LIMIT failed commands without a delivered message.
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing the connection")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")  # RFC 5321 §4.5.3.1.10
LOCAL_ERROR = Reply(451, "4.3.0", "Local error in processing, try again later")

# Permanent failures
UNKNOWN_USER = Reply(550, "5.1.1", "No such user here")  # RFC 3463 §3.2 X.1.1
RELAY_DENIED = Reply(554, "5.7.1", "Relay access denied")  # RFC 3463 §3.8 X.7.1
BAD_ADDRESS = Reply(553, "5.1.3", "Malformed address")  # RFC 3463 §3.2 X.1.3
BAD_SENDER_ADDRESS = Reply(553, "5.1.7", "Malformed sender address")
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
BARE_NEWLINE = Reply(
    550,
    "5.5.2",
    "Message contains bare CR or LF; lines must end with CRLF (RFC 5321 section 2.3.8)",
)
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long (RFC 5321 section 4.5.3.1.6)")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")  # RFC 4954 §6
ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)  # RFC 4954 §6
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")  # RFC 4954 §6
AUTH_FAILED = Reply(535, "5.7.8", "Authentication credentials invalid")  # RFC 4954 §6
AUTH_THROTTLED = Reply(454, "4.7.0", "Too many failed logins; try again later")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by the authenticated user")
FROM_NOT_OWNED = Reply(553, "5.7.1", "From: header address not owned by the authenticated user")
NO_FROM = Reply(550, "5.6.0", "Message has no From: header")
RATE_LIMITED = Reply(450, "4.7.1", "Sending limit per hour reached; try again later")
AUTH_UNAVAILABLE = Reply(502, "5.5.1", "AUTH is not available on this port; use submission")
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")

#: Enhanced codes for replies that aiosmtpd writes itself without one, by
#: basic code (RFC 3463 §3.3 X.5.x protocol status, §3.4 X.3.4 size).
DEFAULT_ENHANCED: dict[int, str] = {
    211: "2.0.0",
    214: "2.0.0",
    221: "2.0.0",
    235: "2.7.0",
    250: "2.0.0",
    251: "2.1.5",
    252: "2.5.0",
    421: "4.3.0",
    450: "4.2.0",
    451: "4.3.0",
    452: "4.3.1",
    454: "4.7.0",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    530: "5.7.0",
    535: "5.7.8",
    538: "5.7.11",
    550: "5.0.0",
    552: "5.3.4",
    553: "5.1.3",
    554: "5.0.0",
    555: "5.5.4",
}
