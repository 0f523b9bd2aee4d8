"""Shared fixtures: settings files, a TLS test CA, and a real server on loopback.

The server runs in its own thread with its own event loop, the way it runs in
production, so tests can drive it with blocking clients (smtplib, imaplib,
poplib) from the test thread.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trustme
from argon2 import PasswordHasher

from pochta.accounts import Accounts
from pochta.config import Settings, load_settings
from pochta.server import Server

T = TypeVar("T")

#: Cheap argon2 parameters: tests create many users; production keeps the defaults.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(scope="session", autouse=True)
def _loopback_dns_only() -> Iterator[None]:
    """Servers built in tests never ask the machine's own resolver (not on loopback).

    A settings file without ``[dns]`` nameservers means "the system
    resolver" in production; in tests it means the empty loopback server.
    """
    from pochta.config import DNSSettings, parse_hostport
    from pochta.dns.client import StubResolver

    original = StubResolver.from_settings.__func__  # type: ignore[attr-defined]

    def loopback(cls: type[StubResolver], settings: DNSSettings, **kw: Any) -> StubResolver:
        if not settings.nameservers:
            settings = DNSSettings(nameservers=(parse_hostport(empty_dns_hostport()),))
        result: StubResolver = original(cls, settings, **kw)
        return result

    StubResolver.from_settings = classmethod(loopback)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        StubResolver.from_settings = classmethod(original)  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@dataclass
class TLSFiles:
    cert: Path
    key: Path
    ca: trustme.CA


@pytest.fixture
def tls_files(tmp_path: Path, ca: trustme.CA) -> TLSFiles:
    issued = ca.issue_cert("mail.example.test", "localhost", "127.0.0.1")
    cert = tmp_path / "tls" / "cert.pem"
    key = tmp_path / "tls" / "key.pem"
    cert.parent.mkdir(parents=True, exist_ok=True)
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    return TLSFiles(cert, key, ca)


_EMPTY_DNS: Any = None


def empty_dns_hostport() -> str:
    """A loopback DNS server with no zones, shared by the whole test run.

    Every name is NXDOMAIN there, so the MX's sender checks (SPF, DKIM,
    DMARC, iprev) find nothing published and never ask a real resolver:
    tests stay on loopback.
    """
    global _EMPTY_DNS
    if _EMPTY_DNS is None:
        from tests.dnsserver import DNSTestServer

        _EMPTY_DNS = DNSTestServer({})
    return str(_EMPTY_DNS.hostport)


def write_settings(directory: Path, extra: str = "", *, tls: bool = True) -> Path:
    """A settings file with every served listener on a free loopback port.

    Without a ``[dns]`` table in ``extra``, names resolve through an empty
    loopback DNS server (:func:`empty_dns_hostport`).
    """
    text = (
        'hostname = "mail.example.test"\ndata_dir = "data"\n\n'
        '[listen]\nsmtp = ["127.0.0.1:0"]\nlmtp = ["127.0.0.1:0"]\n'
    )
    if tls:
        text += '\n[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n'
    # A small size limit keeps the oversize test fast.
    text += "\n[limits]\nmessage_size = 200000\n"
    text += extra
    if "[dns]" not in extra:
        text += f'\n[dns]\nnameservers = ["{empty_dns_hostport()}"]\n'
    path = directory / "pochta.toml"
    path.write_text(text)
    return path


def need_client(binary: str) -> str:
    """The path of a real mail client the interoperability tests drive.

    ``make test`` installs them first (its ``clients`` target, apt-get as
    root); where that could not be done (not root, no package mirror) the
    test is skipped with that advice rather than failed: the server is not
    what is missing.
    """
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"{binary} is not installed: run `make clients` (apt-get, as root)")
    return path


def traced(server: ServerThread, key: str, until: str, timeout: float = 10) -> list[dict[str, Any]]:
    """The trace of ``key`` (Message-ID or queue id) on ``server`` once it has
    an event ``until`` (deliveries finish after the client's 250), or at the timeout."""
    from pochta.observe.trace import find

    directory = server.settings.data_dir / "trace"
    deadline = time.monotonic() + timeout
    while True:
        events = find(directory, key)
        if any(e["ev"] == until for e in events) or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def with_common_name(tls_files: TLSFiles) -> None:
    """Re-issue the server certificate with a subject CN: offlineimap and
    fetchmail refuse one without (the shared test certificate has none; real
    ones, and those ``pochta.tls`` makes, have one). Same CA, same names."""
    issued = tls_files.ca.issue_cert(
        "mail.example.test", "localhost", "127.0.0.1", common_name="localhost"
    )
    tls_files.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    tls_files.key.write_bytes(issued.private_key_pem.bytes())


@pytest.fixture
def settings(tmp_path: Path, tls_files: TLSFiles) -> Settings:
    return load_settings(write_settings(tmp_path))


def populate(accounts: Accounts) -> None:
    """example.test with alice and bob, a few aliases; other.test with carol."""
    accounts.add_domain("example.test")
    accounts.add_domain("other.test")
    for user in ("alice@example.test", "bob@example.test", "carol@other.test"):
        accounts.add_user(user, "secret-" + user)
    accounts.add_alias("team@example.test", "alice@example.test")
    accounts.add_alias("team@example.test", "bob@example.test")
    accounts.add_alias("boss@example.test", "alice@example.test")


class ServerThread:
    """A ``Server`` on its own loop in a daemon thread."""

    def __init__(self, settings: Settings, server: Server | None = None) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = server if server is not None else self.call(self._make)

    async def _make(self) -> Server:
        return Server(self.settings)

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(_as_coro(fn), self.loop)
        return fut.result(timeout)

    def start(self) -> None:
        self.call(self.server.start)

    def address(self, kind: str = "smtp") -> tuple[str, int]:
        return self.server.address(kind)

    def stop(self) -> None:
        try:
            self.call(self.server.stop)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


async def _as_coro(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()


@pytest.fixture
def server(settings: Settings) -> Iterator[ServerThread]:
    accounts = Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER)
    populate(accounts)
    accounts.close()
    st = ServerThread(settings)
    st.start()
    for user in ("alice@example.test", "bob@example.test", "carol@other.test"):
        st.call(lambda u=user: st.server.store.create_user(u))  # type: ignore[misc]
    try:
        yield st
    finally:
        st.stop()


_DELIVER_SCRIPT = """
import asyncio, sys
from pochta.store import MaildirStore, Recipient

async def main():
    store = MaildirStore(sys.argv[1])
    await store.open()
    if sys.argv[3] == "lose":
        store.bus.send = lambda notices: None  # its change notice is lost
    await store.deliver(b"Subject: elsewhere\\r\\n\\r\\nx\\r\\n", [Recipient(sys.argv[2])])
    await store.close()

asyncio.run(main())
"""


def deliver_from_another_process(data_dir: Path, user: str, *, lose_notice: bool = False) -> None:
    """Store one message for ``user`` from a separate Python process on
    ``data_dir`` (as the CLI or a second server would)."""
    subprocess.run(
        [sys.executable, "-c", _DELIVER_SCRIPT, str(data_dir), user, "lose" if lose_notice else ""],
        check=True,
    )
