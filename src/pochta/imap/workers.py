"""More IMAP processes: ``[limits] imap_processes``.

Design note
-----------
Python runs one thread at a time per process, so one ``pochta serve`` uses
about one CPU however many it has; measured with 10 IMAP clients on 2
vCPUs, the server's loop, not the machine, was the limit. With
``imap_processes = N`` the main process starts N-1 workers that listen on
the same IMAP/IMAPS addresses (``SO_REUSEPORT``: each process has its own
socket and the kernel spreads new connections among them by a hash of the
client's address and port; one shared socket would let whichever loop
wakes first take a whole burst of connections). Each worker runs only
IMAP: its own store (writer and reader threads on the same SQLite index
and Maildirs, which are made for several processes: the CLI always was
one), accounts, spam filter and TLS context, from the same settings file.

What crosses processes: the index and the files (SQLite's locking), and
change notices (``pochta.store.bus``), so an IDLE session in one process
hears at once of mail stored by another and a change confirmed in one is
seen by the next command in any other. What does not: the login guard's
failure counts and the connection limits, which are per process (a
client may try N times as many passwords before it is slowed).

A worker ends on SIGTERM (the main process sends it when it stops) or
when its parent is gone; the main process restarts a worker that died.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("pochta.imap")

#: Seconds between a worker's checks that its parent still lives.
PARENT_CHECK = 1.0


class Workers:
    """The main process's side: start, watch and stop the worker processes."""

    def __init__(self, settings_path: Path, addresses: list[tuple[str, str, int]], count: int):
        self.settings_path = settings_path
        #: (kind, host, port) of every IMAP listener, as bound (port 0 resolved).
        self.addresses = addresses
        self.count = count
        self.procs: list[subprocess.Popen[bytes]] = []
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False

    def _spawn(self) -> subprocess.Popen[bytes]:
        spec = ",".join(f"{kind}|{host}|{port}" for kind, host, port in self.addresses)
        return subprocess.Popen(
            [sys.executable, "-m", "pochta.imap.workers", str(self.settings_path), spec],
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        log.info("imap worker processes started pids=%s", [p.pid for p in self.procs])
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        """Restart a worker that died (after a pause, so a crash loop stays slow)."""
        while not self._stopping:
            await asyncio.sleep(1.0)
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self._stopping:
                    log.error(
                        "imap worker pid=%d ended code=%s; restarting", proc.pid, proc.returncode
                    )
                    self.procs[i] = self._spawn()

    async def stop(self, grace: float) -> None:
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        for proc in self.procs:
            try:
                await asyncio.wait_for(loop.run_in_executor(None, proc.wait), grace + 5)
            except TimeoutError:
                proc.kill()
                await loop.run_in_executor(None, proc.wait)
        self.procs = []


async def _serve(settings_path: str, spec: str) -> None:
    """A worker: IMAP on the inherited sockets until SIGTERM or orphaned."""
    from pochta.accounts import Accounts
    from pochta.accounts.login import LoginGuard
    from pochta.antispam.bayes import Bayes, JunkTrainer
    from pochta.config import load_settings
    from pochta.imap.server import ImapService
    from pochta.smtp.checks import antispam_dir
    from pochta.store import open_store

    settings = load_settings(Path(settings_path))
    parent = os.getppid()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the main process decides
    store = open_store(settings.data_dir)
    await store.open()
    accounts = Accounts.open(settings.data_dir / "accounts.sqlite")
    bayes = Bayes(antispam_dir(settings.data_dir) / "bayes.sqlite")
    tls = settings.tls_context() if settings.tls is not None else None
    service = ImapService(
        hostname=settings.hostname,
        store=store,
        accounts=accounts,
        guard=LoginGuard(),
        tls=tls,
        allow_plaintext=settings.auth.allow_plaintext_without_tls,
        max_append=settings.limits.message_size,
    )
    service.junk_trainer = JunkTrainer(bayes)
    servers: list[asyncio.Server] = []
    sessions: set[Any] = set()
    for item in spec.split(","):
        kind, host, port = item.split("|")
        servers.append(
            await loop.create_server(
                service.factory(sessions),
                host,
                int(port),
                reuse_address=True,
                reuse_port=True,  # the main process's socket is in the same group
                backlog=512,
                ssl=tls if kind == "imaps" else None,
            )
        )
    log.info("imap worker ready pid=%d", os.getpid())
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), PARENT_CHECK)
        except TimeoutError:
            if os.getppid() != parent:  # the main process is gone
                break
    for server in servers:
        server.close()
    for session in list(sessions):
        session.shutdown()
    for server in servers:
        try:
            await asyncio.wait_for(server.wait_closed(), 2)
        except TimeoutError:
            pass
    await bayes.close()
    await store.close()
    accounts.close()


def main() -> None:
    from pochta.observe.log import setup_logging

    setup_logging()
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))


if __name__ == "__main__":
    main()
