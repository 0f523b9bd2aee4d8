"""Durable deliveries per second through ``MaildirStore.deliver`` alone.

Usage: ``.venv/bin/python bench/store_deliver.py [--messages 5000] [--size 5120]
[--tasks 10] [--dir DIR]``. Each delivery is fully durable (file and
directory fsynced, index committed) before it counts. Prints messages/s,
the number of index commits (group commit) and the latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
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
    with tempfile.TemporaryDirectory(prefix="pochta-bench-", dir=Path.cwd()) as tmp:
        asyncio.run(run(Path(tmp), args.messages, args.size, args.tasks))


if __name__ == "__main__":
    main()
