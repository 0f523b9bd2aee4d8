"""Every configured listener in one asyncio loop, with a graceful stop.

Start-up opens the accounts database and the store, then binds each
``[listen]`` address; a bind failure stops start-up with one line naming the
key. ``stop()`` first closes the listening sockets, then waits (bounded) for
deliveries already in progress to finish — a client that has not yet seen our
250 keeps its copy and retries, so cutting a session mid-DATA loses nothing —
then tells idle sessions ``421 4.3.2`` and closes them, and finally closes the
store, which drains its writer thread. A message becomes visible only after
its file is fsynced, renamed into new/ and indexed, so no stop, however
abrupt, leaves a half-written message as mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pochta.accounts import Accounts
from pochta.accounts.login import LoginGuard
from pochta.antispam.bayes import Bayes, JunkTrainer
from pochta.config import HostPort, Settings
from pochta.dns import StubResolver
from pochta.errors import UserFacingError
from pochta.imap.server import ImapService
from pochta.mailauth.dkim import SigningError, sign_message
from pochta.mailauth.keys import DKIMKeyStore
from pochta.mailauth.orgdomain import organizational_domain
from pochta.observe.trace import Trace
from pochta.pop3 import Pop3Service
from pochta.queue.local import LocalDeliverer
from pochta.queue.mtasts import StsPolicies
from pochta.queue.remote import MXDeliverer
from pochta.queue.runner import Deliverer, QueueRunner
from pochta.queue.spool import Spool
from pochta.smtp.checks import SenderChecks, antispam_dir
from pochta.smtp.inbound import InboundHandler
from pochta.smtp.policy import ConnectionLimiter
from pochta.smtp.protocol import PochtaLMTP, PochtaSMTP
from pochta.smtp.srs import SRS, is_srs
from pochta.smtp.submission import SubmissionHandler
from pochta.store import open_store
from pochta.store.interface import Store
from pochta.web import WebApp
from pochta.web.admin import AdminServices

log = logging.getLogger("pochta.server")

#: Seconds between looks for DMARC aggregate reports to send.
REPORT_EVERY = 3600.0

#: Listener kinds this version serves; the others are accepted in settings
#: (they are part of the contract) and reported as skipped at start.
SERVED = (
    "smtp",
    "lmtp",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "http",
    "https",
)


class StartupError(UserFacingError):
    """A listener could not be started (address in use, permission denied)."""


class Session(Protocol):
    """What a graceful stop needs of any protocol's open session."""

    def shutdown(self) -> None:
        """Tell the client the server is going away (e.g. 421) and close."""
        ...


#: Builds a listener's protocol factory; given the set that sessions add
#: themselves to (and remove themselves from) so a stop can reach them.
FactoryMaker = Callable[[set[Session]], Callable[[], asyncio.BaseProtocol]]


@dataclass
class Listener:
    kind: str
    address: HostPort
    server: asyncio.Server
    sessions: set[Session] = field(default_factory=set)

    @property
    def bound(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.server.sockets]


