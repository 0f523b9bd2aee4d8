"""The byte layer of one IMAP connection: buffered reads, flow control, STARTTLS.

Design note
-----------
``Connection`` is the asyncio ``Protocol`` the listener creates; the IMAP
session (:mod:`pochta.imap.session`) runs as one task per connection and
awaits :meth:`Connection.read_line` and :meth:`Connection.read_exactly`.

Invariants
    * Memory is bounded: the input buffer stops reading from the socket
      beyond :data:`PAUSE_READING_AT` octets; a line longer than the limit
      is discarded up to its LF and reported as ``None`` (the caller answers
      BAD), never accumulated. Literals are read only after the parser's
      :class:`~pochta.imap.parser.CommandReader` accepted their size.
    * An idle connection holds no buffers beyond the empty ``bytearray``
      and one future: a few hundred octets (RFC 2177 IDLE sessions are cheap).
    * :meth:`start_tls` drops everything buffered before the handshake:
      RFC 9051 §6.2.1 forbids acting on pipelined plaintext (the STARTTLS
      command injection of CVE-2011-0411).

Failure behaviour
    A disconnect or EOF makes every pending and later read raise
    :class:`Closed`; the session task then ends quietly.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

#: Linux's TCP_QUICKACK (absent elsewhere: then delayed ACKs stay as they are).
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

#: Stop reading from the socket while this much unprocessed input is buffered.
PAUSE_READING_AT = 256 * 1024


class Closed(Exception):
    """The peer went away (EOF, reset, or the server closed the transport)."""


class Connection(asyncio.Protocol):
    """Buffered reads and writes over one transport; see the module note."""

    def __init__(self, on_open: Callable[[Connection], None]) -> None:
        self._on_open = on_open
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        self.closed = False
        self._socket: Any = None
        self.peer_ip = "unknown"
        #: True once the connection is encrypted (imaps, or after STARTTLS).
        self.tls_active = False
        # The silence timer (see ``_more``): one handle per connection,
        # re-armed only when it fires or must fire sooner.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._wait_started = 0.0
        self._silence: float | None = None
        # Looked up once: asyncio.get_running_loop() makes a getpid(2)
        # system call each time (to notice a fork), one per command read.
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        peer = transport.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else "unknown"
        self.tls_active = transport.get_extra_info("ssl_object") is not None
        self._socket = transport.get_extra_info("socket")
        self._on_open(self)

    def data_received(self, data: bytes) -> None:
        # A client that writes a literal and then its line's CRLF as two
        # sends (imaplib does) has the CRLF held back by Nagle's algorithm
        # until our ACK of the literal, which Linux delays by up to 40 ms
        # while we wait for that very CRLF: every APPEND would take 40 ms.
        # Acknowledging at once breaks the stall (one setsockopt per read).
        if _QUICKACK is not None and self._socket is not None:
            try:
                self._socket.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                pass
        self._buffer += data
        if len(self._buffer) > PAUSE_READING_AT and not self._read_paused:
            self._read_paused = True
            if self.transport is not None:
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- reading ------------------------------------------------------------------

    async def _more(self, silence: float | None) -> None:
        if self.closed:
            raise Closed
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        loop = self._loop or asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._silence = silence
        if silence is not None:
            # Why not asyncio.wait_for per read: it costs a task-like
            # wrapper, a timer and callbacks on every command line (~7% of
            # a NOOP's time). One timer per connection that, when it fires,
            # checks how long the current wait has lasted is enough for a
            # 30-minute autologout (RFC 9051 §5.4).
            now = self._wait_started = loop.time()
            if self._timer is None or self._timer_at > now + silence:
                self._arm(loop, now + silence)
        try:
            await waiter
        finally:
            self._waiter = None
            self._silence = None

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._silence_check)

    def _silence_check(self) -> None:
        self._timer = None
        waiter, silence = self._waiter, self._silence
        if waiter is None or silence is None or waiter.done():
            return  # not waiting now: the next wait arms the timer again
        loop = asyncio.get_running_loop()
        deadline = self._wait_started + silence
        if loop.time() >= deadline:
            waiter.set_exception(TimeoutError())
        else:
            self._arm(loop, deadline)

    async def read_line(self, limit: int, silence: float | None = None) -> bytes | None:
        """One line including its LF; None when it exceeded ``limit`` (discarded).

        Raises :class:`Closed` at EOF and ``TimeoutError`` after ``silence``
        seconds without input.
        """
        too_long = False
        scanned = 0
        while True:
            nl = self._buffer.find(b"\n", scanned)
            if nl >= 0:
                if too_long:
                    del self._buffer[: nl + 1]
                    return None
                line = bytes(self._buffer[: nl + 1])
                del self._buffer[: nl + 1]
                if len(line) > limit + 2:
                    return None
                return line
            if len(self._buffer) > limit + 2:
                too_long = True
                self._buffer.clear()
            scanned = len(self._buffer)
            await self._more(silence)

    async def read_exactly(self, size: int, silence: float | None = None) -> bytes:
        """Exactly ``size`` octets (a literal); :class:`Closed` at EOF."""
        while len(self._buffer) < size:
            await self._more(silence)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    # --- writing ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        while self._write_paused and not self.closed:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain
            self._drain = None

    async def start_tls(self, context: ssl.SSLContext, handshake: float = 30.0) -> None:
        """Upgrade to TLS as a server, dropping buffered plaintext (RFC 9051 §6.2.1)."""
        assert self.transport is not None
        self._buffer.clear()
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(
            self.transport, self, context, server_side=True, ssl_handshake_timeout=handshake
        )
        if new is None:
            raise Closed
        # No second clear: the client's first encrypted command may already
        # have been decrypted into the buffer with the handshake's last flight.
        self.transport = new
        self.tls_active = True

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.closed = True
        self._wake()
