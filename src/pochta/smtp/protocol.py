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
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from pochta.smtp import codes
from pochta.smtp.policy import MAX_LINE_LENGTH, ConnectionLimiter

_HAS_ENHANCED = re.compile(rb"^[245]\.\d{1,3}\.\d{1,3}( |$)")


class PochtaSession(Session):  # type: ignore[misc]
    """State of one connection: peer, TLS, authenticated identity."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.peer_ip: str = "unknown"
        self.tls_info: str | None = None
        self.user: str | None = None  # canonical address after AUTH (submission)


class PochtaEnvelope(Envelope):  # type: ignore[misc]
    """State of one mail transaction (MAIL..DATA); RSET makes a new one."""

    def __init__(self) -> None:
        super().__init__()
        #: canonical user addresses the accepted RCPTs resolved to, in order,
        #: each once: an alias reaching the same user twice stores once.
        self.users: dict[str, None] = {}


class PochtaSMTP(SMTP):  # type: ignore[misc]
    """aiosmtpd's SMTP with the additions listed in the module docstring."""

    # RFC 5321 §4.5.3.1.6 text line limit plus the transparency dot.
    line_length_limit = MAX_LINE_LENGTH + 1

    def __init__(
        self,
        handler: Any,
        *,
        limiter: ConnectionLimiter,
        auth_enabled: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._limiter = limiter
        self._auth_enabled = auth_enabled
        self._admitted_ip: str | None = None
        self._refused = False
        self._in_ehlo = False

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
        super().connection_lost(error)

    # -- replies -------------------------------------------------------
    async def push(self, status: str | bytes) -> None:
        if not self._in_ehlo:
            status = self._with_enhanced(status)
        await super().push(status)

    @staticmethod
    def _with_enhanced(status: str | bytes) -> bytes:
        raw = status.encode("utf-8", "surrogateescape") if isinstance(status, str) else status
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

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_ehlo = False

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
