"""What the account-setup documents advertise: host, port and security per service.

Design note
-----------
Thunderbird's config-v1.1, Outlook's autodiscover and Apple's mobileconfig all
describe the same facts, computed once here from the settings:

* **Host name**: ``hostname`` from the settings -- the name the certificate
  is for and clients connect to, even when the request arrived as
  ``autoconfig.<domain>``; a server known publicly under another name is
  described correctly by setting ``hostname`` to that name.
* **Which services**: those with a ``[listen]`` entry, incoming in the order
  RFC 8314 §3 recommends (implicit TLS first): ``imaps``, ``imap``,
  ``pop3s``, ``pop3``; outgoing ``submissions``, ``submission``. The MX
  listener (``smtp``, port 25) is never advertised to clients (RFC 6409 §1).
  A STARTTLS listener is advertised as STARTTLS when ``[tls]`` is set; without
  TLS it is advertised as plain only if ``[auth].allow_plaintext_without_tls``
  lets clients log in there, and left out otherwise.
* **Port rule**: if any listener of a kind is on its standard port (993, 143,
  995, 110, 465, 587; RFC 8314 §7.3, RFC 6409 §3.1), that port; otherwise the
  configured port of the first listener (a server on 2993 is reached on
  2993); and for a listener configured with port 0 (tests, embedding) the port
  it is actually bound to, or nothing while it is not running.

Pure functions of (settings, bound ports); no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pochta.config import IMPLICIT_TLS_LISTENERS, HostPort, Settings

__all__ = [
    "INCOMING_KINDS",
    "OUTGOING_KINDS",
    "STANDARD_PORTS",
    "Service",
    "advertised_port",
    "advertised_services",
]

Protocol = Literal["imap", "pop3", "smtp"]
Security = Literal["ssl", "starttls", "plain"]

#: Well-known ports of the client-facing listeners (IANA; RFC 8314 §7.3, RFC 6409 §3.1,
#: RFC 9051 §2, RFC 1939 §3, RFC 9110 §4.2).
STANDARD_PORTS: dict[str, int] = {
    "imaps": 993,
    "imap": 143,
    "pop3s": 995,
    "pop3": 110,
    "submissions": 465,
    "submission": 587,
    "http": 80,
    "https": 443,
}

#: Listener kinds a mail client receives from, preferred first (RFC 8314 §3).
INCOMING_KINDS = ("imaps", "imap", "pop3s", "pop3")
#: Listener kinds a mail client sends through, preferred first (RFC 8314 §3).
OUTGOING_KINDS = ("submissions", "submission")

_PROTOCOL: dict[str, Protocol] = {
    "imaps": "imap",
    "imap": "imap",
    "pop3s": "pop3",
    "pop3": "pop3",
    "submissions": "smtp",
    "submission": "smtp",
}

#: Given a listener kind, the ports its listeners are bound to right now.
BoundPorts = Callable[[str], Sequence[int]]


@dataclass(frozen=True, slots=True)
class Service:
    """One server a mail client should be configured with."""

    kind: str
    """The ``[listen]`` key it comes from: ``imaps``, ``submission``, ..."""
    protocol: Protocol
    hostname: str
    port: int
    security: Security
    """``ssl``: TLS from the first byte; ``starttls``: upgraded; ``plain``: none."""

    @property
    def incoming(self) -> bool:
        return self.protocol != "smtp"


def advertised_port(kind: str, configured: Sequence[HostPort], bound: Sequence[int]) -> int | None:
    """The port clients are told for ``kind`` (see the module's port rule)."""
    if not configured:
        return None
    standard = STANDARD_PORTS.get(kind)
    if standard is not None and any(hp.port == standard for hp in configured):
        return standard
    first = configured[0].port
    if first != 0:
        return first
    return bound[0] if bound else None


def advertised_services(settings: Settings, bound: BoundPorts | None = None) -> list[Service]:
    """Every client-facing service, incoming first, each group in preference order."""
    services: list[Service] = []
    for kind in (*INCOMING_KINDS, *OUTGOING_KINDS):
        configured: tuple[HostPort, ...] = getattr(settings.listen, kind)
        port = advertised_port(kind, configured, bound(kind) if bound else ())
        if port is None:
            continue
        security: Security
        if kind in IMPLICIT_TLS_LISTENERS:
            security = "ssl"
        elif settings.tls is not None:
            security = "starttls"
        elif settings.auth.allow_plaintext_without_tls:
            security = "plain"
        else:
            continue  # no TLS and no plaintext logins: a client could not log in there
        services.append(Service(kind, _PROTOCOL[kind], settings.hostname, port, security))
    return services
