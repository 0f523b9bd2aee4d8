"""The `pochta` command end to end: quickstart, serve, SIGTERM, settings errors, reindex."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pochta.config import load_settings

POCHTA = [sys.executable, "-m", "pochta"]


def run(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POCHTA, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=cwd
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def only_smtp(config: Path, port: int) -> None:
    """Keep quickstart's file but serve only SMTP on a free port."""
    text = config.read_text()
    start, end = text.index("[listen]"), text.index("[tls]")
    config.write_text(text[:start] + f'[listen]\nsmtp = ["127.0.0.1:{port}"]\n\n' + text[end:])


def wait_port(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not start")


@pytest.fixture
def quick(tmp_path: Path) -> tuple[Path, str]:
    result = run("quickstart", "--dev", "--dir", str(tmp_path / "srv"), "demo@example.test")
    assert result.returncode == 0, result.stderr
    match = re.search(r"Password:\s+(\S+)", result.stdout)
    assert match, result.stdout
    return tmp_path / "srv", match.group(1)


def test_quickstart_writes_a_working_setup(quick: tuple[Path, str]) -> None:
    directory, password = quick
    assert len(password) >= 20
    assert (directory / "pochta.toml").is_file()
    assert (directory / "tls/cert.pem").is_file()
    assert (directory / "tls/key.pem").stat().st_mode & 0o777 == 0o600
    md = directory / "data/mail/example.test/demo"
    for sub in ("cur", "new", "tmp"):
        assert (md / sub).is_dir()
    for folder in ("Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert (md / f".{folder}" / "cur").is_dir()
    users = run("--config", str(directory / "pochta.toml"), "user", "list")
    assert users.returncode == 0 and "demo@example.test" in users.stdout
    # The first user may sign in to the web admin, and the summary says where.
    settings = load_settings(directory / "pochta.toml")
    assert settings.admin.users == ("demo@example.test",)
    assert "https://127.0.0.1:8443/admin/" in (directory / "CONNECT.txt").read_text()
    again = run("quickstart", "--dev", "--dir", str(directory), "demo@example.test")
    assert again.returncode == 1
    assert again.stderr.strip().count("\n") == 0 and "already exists" in again.stderr


def test_serve_accepts_mail_and_stops_cleanly_on_sigterm(quick: tuple[Path, str]) -> None:
    directory, _ = quick
    port = free_port()
    config = directory / "pochta.toml"
    only_smtp(config, port)
    with subprocess.Popen(
        [*POCHTA, "--config", str(config), "serve"], stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            wait_port(port, proc)
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.sendmail(
                    "x@remote.test", ["demo@example.test"], b"Subject: hi\r\n\r\nhello\r\n"
                )
            # A client in the middle of DATA when the stop comes.
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                raw.recv(1024)
                raw.sendall(
                    b"HELO x\r\nMAIL FROM:<x@remote.test>\r\n"
                    b"RCPT TO:<demo@example.test>\r\nDATA\r\n"
                )
                time.sleep(0.3)
                raw.sendall(b"Subject: half\r\n\r\nnot finished")
                time.sleep(0.1)
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.stderr is not None
        log = proc.stderr.read()
    assert re.search(
        r"queue_id=\S+ from=<x@remote.test> to=<demo@example.test> size=\d+ result=stored", log
    ), log
    assert "Traceback" not in log
    md = directory / "data/mail/example.test/demo"
    assert len(os.listdir(md / "new")) == 1  # the half-sent message never became mail
    assert os.listdir(md / "tmp") == []


def test_settings_errors_are_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "pochta.toml"
    bad.write_text('hostname = "mail.example.test"\n[listen]\nsmtp = ["nonsense"]\n')
    result = run("--config", str(bad), "serve")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(bad) in lines[0] and "[listen].smtp" in lines[0]
    missing = run("--config", str(tmp_path / "nope.toml"), "user", "list")
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1


def test_listen_address_in_use_is_one_line(quick: tuple[Path, str]) -> None:
    directory, _ = quick
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = directory / "pochta.toml"
        only_smtp(config, port)
        result = run("--config", str(config), "serve")
    assert result.returncode == 1
    assert "[listen].smtp" in result.stderr
    assert "Traceback" not in result.stderr


def test_reindex_restores_the_index(quick: tuple[Path, str]) -> None:
    directory, _ = quick
    md = directory / "data/mail/example.test/demo"
    name = f"{int(time.time())}.M1P1Q1.restored,S=27:2,S"
    (md / "cur" / name).write_bytes(b"Subject: old\r\n\r\nrestored\r\n")
    (directory / "data/index.sqlite").unlink()
    for extra in ("-wal", "-shm"):
        p = directory / f"data/index.sqlite{extra}"
        if p.exists():
            p.unlink()
    result = run("--config", str(directory / "pochta.toml"), "reindex")
    assert result.returncode == 0, result.stderr
    assert "demo@example.test: 1 messages" in result.stdout
