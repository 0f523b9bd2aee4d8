"""POP3 download-and-delete throughput: messages/s, MB/s, and the server's peak RSS.

Usage (from the repository root, after `make test` or `make run` made .venv):

    .venv/bin/python bench/pop3_download.py                # 4 users x 2,500 x ~50 KB
    .venv/bin/python bench/pop3_download.py --tls           # POP3S instead of plain POP3
    .venv/bin/python bench/pop3_download.py --line-length 998 -n 1000
    .venv/bin/python bench/pop3_download.py --client-only   # poplib against a null server

It makes a throw-away server directory (`pochta quickstart --dev`), adds one
user per session, fills each INBOX through the store API (the same
MaildirStore the server uses: files fsynced, index committed), then starts
`pochta serve` as a child process on free loopback ports, only POP3 and POP3S
listening. Each of the concurrent sessions is a poplib client in its own
thread, as a fetchmail-style client does it: USER/PASS, STAT, then RETR and
DELE for every message, then QUIT, whose UPDATE state removes the messages.
The time runs from the first connection to the last QUIT reply, so it
includes logins and the expunges. Afterwards every INBOX must be empty.

The messages look like real mail of ~50 KB: headers, a short text part and a
base64 attachment in 76-character lines (RFC 2045 §6.8). poplib reads a
response line by line in Python, so the client's cost grows with the number
of lines; `--client-only` measures that ceiling by running the same client
against a trivial in-process server that answers from memory, and
`--line-length` changes the line length of the attachment part.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import poplib
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _server import ROOT, free_port, quickstart, rss_kib, serve, stop

sys.path.insert(0, str(ROOT / "src"))

DOMAIN = "example.test"
PASSWORD = "bench-password-1"


def make_message(i: int, size: int, line_length: int, rng: random.Random) -> bytes:
    """A ~``size``-byte MIME message: text part plus a base64 attachment."""
    head = (
        f"From: Sender {i} <sender{i}@example.org>\r\n"
        f"To: user@{DOMAIN}\r\n"
        f"Subject: bench message {i}\r\n"
        f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        f"Message-ID: <{i}.{time.time_ns()}@bench.example.org>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        "Hello,\r\n\r\nthe report is attached.\r\n.\r\n-- \r\nBench\r\n"
        "--b1\r\n"
        'Content-Type: application/octet-stream; name="report.bin"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        "\r\n"
    ).encode()
    tail = b"--b1--\r\n"
    width = line_length - 2
    room = max(size - len(head) - len(tail), width)
    raw = rng.randbytes(room * 3 // 4)
    encoded = base64.b64encode(raw)
    lines = [encoded[k : k + width] for k in range(0, len(encoded), width)]
    return head + b"\r\n".join(lines) + b"\r\n" + tail


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far (/proc/PID/stat fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def users_for(sessions: int) -> list[str]:
    return [f"user{k}@{DOMAIN}" for k in range(sessions)]


async def fill(data_dir: Path, users: list[str], per_user: int, messages: list[bytes]) -> None:
    """Deliver through the store API, many at once so the writer group-commits."""
    from pochta.store import MaildirStore, Recipient

    store = MaildirStore(data_dir)
    await store.open()
    try:
        for user in users:
            await store.create_user(user)
        todo = [(user, i) for user in users for i in range(per_user)]
        for start in range(0, len(todo), 256):
            batch = todo[start : start + 256]
            await asyncio.gather(
                *(
                    store.deliver(messages[i % len(messages)], [Recipient(user)])
                    for user, i in batch
                )
            )
    finally:
        await store.close()


def prepare(workdir: Path, args: argparse.Namespace) -> tuple[Path, int, int, list[str]]:
    """Settings, users and mail; returns (config, pop3 port, pop3s port, users)."""
    from pochta.accounts import Accounts

    pop3, pop3s = free_port(), free_port()
    listen = f'pop3 = ["127.0.0.1:{pop3}"]\npop3s = ["127.0.0.1:{pop3s}"]'
    config = quickstart(workdir, f"demo@{DOMAIN}", listen)
    users = users_for(args.c)
    with Accounts.open(workdir / "data" / "accounts.sqlite") as accounts:
        for user in users:
            accounts.add_user(user, PASSWORD)
    rng = random.Random(1)
    messages = [make_message(i, args.size, args.line_length, rng) for i in range(50)]
    t0 = time.perf_counter()
    asyncio.run(fill(workdir / "data", users, args.n, messages))
    print(
        f"  filled {len(users)} x {args.n} messages of ~{len(messages[0]) // 1024} KB "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return config, pop3, pop3s, users


class Session(threading.Thread):
    """One poplib client: log in, RETR + DELE everything, QUIT."""

    def __init__(
        self, user: str, port: int, context: ssl.SSLContext | None, barrier: threading.Barrier
    ) -> None:
        super().__init__(daemon=True)
        self.user, self.port, self.context, self.barrier = user, port, context, barrier
        self.count = 0
        self.octets = 0
        self.quit_seconds = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.barrier.wait()
            client: poplib.POP3
            if self.context is not None:
                client = poplib.POP3_SSL("127.0.0.1", self.port, context=self.context)
            else:
                client = poplib.POP3("127.0.0.1", self.port)
            try:
                client.user(self.user)
                client.pass_(PASSWORD)
                count, _ = client.stat()
                for number in range(1, count + 1):
                    _, _, octets = client.retr(number)
                    client.dele(number)
                    self.count += 1
                    self.octets += octets
                t0 = time.perf_counter()
                reply = client.quit()
                self.quit_seconds = time.perf_counter() - t0
                if not reply.startswith(b"+OK"):
                    raise RuntimeError(f"QUIT failed: {reply!r}")
            finally:
                client.close()
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def run_sessions(
    users: list[str], port: int, context: ssl.SSLContext | None
) -> tuple[float, int, int, float]:
    barrier = threading.Barrier(len(users) + 1)
    sessions = [Session(user, port, context, barrier) for user in users]
    for s in sessions:
        s.start()
    barrier.wait()
    t0 = time.perf_counter()
    for s in sessions:
        s.join()
    elapsed = time.perf_counter() - t0
    for s in sessions:
        if s.error is not None:
            raise SystemExit(f"session {s.user} failed: {s.error!r}")
    quit_seconds = max(s.quit_seconds for s in sessions)
    return elapsed, sum(s.count for s in sessions), sum(s.octets for s in sessions), quit_seconds


def client_only(args: argparse.Namespace) -> None:
    """poplib's own ceiling: a server that answers RETR from memory, in another process."""
    rng = random.Random(1)
    data = make_message(0, args.size, args.line_length, rng)
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    response = b"+OK %d octets\r\n" % len(data) + stuffed + b".\r\n"
    port = free_port()
    code = f"""
import socket, threading
resp = {response!r}
def handle(c):
    f = c.makefile("rb")
    c.sendall(b"+OK null server\\r\\n")
    while True:
        line = f.readline()
        if not line:
            break
        verb = line[:4].upper()
        if verb == b"RETR":
            c.sendall(resp)
        elif verb == b"STAT":
            c.sendall(b"+OK {args.n} {args.n * len(data)}\\r\\n")
        elif verb == b"QUIT":
            c.sendall(b"+OK\\r\\n")
            break
        else:
            c.sendall(b"+OK\\r\\n")
    c.close()
s = socket.socket()
s.bind(("127.0.0.1", {port}))
s.listen(16)
while True:
    c, _ = s.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"""
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        elapsed, count, octets, _ = run_sessions(users_for(args.c), port, None)
        report("null server (client ceiling)", elapsed, count, octets)
    finally:
        proc.kill()
        proc.wait()


