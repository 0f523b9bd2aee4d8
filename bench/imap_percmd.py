"""IMAP: CPU time of the server's event-loop thread per command of the mixed loop.

Usage (from the repository root, after `make test` made .venv):

    .venv/bin/python bench/imap_percmd.py                 # 1,000 cycles, one client
    .venv/bin/python bench/imap_percmd.py --cycles 500 --total-only

Why: with sessions held open the server is limited by its event-loop thread
(see README, Performance), and whole-mix commands/s vary ±5% from run to run
on a shared VM. The loop thread's own CPU time per command is steadier: one
imaplib client runs `imap_mixed.py`'s cycle (plus a NOOP, the fixed cost of
any command) and reads the thread's run time from
`/proc/PID/task/PID/schedstat` (nanoseconds) before and after each command;
"all threads" adds the store's threads (fsyncs, the writer). Compare two
versions by interleaving three runs of each.
"""

from __future__ import annotations

import argparse
import collections
import imaplib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import imap_mixed as mix
from _server import free_port, stop


def run_time(pid: int, tid: int | None = None) -> int:
    """Nanoseconds on a CPU of thread ``tid`` of ``pid`` (all threads when None)."""
    tids = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    total = 0
    for t in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--total-only", action="store_true", help="print only the sum per cycle")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pochta-imappercmd-"))
    user = "user0@example.test"
    port = free_port()
    proc: subprocess.Popen[bytes] = mix.start(work, port, [user])
    pid = proc.pid
    # command -> [count, loop-thread ns, all-threads ns]
    spent: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])

    class Timed(imaplib.IMAP4):
        def _simple_command(self, name: str, *args: Any) -> Any:
            loop0, all0 = run_time(pid, pid), run_time(pid)
            result = super()._simple_command(name, *args)
            if name == "UID":
                name += " " + args[0] + (" " + args[1] if args[0] == "SEARCH" else "")
            entry = spent[name]
            entry[0] += 1
            entry[1] += run_time(pid, pid) - loop0
            entry[2] += run_time(pid) - all0
            return result

    try:
        client = Timed(mix.HOST, port)
        client.login(user, mix.PASSWORD)
        for i in range(200):
            client.append("INBOX", "", None, mix.message(i))
        spent.clear()
        for n in range(args.cycles):
            mix.cycle(client, n)
            client.noop()
        client.logout()
        spent.pop("LOGOUT", None)
        per_cycle = sum(e[1] for e in spent.values()) / args.cycles / 1000
        print(f"loop thread per cycle ({args.cycles} cycles): {per_cycle:.0f} us")
        if not args.total_only:
            for name, (count, loop_ns, all_ns) in sorted(spent.items()):
                print(
                    f"  {name:24s} x{count:5d}  loop {loop_ns / count / 1000:5.0f} us"
                    f"  all threads {all_ns / count / 1000:6.0f} us"
                )
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
