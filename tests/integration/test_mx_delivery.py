"""MX delivery against scripted SMTP servers on loopback, names from a test resolver.

Each remote "MX host" is a real SMTP server (aiosmtpd) on its own loopback
address (127.0.0.2, 127.0.0.3, ...) and the same port, as MX hosts on the
Internet all listen on 25; ``DictResolver`` maps the names to those
addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session

from pochta.dns.mock import DictResolver
from pochta.queue.remote import MXDeliverer

MSG = b"From: alice@one.test\r\nTo: bob@two.test\r\nSubject: hi\r\n\r\nhello\r\n"


@dataclass
class Scripted:
    """What a scripted MX answers, and what it received."""

    rcpt_reply: Callable[[str], str] = lambda rcpt: "250 2.1.5 OK"
    data_reply: str = "250 2.0.0 queued"
    received: list[tuple[str, list[str], bytes, bool]] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_reply(address)
        if reply.startswith("250"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply.startswith("250"):
            assert envelope.mail_from is not None and envelope.original_content is not None
            self.received.append(
                (
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    session.ssl is not None,
                )
            )
        return self.data_reply


Starter = Callable[..., Awaitable[Scripted]]


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def port() -> int:
    return free_port("127.0.0.2")


@pytest.fixture
async def servers(port: int, ca: trustme.CA) -> AsyncIterator[Starter]:
    started: list[asyncio.Server] = []
    loop = asyncio.get_running_loop()
    cert = ca.issue_cert("mx.two.test")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)

    async def start(host: str, script: Scripted, *, size: int = 0, tls: bool = False) -> Scripted:
        def factory() -> SMTP:
            return SMTP(
                script,
                hostname=host,
                data_size_limit=size or None,
                enable_SMTPUTF8=True,
                tls_context=context if tls else None,
            )

        started.append(await loop.create_server(factory, host, port))
        return script

    yield start
    for server in started:
        server.close()
        await server.wait_closed()


_MADE: list[MXDeliverer] = []


def deliverer(zones: dict[str, dict[str, object]], port: int) -> MXDeliverer:
    made = MXDeliverer(DictResolver(zones), hostname="mail.one.test", port=port, timeout=5)
    _MADE.append(made)
    return made


@pytest.fixture(autouse=True)
async def close_deliverers() -> AsyncIterator[None]:
    """Idle pooled connections are closed at the end of each test."""
    yield
    while _MADE:
        await _MADE.pop().close()


ZONES: dict[str, dict[str, object]] = {
    "two.test": {"MX": ["10 mx1.two.test", "20 mx2.two.test"]},
    "mx1.two.test": {"A": ["127.0.0.2"]},
    "mx2.two.test": {"A": ["127.0.0.3"]},
}


async def test_lowest_preference_first(servers: Starter, port: int) -> None:
    first = await servers("127.0.0.2", Scripted())
    second = await servers("127.0.0.3", Scripted())
    out = await deliverer(ZONES, port).deliver("two.test", "alice@one.test", ["bob@two.test"], MSG)
    assert out["bob@two.test"].delivered and out["bob@two.test"].remote_mta == "mx1.two.test"
    assert len(first.received) == 1 and not second.received
    assert first.received[0][:3] == ("alice@one.test", ["bob@two.test"], MSG)


async def test_unreachable_mx_falls_back_to_the_next(servers: Starter, port: int) -> None:
    second = await servers("127.0.0.3", Scripted())  # mx1 has nothing listening
    out = await deliverer(ZONES, port).deliver("two.test", "a@one.test", ["bob@two.test"], MSG)
    assert out["bob@two.test"].delivered and out["bob@two.test"].remote_mta == "mx2.two.test"
    assert len(second.received) == 1


async def test_implicit_mx(servers: Starter, port: int) -> None:
    host = await servers("127.0.0.4", Scripted())
    zones: dict[str, dict[str, object]] = {"three.test": {"A": ["127.0.0.4"]}}
    out = await deliverer(zones, port).deliver("three.test", "a@one.test", ["c@three.test"], MSG)
    assert out["c@three.test"].delivered and len(host.received) == 1


async def test_null_mx_and_missing_domain_fail_at_once(port: int) -> None:
    zones: dict[str, dict[str, object]] = {"null.test": {"MX": ["0 ."]}}
    d = deliverer(zones, port)
    null = (await d.deliver("null.test", "a@one.test", ["x@null.test"], MSG))["x@null.test"]
    assert (null.code, null.enhanced) == (556, "5.1.10")
    gone = (await d.deliver("nowhere.test", "a@one.test", ["x@nowhere.test"], MSG))[
        "x@nowhere.test"
    ]
    assert gone.permanent and gone.enhanced == "5.1.2"


async def test_servfail_is_temporary(port: int) -> None:
    resolver = DictResolver(ZONES)
    resolver.zones.fail("two.test", "MX", "servfail")
    d = MXDeliverer(resolver, hostname="mail.one.test", port=port, timeout=5)
    _MADE.append(d)
    out = (await d.deliver("two.test", "a@one.test", ["bob@two.test"], MSG))["bob@two.test"]
    assert out.temporary and out.enhanced == "4.4.3"


async def test_nobody_listening_is_temporary(port: int) -> None:
    out = await deliverer(ZONES, port).deliver("two.test", "a@one.test", ["bob@two.test"], MSG)
    assert out["bob@two.test"].temporary


async def test_per_recipient_replies(servers: Starter, port: int) -> None:
    def rcpt(address: str) -> str:
        return "550 5.1.1 No such user" if address.startswith("nobody") else "250 2.1.5 OK"

    host = await servers("127.0.0.2", Scripted(rcpt_reply=rcpt))
    out = await deliverer(ZONES, port).deliver(
        "two.test", "a@one.test", ["bob@two.test", "nobody@two.test"], MSG
    )
    assert out["bob@two.test"].delivered
    assert (out["nobody@two.test"].code, out["nobody@two.test"].enhanced) == (550, "5.1.1")
    assert host.received[0][1] == ["bob@two.test"]


async def test_data_refused_temporarily(servers: Starter, port: int) -> None:
    await servers("127.0.0.2", Scripted(data_reply="451 4.3.0 try later"))
    out = await deliverer(ZONES, port).deliver("two.test", "a@one.test", ["bob@two.test"], MSG)
    assert out["bob@two.test"].temporary and out["bob@two.test"].enhanced == "4.3.0"


async def test_size_limit_respected_before_sending(servers: Starter, port: int) -> None:
    host = await servers("127.0.0.2", Scripted(), size=len(MSG) - 1)
    out = await deliverer(ZONES, port).deliver("two.test", "a@one.test", ["bob@two.test"], MSG)
    assert (out["bob@two.test"].code, out["bob@two.test"].enhanced) == (552, "5.3.4")
    assert not host.received


async def test_starttls_used_when_offered(servers: Starter, port: int) -> None:
    host = await servers("127.0.0.2", Scripted(), tls=True)
    out = await deliverer(ZONES, port).deliver("two.test", "a@one.test", ["bob@two.test"], MSG)
    assert out["bob@two.test"].delivered
    assert host.received[0][3] is True  # the session was encrypted


async def test_utf8_addresses_need_smtputf8(servers: Starter, port: int) -> None:
    host = await servers("127.0.0.2", Scripted())
    out = await deliverer(ZONES, port).deliver("two.test", "a@one.test", ["bøb@two.test"], MSG)
    assert out["bøb@two.test"].delivered and host.received[0][1] == ["bøb@two.test"]


async def test_connection_lost_mid_data_is_temporary(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx1.two.test ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                writer.write(b"250 mx1.two.test\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go\r\n")
                await writer.drain()
                await reader.read(10)
                writer.close()
                return
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.2", port)
    try:
        out = await deliverer(ZONES, port).deliver("two.test", "a@one.test", ["bob@two.test"], MSG)
    finally:
        server.close()
        await server.wait_closed()
    assert out["bob@two.test"].temporary


@contextlib.asynccontextmanager
async def counted_mx(port: int, script: Scripted) -> AsyncIterator[tuple[MXDeliverer, list[int]]]:
    """An MX on 127.0.0.2 that counts its connections (the list's one item),
    and a deliverer to it; both closed at the end."""
    connections = [0]

    def factory() -> SMTP:
        connections[0] += 1
        return SMTP(script, hostname="mx1")

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.2", port)
    d = deliverer(ZONES, port)
    try:
        yield d, connections
    finally:
        await d.close()
        server.close()
        await server.wait_closed()


async def test_connections_are_reused_for_the_same_domain(port: int) -> None:
    script = Scripted()
    async with counted_mx(port, script) as (d, connections):
        for i in range(5):
            out = await d.deliver("two.test", "a@one.test", [f"u{i}@two.test"], MSG)
            assert out[f"u{i}@two.test"].delivered
    assert connections == [1] and len(script.received) == 5


async def test_a_kept_connection_is_clean_after_every_recipient_was_refused(port: int) -> None:
    # Every RCPT refused: the server still holds the MAIL; without a RSET the
    # next message on the kept connection would get "503 nested MAIL".
    script = Scripted(rcpt_reply=lambda rcpt: "550 5.1.1 no" if "gone" in rcpt else "250 OK")
    async with counted_mx(port, script) as (d, connections):
        refused = await d.deliver("two.test", "a@one.test", ["gone@two.test"], MSG)
        assert refused["gone@two.test"].code == 550
        out = await d.deliver("two.test", "a@one.test", ["bob@two.test"], MSG)
        assert out["bob@two.test"].delivered, out["bob@two.test"]
    assert connections == [1] and len(script.received) == 1


async def test_refusals_stand_when_the_server_hangs_up_after_them(port: int) -> None:
    # A server that refuses every RCPT and then closes (421, as a server
    # with an error limit does): the 550s are final, not a lost connection.
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx1 ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-mx1\r\n250 PIPELINING\r\n")
        for _ in range(3):  # MAIL, RCPT, DATA (pipelined)
            await reader.readline()
        writer.write(b"250 OK\r\n550 5.1.1 no such user\r\n421 4.7.0 closing\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.2", port)
    d = deliverer(ZONES, port)
    try:
        out = await d.deliver("two.test", "a@one.test", ["gone@two.test"], MSG)
    finally:
        await d.close()
        server.close()
        await server.wait_closed()
    assert (out["gone@two.test"].code, out["gone@two.test"].enhanced) == (550, "5.1.1")


async def test_pipelining_sends_mail_rcpt_data_together(port: int) -> None:
    """RFC 2920 §3.1: with PIPELINING offered, MAIL, RCPTs and DATA go in one write."""
    chunks: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx1.two.test ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-mx1.two.test\r\n250 PIPELINING\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)  # let the whole group arrive
        chunk = await reader.read(65536)
        chunks.append(chunk)
        writer.write(b"250 2.1.0 ok\r\n" * (chunk.count(b"\r\n") - 1) + b"354 go\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"250 2.0.0 queued\r\n")
        await writer.drain()
        await reader.readline()  # QUIT at close
        writer.write(b"221 bye\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.2", port)
    try:
        out = await deliverer(ZONES, port).deliver(
            "two.test", "a@one.test", ["bob@two.test", "carol@two.test"], MSG
        )
    finally:
        for made in _MADE:
            await made.close()
        server.close()
        await server.wait_closed()
    assert out["bob@two.test"].delivered and out["carol@two.test"].delivered
    assert chunks[0].split(b"\r\n")[:4] == [
        b"MAIL FROM:<a@one.test>",
        b"RCPT TO:<bob@two.test>",
        b"RCPT TO:<carol@two.test>",
        b"DATA",
    ]
