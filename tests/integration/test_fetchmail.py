"""fetchmail, a real client, downloads over POP3 (POP3S and STLS) and IMAPS.

fetchmail runs as a subprocess with HOME in tmp_path and its own rc file;
it verifies the server certificate against the test CA (``sslcertck``) and
hands each message to an MDA script that writes it to a file, so what it
fetched can be compared with what the server holds.
"""

from __future__ import annotations

import os
import poplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import TLSFiles, need_client, with_common_name
from tests.integration.test_pop3 import ALICE, MSG1, MSG2, MSG3, PASSWORD, Pop3Server

from pochta.store import Recipient

#: An MDA that stores each message it is given in its own numbered file.
MDA = """#!/bin/sh
n=$(ls "$1" | wc -l)
cat > "$1/$(printf %04d "$n").eml"
"""


@pytest.fixture
def srv(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Pop3Server]:
    from tests.integration.test_pop3 import start_server

    with_common_name(tls_files)
    server = start_server(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def fetchmail(tmp_path: Path, tls_files: TLSFiles, port: int, server: str, *options: str) -> Path:
    """One fetchmail run for alice; returns the directory of the messages it
    handed over. ``server``: the poll line's options (protocol...), ``options``
    the user's (ssl, keep...)."""
    binary = need_client("fetchmail")
    home = tmp_path / "home"
    out = home / "got"
    out.mkdir(parents=True, exist_ok=True)
    mda = home / "mda.sh"
    mda.write_text(MDA)
    mda.chmod(0o700)
    ca = home / "ca.pem"
    tls_files.ca.cert_pem.write_to_path(str(ca))
    rc = home / "fetchmailrc"
    rc.write_text(
        f"poll localhost port {port} {server}\n"
        f'  user "{ALICE}" password "{PASSWORD[ALICE]}" {" ".join(options)}\n'
        f"  sslcertck sslcertfile {ca}\n"
        f'  mda "{mda} {out}"\n'
    )
    rc.chmod(0o600)
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    done = subprocess.run(
        # --invisible: no Received field of its own, so the bytes compare;
        # exit status 1 means "no new mail", which a run may meet.
        [binary, "-f", str(rc), "--nodetach", "--nosyslog", "--invisible", "-v"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return out


def got(out: Path) -> list[bytes]:
    """What the MDA received, in order, line ends as the server sent them
    (fetchmail hands over LF line ends: CRLF is put back to compare)."""
    return [p.read_bytes().replace(b"\n", b"\r\n") for p in sorted(out.iterdir())]


def stat(srv: Pop3Server, tls_files: TLSFiles) -> int:
    context = ssl.create_default_context()
    tls_files.ca.configure_trust(context)
    client = poplib.POP3_SSL(*srv.address("pop3s"), context=context, timeout=10)
    try:
        client.user(ALICE)
        client.pass_(PASSWORD[ALICE])
        return int(client.stat()[0])
    finally:
        client.quit()


def expected(data: bytes) -> bytes:
    """A message as a client gets it: POP3 ends every line (RFC 1939 §3)."""
    return data if data.endswith(b"\r\n") else data + b"\r\n"


@pytest.mark.parametrize("tls", ["pop3s", "stls"])
def test_fetchmail_pop3_keep_then_delete(srv: Pop3Server, tls_files: TLSFiles, tls: str) -> None:
    srv.deliver(ALICE, MSG1, MSG2, MSG3)
    # pop3s: implicit TLS; stls: plain port, STLS required (sslproto).
    port = srv.address("pop3s" if tls == "pop3s" else "pop3")[1]
    options = ["ssl"] if tls == "pop3s" else ["sslproto TLS1.2+"]
    server = "proto POP3 uidl"
    root = srv.settings.data_dir.parent
    out = fetchmail(root, tls_files, port, server, *options, "keep")
    assert got(out) == [expected(m) for m in (MSG1, MSG2, MSG3)]
    assert stat(srv, tls_files) == 3  # kept
    # UIDL: a second run with keep takes only what is new (RFC 1939 §7).
    srv.deliver(ALICE, b"Subject: four\r\n\r\nfourth\r\n")
    out = fetchmail(root, tls_files, port, server, *options, "keep")
    assert got(out)[3:] == [b"Subject: four\r\n\r\nfourth\r\n"]
    # Without keep (and fetching all): DELE, then QUIT expunges.
    fetchmail(root, tls_files, port, server, *options, "fetchall")
    assert stat(srv, tls_files) == 0


def test_fetchmail_imaps_fetches_and_deletes(tmp_path: Path, tls_files: TLSFiles) -> None:
    from tests.integration.test_imap import ALICE as IMAP_ALICE
    from tests.integration.test_imap import start

    assert IMAP_ALICE == ALICE
    with_common_name(tls_files)
    server = start(tmp_path, allow_plaintext=False)
    try:
        for data in (MSG1, MSG2):
            server.call(lambda d=data: server.server.store.deliver(d, [Recipient(ALICE)]))  # type: ignore[misc]
        port = server.address("imaps")[1]
        out = fetchmail(tmp_path, tls_files, port, "proto IMAP", "ssl")
        assert got(out) == [expected(m) for m in (MSG1, MSG2)]
        # fetchmail marked them \Deleted and expunged them.
        left = server.call(lambda: server.server.store.mailboxes(ALICE).messages("INBOX"))
        assert left == []
    finally:
        server.stop()
