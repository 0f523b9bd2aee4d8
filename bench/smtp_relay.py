"""End-to-end relay throughput: submission on server A → queue → MX lookup → server B's Maildir.

Usage (from the repository root, after `make test` made .venv):

    .venv/bin/python bench/smtp_relay.py              # 2,000 messages, 10 connections
    .venv/bin/python bench/smtp_relay.py -n 5000 -c 10 --per-connection 50

Starts a loopback DNS server (tests/dnsserver.py) with MX records for one.test
(server A, 127.0.0.2) and two.test (server B, 127.0.0.3), and two
`pochta serve` processes. N messages of ~5 KB are submitted to A over 587
with STARTTLS and AUTH PLAIN, from alice@one.test to 10 users at two.test;
the clock runs from the first submission until the last message is in B's
Maildirs. Prints messages/s and A's peak RSS.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dnsserver import DNSTestServer  # noqa: E402
from tests.integration.hosts import free_port_on as free_port  # noqa: E402

POCHTA = ROOT / ".venv" / "bin" / "pochta"
USERS = [f"user{i}@two.test" for i in range(10)]


def setup(
    root: Path,
    domain: str,
    ip: str,
    port: int,
    sub: int,
    dns: str,
    users: list[str],
    sign: bool = True,
) -> Path:
    root.mkdir(parents=True)
    subprocess.run(
        [str(POCHTA), "quickstart", "--dev", "--dir", str(root), users[0]],
        check=True,
        capture_output=True,
    )
    config = root / "pochta.toml"
    text = config.read_text()
    start, end = text.index("[listen]"), text.index("[tls]")
    text = (
        text[:start]
        + f'[listen]\nsmtp = ["{ip}:{port}"]\nsubmission = ["{ip}:{sub}"]\n\n'
        + text[end:]
    )
    text = text.replace("nameservers = []", f'nameservers = ["{dns}"]')
    text = text.replace("smtp_port = 25", f"smtp_port = {port}")
    text = text.replace('hostname = "localhost"', f'hostname = "mail.{domain}"')
    if not sign:
        text = text.replace("sign = true", "sign = false", 1)
    text += "\n[limits]\nmessages_per_hour = 1000000\nrecipients_per_hour = 1000000\n"
    config.write_text(text)
    for user in users[1:]:
        subprocess.run(
            [str(POCHTA), "--config", str(config), "user", "add", user, "--password-stdin"],
            input=b"pw\n",
            check=True,
            capture_output=True,
        )
    subprocess.run(
        [str(POCHTA), "--config", str(config), "user", "passwd", users[0], "--password-stdin"],
        input=b"pw\n",
        check=True,
        capture_output=True,
    )
    return config


def serve(config: Path, ip: str, port: int) -> subprocess.Popen[bytes]:
    log = open(config.parent / "serve.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(POCHTA), "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("pochta serve did not start")


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def count(maildirs: list[Path]) -> int:
    return sum(len(os.listdir(m / "new")) for m in maildirs if (m / "new").is_dir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("-c", type=int, default=10)
    ap.add_argument("--per-connection", type=int, default=20)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    ap.add_argument("--no-dkim", action="store_true", help="server A does not DKIM-sign")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pochta-relay-"))
    port = free_port("127.0.0.2", "127.0.0.3")
    sub_a, sub_b = free_port("127.0.0.2"), free_port("127.0.0.3")
    zones = {
        "one.test": {"MX": ["10 mail.one.test"]},
        "mail.one.test": {"A": ["127.0.0.2"]},
        "two.test": {"MX": ["10 mail.two.test"]},
        "mail.two.test": {"A": ["127.0.0.3"]},
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Records live 5 minutes, as on the Internet: the sender's resolver
        # caches them instead of asking for every message.
        with DNSTestServer(zones, ttl=300) as dns:
            a = setup(work / "a", "one.test", "127.0.0.2", port, sub_a, dns.hostport,
                      ["alice@one.test"], sign=not args.no_dkim)  # fmt: skip
            b = setup(work / "b", "two.test", "127.0.0.3", port, sub_b, dns.hostport, USERS)
            procs.append(serve(a, "127.0.0.2", sub_a))
            procs.append(serve(b, "127.0.0.3", sub_b))
            maildirs = [work / "b/data/mail/two.test" / u.split("@")[0] for u in USERS]
            line = b"abcdefghijklmnopqrstuvwxyz0123456789 the quick brown fox jumps over\r\n"
            body = line * max(1, args.size // len(line))
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # quickstart's self-signed certificate

            def session(first: int, k: int) -> None:
                with smtplib.SMTP("127.0.0.2", sub_a, timeout=60) as client:
                    client.starttls(context=context)
                    client.login("alice@one.test", "pw")
                    for i in range(first, first + k):
                        rcpt = USERS[i % len(USERS)]
                        msg = (
                            f"From: alice@one.test\r\nTo: {rcpt}\r\nSubject: relay {i}\r\n\r\n"
                        ).encode() + body
                        client.sendmail("alice@one.test", [rcpt], msg)

            jobs = [(i, min(args.per_connection, args.n - i))
                    for i in range(0, args.n, args.per_connection)]  # fmt: skip
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.c) as pool:
                list(pool.map(lambda job: session(*job), jobs))
            submitted = time.perf_counter() - t0
            deadline = time.monotonic() + 600
            while count(maildirs) < args.n and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.perf_counter() - t0
            arrived = count(maildirs)
            print(f"{args.n} messages of ~{args.size} B, {args.c} connections, "
                  f"{args.per_connection} per connection")  # fmt: skip
            print(f"  submitted to A:        {args.n / submitted:8.0f} msg/s")
            print(f"  end to end (in B's Maildir): {arrived / elapsed:8.0f} msg/s "
                  f"({arrived} of {args.n} in {elapsed:.1f} s)")  # fmt: skip
            print(f"  server A peak RSS: {peak_rss_kib(procs[0].pid) / 1024:.1f} MiB")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if args.keep:
            print(f"  work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
