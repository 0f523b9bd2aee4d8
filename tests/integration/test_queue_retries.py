"""The queue against a scripted remote MX: 4xx then 250, a drop mid-DATA, no SMTPUTF8.

Server A (in-process) submits through its queue to ``remote.test``, whose MX
is a scripted SMTP server on loopback; the loopback DNS server points there.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import FAST_HASHER, ServerThread
from tests.dnsserver import DNSTestServer
from tests.integration.test_relay import free_port_on, wait_inbox

from pochta.accounts import Accounts
from pochta.config import load_settings

Script = Callable[[int, bytes], tuple[bytes, bool]]


class ScriptedMX:
    """Each DATA gets ``script(attempt, data) -> (reply, drop_connection)``."""

    def __init__(self, host: str, port: int, script: Script, smtputf8: bool = True) -> None:
        self.script = script
        self.smtputf8 = smtputf8
        self.attempts = 0
        self.accepted: list[bytes] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, host, port), self.loop
        ).result(10)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.remote.test ESMTP\r\n")
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb == b"EHLO":
                    ext = b"250-SMTPUTF8\r\n" if self.smtputf8 else b""
                    writer.write(b"250-mx.remote.test\r\n" + ext + b"250 8BITMIME\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    self.attempts += 1
                    reply, drop = self.script(self.attempts, data)
                    if drop:
                        writer.close()
                        return
                    if reply.startswith(b"250"):
                        self.accepted.append(data)
                    writer.write(reply + b"\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Callable[..., tuple[ServerThread, ScriptedMX]]]:
    made: list[tuple[ServerThread, ScriptedMX]] = []
    dns = DNSTestServer({"remote.test": {"MX": ["10 mx.remote.test"]},
                         "mx.remote.test": {"A": ["127.0.0.3"]}})  # fmt: skip

    def make(script: Script, smtputf8: bool = True) -> tuple[ServerThread, ScriptedMX]:
        port = free_port_on("127.0.0.2", "127.0.0.3")
        remote = ScriptedMX("127.0.0.3", port, script, smtputf8)
        (tmp_path / "pochta.toml").write_text(
            'hostname = "mail.one.test"\ndata_dir = "data"\n'
            '[listen]\nsubmission = ["127.0.0.2:0"]\n'
            "[auth]\nallow_plaintext_without_tls = true\n"
            f'[dns]\nnameservers = ["{dns.hostport}"]\n'
            f"[delivery]\nsmtp_port = {port}\nretry_intervals = [1]\n"
        )
        settings = load_settings(tmp_path / "pochta.toml")
        with Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER) as acc:
            acc.add_domain("one.test")
            acc.add_user("alice@one.test", "pw")
        server = ServerThread(settings)
        server.start()
        made.append((server, remote))
        return server, remote

    yield make
    for server, remote in made:
        server.stop()
        remote.close()
    dns.close()


def send(server: ServerThread, rcpt: str, subject: str) -> None:
    with smtplib.SMTP(*server.address("submission"), timeout=10) as client:
        client.login("alice@one.test", "pw")
        options = [] if rcpt.isascii() else ["SMTPUTF8"]
        body = f"From: alice@one.test\r\nSubject: {subject}\r\n\r\nx\r\n"
        client.sendmail("alice@one.test", [rcpt], body.encode(), mail_options=options)


def wait(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_4xx_then_250(world: Callable[..., tuple[ServerThread, ScriptedMX]]) -> None:
    server, remote = world(lambda n, _: (b"451 4.3.0 busy" if n == 1 else b"250 2.0.0 ok", False))
    send(server, "bob@remote.test", "retry me")
    wait(lambda: len(remote.accepted) == 1)
    time.sleep(1.5)
    assert remote.attempts == 2 and len(remote.accepted) == 1


def test_drop_mid_data_is_retried_not_lost_not_doubled(
    world: Callable[..., tuple[ServerThread, ScriptedMX]],
) -> None:
    server, remote = world(lambda n, _: (b"250 2.0.0 ok", n == 1))
    send(server, "bob@remote.test", "dropped once")
    wait(lambda: len(remote.accepted) == 1)
    time.sleep(1.5)
    assert len(remote.accepted) == 1 and b"Subject: dropped once" in remote.accepted[0]
    assert server.call(lambda: _queued(server)) == 0


def test_smtputf8_needed_but_not_offered_bounces(
    world: Callable[..., tuple[ServerThread, ScriptedMX]],
) -> None:
    server, remote = world(lambda n, _: (b"250 2.0.0 ok", False), smtputf8=False)
    send(server, "bøb@remote.test", "utf8")
    (dsn,) = wait_inbox(server, "alice@one.test")
    assert b"Status: 5.6.7" in dsn and b"Final-Recipient: rfc822; b" in dsn
    assert remote.accepted == []


async def _queued(server: ServerThread) -> int:
    return len(server.server.queue.spool.messages())
