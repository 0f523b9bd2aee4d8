"""What every IMAP session of one server shares: store, accounts, TLS, limits.

Design note
-----------
One ``ImapService`` serves both the ``imap`` (STARTTLS) and ``imaps``
(implicit TLS, RFC 8314 §3.3) listeners. ``factory`` gives a listener its
protocol factory; each connection is a :class:`~pochta.imap.connection.Connection`
whose session task starts once the transport is up. ``extensions`` is the
single list of advertised capabilities beyond the base ones: only what is
complete is listed (the tests assert each one through the wire).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pochta.accounts.login import LoginGuard
from pochta.accounts.registry import Accounts
from pochta.imap.connection import Connection
from pochta.imap.session import ImapSession, make_limits
from pochta.limits import ConnectionLimiter
from pochta.store.interface import Store

__all__ = ["AUTOLOGOUT", "EXTENSIONS", "ImapService"]

#: RFC 9051 §5.4: the autologout timer is at least 30 minutes.
AUTOLOGOUT = 30 * 60.0

#: Capabilities advertised in every state (RFC 9051 §6.1.1), each fully implemented.
EXTENSIONS: tuple[str, ...] = (
    "LITERAL+",
    "ENABLE",
    "ID",
    "NAMESPACE",
    "UNSELECT",
    "IDLE",
    "UIDPLUS",
    "MOVE",
    "CHILDREN",
    "SPECIAL-USE",
    "CREATE-SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "STATUS=SIZE",
    "MULTIAPPEND",
    "BINARY",
    "UTF8=ACCEPT",
    "ESEARCH",
    "SEARCHRES",
    "CONDSTORE",
    "QRESYNC",
)


#: Sessions at once: IDLE clients are cheap (a few KiB each), so many.
MAX_CONNECTIONS = 20_000
#: Sessions from one address; a mail client opens up to about 5 per account.
MAX_PER_IP = 100


if TYPE_CHECKING:
    from pochta.antispam.bayes import JunkTrainer


class ImapService:
    """Shared state of the IMAP listeners; ``factory`` makes their protocols."""

    def __init__(
        self,
        *,
        hostname: str,
        store: Store,
        accounts: Accounts,
        guard: LoginGuard,
        tls: ssl.SSLContext | None,
        allow_plaintext: bool,
        max_append: int = 26_214_400,
        autologout: float = AUTOLOGOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_per_ip: int = MAX_PER_IP,
    ) -> None:
        self.hostname = hostname
        self.store = store
        self.accounts = accounts
        self.guard = guard
        self.tls = tls
        self.allow_plaintext = allow_plaintext
        self.limits = make_limits(max_append)
        #: Seconds of client silence before ``* BYE`` (tests shorten it).
        self.autologout = autologout
        self.extensions: tuple[str, ...] = EXTENSIONS
        #: Open sessions overall and per client address (DESIGN.md: connection limits).
        self.limiter = ConnectionLimiter(max_connections, max_per_ip)
        #: Trains each user's spam filter from moves into and out of Junk.
        self.junk_trainer: JunkTrainer | None = None

    def factory(self, sessions: set[Any]) -> Callable[[], Connection]:
        """A protocol factory for one listener; sessions join ``sessions`` while open."""

        def opened(conn: Connection) -> None:
            ip = conn.peer_ip
            if not self.limiter.acquire(ip):
                # RFC 9051 §7.1.5: BYE instead of a greeting, then close.
                conn.write(b"* BYE [UNAVAILABLE] Too many connections; try again later\r\n")
                conn.close()
                return
            session = ImapSession(self, sessions, conn)
            session.start()
            assert session.task is not None
            session.task.add_done_callback(lambda _task: self.limiter.release(ip))

        def make() -> Connection:
            return Connection(opened)

        return make
