"""One POP3 connection: line framing, TLS, timeouts, flow control, command dispatch.

Design note
-----------
Purpose
    ``Pop3Session`` is the asyncio ``Protocol`` of one client. Bytes arrive
    in ``data_received`` and are buffered; one task per connection (``_run``)
    takes complete lines, parses them (``parser``) and calls the handler the
    current state's table allows (``commands.TABLES``). Per-connection state
    (peer, TLS, POP3 state, pending USER name, failed logins) lives here; the
    per-login state is the ``Maildrop``.

Invariants
    * Commands are handled strictly one after another, in order; replies
      leave in the same order. Replies to pipelined commands (RFC 2449 §6.6)
      are gathered and written together when the next command is not
      already buffered, so a pipelining client costs one send per batch.
    * Input is bounded: a line longer than ``MAX_SASL_LINE`` is discarded up
      to its LF and answered with one ``-ERR`` (the connection stays usable);
      the buffer stops reading from the socket beyond ``_PAUSE_READING_AT``.
      Output is bounded by transport flow control: no further command is
      read while the transport asks us to pause writing.
    * After STLS, everything the client sent before the TLS handshake is
      discarded (RFC 2595 §4 forbids acting on it; the STARTTLS command
      injection of CVE-2011-0411).
    * The maildrop lock (``[IN-USE]``) and the connection slot are released
      only when the task ends, i.e. after any UPDATE work finished, so a new
      session never sees messages that a finishing QUIT is removing.

Failure behaviour
    The autologout timer (RFC 1939 §3: 10 minutes by default) closes the
    connection without a reply and without entering UPDATE: nothing is
    deleted. So does a client that disconnects. An unexpected exception in a
    handler is logged and answered ``-ERR [SYS/TEMP]`` before closing. A
    server stop answers ``-ERR [SYS/TEMP]`` once the current command is done.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, Any, Final

from pochta.accounts.registry import User
from pochta.pop3 import replies
from pochta.pop3.commands import TABLES, State
from pochta.pop3.maildrop import Maildrop, NoSuchMessage
from pochta.pop3.parser import ParseError, parse_command

if TYPE_CHECKING:
    from pochta.pop3.service import Pop3Service

log = logging.getLogger("pochta.pop3")

#: Stop reading from the socket while this much unprocessed input is buffered.
_PAUSE_READING_AT = 65536
#: Write gathered replies once they reach this size, even mid-pipeline.
_FLUSH_AT = 65536
#: Seconds a client may take to finish the STLS handshake.
_TLS_HANDSHAKE_TIMEOUT = 30.0


class _TooLong:
    """Marker: the line exceeded the limit and was discarded."""


TOO_LONG: Final = _TooLong()


class Pop3Session(asyncio.Protocol):
    """The protocol of one POP3 connection; see the module note."""

    def __init__(self, service: Pop3Service, sessions: set[Any]) -> None:
        self.service = service
        self._sessions = sessions
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._out_size = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self._discarding = False
        self._eof = False
        self._lost = False
        self._closing = False
        self._stopping = False
        self._admitted = False
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        #: The client's address as text, for logs and login throttling.
        self.peer_ip = "unknown"
        #: True once the connection is encrypted (pop3s, or after STLS).
        self.tls_active = False
        self.state = State.AUTHORIZATION
        #: The name given by USER, waiting for PASS (RFC 1939 §7).
        self.pending_user: str | None = None
        self.auth_failures = 0
        self.user: User | None = None
        self.maildrop: Maildrop | None = None

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else "unknown"
        if not self.service.limiter.acquire(self.peer_ip):
            log.warning("pop3 connection refused ip=%s: connection limit", self.peer_ip)
            transport.write(replies.TOO_MANY_CONNECTIONS)
            transport.close()
            self._lost = True
            return
        self._admitted = True
        self._sessions.add(self)
        self.tls_active = transport.get_extra_info("ssl_object") is not None
        self._last_activity = self._loop.time()
        self._timer = self._loop.call_later(self.service.idle_timeout, self._idle_check)
        self._task = self._loop.create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self._last_activity = self._loop.time()
        self._buffer += data
        if len(self._buffer) > _PAUSE_READING_AT and not self._read_paused:
            self._read_paused = True
            if self._transport is not None:
                self._transport.pause_reading()
        try:
            if self._fast_path():
                return
        except Exception:  # a bug must cost a wake-up, not the connection
            log.exception("pop3 fast path failed ip=%s", self.peer_ip)
        self._wake()

    def _fast_path(self) -> bool:
        """Answer a download loop's RETR and DELE here, without waking the task.

        Why: a client fetching and deleting thousands of messages sends two
        commands per message; handing each to the session's task costs a
        future, a task step and a loop turn. When the task is idle waiting
        for a line, the line is a DELE, or a RETR whose message the
        read-ahead already holds, the answer is the same as the task's
        (``transaction.py``) and nothing else can be going on, so it is
        given here. Anything else wakes the task as usual. True when the
        buffer was used up (no wake-up needed).
        """
        if (
            self.state is not State.TRANSACTION
            or self._waiter is None
            or self._waiter.done()
            or self._discarding
            or self._closing
            or self._stopping
            or self._write_paused
            or self.maildrop is None
        ):
            return False
        buf = self._buffer
        while True:
            if self._write_paused:  # the task waits for the client to read
                return False
            nl = buf.find(b"\n")
            if nl < 0:
                if not buf:
                    self.flush()
                    return True
                return False
            command = parse_command(bytes(buf[: nl + 1]))
            if isinstance(command, ParseError) or len(command.numbers) != 1:
                return False
            (number,) = command.numbers
            if command.verb == "RETR":
                try:
                    head = b"+OK %d octets\r\n" % self.maildrop.size(number)
                except NoSuchMessage:
                    return False  # the task gives the proper -ERR
                response = self.maildrop.retr_ready(number, head)
                if response is None:
                    return False
                self.write(response)
            elif command.verb == "DELE":
                try:
                    self.maildrop.delete(number)
                except NoSuchMessage:
                    return False
                self.write(replies.ok(f"message {number} deleted"))
            else:
                return False
            del buf[: nl + 1]
            self._resume_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # --- server stop ------------------------------------------------------------

    def shutdown(self) -> None:
        """Server stop: answer ``-ERR [SYS/TEMP]`` and close, after the current command.

        A session waiting for input is closed at once; one in the middle of a
        command (a RETR, the UPDATE of a QUIT) finishes it first.
        """
        self._stopping = True
        if (self._waiter is not None or self._drain_waiter is not None) and not self._lost:
            self.write(replies.SHUTTING_DOWN)
            self.close()

    # --- used by handlers -------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue a reply; it is sent before the session next waits for input."""
        if self._lost:
            return
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Send every queued reply now."""
        if not self._out:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        if self._transport is not None and not self._lost:
            self._transport.write(data)

    def close(self) -> None:
        """Send what is queued and close the connection after this command."""
        self._closing = True
        self.flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    @property
    def may_authenticate(self) -> bool:
        """RFC 8314 §4 / DESIGN.md: passwords only over TLS, unless configured otherwise."""
        return self.tls_active or self.service.allow_plaintext

    @property
    def can_stls(self) -> bool:
        """STLS is possible: a certificate is configured and TLS is not active yet."""
        return self.service.tls is not None and not self.tls_active

    async def read_line(self, limit: int = replies.MAX_SASL_LINE) -> bytes | _TooLong | None:
        """The next line with its LF; ``TOO_LONG`` if it exceeded ``limit``; None at EOF."""
        while True:
            buf = self._buffer
            nl = buf.find(b"\n")
            if nl >= 0:
                if self._discarding:
                    del buf[: nl + 1]
                    self._discarding = False
                    self._resume_reading()
                    return TOO_LONG
                line = bytes(buf[: nl + 1])
                del buf[: nl + 1]
                self._resume_reading()
                return TOO_LONG if len(line) > limit else line
            if self._discarding or len(buf) > limit:
                buf.clear()
                self._discarding = True
                self._resume_reading()
            if self._eof or self._lost or self._closing:
                return None
            self.flush()
            await self._drain()
            if self._lost or self._closing:
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def start_tls(self) -> bool:
        """Upgrade to TLS after STLS's ``+OK`` (RFC 2595 §4); False if the handshake failed."""
        tls = self.service.tls
        transport = self._transport
        assert tls is not None and transport is not None
        self.flush()
        # RFC 2595 §4: anything pipelined after STLS came in the clear and
        # must not be acted on (command injection, CVE-2011-0411).
        self._buffer.clear()
        self._discarding = False
        try:
            new = await self._loop.start_tls(
                transport,
                self,
                tls,
                server_side=True,
                ssl_handshake_timeout=_TLS_HANDSHAKE_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("pop3 STLS handshake failed ip=%s: %s", self.peer_ip, exc)
            self._closing = True
            return False
        if new is None:
            self._closing = True
            return False
        self._transport = new
        self._read_paused = False
        self.tls_active = True
        return True

    def begin_transaction(self, user: User, maildrop: Maildrop) -> None:
        """RFC 1939 §4: a successful login moves to the TRANSACTION state."""
        self.user = user
        self.maildrop = maildrop
        self.state = State.TRANSACTION

    # --- internals --------------------------------------------------------------

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _resume_reading(self) -> None:
        if self._read_paused and len(self._buffer) <= _PAUSE_READING_AT // 2:
            self._read_paused = False
            if self._transport is not None and not self._lost:
                self._transport.resume_reading()

    async def _drain(self) -> None:
        while self._write_paused and not self._lost:
            self._drain_waiter = self._loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    def _idle_check(self) -> None:
        self._timer = None
        if self._lost:
            return
        idle = self._loop.time() - self._last_activity
        timeout = self.service.idle_timeout
        if idle >= timeout:
            # RFC 1939 §3: no reply, and no UPDATE state: nothing is deleted.
            log.info("pop3 autologout ip=%s after %.0f s idle", self.peer_ip, idle)
            self._out.clear()
            self.close()
            return
        self._timer = self._loop.call_later(timeout - idle, self._idle_check)

    async def _run(self) -> None:
        try:
            self.write(replies.ok(f"{self.service.hostname} Pochta POP3 ready"))
            while not self._closing:
                line = await self.read_line()
                if line is None:
                    break
                if line is TOO_LONG:
                    self.write(replies.LINE_TOO_LONG)
                    continue
                assert isinstance(line, bytes)
                command = parse_command(line)
                if isinstance(command, ParseError):
                    self.write(command.reply)
                    continue
                handler = TABLES[self.state].get(command.verb)
                if handler is None:
                    self.write(
                        replies.err(f"{command.verb} is not valid in the {self.state.value} state")
                    )
                    continue
                await handler(self, command)
                if self._write_paused:
                    # A client pipelining RETRs without reading: stop here
                    # until the transport has room, or output grows unbounded.
                    self.flush()
                    await self._drain()
                if self._stopping and not self._closing:
                    self.write(replies.SHUTTING_DOWN)
                    break
        except Exception:
            log.exception("pop3 session failed ip=%s", self.peer_ip)
            self.write(replies.INTERNAL_ERROR)
        finally:
            self.close()
            self._release()

    def _release(self) -> None:
        if self.maildrop is not None:
            self.maildrop.close()
        if self.user is not None and self.service.in_use.get(self.user.address) is self:
            del self.service.in_use[self.user.address]
        if self._admitted:
            self._admitted = False
            self.service.limiter.release(self.peer_ip)
        self._sessions.discard(self)
