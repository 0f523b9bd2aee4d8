"""IMAP in several processes: ``[limits] imap_processes``.

Design note
-----------
Python runs one thread at a time per process, so one ``pochta serve`` gives
IMAP about one CPU however many the machine has. With ``imap_processes = N``
(N > 1) the main process still binds the IMAP and IMAPS listeners, but it
serves no IMAP session itself: it accepts each connection and hands the
socket, before any byte is read and before the TLS handshake, to the worker
process with the fewest open sessions (``SCM_RIGHTS`` over a UNIX
``SOCK_SEQPACKET`` pair per worker). The worker does the TLS handshake and
runs the session exactly as the main process would.

Why not ``SO_REUSEPORT``, letting each worker accept on its own socket: the
kernel spreads connections by a hash of the client's address and port, and
ten connections split 7:3 as often as 5:5, leaving one worker saturated
and the other idle (measured with ``bench/imap_mixed.py``).

What the processes share:

* the store: every worker opens the same Maildirs and SQLite index (made for
  several processes: the CLI always was one). Writers of all processes take
  turns through ``flock(2)`` (``store.writer``), and change notices cross
  processes on ``store.bus``, so IDLE in a worker hears of mail the main
  process delivered, and a change confirmed in one process is seen by the
  next command in another;
* connection limits: the main process counts every IMAP connection (it
  accepts them all); one over the limit is still handed to a worker, marked
  ``refuse``, which sends the ``* BYE [UNAVAILABLE]`` inside TLS if need be;
  workers report each session's end;
* login failures: each guard reports its changes (``LoginGuard.on_change``)
  to the main process, which applies them to its own guard (POP3 and
  submission count them too) and relays them to the other workers, so a
  client spreading guesses over connections meets one limit.

Messages on a worker's pair (one per datagram, ASCII, fields split by a
space):

* main to worker: ``conn KIND REFUSE`` with one file descriptor (KIND is
  imap or imaps, REFUSE 0 or 1); ``fail KEY`` or ``clear KEY`` (a login
  guard change);
* worker to main: ``closed IP`` (a session ended), ``fail KEY``, ``clear KEY``.

A worker ends on SIGTERM (the main process sends it when it stops) or when
its pair reads end of file (the main process is gone). The main process
restarts a worker that died; the sessions it held are lost with it, as they
would be with the whole server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pochta.accounts.login import LoginGuard
from pochta.limits import ConnectionLimiter

log = logging.getLogger("pochta.imap")

#: Seconds between checks that every worker is alive.
WATCH_EVERY = 1.0
#: Seconds a dead worker's slot waits before it is started again (a crash
#: loop must not spin).
RESTART_PAUSE = 1.0
#: Largest control message (a login guard key is at most ~330 octets).
MAX_MESSAGE = 1024


class _Worker:
    """The main process's view of one worker."""

    def __init__(self, proc: subprocess.Popen[bytes], ctl: socket.socket) -> None:
        self.proc = proc
        self.ctl = ctl
        #: Open sessions it serves, by client address (the sum is its load).
        self.ips: Counter[str] = Counter()
        self.sessions = 0


