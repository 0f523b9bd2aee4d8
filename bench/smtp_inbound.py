"""Inbound SMTP throughput: messages/s stored durably in Maildir, and peak RSS.

Usage (from the repository root, after `make test` or `make run` made .venv):

    .venv/bin/python bench/smtp_inbound.py                 # 5,000 x 5 KB, 10 conns
    .venv/bin/python bench/smtp_inbound.py -n 5000 -c 10 --per-connection 50
    .venv/bin/python bench/smtp_inbound.py --verify        # with SPF/DKIM/DMARC on
    .venv/bin/python bench/smtp_inbound.py --target 127.0.0.1:12525 \
        --rcpt testuser1@example.test                       # any other server

Without --target it makes a throw-away server directory (settings, one user),
starts `pochta serve` on a free loopback port as a child process, sends the
load, checks that every message is in the Maildir, and reads the server's
peak RSS (VmHWM) from /proc. Pochta answers 250 only after the message is
fsynced into the Maildir and indexed, so its accepted rate is its delivered
rate. The client is a lean asyncio SMTP client so that it takes as little of
the shared CPU as possible; it is not part of the measured server.

--verify turns the MX's sender checks on (``[mailauth] verify = true``, as
production runs): a loopback DNS server (the tests' one, in this process)
publishes SPF, DMARC ``p=reject``, rDNS and both DKIM keys of example.org,
every message carries an RSA and an Ed25519 signature, and the server does
SPF, DKIM, DMARC, ARC, iprev and scoring for each. Records have a TTL of 300 s,
so the server's resolver cache answers most lookups, as it would for a busy
sender.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _server import free_port, quickstart, rss_kib, serve, stop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_message(i: int, size: int) -> bytes:
    head = (
        f"From: bench@example.org\r\nTo: demo@example.test\r\nSubject: bench {i}\r\n"
        f"Message-ID: <{i}.{time.time_ns()}@bench.example.org>\r\n\r\n"
    ).encode()
    line = b"abcdefghijklmnopqrstuvwxyz0123456789 the quick brown fox jumps over\r\n"
    body = line * max(1, size // len(line))
    return head + body


async def read_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


async def expect(reader: asyncio.StreamReader, want: int) -> None:
    code = await read_reply(reader)
    if code != want:
        raise RuntimeError(f"expected {want}, got {code}")


async def session(
    host: str, port: int, rcpt: str, payloads: list[bytes], latencies: list[float]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        await expect(reader, 220)
        writer.write(b"EHLO bench.example.org\r\n")
        await expect(reader, 250)
        for data in payloads:
            t0 = time.perf_counter()
            # PIPELINING (RFC 2920): MAIL, RCPT and DATA in one write.
            writer.write(
                b"MAIL FROM:<bench@example.org>\r\nRCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\n"
            )
            await expect(reader, 250)
            await expect(reader, 250)
            await expect(reader, 354)
            writer.write(data + b".\r\n")
            await expect(reader, 250)
            latencies.append(time.perf_counter() - t0)
        writer.write(b"QUIT\r\n")
        await expect(reader, 221)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def run_load(
    host: str,
    port: int,
    rcpt: str,
    n: int,
    conc: int,
    per_conn: int,
    size: int,
    keys: Any = None,
) -> tuple[float, list[float]]:
    payload = [make_message(i, size) for i in range(min(n, 200))]
    if keys is not None:
        from pochta.mailauth.dkim import sign_message

        payload = [await sign_message(p, keys) + p for p in payload]
    jobs: asyncio.Queue[list[bytes]] = asyncio.Queue()
    sent = 0
    while sent < n:
        k = min(per_conn, n - sent)
        jobs.put_nowait([payload[(sent + j) % len(payload)] for j in range(k)])
        sent += k
    latencies: list[float] = []

    async def worker() -> None:
        while not jobs.empty():
            batch = jobs.get_nowait()
            await session(host, port, rcpt, batch, latencies)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return time.perf_counter() - t0, latencies


def count_files(maildir: Path) -> int:
    return sum(len(os.listdir(maildir / sub)) for sub in ("new", "cur"))


def start_server(
    workdir: Path, nameserver: str | None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    # Only the MX listener, on a free port, so the bench never collides.
    config = quickstart(workdir, "demo@example.test", f'smtp = ["127.0.0.1:{port}"]')
    if nameserver is not None:
        text = config.read_text().replace("verify = false", "verify = true", 1)
        text = text.replace("nameservers = []", f'nameservers = ["{nameserver}"]', 1)
        config.write_text(text)
    return serve(config, "127.0.0.1", port), port, workdir / "data/mail/example.test/demo"


def sender_zone(workdir: Path) -> tuple[Any, Any]:
    """A loopback DNS server for example.org, the bench sender; and its DKIM keys."""
    from tests.dnsserver import DNSTestServer

    from pochta.mailauth.keys import DKIMKeyStore

    keys = DKIMKeyStore(workdir / "sender").create("example.org")
    zones: dict[str, dict[str, object]] = {
        "example.org": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
        "_dmarc.example.org": {"TXT": ["v=DMARC1; p=reject; rua=mailto:d@example.org"]},
        "bench.example.org": {"A": ["127.0.0.1"]},
        "127.0.0.1": {"PTR": ["bench.example.org"]},
    }
    for key in keys:
        zones[key.record_name] = {"TXT": [key.public_txt]}
    return DNSTestServer(zones, ttl=300), keys


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=5000, help="messages (default 5000)")
    ap.add_argument("-c", type=int, default=10, help="concurrent connections (default 10)")
    ap.add_argument("--size", type=int, default=5120, help="body bytes (default 5120)")
    ap.add_argument(
        "--per-connection",
        type=int,
        nargs="*",
        default=[1, 100],
        help="messages per connection; one run each (default: 1 100)",
    )
    ap.add_argument("--target", help="host:port of an already running server")
    ap.add_argument("--rcpt", default="demo@example.test")
    ap.add_argument("--verify", action="store_true", help="sender checks on (see above)")
    args = ap.parse_args()

    workdir = None
    proc = None
    dns = keys = None
    if args.target:
        host, _, p = args.target.rpartition(":")
        port = int(p)
        maildir = None
    else:
        workdir = Path(tempfile.mkdtemp(prefix="pochta-bench-"))
        if args.verify:
            dns, keys = sender_zone(workdir)
        proc, port, maildir = start_server(workdir, dns.hostport if dns is not None else None)
        host = "127.0.0.1"
    try:
        checks = ", SPF/DKIM/DMARC checked" if args.verify else ""
        print(f"{args.n} messages of ~{args.size} B, {args.c} connections{checks}")
        total = 0
        for per in args.per_connection:
            elapsed, lat = asyncio.run(
                run_load(host, port, args.rcpt, args.n, args.c, per, args.size, keys)
            )
            total += args.n
            lat.sort()
            p50 = lat[len(lat) // 2] * 1000
            p99 = lat[int(len(lat) * 0.99)] * 1000
            label = "new connection per message" if per == 1 else f"{per} messages per connection"
            print(
                f"  {label:<32} {args.n / elapsed:8.0f} msg/s   "
                f"p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
            )
        if maildir is not None:
            stored = count_files(maildir)
            print(f"  stored in Maildir: {stored} of {total}")
            if stored != total:
                raise SystemExit("messages missing from the Maildir")
        if proc is not None:
            print(f"  server peak RSS: {rss_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        if proc is not None:
            stop(proc)
        if dns is not None:
            dns.close()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
