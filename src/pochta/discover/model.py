"""What ``pochta discover`` finds and tried: typed results, rendered as text or JSON.

Design note
-----------
Every network attempt of the discovery becomes one :class:`Attempt` in the
:class:`Report`, in the order it was made, with its outcome in words
("not found: the name does not exist in DNS", "TLS certificate not
accepted: ..."), never a traceback. The settings found are
:class:`ServerSetting` values in the vocabulary of the clients' documents
(protocol, host, port, security, user name), whichever step found them.
``Report.to_json()`` is the stable machine form (``--json``); ``render()`` is
the text form a person reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "MANUAL_ADVICE",
    "SECURITY_TEXT",
    "STEP_NAMES",
    "Attempt",
    "Found",
    "LoginCheck",
    "Report",
    "ServerSetting",
]

Protocol = Literal["imap", "pop3", "smtp"]
Security = Literal["ssl", "starttls", "plain"]
Outcome = Literal["found", "not-found", "error", "skipped", "timeout"]

#: The steps of the algorithm (issue 5), numbered as the report shows them.
STEP_NAMES = {
    1: "Thunderbird autoconfig",
    2: "Outlook autodiscover",
    3: "DNS SRV records (RFC 6186)",
    4: "the MX host's domain",
    5: "guessing host names and probing ports",
    6: "manual setup",
}

MANUAL_ADVICE = (
    "No settings could be discovered. Enter them by hand: ask the provider for "
    "the incoming server (IMAP, usually port 993 with SSL/TLS, or POP3 on 995) "
    "and the outgoing server (SMTP submission, port 465 with SSL/TLS or 587 with "
    "STARTTLS); the user name is usually the full address."
)

#: How the report names each security mode (the clients' own words).
SECURITY_TEXT = {"ssl": "SSL/TLS", "starttls": "STARTTLS", "plain": "no encryption"}


@dataclass(frozen=True, slots=True)
class ServerSetting:
    """One incoming or outgoing server as a client would be configured."""

    protocol: Protocol
    hostname: str
    port: int
    security: Security
    username: str
    auth: tuple[str, ...] = ()
    """Mechanisms known: from a probe (``PLAIN``, ``LOGIN``, ...) or the document."""

    @property
    def incoming(self) -> bool:
        return self.protocol != "smtp"

    def describe(self) -> str:
        auth = f", auth {' '.join(self.auth)}" if self.auth else ""
        return (
            f"{self.protocol.upper():<4} {self.hostname}:{self.port} "
            f"{SECURITY_TEXT[self.security]}, user {self.username}{auth}"
        )


@dataclass(frozen=True, slots=True)
class Attempt:
    """One thing tried: a URL fetched, a record looked up, a port probed."""

    step: int
    method: str
    """``autoconfig``, ``autodiscover``, ``srv``, ``mx``, ``probe``."""
    target: str
    outcome: Outcome
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Found:
    """Settings one attempt produced (a step succeeds with at least one of each)."""

    step: int
    method: str
    source: str
    incoming: tuple[ServerSetting, ...]
    outgoing: tuple[ServerSetting, ...]
    warnings: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return bool(self.incoming) and bool(self.outgoing)


@dataclass(frozen=True, slots=True)
class LoginCheck:
    """The result of logging in to one found server with the user's password."""

    protocol: Protocol
    hostname: str
    port: int
    ok: bool
    detail: str


@dataclass
class Report:
    """Everything one discovery run did and found."""

    address: str
    attempts: list[Attempt] = field(default_factory=list)
    found: Found | None = None
    logins: list[LoginCheck] = field(default_factory=list)

    def add(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    @property
    def ok(self) -> bool:
        """Settings were found, and every login check made succeeded."""
        return self.found is not None and all(check.ok for check in self.logins)

    def to_json(self) -> dict[str, Any]:
        found = self.found
        return {
            "address": self.address,
            "found": found is not None,
            "step": found.step if found else None,
            "method": found.method if found else None,
            "source": found.source if found else None,
            "incoming": [asdict(s) for s in found.incoming] if found else [],
            "outgoing": [asdict(s) for s in found.outgoing] if found else [],
            "warnings": list(found.warnings) if found else [],
            "attempts": [asdict(a) for a in self.attempts],
            "logins": [asdict(c) for c in self.logins],
            "advice": None if found else MANUAL_ADVICE,
        }

    def render(self) -> str:
        """The report for a person: each step, what was tried, what was found."""
        lines = [f"Discovering mail settings for {self.address}", ""]
        current = 0
        for attempt in self.attempts:
            if attempt.step != current:
                current = attempt.step
                lines.append(f"{current}. {STEP_NAMES[current]}")
            detail = f": {attempt.detail}" if attempt.detail else ""
            lines.append(f"   {attempt.target}  -> {attempt.outcome}{detail}")
        lines.append("")
        found = self.found
        if found is None:
            lines.append(f"{len(STEP_NAMES)}. {STEP_NAMES[len(STEP_NAMES)]}")
            lines.append(f"   {MANUAL_ADVICE}")
        else:
            lines.append(f"Found by step {found.step} ({STEP_NAMES[found.step]}): {found.source}")
            for setting in found.incoming:
                lines.append(f"  incoming  {setting.describe()}")
            for setting in found.outgoing:
                lines.append(f"  outgoing  {setting.describe()}")
            for warning in found.warnings:
                lines.append(f"  warning: {warning}")
        if self.logins:
            lines.append("")
            lines.append("Login check:")
            for check in self.logins:
                verdict = "OK" if check.ok else "FAILED"
                where = f"{check.protocol.upper()} {check.hostname}:{check.port}"
                lines.append(f"  {where}  {verdict}: {check.detail}")
        return "\n".join(lines) + "\n"