class ImapWorkers:
    """Starts the worker processes and hands them every IMAP connection."""

    def __init__(
        self,
        settings_path: Path,
        count: int,
        *,
        limiter: ConnectionLimiter,
        guard: LoginGuard,
    ) -> None:
        self.settings_path = settings_path
        self.count = count
        self.limiter = limiter
        self.guard = guard
        self.workers: list[_Worker] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.workers = [self._spawn() for _ in range(self.count)]
        self.guard.on_change = self._guard_changed
        self._watcher = self._loop.create_task(self._watch())
        log.info("imap worker processes started pids=%s", [w.proc.pid for w in self.workers])

    def _spawn(self) -> _Worker:
        assert self._loop is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pochta.imap.workers",
                    str(self.settings_path),
                    str(theirs.fileno()),
                ],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        worker = _Worker(proc, ours)
        self._loop.add_reader(ours.fileno(), self._read, worker)
        return worker

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(WATCH_EVERY)
            for i, worker in enumerate(self.workers):
                if worker.proc.poll() is None or self._stopping:
                    continue
                log.error(
                    "imap worker pid=%d ended code=%s; starting another",
                    worker.proc.pid,
                    worker.proc.returncode,
                )
                self._forget(worker)
                await asyncio.sleep(RESTART_PAUSE)
                if not self._stopping:
                    self.workers[i] = self._spawn()

    def _forget(self, worker: _Worker) -> None:
        """A worker is gone: its sessions no longer count against the limits."""
        if self._loop is not None:
            self._loop.remove_reader(worker.ctl.fileno())
        worker.ctl.close()
        for ip, n in worker.ips.items():
            for _ in range(n):
                self.limiter.release(ip)
        worker.ips.clear()
        worker.sessions = 0

    async def stop(self, grace: float) -> None:
        """SIGTERM every worker (each ends its sessions with BYE), then wait."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self.guard.on_change == self._guard_changed:
            self.guard.on_change = None
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            try:
                await asyncio.wait_for(loop.run_in_executor(None, worker.proc.wait), grace + 5)
            except TimeoutError:
                worker.proc.kill()
                await loop.run_in_executor(None, worker.proc.wait)
            if worker.ctl.fileno() >= 0:
                self._forget(worker)
        self.workers = []

    # --- connections --------------------------------------------------------------

    def factory(self, kind: str) -> Callable[[], asyncio.Protocol]:
        """The protocol factory of an IMAP listener (``imap`` or ``imaps``):
        each connection goes to a worker as soon as it is accepted."""

        def make() -> asyncio.Protocol:
            return _HandOff(self, kind)

        return make

    def hand_off(self, sock: socket.socket, kind: str, ip: str) -> bool:
        """Send ``sock`` to the least busy live worker; False if none took it."""
        refuse = not self.limiter.acquire(ip)
        message = f"conn {kind} {int(refuse)}".encode()
        for worker in sorted(self.workers, key=lambda w: w.sessions):
            if worker.ctl.fileno() < 0 or worker.proc.poll() is not None:
                continue
            try:
                socket.send_fds(worker.ctl, [message], [sock.fileno()])
            except OSError as exc:  # its queue is full (stuck) or it just died
                log.warning("imap worker pid=%d refused a connection: %s", worker.proc.pid, exc)
                continue
            if not refuse:
                worker.sessions += 1
                worker.ips[ip] += 1
            return True
        if not refuse:
            self.limiter.release(ip)
        log.error("imap connection from %s dropped: no worker process is running", ip)
        return False

    # --- messages from workers ----------------------------------------------------

    def _read(self, worker: _Worker) -> None:
        while True:
            try:
                data = worker.ctl.recv(MAX_MESSAGE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:  # the worker is gone; _watch starts another
                if self._loop is not None:
                    self._loop.remove_reader(worker.ctl.fileno())
                return
            verb, _, arg = data.decode("utf-8", "replace").partition(" ")
            if verb == "closed":
                if worker.ips[arg] > 0:
                    worker.ips[arg] -= 1
                    if not worker.ips[arg]:
                        del worker.ips[arg]
                    worker.sessions -= 1
                    self.limiter.release(arg)
            elif verb in ("fail", "clear"):
                self.guard.mirror(verb, arg)
                self._relay(data, skip=worker)
            else:
                log.warning("imap worker pid=%d sent an unknown message", worker.proc.pid)

    def _guard_changed(self, event: str, key: str) -> None:
        """The main process's own guard (POP3, submission) changed: tell workers."""
        self._relay(f"{event} {key}".encode(), skip=None)

    def _relay(self, data: bytes, skip: _Worker | None) -> None:
        for other in self.workers:
            if other is skip or other.ctl.fileno() < 0:
                continue
            with contextlib.suppress(OSError):  # a full queue: the count is advisory
                other.ctl.send(data)


