"""What every Pochta SMTP handler shares: EHLO, DATA checks, trace headers, drain.

The MX (``inbound.py``) and submission (``submission.py``) differ in who may
send and where mail goes; everything else — the smuggling and size checks,
the Received header, counting deliveries in flight for a graceful stop —
lives here once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pochta.smtp import codes
from pochta.smtp.policy import TraceInfo, has_bare_newline, protocol_name, received_header
from pochta.smtp.protocol import PochtaEnvelope, PochtaSession, PochtaSMTP

log = logging.getLogger("pochta.smtp")


class BaseHandler:
    def __init__(self, *, hostname: str, max_recipients: int, max_message_size: int) -> None:
        self.hostname = hostname
        self.max_recipients = max_recipients
        self.max_message_size = max_message_size
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def handle_EHLO(
        self,
        server: PochtaSMTP,
        session: PochtaSession,
        envelope: PochtaEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """RFC 5321 §4.1.1.1 EHLO: remember the name, list our extensions."""
        session.host_name = hostname
        return server.extensions(responses)

    def check_data(self, data: bytes) -> codes.Reply | None:
        """The refusals every listener applies to DATA, or None to go on."""
        if has_bare_newline(data):
            return codes.BARE_NEWLINE
        if len(data) > self.max_message_size:
            return codes.MESSAGE_TOO_BIG
        return None

    def received(
        self,
        server: PochtaSMTP,
        session: PochtaSession,
        rcpts: list[str],
        queue_id: str,
    ) -> bytes:
        """The Received header (RFC 5321 §4.4) for this transaction."""
        tls = session.tls_info is not None or server._tls_protocol is not None
        return received_header(
            TraceInfo(
                helo=session.host_name or "unknown",
                peer_ip=session.peer_ip,
                hostname=self.hostname,
                protocol=protocol_name(
                    extended=session.extended_smtp,
                    tls=tls,
                    authenticated=session.user is not None,
                    lmtp=server.lmtp,
                ),
                queue_id=queue_id,
                recipient=rcpts[0] if len(rcpts) == 1 else None,
                tls=session.tls_info,
                timestamp=time.time(),
            )
        )

    @contextmanager
    def delivering(self) -> Iterator[None]:
        """Count a hand-over to the store or queue, so a stop can wait for it."""
        self._inflight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def drain(self, grace: float) -> None:
        """Wait until no hand-over is in progress (for a graceful stop)."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            log.warning("stop: %d deliveries still running after %.0fs", self._inflight, grace)
