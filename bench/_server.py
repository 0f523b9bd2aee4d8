"""What the benchmarks share: a throw-away Pochta server, free ports, RSS readings.

Each bench makes a server directory with `pochta quickstart --dev`, keeps
only the listeners it measures, sets passwords, starts `pochta serve` as a
child process and reads its memory from /proc.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POCHTA = ROOT / ".venv" / "bin" / "pochta"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int, field: str = "VmHWM") -> int:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quickstart(work: Path, first_user: str, listen: str) -> Path:
    """A dev server directory whose ``[listen]`` section is ``listen``; the settings path."""
    subprocess.run(
        [str(POCHTA), "quickstart", "--dev", "--dir", str(work), first_user],
        check=True,
        capture_output=True,
    )
    config = work / "pochta.toml"
    text = config.read_text()
    begin, end = text.index("[listen]"), text.index("[tls]")
    config.write_text(text[:begin] + f"[listen]\n{listen}\n\n" + text[end:])
    return config


def set_password(config: Path, user: str, password: str, *, add: bool = False) -> None:
    """``pochta user passwd`` (or ``user add``) with the password on stdin."""
    verb = "add" if add else "passwd"
    subprocess.run(
        [str(POCHTA), "--config", str(config), "user", verb, user, "--password-stdin"],
        input=(password + "\n").encode(),
        check=True,
        capture_output=True,
    )


def serve(config: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    """`pochta serve` in the background, once ``host:port`` accepts connections.

    The server's log is dropped unless ``$BENCH_SERVER_LOG`` names a file for it.
    """
    log_path = os.environ.get("BENCH_SERVER_LOG")
    log = open(log_path, "ab") if log_path else None  # noqa: SIM115 (the child keeps it)
    proc = subprocess.Popen(
        [str(POCHTA), "--config", str(config), "serve"],
        stdout=subprocess.DEVNULL,
        stderr=log if log is not None else subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("pochta serve did not start")


def stop(proc: subprocess.Popen[bytes], grace: float = 60.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it takes over ``grace`` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
