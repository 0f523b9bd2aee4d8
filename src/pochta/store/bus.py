"""Change notices between processes that share one data directory.

Design note
-----------
Every open ``MaildirStore`` binds one UNIX datagram socket in
``<data_dir>/run/notify/`` and, after each commit, sends the commit's notices
to the sockets of the other processes there (the server, the CLI, further
server processes). A receiving store publishes them to its own ``Feed``, so
an IMAP IDLE session hears of a message that another process stored as
soon as that process committed it, and ``Selected.sync`` (which skips the
store while the feed's stamp stands still) sees it on the next command.

Why datagrams: each notice is one small message, there is no connection to
keep or accept, a reader that is gone makes ``sendto`` fail at once
(``ECONNREFUSED``: its socket file is stale and removed), and the kernel
keeps what arrived until the reader drains it. The sender sends before its
callers are answered, so a client that saw the change confirmed by one
process, and then asks another, finds it there: ``drain`` reads the socket
before every stamp check.

A notice that cannot be sent (the reader's buffer is full) is dropped; the
readers still find the change in the index within ``Selected``'s resync
interval. Nothing here is needed for durability or correctness of data,
only for how soon other processes notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable

from pochta.store.interface import Notice

log = logging.getLogger("pochta.store")

#: The peer list is read from the directory at most this often (seconds).
PEERS_TTL = 1.0

#: Largest datagram sent; more notices are split over several.
MAX_DATAGRAM = 32 * 1024


class Bus:
    """This process's end: ``open`` on the event loop, ``send`` after commits."""

    def __init__(self, directory: str, deliver: Callable[[list[tuple[str, Notice]]], None]) -> None:
        self.directory = directory
        self._deliver = deliver
        self._sock: socket.socket | None = None
        self._name = ""
        #: The directory, open: sockets are addressed as /proc/self/fd/N/name,
        #: which stays within the 107 octets AF_UNIX allows however deep
        #: the data directory is.
        self._dirfd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._peers: list[str] = []
        self._peers_at = -PEERS_TTL
        self._peers_mtime = -1.0

    def _address(self, name: str) -> str:
        return f"/proc/self/fd/{self._dirfd}/{name}"

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        dirfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirfd = dirfd
        name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        except BaseException:
            os.close(dirfd)
            self._dirfd = -1
            raise
        try:
            sock.bind(self._address(name))
            os.chmod(name, 0o600, dir_fd=dirfd)
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self.drain)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dirfd)
            os.close(dirfd)
            self._dirfd = -1
            raise
        self._sock, self._name, self._loop = sock, name, loop

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self._name, dir_fd=self._dirfd)
        os.close(self._dirfd)
        self._dirfd = -1

    # --- sending ---------------------------------------------------------------

    def _current_peers(self) -> list[str]:
        # The directory's mtime moves when a process arrives or leaves; it is
        # only as fine as the clock tick, so the list is also read again while
        # the last change is recent, and at least every PEERS_TTL seconds.
        now = time.monotonic()
        try:
            changed = os.stat(self._dirfd).st_mtime
        except OSError:
            changed = 0.0
        if (
            changed != self._peers_mtime
            or time.time() - changed < PEERS_TTL
            or now - self._peers_at >= PEERS_TTL
        ):
            self._peers_at, self._peers_mtime = now, changed
            try:
                names = os.listdir(self._dirfd)
            except OSError:
                names = []
            self._peers = [n for n in names if n.endswith(".sock") and n != self._name]
        return self._peers

    def send(self, notices: Iterable[tuple[str, Notice]]) -> None:
        """Tell every other process of ``notices`` (best effort, never blocks)."""
        sock = self._sock
        if sock is None:
            return
        peers = self._current_peers()
        if not peers:
            return
        for payload in _encode(notices):
            for name in list(peers):
                try:
                    sock.sendto(payload, self._address(name))
                except (ConnectionRefusedError, FileNotFoundError, PermissionError) as exc:
                    # A process that ended without removing its socket, or
                    # one of another user (root running the CLI) that we may
                    # not write to: skipped until the list is read again.
                    peers.remove(name)
                    if isinstance(exc, ConnectionRefusedError):
                        with contextlib.suppress(OSError):
                            os.unlink(name, dir_fd=self._dirfd)
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.ENOBUFS):
                        log.warning("store: change notice to %s failed: %s", name, exc)

    # --- receiving -------------------------------------------------------------

    def drain(self) -> None:
        """Publish every notice that has arrived (non-blocking)."""
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(MAX_DATAGRAM + 1024)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("store: reading change notices failed: %s", exc)
                return
            notices = _decode(data)
            if notices:
                self._deliver(notices)


def _encode(notices: Iterable[tuple[str, Notice]]) -> list[bytes]:
    """Datagrams of ``[[user, mailbox, modseq], ...]`` JSON, each within MAX_DATAGRAM."""
    out: list[bytes] = []
    batch: list[bytes] = []
    size = 2
    for user, notice in notices:
        item = json.dumps([user, notice.mailbox, notice.modseq]).encode()
        if batch and size + len(item) + 1 > MAX_DATAGRAM:
            out.append(b"[" + b",".join(batch) + b"]")
            batch, size = [], 2
        batch.append(item)
        size += len(item) + 1
    if batch:
        out.append(b"[" + b",".join(batch) + b"]")
    return out


def _decode(data: bytes) -> list[tuple[str, Notice]]:
    """The notices of one datagram; anything malformed is dropped (only our own
    processes can write to the directory, but a bug must not stop the loop)."""
    try:
        items = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: absurdly nested input
        return []
    out: list[tuple[str, Notice]] = []
    if not isinstance(items, list):
        return out
    for item in items:
        if (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and (item[1] is None or isinstance(item[1], str))
            and isinstance(item[2], int)
            and not isinstance(item[2], bool)
        ):
            out.append((item[0], Notice(item[1], item[2])))
    return out
