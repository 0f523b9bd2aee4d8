"""IMAP IDLE at scale: server memory with N idling sessions, and push latency.

Usage (from the repository root, after `make test` made .venv):

    .venv/bin/python bench/imap_idle.py              # 10,000 sessions
    .venv/bin/python bench/imap_idle.py -n 2000 --deliveries 20

Starts `pochta serve` (IMAP and SMTP on free loopback ports) in a throw-away
directory, opens N IMAP connections that LOGIN, SELECT INBOX and IDLE, reads
the server's RSS, then delivers messages over SMTP and times, for each one,
the gap between the SMTP 250 and the `* n EXISTS` arriving at a watched IDLE
session (the issue's "push within 50 ms"). Connections come from several
loopback addresses (127.0.1.x) because the server limits sessions per
client address.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _server import free_port, quickstart, rss_kib, serve, set_password, stop

USER = "demo@example.test"  # the N idling sessions
WATCHED = "watch@example.test"  # the one that receives the timed deliveries
PASSWORD = "bench-password"
PER_ADDRESS = 90  # below the server's per-address limit


def start_server(work: Path, imap: int, smtp: int) -> subprocess.Popen[bytes]:
    config = quickstart(work, USER, f'smtp = ["127.0.0.1:{smtp}"]\nimap = ["127.0.0.1:{imap}"]')
    set_password(config, USER, PASSWORD)
    set_password(config, WATCHED, PASSWORD, add=True)
    return serve(config, "127.0.0.1", imap)


async def expect(reader: asyncio.StreamReader, prefix: bytes) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line.startswith(prefix):
            return


async def idle_session(
    i: int, port: int, user: str = USER
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    local = f"127.0.1.{1 + i // PER_ADDRESS}"
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(local, 0), limit=1 << 16
    )
    await expect(reader, b"* OK")
    writer.write(f'a LOGIN {user} "{PASSWORD}"\r\n'.encode())
    await expect(reader, b"a ")
    writer.write(b"b SELECT INBOX\r\nc IDLE\r\n")
    await expect(reader, b"+ ")
    return reader, writer


async def run(args: argparse.Namespace, imap: int, smtp: int, pid: int) -> None:
    base = rss_kib(pid, "VmRSS")
    t0 = time.perf_counter()
    sessions: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    batch = 200
    for first in range(0, args.n, batch):
        sessions += await asyncio.gather(
            *(idle_session(i, imap) for i in range(first, min(args.n, first + batch)))
        )
    opened = time.perf_counter() - t0
    await asyncio.sleep(1)
    rss = rss_kib(pid, "VmRSS")
    print(f"{args.n} IDLE sessions open in {opened:.1f} s")
    print(
        f"  server RSS: {rss / 1024:.1f} MiB ({base / 1024:.1f} MiB before; "
        f"{(rss - base) / max(args.n, 1):.1f} KiB per session)"
    )
    # The timed mail goes to another user, as on a real server where one
    # user's new mail wakes that user's sessions, not everybody's.
    watched, watched_writer = await idle_session(args.n, imap, WATCHED)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    for n in range(args.deliveries):
        message = f"From: x@remote.test\r\nSubject: push {n}\r\n\r\nhello\r\n"

        def send(message: str = message) -> float:
            with smtplib.SMTP("127.0.0.1", smtp, timeout=30) as client:
                client.sendmail("x@remote.test", [WATCHED], message)
                return time.perf_counter()  # just after the 250

        sent_at = await loop.run_in_executor(None, send)
        while True:
            line = await watched.readline()
            if b"EXISTS" in line or not line:
                break
        latencies.append(time.perf_counter() - sent_at)
        await asyncio.sleep(0.05)
    if latencies:
        latencies.sort()
        median = latencies[len(latencies) // 2] * 1000
        print(
            f"  SMTP 250 -> EXISTS at an IDLE session of the recipient ({len(latencies)} "
            f"deliveries, {args.n} other sessions idling): median {median:.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms"
        )
    print(f"  server peak RSS: {rss_kib(pid, 'VmHWM') / 1024:.1f} MiB")
    watched_writer.close()
    for _, writer in sessions:
        writer.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=10_000, help="IDLE sessions (default 10000)")
    ap.add_argument("--deliveries", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pochta-idle-"))
    imap, smtp = free_port(), free_port()
    proc = start_server(work, imap, smtp)
    try:
        asyncio.run(run(args, imap, smtp, proc.pid))
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