def report(label: str, elapsed: float, count: int, octets: int) -> None:
    print(
        f"  {label:<30} {count / elapsed:8.0f} msg/s  {octets / elapsed / 1e6:7.1f} MB/s"
        f"  ({count} messages in {elapsed:.2f} s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=2500, help="messages per user (default 2500)")
    ap.add_argument("-c", type=int, default=4, help="concurrent sessions = users (default 4)")
    ap.add_argument("--size", type=int, default=51200, help="message bytes (default 51200)")
    ap.add_argument(
        "--line-length", type=int, default=78, help="attachment line length with CRLF (78)"
    )
    ap.add_argument("--tls", action="store_true", help="POP3S (implicit TLS) instead of POP3")
    ap.add_argument("--client-only", action="store_true", help="poplib against a null server")
    ap.add_argument("--keep", action="store_true", help="keep the server directory")
    args = ap.parse_args()

    print(
        f"{args.c} sessions x {args.n} messages of ~{args.size // 1024} KB "
        f"({args.line_length}-octet lines){', POP3S' if args.tls else ''}"
    )
    if args.client_only:
        client_only(args)
        return
    workdir = Path(tempfile.mkdtemp(prefix="pochta-bench-pop3-"))
    proc = None
    try:
        config, pop3, pop3s, users = prepare(workdir, args)
        port = pop3s if args.tls else pop3
        proc = serve(config, "127.0.0.1", port)
        context = None
        if args.tls:
            context = ssl.create_default_context(cafile=str(workdir / "tls" / "cert.pem"))
            context.check_hostname = False
        cpu0 = cpu_seconds(proc.pid)
        split0 = cpu_split(proc.pid)
        elapsed, count, octets, quit_seconds = run_sessions(users, port, context)
        cpu = cpu_seconds(proc.pid) - cpu0
        split = [b - a for a, b in zip(split0, cpu_split(proc.pid), strict=True)]
        report("download + delete", elapsed, count, octets)
        print(f"  slowest QUIT (UPDATE: expunge of {args.n} messages): {quit_seconds:.2f} s")
        print(
            f"  server CPU: {cpu:.2f} s, {cpu / max(count, 1) * 1e6:.0f} us per message"
            f" (user {split[0]:.2f} s, system {split[1]:.2f} s)"
        )

        def left_on_disk() -> int:
            total = 0
            for user in users:
                maildir = workdir / "data" / "mail" / DOMAIN / user.split("@")[0]
                total += sum(len(os.listdir(maildir / sub)) for sub in ("new", "cur"))
            return total

        # The store answers QUIT once the expunge is committed; the files of
        # expunged messages are unlinked right after, off the reply path.
        unlink_start = time.perf_counter()
        left = left_on_disk()
        while left and time.perf_counter() - unlink_start < 60:
            time.sleep(0.05)
            left = left_on_disk()
        print(
            f"  left in the Maildirs: {left} (expected 0; files unlinked "
            f"{time.perf_counter() - unlink_start:.2f} s after the last QUIT)"
        )
        print(f"  server peak RSS: {rss_kib(proc.pid) / 1024:.1f} MiB")
        if left or count != args.n * args.c:
            raise SystemExit("not every message was downloaded and deleted")
    finally:
        if proc is not None:
            stop(proc)
        if args.keep:
            print(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
