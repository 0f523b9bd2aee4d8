"""Our aiosmtpd protocol: typed session state, enhanced codes, connection limits.

aiosmtpd (>= 1.4.6) does the SMTP state machine, dot-unstuffing, the
``<CRLF>.<CRLF>``-only end of DATA (smuggling fix of 1.4.5) and STARTTLS
buffer flushing (injection fix). This subclass adds what a public mail server
needs on top:

* every reply after the greeting carries an RFC 3463 enhanced status code,
  also the ones aiosmtpd writes itself (``DEFAULT_ENHANCED``), because we
  advertise ENHANCEDSTATUSCODES (RFC 2034 §4: all replies except the
  greeting and the HELO/EHLO reply);
* a session over the connection limit gets ``421 4.7.0`` and is closed,
  instead of being dropped silently;
* per-connection (``PochtaSession``) and per-transaction (``PochtaEnvelope``)
  state are typed objects; RSET and end of DATA reset only the latter.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from pochta.smtp import codes
from pochta.smtp.policy import MAX_LINE_LENGTH, ConnectionLimiter

_HAS_ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3}( |$)")
#: Replies the client waits for before it writes again: never held back.
_SEND_AT_ONCE = (b"220", b"221", b"421")


class PochtaSession(Session):
    """State of one connection: peer, TLS, authenticated identity."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.peer_ip: str = "unknown"
        self.tls_info: str | None = None
        self.user: str | None = None  # canonical address after AUTH (submission)


class PochtaEnvelope(Envelope):
    """State of one mail transaction (MAIL..DATA); RSET makes a new one."""

    def __init__(self) -> None:
        super().__init__()
        #: canonical user addresses the accepted RCPTs resolved to, in order,
        #: each once: an alias reaching the same user twice stores once.
        self.users: dict[str, None] = {}


class PochtaSMTP(SMTP):
    """aiosmtpd's SMTP with the additions listed in the module docstring."""

    # RFC 5321 §4.5.3.1.6 text line limit plus the transparency dot.
    line_length_limit = MAX_LINE_LENGTH + 1

    def __init__(
        self,
        handler: Any,
        *,
        limiter: ConnectionLimiter,
        sessions: set[PochtaSMTP] | None = None,
        auth_enabled: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._limiter = limiter
        #: The listener's open sessions, so a graceful stop can reach them.
        self._sessions: set[PochtaSMTP] = sessions if sessions is not None else set()
        self._auth_enabled = auth_enabled
        self._admitted_ip: str | None = None
        self._refused = False
        self._in_ehlo = False
        self._pending: list[bytes] = []

    # -- state objects -------------------------------------------------
    def _create_session(self) -> PochtaSession:
        return PochtaSession(self.loop)

    def _create_envelope(self) -> PochtaEnvelope:
        return PochtaEnvelope()

    # -- connection admission -----------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None and self._admitted_ip is None:
            peer = transport.get_extra_info("peername")
            ip = str(peer[0]) if peer else "unknown"
            if not self._limiter.acquire(ip):
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(f"{codes.TOO_MANY_CONNECTIONS}\r\n".encode())
                transport.close()
                return
            self._admitted_ip = ip
            self._sessions.add(self)
        super().connection_made(transport)
        session = self.session
        assert isinstance(session, PochtaSession)
        if self._admitted_ip is not None:
            session.peer_ip = self._admitted_ip
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            session.tls_info = f"{ssl_object.version()} {ssl_object.cipher()[0]}"

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._admitted_ip is not None:
            self._limiter.release(self._admitted_ip)
            self._admitted_ip = None
        self._sessions.discard(self)
        super().connection_lost(error)

    def shutdown(self) -> None:
        """Say 421 4.3.2 (RFC 5321 §3.8) and close; used when the server stops."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(f"{codes.SHUTTING_DOWN}\r\n".encode())
        transport.close()

    # -- replies -------------------------------------------------------
    async def push(self, status: AnyStr) -> None:
        raw = status.encode("utf-8", "surrogateescape") if isinstance(status, str) else status
        if not self._in_ehlo:
            raw = self._with_enhanced(raw)
        self._pending.append(raw + b"\r\n")
        # RFC 2920 §3.2: while more pipelined commands are already buffered,
        # replies may be held and sent together. One send() per group
        # instead of one per reply is most of the cost of a reply on
        # loopback. Greetings, STARTTLS's 220 and closing replies always go
        # at once: the client waits for them before it writes more.
        if self._in_ehlo or (raw[:3] not in _SEND_AT_ONCE and self._more_input_waiting()):
            return
        await self._flush()

    def _more_input_waiting(self) -> bool:
        buffered = getattr(self._reader, "_buffer", b"")
        return b"\n" in buffered

    async def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._writer.write(data)
        await self._writer.drain()

    @staticmethod
    def _with_enhanced(raw: bytes) -> bytes:
        out = []
        for line in raw.split(b"\r\n"):
            code = line[:3]
            if len(line) >= 4 and code.isdigit() and line[3:4] in (b" ", b"-"):
                text = line[4:]
                number = int(code)
                enhanced = codes.DEFAULT_ENHANCED.get(number)
                if number not in (220, 354) and enhanced and not _HAS_ENHANCED.match(text):
                    if text.startswith(b"Error: "):
                        text = text[7:]
                    line = code + line[3:4] + enhanced.encode() + b" " + text
            out.append(line)
        return b"\r\n".join(out)

    async def smtp_EHLO(self, hostname: str) -> None:
        # RFC 2034 §4: no enhanced codes in the EHLO reply itself.
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False
        await self._flush()  # the whole multi-line reply in one write

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_ehlo = False
        await self._flush()  # the whole multi-line reply in one write

    async def smtp_AUTH(self, arg: str) -> None:
        """RFC 4954 §4: AUTH only where a listener offers it (submission)."""
        if not self._auth_enabled:
            await self.push(str(codes.AUTH_UNAVAILABLE))
            return
        await super().smtp_AUTH(arg)

    def extensions(self, responses: list[str]) -> list[str]:
        """Adjust aiosmtpd's EHLO lines: add PIPELINING (RFC 2920) and
        ENHANCEDSTATUSCODES (RFC 2034), drop AUTH where it is not offered."""
        body = [r[4:] for r in responses[1:]]
        if not self._auth_enabled:
            body = [b for b in body if not b.startswith("AUTH")]
        body = [b for b in body if b != "HELP"]
        body += ["PIPELINING", "ENHANCEDSTATUSCODES"]
        lines = [responses[0]] + [f"250-{b}" for b in body]
        last = lines[-1]
        lines[-1] = "250 " + last[4:]
        return lines