class Server:
    """The whole mail server; embed it in tests with ``async with Server(settings)``."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        accounts: Accounts | None = None,
    ) -> None:
        self.settings = settings
        self._own_store = store is None
        self._own_accounts = accounts is None
        self.store: Store = store if store is not None else open_store(settings.data_dir)
        self.accounts: Accounts = (
            accounts
            if accounts is not None
            else Accounts.open(settings.data_dir / "accounts.sqlite")
        )
        self.listeners: list[Listener] = []
        #: Each message's hops, lookups and verdicts, for ``pochta trace``.
        self.trace = Trace(settings.data_dir / "trace")
        #: Server-side TLS context from [tls], made at start (None without [tls]).
        self.tls: ssl.SSLContext | None = None
        #: One resolver (and its cache) for delivery and sender checks.
        self.resolver = StubResolver.from_settings(settings.dns)
        #: Per-user spam filters: scored at delivery, trained over IMAP.
        self.bayes = Bayes(antispam_dir(settings.data_dir) / "bayes.sqlite")
        self._checks = (
            SenderChecks(
                hostname=settings.hostname,
                resolver=self.resolver,
                antispam=settings.antispam,
                data_dir=settings.data_dir,
                bayes=self.bayes,
                is_local_domain=self.accounts.is_local_domain,
            )
            if settings.mailauth.verify
            else None
        )
        self._smtp_limiter = ConnectionLimiter(
            settings.limits.smtp_connections, settings.limits.smtp_connections_per_ip
        )
        #: One login guard for every protocol: failures count across them all.
        self.guard = LoginGuard()
        #: Shared by the pop3 and pop3s listeners (maildrop locks); made at start.
        self._pop3: Pop3Service | None = None
        #: Shared by the imap and imaps listeners; made at start.
        self._imap: ImapService | None = None
        #: The outbound queue; its deliverers are made at start.
        self.queue = QueueRunner(
            Spool(settings.data_dir),
            hostname=settings.hostname,
            settings=settings.delivery,
            route=self._route,
            trace=self.trace,
        )
        self._local = LocalDeliverer(
            self.accounts, self.store, forward=self.queue.enqueue, trace=self.trace
        )
        self._remote: MXDeliverer | None = None
        #: DKIM keys: submission signs with them, the MX ARC-seals forwarded mail.
        self._dkim = DKIMKeyStore(settings.data_dir) if settings.mailauth.sign else None
        srs = SRS.load(settings.data_dir) if settings.mailauth.srs else None
        if srs is not None:
            self.queue.dsn_recipient = self._dsn_recipient(srs)
        self._inbound = InboundHandler(
            hostname=settings.hostname,
            accounts=self.accounts,
            store=self.store,
            max_recipients=settings.limits.recipients,
            max_message_size=settings.limits.message_size,
            checks=self._checks,
            queue=self.queue,
            dkim=self._dkim,
            trace=self.trace,
            srs=srs,
        )
        self._submission = SubmissionHandler(
            hostname=settings.hostname,
            accounts=self.accounts,
            guard=self.guard,
            queue=self.queue,
            max_recipients=settings.limits.recipients,
            max_message_size=settings.limits.message_size,
            messages_per_hour=settings.limits.messages_per_hour,
            recipients_per_hour=settings.limits.recipients_per_hour,
            dkim=self._dkim,
            trace=self.trace,
        )
        self._stopped = asyncio.Event()
        #: The hourly task that sends DMARC aggregate reports (with the checks).
        self._reporting: asyncio.Task[None] | None = None

    def _dsn_recipient(self, srs: SRS) -> Callable[[str], str]:
        """A DSN about a copy we forwarded goes straight to the original
        sender that the copy's SRS sender at one of our domains stands for."""

        def recipient(sender: str) -> str:
            local, _, domain = sender.rpartition("@")
            if is_srs(local) and self.accounts.is_local_domain(domain):
                return srs.reverse(sender) or sender
            return sender

        return recipient

    def _route(self, domain: str) -> Deliverer:
        """Our own domains skip the network; the rest go to their MX."""
        if self.accounts.is_local_domain(domain):
            return self._local
        if self._remote is None:
            self._remote = MXDeliverer(
                self.resolver,
                hostname=self.settings.hostname,
                port=self.settings.delivery.smtp_port,
                trace=self.trace,
                sts=StsPolicies(
                    self.resolver, cache_file=self.settings.data_dir / "mta-sts-cache.json"
                ),
            )
        return self._remote

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def address(self, kind: str) -> tuple[str, int]:
        """The first bound address of a listener kind (tests bind port 0)."""
        for listener in self.listeners:
            if listener.kind == kind:
                return listener.bound[0]
        raise KeyError(kind)

    async def start(self) -> None:
        await self.store.open()
        self.trace.prune()
        # kind -> (factory maker, implicit TLS context or None); one entry per
        # protocol this version serves.
        self.tls = self.settings.tls_context() if self.settings.tls is not None else None
        makers: dict[str, tuple[FactoryMaker, ssl.SSLContext | None]] = {
            "smtp": (self._smtp_factory, None),
            "lmtp": (self._lmtp_factory, None),
            "submission": (self._submission_factory, None),
            "submissions": (self._submissions_factory, self.tls),
            "imap": (self._imap_factory, None),
            "imaps": (self._imap_factory, self.tls),
            "pop3": (self._pop3_factory, None),
            "pop3s": (self._pop3_factory, self.tls),
        }
        try:
            for kind, (maker, implicit_tls) in makers.items():
                for hp in getattr(self.settings.listen, kind):
                    await self._listen(kind, hp, maker, implicit_tls)
            await self._start_web()
            for kind, addrs in vars_listen(self.settings).items():
                if kind not in SERVED and addrs:
                    log.warning("[listen].%s is set but not served by this version", kind)
        except BaseException:
            await self.stop()
            raise
        self.queue.start()
        if self._checks is not None:
            self._reporting = asyncio.get_running_loop().create_task(self._send_reports())

    async def _send_reports(self) -> None:
        """Every hour: queue the DMARC aggregate reports of finished days."""
        assert self._checks is not None
        while True:
            try:
                await self._checks.reports.send_due(self.queue.enqueue, self._sign_report)
            except Exception:  # reports are a courtesy; try again next hour
                log.exception("dmarc reports: sending failed")
            await asyncio.sleep(REPORT_EVERY)

    async def _sign_report(self, message: bytes) -> bytes:
        """DKIM-sign a report from postmaster@<hostname> with the keys of the
        hostname's domain, when it is ours (RFC 7489 §7.2.1.1: reports
        should pass DMARC; relaxed alignment through the Organizational
        Domain). Unsigned if there are no keys."""
        if self._dkim is None:
            return message
        domain = organizational_domain(self.settings.hostname)
        if not self.accounts.is_local_domain(domain):
            return message
        try:
            keys = self._dkim.active(domain)
            return await sign_message(message, keys) + message
        except (UserFacingError, SigningError) as exc:
            log.warning("dmarc reports: not signed: %s", exc)
            return message

    def _smtp_factory(self, sessions: set[Session]) -> Callable[[], asyncio.BaseProtocol]:
        return self._smtp_template(PochtaSMTP, sessions).clone

    def _lmtp_factory(self, sessions: set[Session]) -> Callable[[], asyncio.BaseProtocol]:
        return self._smtp_template(PochtaLMTP, sessions).clone

    def _pop3_factory(self, sessions: set[Session]) -> Callable[[], asyncio.BaseProtocol]:
        if self._pop3 is None:
            self._pop3 = Pop3Service(
                hostname=self.settings.hostname,
                store=self.store,
                accounts=self.accounts,
                guard=self.guard,
                tls=self.tls,
                allow_plaintext=self.settings.auth.allow_plaintext_without_tls,
            )
        return self._pop3.factory(sessions)

    def _imap_starttls(self) -> ssl.SSLContext | None:
        """The context for IMAP STARTTLS: ours, but sending no TLS 1.3 session tickets.

        Why: offlineimap (imaplib2) reads on one thread and writes on another
        through the same SSL object; the tickets a TLS 1.3 server sends right
        after a STARTTLS handshake then hang or break 1 run in 5 of its syncs
        ("Too many read 0"). IMAP clients rarely resume sessions, so only a
        full handshake on reconnect is lost; implicit TLS (imaps) keeps them.
        """
        if self.tls is None:
            return None
        context = self.settings.tls_context()
        context.num_tickets = 0
        return context

    def _imap_factory(self, sessions: set[Session]) -> Callable[[], asyncio.BaseProtocol]:
        if self._imap is None:
            self._imap = ImapService(
                hostname=self.settings.hostname,
                store=self.store,
                accounts=self.accounts,
                guard=self.guard,
                tls=self._imap_starttls(),
                allow_plaintext=self.settings.auth.allow_plaintext_without_tls,
                max_append=self.settings.limits.message_size,
            )
            self._imap.junk_trainer = JunkTrainer(self.bayes)
        return self._imap.factory(sessions)

    def _submission_factory(self, sessions: set[Session]) -> Callable[[], asyncio.BaseProtocol]:
        return self._smtp_template(PochtaSMTP, sessions, submission=True).clone

    def _submissions_factory(self, sessions: set[Session]) -> Callable[[], asyncio.BaseProtocol]:
        # Implicit TLS (RFC 8314 §3.3): the connection is already encrypted,
        # so STARTTLS is not offered.
        template = self._smtp_template(PochtaSMTP, sessions, submission=True, starttls=False)
        return template.clone

    def _smtp_template(
        self,
        cls: type[PochtaSMTP],
        sessions: set[Session],
        *,
        submission: bool = False,
        starttls: bool = True,
    ) -> PochtaSMTP:
        """The protocol every session of one listener is cloned from."""
        return cls(
            self._submission if submission else self._inbound,
            sessions=sessions,
            limiter=self._smtp_limiter,
            auth_enabled=submission,
            auth_required=submission,  # RFC 6409 §4.3: MAIL needs AUTH first
            allow_plaintext_auth=self.settings.auth.allow_plaintext_without_tls,
            hostname=self.settings.hostname,
            ident="LMTP Pochta" if cls.lmtp else "ESMTP Pochta",
            data_size_limit=self.settings.limits.message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=self.tls if starttls else None,
            timeout=300,  # RFC 5321 §4.5.3.2.7: server timeout 5 minutes
        )

    # --- HTTP and HTTPS (pochta.web) ------------------------------------------
    # aiohttp needs an AppRunner rather than a protocol maker per listener; its
    # request-handler factory is bound by _listen like any other protocol, so
    # bind errors, address("http") and the listener close in stop() apply.

    _web: WebApp | None = None

    async def _start_web(self) -> None:
        """Bind [listen].http and [listen].https (implicit TLS) to one aiohttp app."""
        kinds = {"http": None, "https": self.tls}
        if not any(getattr(self.settings.listen, kind) for kind in kinds):
            return
        admin = AdminServices(
            store=self.store,
            guard=self.guard,
            queue=self.queue,
            keys=self._dkim if self._dkim is not None else DKIMKeyStore(self.settings.data_dir),
            data_dir=self.settings.data_dir,
            resolver=self.resolver,
        )
        self._web = WebApp(self.settings, self.accounts, self._bound_ports, admin)
        factory = await self._web.setup()
        for kind, implicit_tls in kinds.items():
            for hp in getattr(self.settings.listen, kind):
                await self._listen(kind, hp, lambda _sessions: factory, implicit_tls)

    def _bound_ports(self, kind: str) -> list[int]:
        """Ports the listeners of ``kind`` are bound to (what port 0 became)."""
        return [port for lst in self.listeners if lst.kind == kind for _, port in lst.bound]

    async def _stop_web(self) -> None:
        """Let HTTP requests in flight finish (bounded), close keep-alive connections."""
        web, self._web = self._web, None
        if web is not None:
            await web.close()

    async def _listen(
        self,
        kind: str,
        hp: HostPort,
        maker: FactoryMaker,
        implicit_tls: ssl.SSLContext | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        sessions: set[Session] = set()
        try:
            server = await loop.create_server(
                maker(sessions),
                hp.host,
                hp.port,
                reuse_address=True,
                backlog=512,
                ssl=implicit_tls,
            )
        except OSError as exc:
            raise StartupError(f"[listen].{kind}: cannot listen on {hp}: {exc.strerror}") from exc
        listener = Listener(kind, hp, server, sessions)
        self.listeners.append(listener)
        for host, port in listener.bound:
            log.info("listening kind=%s address=%s:%d", kind, host, port)

    async def stop(self, grace: float = 10.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self._reporting is not None:
            self._reporting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporting
        for listener in self.listeners:
            listener.server.close()
        await self._stop_web()
        await self._inbound.drain(grace)
        await self._submission.drain(grace)
        await self.queue.stop(grace)
        if self._remote is not None:
            await self._remote.close()
        for listener in self.listeners:
            for session in list(listener.sessions):
                session.shutdown()
        for listener in self.listeners:
            try:
                await asyncio.wait_for(listener.server.wait_closed(), 2)
            except TimeoutError:
                pass
        self.listeners.clear()
        self.queue.spool.close()
        if self._checks is not None:
            await self._checks.close()
        await self.bayes.close()
        self.trace.close()
        if self._own_store:
            await self.store.close()
        if self._own_accounts:
            self.accounts.close()

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        log.info("ready hostname=%s data_dir=%s", self.settings.hostname, self.settings.data_dir)
        try:
            await stop.wait()
        finally:
            log.info("stopping")
            await self.stop()
            log.info("stopped")


def vars_listen(settings: Settings) -> dict[str, tuple[HostPort, ...]]:
    listen = settings.listen
    return {name: getattr(listen, name) for name in listen.__dataclass_fields__}
