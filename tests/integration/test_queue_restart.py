"""The queue survives kill -9: a message accepted (250) before the crash is
delivered after the restart, exactly once."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session
from tests.conftest import FAST_HASHER
from tests.dnsserver import DNSTestServer
from tests.integration.test_relay import free_port_on

from pochta.accounts import Accounts
from pochta.config import load_settings
from pochta.queue import Spool


class Collector:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.original_content is not None
        self.received.append(envelope.original_content)
        return "250 2.0.0 OK"


class RemoteMX:
    """A plain SMTP server in its own thread (the far side)."""

    def __init__(self, host: str, port: int) -> None:
        self.collector = Collector()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> asyncio.Server:
            return await self.loop.create_server(lambda: SMTP(self.collector), host, port)

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def start_server(config: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pochta", "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.2", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server did not start")


def test_queue_survives_kill_9(tmp_path: Path, ca: trustme.CA) -> None:
    mx_port = free_port_on("127.0.0.2", "127.0.0.3")
    sub_port = free_port_on("127.0.0.2")
    zones = {"two.test": {"MX": ["10 mx.two.test"]}, "mx.two.test": {"A": ["127.0.0.3"]}}
    with DNSTestServer(zones) as dns:
        config = tmp_path / "pochta.toml"
        config.write_text(
            'hostname = "mail.one.test"\ndata_dir = "data"\n'
            f'[listen]\nsubmission = ["127.0.0.2:{sub_port}"]\n'
            "[auth]\nallow_plaintext_without_tls = true\n"
            f'[dns]\nnameservers = ["{dns.hostport}"]\n'
            f"[delivery]\nsmtp_port = {mx_port}\nretry_intervals = [1]\n"
        )
        settings = load_settings(config)
        with Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER) as acc:
            acc.add_domain("one.test")
            acc.add_user("alice@one.test", "pw")

        proc = start_server(config, sub_port)
        try:
            with smtplib.SMTP("127.0.0.2", sub_port, timeout=10) as client:
                client.login("alice@one.test", "pw")
                client.sendmail(
                    "alice@one.test",
                    ["bob@two.test"],
                    "From: alice@one.test\r\nSubject: survive\r\n\r\nx\r\n",
                )
            time.sleep(0.5)  # the MX is down: the message waits in the queue
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

        remote = RemoteMX("127.0.0.3", mx_port)
        proc = start_server(config, sub_port)
        try:
            deadline = time.monotonic() + 20
            while not remote.collector.received and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.5)  # a second delivery would come by now
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
            remote.close()
        assert len(remote.collector.received) == 1
        assert b"Subject: survive" in remote.collector.received[0]
        spool = Spool(settings.data_dir)
        assert spool.messages() == []  # delivered once and gone from the queue
        spool.close()