class _HandOff(asyncio.Protocol):
    """Lives for one callback: gives the new connection's socket to a worker."""

    def __init__(self, workers: ImapWorkers, kind: str) -> None:
        self.workers = workers
        self.kind = kind

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if sock is not None:
            # The worker gets its own descriptor of the socket; closing ours
            # (abort, before the transport ever reads) leaves it open there.
            self.workers.hand_off(sock, self.kind, ip)
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()


# --- the worker process -----------------------------------------------------------


async def _serve(settings_path: Path, ctl_fd: int) -> None:
    """A worker: IMAP sessions for the sockets the main process sends."""
    from pochta.accounts import Accounts
    from pochta.antispam.bayes import Bayes, JunkTrainer
    from pochta.config import load_settings
    from pochta.imap.server import ImapService
    from pochta.smtp.checks import antispam_dir
    from pochta.store import open_store

    settings = load_settings(settings_path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the main process decides
    ctl = socket.socket(fileno=ctl_fd)
    ctl.setblocking(False)

    def tell(message: str) -> None:
        with contextlib.suppress(OSError):  # the main process is gone: we stop soon
            ctl.send(message.encode("utf-8", "replace")[:MAX_MESSAGE])

    store = open_store(settings.data_dir)
    await store.open()
    accounts = Accounts.open(settings.data_dir / "accounts.sqlite")
    bayes = Bayes(antispam_dir(settings.data_dir) / "bayes.sqlite")
    guard = LoginGuard()
    guard.on_change = lambda event, key: tell(f"{event} {key}")
    starttls = implicit = None
    if settings.tls is not None:
        implicit = settings.tls_context()
        starttls = settings.tls_context()
        starttls.num_tickets = 0  # as the main process's (Server._imap_starttls)
    service = ImapService(
        hostname=settings.hostname,
        store=store,
        accounts=accounts,
        guard=guard,
        tls=starttls,
        allow_plaintext=settings.auth.allow_plaintext_without_tls,
        max_append=settings.limits.message_size,
        # The main process counts connections against the limits.
        max_connections=1 << 30,
        max_per_ip=1 << 30,
    )
    service.junk_trainer = JunkTrainer(bayes)
    service.on_closed = lambda ip: tell(f"closed {ip}")
    sessions: set[Any] = set()
    accepting: set[asyncio.Task[Any]] = set()

    async def accept(sock: socket.socket, kind: str, refuse: bool) -> None:
        try:
            await loop.connect_accepted_socket(
                service.factory(sessions, refuse=refuse),
                sock,
                ssl=implicit if kind == "imaps" else None,
            )
        except OSError as exc:  # ssl.SSLError too: a failed handshake, the client's problem
            log.info("imap connection failed before its session: %s", exc)
            sock.close()

    def received() -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(ctl, MAX_MESSAGE, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the main process is gone
                stop.set()
                loop.remove_reader(ctl.fileno())
                return
            verb, _, arg = data.decode("utf-8", "replace").partition(" ")
            if verb == "conn" and len(fds) == 1:
                kind, _, refuse = arg.partition(" ")
                sock = socket.socket(fileno=fds[0])
                sock.setblocking(False)
                task = loop.create_task(accept(sock, kind, refuse == "1"))
                accepting.add(task)
                task.add_done_callback(accepting.discard)
                continue
            for fd in fds:  # not expected: never leak one
                os.close(fd)
            if verb in ("fail", "clear"):
                guard.mirror(verb, arg)

    loop.add_reader(ctl.fileno(), received)
    log.info("imap worker ready pid=%d", os.getpid())
    try:
        await stop.wait()
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(ctl.fileno())
        for session in list(sessions):
            session.shutdown()
        for task in list(accepting):
            task.cancel()
        # Sessions end with BYE; give them the moment the main process's own
        # shutdown gives its sessions.
        tasks = [s.task for s in sessions if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        await bayes.close()
        await store.close()
        accounts.close()
        ctl.close()


def main() -> None:
    from pochta.observe.log import setup_logging

    setup_logging()
    asyncio.run(_serve(Path(sys.argv[1]), int(sys.argv[2])))


if __name__ == "__main__":
    main()
