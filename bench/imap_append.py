"""IMAP APPEND only: messages/s and the server's CPU time per APPEND.

Usage (from the repository root, after `make test` made .venv):

    .venv/bin/python bench/imap_append.py                   # Pochta, 10 clients, 10 s
    .venv/bin/python bench/imap_append.py --against 127.0.0.1:12143 \\
        --server-processes dovecot-pochta-peers             # Dovecot from peers-setup.sh

Each client logs in, selects INBOX and APPENDs ~3 KB messages in a loop
(the same messages as `imap_mixed.py`). The server's CPU time (user +
system, every thread; for `--against`, every process whose command line
contains `--server-processes`) is read from /proc before and after, so the
figure includes the kernel's work for the fsyncs. With `--against`, the
appended messages are expunged at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import imap_mixed as mix
from _server import free_port, stop


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-c", type=int, default=10, help="clients (default 10)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--against", metavar="HOST:PORT")
    ap.add_argument("--user", default="testuser%d@example.test", help="with --against")
    ap.add_argument("--password", default="pass", help="with --against")
    ap.add_argument(
        "--server-processes",
        default="dovecot",
        metavar="TEXT",
        help="with --against: processes whose command line has TEXT are the server",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pochta-imapappend-"))
    proc: subprocess.Popen[bytes] | None = None
    if args.against:
        mix.HOST, _, port_text = args.against.rpartition(":")
        port = int(port_text)
        mix.PASSWORD = args.password
        users = [args.user.replace("%d", str(k + 1)) for k in range(args.c)]
        pids: list[int] = []  # after the logins: Dovecot forks a process per connection
    else:
        users = [f"user{k}@example.test" for k in range(args.c)]
        port = free_port()
        proc = mix.start(work, port, users)
        pids = [proc.pid]
    try:
        clients = [mix.login(port, user) for user in users]
        for client in clients:
            client.select("INBOX")
        if args.against:
            found = subprocess.run(
                ["pgrep", "-f", args.server_processes], capture_output=True, text=True
            ).stdout.split()
            pids = [int(p) for p in found]
        counts = [0] * len(clients)
        deadline = time.monotonic() + args.seconds

        def worker(k: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                clients[k].append("INBOX", "", None, mix.message(n))
                n += 1
            counts[k] = n

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(clients))]
        before, t0 = cpu_ticks(pids), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed, used = time.perf_counter() - t0, (cpu_ticks(pids) - before) / 100
        total = sum(counts)
        print(f"{len(clients)} clients, {args.seconds:.0f} s")
        print(f"  {total / elapsed:8.0f} APPEND/s")
        print(f"  server CPU {100 * used / elapsed:.0f}%: {1e6 * used / total:.0f} us per APPEND")
        for client in clients:
            if args.against:
                client.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
                client.expunge()
            client.logout()
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
