"""Durable deliveries per second through ``MaildirStore.deliver`` alone.

Usage: ``.venv/bin/python bench/store_deliver.py [--messages 5000] [--size 5120]
[--tasks 10] [--dir DIR]``. Each delivery is fully durable (file and
directory fsynced, index committed) before it counts. Prints messages/s,
the number of index commits (group commit) and the latency percentiles,
next to the same load as bare Maildir deliveries (no index, no store: write,
fsync, rename into new/, fsync new/, from as many threads) run just before
and just after: the disk's ceiling for this workload on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from pochta.store import MaildirStore, Recipient

USER = "bench@example.test"


def message(i: int, size: int) -> bytes:
    head = (
        f"From: Sender {i} <sender{i}@remote.test>\r\n"
        f"To: {USER}\r\n"
        f"Subject: benchmark message {i}\r\n"
        f"Message-ID: <{i}.bench@remote.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
    ).encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head))]
    return head + body


async def run(data_dir: Path, messages: int, size: int, tasks: int) -> None:
    store = MaildirStore(data_dir)
    await store.open()
    try:
        await store.create_user(USER)
        payloads = [message(i, size) for i in range(messages)]
        latencies: list[float] = []
        queue = iter(payloads)

        async def worker() -> None:
            for data in queue:
                start = time.perf_counter()
                await store.deliver(data, [Recipient(USER)])
                latencies.append(time.perf_counter() - start)

        commits = store.commit_count
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(tasks)))
        elapsed = time.perf_counter() - start
        commits = store.commit_count - commits
        count = (await store.mailboxes(USER).status("INBOX")).messages
        assert count == messages, count
    finally:
        await store.close()
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"store_deliver: {messages} x {size} B, {tasks} concurrent tasks, one user")
    print(f"  {messages / elapsed:,.0f} messages/s durable ({elapsed:.2f} s)")
    print(f"  {commits} index commits ({messages / commits:.1f} messages per commit)")
    print(f"  latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")


def bare_maildir(data_dir: Path, payloads: list[bytes], tasks: int) -> float:
    """Deliveries/s of plain Maildir writes from ``tasks`` threads."""
    for sub in ("tmp", "new", "cur"):
        (data_dir / sub).mkdir(parents=True)
    todo = iter(enumerate(payloads))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                item = next(todo, None)
            if item is None:
                return
            i, data = item
            tmp = data_dir / "tmp" / f"{i}.bare"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, data_dir / "new" / f"{i}.bare")
            dfd = os.open(data_dir / "new", os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(dfd)
            os.close(dfd)

    threads = [threading.Thread(target=worker) for _ in range(tasks)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(payloads) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--size", type=int, default=5 * 1024)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None, help="data dir (default: a temp dir)")
    args = parser.parse_args()
    if args.dir is not None:
        asyncio.run(run(args.dir, args.messages, args.size, args.tasks))
        return
    # Under the current directory, not /tmp: /tmp may be tmpfs, where fsync is free.
    with tempfile.TemporaryDirectory(prefix="pochta-bench-", dir=Path.cwd()) as tmp:
        payloads = [message(i, args.size) for i in range(args.messages)]
        before = bare_maildir(Path(tmp) / "bare1", payloads, args.tasks)
        asyncio.run(run(Path(tmp) / "store", args.messages, args.size, args.tasks))
        after = bare_maildir(Path(tmp) / "bare2", payloads, args.tasks)
        print(
            f"  bare Maildir writes, no index, same disk: {before:,.0f} (before)"
            f" / {after:,.0f} (after) messages/s"
        )


if __name__ == "__main__":
    main()
