"""IMAP mixed workload: commands/s for 10 clients, with and without a login per cycle.

Usage (from the repository root, after `make test` made .venv):

    .venv/bin/python bench/imap_mixed.py                  # 10 clients, 20 s per mode
    .venv/bin/python bench/imap_mixed.py -c 10 --seconds 30
    .venv/bin/python bench/imap_mixed.py --against 127.0.0.1:12143 \
        --user 'testuser%d@example.test' --password pass   # the same client, another server
    .venv/bin/python bench/imap_mixed.py --held-only --latency    # + each command's round trip
    .venv/bin/python bench/imap_mixed.py --client c               # the cycle by bench/imap_load.c

`--client c` compiles `bench/imap_load.c` with gcc and runs the same cycle
from one C process (a thread per client, blocking sockets): closer to
imaptest, whose figures the targets quote, than imaplib, which takes
0.3-0.5 of a CPU and adds ~1 ms per round trip under its GIL.

Starts `pochta serve` with IMAP on a free loopback port, fills one mailbox
per client with 200 messages of ~3 KB (`../shared/bench/make-mbox.py`'s
shape: a few headers and text), then runs, per client, a loop close to
imaptest's default mix: SELECT, FETCH FLAGS of all, FETCH ENVELOPE of ten,
FETCH BODY.PEEK[] of one, SEARCH (UNSEEN and a SUBJECT), STORE +FLAGS \\Seen
on one, APPEND one, STORE \\Deleted + EXPUNGE of the oldest. Mode "held"
keeps each session logged in; mode "login" logs in and out every cycle
(Dovecot's 1,024 commands/s figure is of that kind, 9,933 of the held one).
Prints commands/s for each mode and the server's peak RSS.
"""

from __future__ import annotations

import argparse
import imaplib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _server import cpu_seconds, free_port, quickstart, rss_kib, serve, set_password, stop

PASSWORD = "bench-password"


