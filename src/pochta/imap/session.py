"""One IMAP connection: the command loop, protocol state and dispatch.

Design note
-----------
Purpose
    ``ImapSession`` runs one task per connection over a
    :class:`~pochta.imap.connection.Connection`. It reads one command at a
    time through :class:`~pochta.imap.parser.CommandReader` (lines and
    literals bounded by :class:`~pochta.imap.parser.Limits`), parses it, and
    calls the handler that the current state's table allows
    (:data:`pochta.imap.commands.TABLES`, RFC 9051 §3: not authenticated,
    authenticated, selected, logout). Handlers are small functions in
    :mod:`pochta.imap.commands`, :mod:`pochta.imap.mailbox` and
    :mod:`pochta.imap.selected`, each citing its RFC section.

Invariants
    * Commands run strictly in order; a command's responses leave before the
      next command is read (``ResponseWriter`` batches them per command).
    * No LOGIN/AUTHENTICATE before TLS unless ``allow_plaintext``
      (RFC 9051 §6.2.3, LOGINDISABLED); STARTTLS drops pipelined plaintext.
    * Never an unhandled exception: a handler bug is logged and answered
      ``NO [SERVERBUG]`` (RFC 5530 §3) and the session goes on.
    * Autologout after :attr:`ImapService.autologout` seconds of silence
      (RFC 9051 §5.4: at least 30 minutes); IDLE counts as silence too, so a
      client re-issues IDLE within that time, as RFC 2177 §3 asks.

Failure behaviour
    A disconnect ends the task and releases the change-feed subscription.
    A server stop answers ``* BYE`` and closes (``shutdown``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, Any

from pochta.imap import encode
from pochta.imap.connection import Closed, Connection
from pochta.imap.parser import CommandReader, Limits
from pochta.imap.types import Command, ParseError
from pochta.store.interface import Mailboxes, MailboxNotFound, StoreError, Watch

if TYPE_CHECKING:
    from pochta.imap.selected import Selected
    from pochta.imap.server import ImapService

log = logging.getLogger("pochta.imap")


class State(enum.Enum):
    """RFC 9051 §3 connection states."""

    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Abort(Exception):
    """A handler refuses the command: answer tagged ``status [code] text``."""

    def __init__(self, text: str, code: str | None = None, status: str = "NO") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status


class ImapSession:
    """Per-connection state; see the module note."""

    def __init__(self, service: ImapService, sessions: set[Any], conn: Connection) -> None:
        self.service = service
        self._sessions = sessions
        self.conn = conn
        self.out = encode.ResponseWriter(conn.write)
        self.state = State.NOT_AUTHENTICATED
        #: Canonical address once authenticated.
        self.user: str | None = None
        self.mailboxes: Mailboxes | None = None
        self.watch: Watch | None = None
        self.selected: Selected | None = None
        #: ENABLEd extensions (RFC 5161), upper case.
        self.enabled: set[str] = set()
        self.task: asyncio.Task[None] | None = None

    # --- protocol flags -----------------------------------------------------------

    @property
    def utf8(self) -> bool:
        """UTF-8 mailbox names and strings (RFC 9051 §5.1, RFC 6855 §3)."""
        return "UTF8=ACCEPT" in self.enabled or "IMAP4REV2" in self.enabled

    @property
    def rev2(self) -> bool:
        return "IMAP4REV2" in self.enabled

    @property
    def condstore(self) -> bool:
        return "CONDSTORE" in self.enabled or "QRESYNC" in self.enabled

    @property
    def qresync(self) -> bool:
        return "QRESYNC" in self.enabled

    @property
    def may_login(self) -> bool:
        return self.conn.tls_active or self.service.allow_plaintext

    @property
    def store(self) -> Mailboxes:
        assert self.mailboxes is not None
        return self.mailboxes

    def capabilities(self) -> str:
        """The CAPABILITY list for the current state (RFC 9051 §6.1.1)."""
        caps = ["IMAP4rev1", "IMAP4rev2"]
        if self.state is State.NOT_AUTHENTICATED:
            if not self.conn.tls_active and self.service.tls is not None:
                caps.append("STARTTLS")
            if self.may_login:
                caps += ["AUTH=PLAIN", "SASL-IR"]
            else:
                caps.append("LOGINDISABLED")
        caps += self.service.extensions
        caps.append(f"APPENDLIMIT={self.service.limits.max_append}")
        return " ".join(caps)

    # --- output ---------------------------------------------------------------------

    def untagged(self, line: str | bytes) -> None:
        """Queue ``* line``."""
        data = line if isinstance(line, bytes) else encode.wire(line)
        self.out.raw(b"* " + data + b"\r\n")

    def tagged(self, tag: str, status: str, text: str, code: str | None = None) -> None:
        self.out.tagged(tag, status, text, code=code, utf8=self.utf8)

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._sessions.add(self)
        self.task = asyncio.get_running_loop().create_task(self._run())

    def shutdown(self) -> None:
        """Server stop: ``* BYE`` and close (RFC 9051 §7.1.5)."""
        self.out.flush()
        self.conn.write(b"* BYE [UNAVAILABLE] Server shutting down\r\n")
        self.conn.close()

    async def _run(self) -> None:
        try:
            greeting = f"OK [CAPABILITY {self.capabilities()}] Pochta ready"
            self.untagged(greeting)
            self.out.flush()
            while self.state is not State.LOGOUT and not self.conn.closed:
                await self._one_command()
                await self.conn.drain()
        except Closed:
            pass
        except TimeoutError:
            self.conn.write(b"* BYE Autologout; idle for too long\r\n")
        except Exception:
            log.exception("imap session failed ip=%s", self.conn.peer_ip)
        finally:
            self.out.flush()
            self.conn.close()
            self._sessions.discard(self)
            if self.watch is not None:
                self.watch.close()
                self.watch = None

    async def read_line(self) -> bytes:
        """One line (with CRLF); :class:`Abort` BAD for an over-long one."""
        line = await self.conn.read_line(
            self.service.limits.max_line, silence=self.service.autologout
        )
        if line is None:
            raise ParseError(None, "line too long")
        return line

    async def _one_command(self) -> None:
        reader = CommandReader(self.service.limits)
        try:
            line = await self.read_line()
            spec = reader.feed_line(line)
            while spec is not None:
                if not spec.non_sync:
                    self.out.continuation("go ahead")
                data = await self.conn.read_exactly(spec.size, silence=self.service.autologout)
                reader.feed_literal(data)
                spec = reader.feed_line(await self.read_line())
            tag, command = reader.parse(utf8=self.utf8)
        except ParseError as exc:
            self.out.raw(exc.response())
            self.out.flush()
            if exc.close:
                self.conn.close()
            return
        await self.dispatch(tag, command)

    async def dispatch(self, tag: str, command: Command) -> None:
        """Run one parsed command in the current state (RFC 9051 §3)."""
        from pochta.imap.commands import TABLES

        handler = TABLES[self.state].get(command.name)
        if handler is None:
            self.tagged(tag, "BAD", f"{command.name} not allowed in {self.state.value} state")
            return
        try:
            await handler(self, tag, command)
        except Abort as exc:
            await self._updates_after_failure(command)
            self.tagged(tag, exc.status, exc.text, exc.code)
        except StoreError as exc:
            await self._updates_after_failure(command)
            self.tagged(tag, "NO", str(exc), exc.code)
        except (Closed, TimeoutError):
            raise
        except Exception:
            log.exception("imap %s failed user=%s", command.name, self.user)
            self.tagged(tag, "NO", "Internal error; the session goes on", "SERVERBUG")

    async def _updates_after_failure(self, command: Command) -> None:
        try:
            await self.after_command(command)
        except StoreError:
            pass

    async def after_command(self, command: Command) -> None:
        """Send pending mailbox updates where RFC 9051 §7.5.1 allows them.

        If the selected mailbox vanished under us (another session deleted
        or renamed it), the session ends with ``* BYE`` as RFC 9051 §6.3.5
        allows: its message numbers mean nothing any more.
        """
        if self.selected is None or self.state is not State.SELECTED:
            return
        try:
            await self.selected.sync(self, expunges=command.name not in _NO_EXPUNGE_AFTER)
        except MailboxNotFound:
            self.selected = None
            self.untagged("BYE [UNAVAILABLE] The selected mailbox was deleted")
            self.state = State.LOGOUT
            raise

    async def ok(self, tag: str, command: Command, text: str, code: str | None = None) -> None:
        """Updates, then the tagged OK."""
        await self.after_command(command)
        self.tagged(tag, "OK", text, code)


#: Commands after which EXPUNGE responses must not be sent (RFC 9051 §7.5.1:
#: FETCH, STORE, SEARCH; UID variants may, but we keep it simple and safe).
_NO_EXPUNGE_AFTER = frozenset({"FETCH", "STORE", "SEARCH"})


def make_limits(max_append: int) -> Limits:
    """The command limits of a session (RFC 7889 APPENDLIMIT = ``max_append``)."""
    return Limits(max_append=max_append, max_command=max_append + 1024 * 1024)
