"""The result of one delivery attempt for one recipient.

Every outcome carries its SMTP reply (basic and enhanced code, text) and
where it came from, so the queue decides retry or bounce from the code alone
(RFC 5321 §4.2.1: 2yz done, 4yz try again, 5yz give up) and the DSN can quote
it (RFC 3464 §2.3.6 Diagnostic-Code, §2.3.5 Remote-MTA).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int
    enhanced: str  # RFC 3463 class.subject.detail, e.g. "5.1.1"
    text: str
    remote_mta: str | None = None  # the host that answered, None when local

    @property
    def delivered(self) -> bool:
        return 200 <= self.code < 300

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def reply(self) -> str:
        """As an SMTP reply line (for logs, the queue listing and DSNs)."""
        return f"{self.code} {self.enhanced} {self.text}".strip()


def temporary(text: str, enhanced: str = "4.4.1", remote_mta: str | None = None) -> Outcome:
    """A local temporary failure, e.g. no answer from any MX (RFC 3463 X.4.1)."""
    return Outcome(451, enhanced, text, remote_mta)


def permanent(text: str, enhanced: str = "5.4.4", remote_mta: str | None = None) -> Outcome:
    """A local permanent failure, e.g. null MX (RFC 7505 §3: 5.1.10)."""
    return Outcome(550, enhanced, text, remote_mta)