def message(i: int) -> bytes:
    body = "".join(f"line {n} of message {i}: the quick brown fox\r\n" for n in range(60))
    return (
        f"From: Sender {i} <sender{i}@example.org>\r\nTo: user@example.test\r\n"
        f"Subject: bench message {i}\r\nMessage-ID: <{i}@bench>\r\n"
        f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()


def start(work: Path, port: int, users: list[str]) -> subprocess.Popen[bytes]:
    config = quickstart(work, users[0], f'imap = ["127.0.0.1:{port}"]')
    for i, user in enumerate(users):
        set_password(config, user, PASSWORD, add=i > 0)
    return serve(config, "127.0.0.1", port)


HOST = "127.0.0.1"
#: --without-append: the mix minus APPEND and EXPUNGE (the mailbox keeps its size).
WITHOUT_APPEND = False


#: --latency: seconds each command of the held mode took, by command name.
LATENCY: dict[str, list[float]] | None = None


class TimedIMAP4(imaplib.IMAP4):
    """imaplib's client that records each command's round trip in ``LATENCY``."""

    def _simple_command(self, name: str, *args: Any) -> Any:
        t0 = time.perf_counter()
        result = super()._simple_command(name, *args)
        if LATENCY is not None:
            key = name if name != "UID" else f"UID {args[0]}"
            LATENCY.setdefault(key, []).append(time.perf_counter() - t0)
        return result


def login(port: int, user: str) -> imaplib.IMAP4:
    client = TimedIMAP4(HOST, port)
    client.login(user, PASSWORD)
    return client


def cycle(client: imaplib.IMAP4, n: int) -> int:
    """One round of the mix; returns the number of commands sent."""
    client.select("INBOX")
    _typ, data = client.uid("SEARCH", "ALL")
    uids = data[0].split()
    client.uid("FETCH", "1:*", "(FLAGS)")
    if uids:
        client.uid("FETCH", b",".join(uids[-10:]).decode(), "(ENVELOPE)")
        client.uid("FETCH", uids[-1].decode(), "(BODY.PEEK[])")
        client.uid("STORE", uids[-1].decode(), "+FLAGS", "(\\Seen)")
    client.uid("SEARCH", "UNSEEN")
    client.uid("SEARCH", "SUBJECT", f'"message {n % 200}"')
    sent = 8 if uids else 5
    if not WITHOUT_APPEND:
        client.append("INBOX", "", None, message(n))
        sent += 1
    if uids:
        client.uid("STORE", uids[0].decode(), "+FLAGS", "(\\Deleted)")
        sent += 1
        if not WITHOUT_APPEND:
            client.expunge()
            sent += 1
    return sent


#: (server CPU us per command, client CPU share) of the last run_mode, when
#: the server is ours (``SERVER_PID``); see ``main``.
SERVER_PID: int | None = None
LAST_CPU: tuple[float, float] | None = None


#: --client c: the compiled bench/imap_load.c, run instead of the imaplib threads.
C_CLIENT: Path | None = None
#: --client c --latency: command kind -> (round trips, seconds in them).
C_ROUNDS: dict[str, tuple[int, float]] = {}


def build_c_client(work: Path) -> Path:
    """Compile bench/imap_load.c (gcc, -O2) into ``work``; its path."""
    binary = work / "imap_load"
    source = Path(__file__).with_name("imap_load.c")
    subprocess.run(
        ["gcc", "-O2", "-pthread", "-o", str(binary), str(source)], check=True, capture_output=True
    )
    return binary


def run_c_mode(port: int, users: list[str], seconds: float, per_cycle_login: bool) -> float:
    """The same cycle by the C client: one process, a thread per client."""
    global LAST_CPU
    assert C_CLIENT is not None
    # users are "<prefix><number>@domain", numbered consecutively.
    first = users[0]
    digits = first.split("@")[0]
    stem = digits.rstrip("0123456789")
    number = int(digits[len(stem) :])
    pattern = f"{stem}%d@{first.split('@')[1]}"
    server0 = cpu_seconds(SERVER_PID) if SERVER_PID else 0.0
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(
        [str(C_CLIENT), HOST, str(port), pattern, PASSWORD, str(len(users)), str(seconds),
         "login" if per_cycle_login else "held", str(number)],
        capture_output=True, text=True,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"imap_load failed: {done.stderr.strip()}")
    lines = done.stdout.splitlines()
    commands = int(lines[0].split()[1])
    ran = float(lines[0].split()[3])
    if LATENCY is not None:  # "round NAME count seconds": only sums, no median
        for line in lines[1:]:
            head, count, spent = line.rsplit(" ", 2)
            C_ROUNDS[head.removeprefix("round ")] = (int(count), float(spent))
    if SERVER_PID and commands:
        server_us = (cpu_seconds(SERVER_PID) - server0) / commands * 1e6
        used = child1.ru_utime + child1.ru_stime - child0.ru_utime - child0.ru_stime
        LAST_CPU = (server_us, used / elapsed)
    return commands / ran


def run_mode(port: int, users: list[str], seconds: float, per_cycle_login: bool) -> float:
    global LAST_CPU
    if C_CLIENT is not None:
        return run_c_mode(port, users, seconds, per_cycle_login)
    counts = [0] * len(users)
    stop = time.monotonic() + seconds

    def worker(k: int) -> None:
        n = 0
        client = None if per_cycle_login else login(port, users[k])
        while time.monotonic() < stop:
            if per_cycle_login:
                client = login(port, users[k])
                counts[k] += 1
            assert client is not None
            counts[k] += cycle(client, n)
            n += 1
            if per_cycle_login:
                client.logout()
                counts[k] += 1
        if client is not None and not per_cycle_login:
            client.logout()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(len(users))]
    server0 = cpu_seconds(SERVER_PID) if SERVER_PID else 0.0
    client0 = os.times()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    client1 = os.times()
    commands = sum(counts)
    if SERVER_PID and commands:
        server_us = (cpu_seconds(SERVER_PID) - server0) / commands * 1e6
        client = (client1.user + client1.system - client0.user - client0.system) / elapsed
        LAST_CPU = (server_us, client)
    return commands / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-c", type=int, default=10, help="clients (default 10)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--held-only", action="store_true", help="skip the login-per-cycle mode")
    ap.add_argument(
        "--without-append",
        action="store_true",
        help="leave APPEND and EXPUNGE out of the cycle (9 commands; shows what they cost)",
    )
    ap.add_argument(
        "--against",
        metavar="HOST:PORT",
        help="an IMAP server already running (e.g. Dovecot from ../shared/bench/peers-setup.sh)",
    )
    ap.add_argument("--user", default="testuser%d@example.test", help="with --against")
    ap.add_argument("--password", default="pass", help="with --against")
    ap.add_argument(
        "--latency", action="store_true", help="print each command's round trip in the held mode"
    )
    ap.add_argument(
        "--client",
        choices=("python", "c"),
        default="python",
        help="who runs the cycle: imaplib threads (default) or bench/imap_load.c (gcc)",
    )
    args = ap.parse_args()
    global HOST, PASSWORD, WITHOUT_APPEND
    WITHOUT_APPEND = args.without_append
    proc: subprocess.Popen[bytes] | None = None
    work = Path(tempfile.mkdtemp(prefix="pochta-imapmix-"))
    global C_CLIENT
    if args.client == "c":
        C_CLIENT = build_c_client(work)
    if args.against:
        HOST, _, port_text = args.against.rpartition(":")
        port = int(port_text)
        PASSWORD = args.password
        users = [args.user.replace("%d", str(k + 1)) for k in range(args.c)]
    else:
        users = [f"user{k}@example.test" for k in range(args.c)]
        port = free_port()
        proc = start(work, port, users)
    try:
        for user in users:
            client = login(port, user)
            if args.against:  # start from the same mailbox every run
                _typ, data = client.select("INBOX")
                if int(data[0]):
                    client.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
                    client.expunge()
            for i in range(args.messages):
                client.append("INBOX", "", None, message(i))
            client.logout()
        # Phase marks on stderr, for attaching a profiler to the right phase.
        pid = proc.pid if proc else "-"
        print(f"held mode starts (server pid {pid})", file=sys.stderr, flush=True)
        global SERVER_PID
        SERVER_PID = proc.pid if proc else None
        global LATENCY
        LATENCY = {} if args.latency else None
        held = run_mode(port, users, args.seconds, per_cycle_login=False)
        held_cpu = LAST_CPU
        latency, LATENCY = LATENCY, None
        relog = 0.0
        if not args.held_only:
            print("login mode starts", file=sys.stderr, flush=True)
            relog = run_mode(port, users, args.seconds, per_cycle_login=True)
        print(
            f"{args.c} clients ({args.client}), {args.messages} messages each,"
            f" {args.seconds:.0f} s per mode"
        )
        print(f"  sessions held open:        {held:8.0f} commands/s")
        if held_cpu is not None:
            print(
                f"    server CPU {held_cpu[0]:.0f} us per command (all threads, user+system);"
                f" this client used {held_cpu[1]:.2f} CPUs"
            )
        if latency:
            total = sum(sum(times) for times in latency.values())
            print("    round trips in the held mode (client side): median, mean, share of time")
            for name, times in sorted(latency.items()):
                times.sort()
                print(
                    f"      {name:12} x {len(times):6}  {times[len(times) // 2] * 1e3:6.2f} ms"
                    f"  {sum(times) / len(times) * 1e3:6.2f} ms  {sum(times) / total:5.1%}"
                )
        if C_ROUNDS:
            total = sum(spent for _, spent in C_ROUNDS.values())
            print("    round trips in the held mode (C client): mean, share of time")
            for name, (count, spent) in C_ROUNDS.items():
                mean = spent / count * 1e3
                print(f"      {name:12} x {count:6}  {mean:6.2f} ms  {spent / total:5.1%}")
        if not args.held_only:
            print(f"  login + logout per cycle:  {relog:8.0f} commands/s")
        if proc is not None:
            print(f"  server peak RSS: {rss_kib(proc.pid) / 1024:.1f} MiB")
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
