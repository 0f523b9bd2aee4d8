"""What every POP3 session of one server shares: store, accounts, limits, locks.

Design note
-----------
One ``Pop3Service`` per server process serves both the ``pop3`` (STLS)
and ``pop3s`` (implicit TLS) listeners, so the maildrop locks
(``in_use``: one POP3 session per user, RFC 2449 §8.1.1 ``[IN-USE]``) and
the connection counts are common to both. The locks are per process: a
second Pochta process on the same data (scale-out) would need them in the
shared index instead.

Connection limits: ``max_connections`` sessions in all and
``max_per_ip`` per client address; one more is greeted with
``-ERR [SYS/TEMP]`` and closed at once, instead of being dropped silently.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from pochta.accounts.login import LoginGuard
from pochta.accounts.registry import Accounts
from pochta.limits import ConnectionLimiter
from pochta.pop3 import replies
from pochta.pop3.session import Pop3Session
from pochta.store.interface import Store

__all__ = ["Pop3Service"]


class Pop3Service:
    """Shared state of the POP3 listeners; ``factory`` makes their protocols."""

    def __init__(
        self,
        *,
        hostname: str,
        store: Store,
        accounts: Accounts,
        guard: LoginGuard,
        tls: ssl.SSLContext | None,
        allow_plaintext: bool,
        idle_timeout: float = replies.IDLE_TIMEOUT,
        max_connections: int = replies.MAX_CONNECTIONS,
        max_per_ip: int = replies.MAX_CONNECTIONS_PER_IP,
    ) -> None:
        self.hostname = hostname
        self.store = store
        self.accounts = accounts
        self.guard = guard
        #: Server context for STLS (and the pop3s listener); None without [tls].
        self.tls = tls
        self.allow_plaintext = allow_plaintext
        #: RFC 1939 §3 autologout timer, in seconds; tests shorten it.
        self.idle_timeout = idle_timeout
        self.limiter = ConnectionLimiter(max_connections, max_per_ip)
        #: Canonical user address -> the session holding its maildrop.
        self.in_use: dict[str, Pop3Session] = {}

    def factory(self, sessions: set[Any]) -> Callable[[], Pop3Session]:
        """A protocol factory for one listener; sessions join ``sessions`` while open."""

        def make() -> Pop3Session:
            return Pop3Session(self, sessions)

        return make
