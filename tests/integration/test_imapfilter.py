"""imapfilter, a real client whose rules run as server-side SEARCHes, against our IMAP server.

imapfilter (Lua rules) turns each rule into UID SEARCH keys (SUBJECT, FROM,
LARGER, SENTBEFORE, UNSEEN, HEADER, BODY, OR, NOT...) and acts with UID
STORE, UID COPY/MOVE and EXPUNGE: if our SEARCH answered wrongly, the
wrong messages would move. It verifies the server certificate through
its trust store, pointed at the test CA with ``-t``.
"""

from __future__ import annotations

import imaplib
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import TLSFiles, need_client, with_common_name
from tests.integration.test_imap import ALICE, PASSWORD, ImapServer, start

RULES = """
options.timeout = 20
options.create = true
options.expunge = true
options.info = false

account = IMAP {{
    server = 'localhost',
    port = {port},
    username = '{user}',
    password = '{password}',
    ssl = 'auto',
}}

inbox = account.INBOX
-- SUBJECT, case-insensitive substring: to a folder made for it
local invoices = inbox:contain_subject('invoice')
invoices:move_messages(account['Invoices'])
-- FROM or a header of the list, unread only: flagged
local boss = inbox:contain_from('boss@example.test')
local wanted = boss + inbox:contain_field('List-Id', 'team.example.test')
local unread = wanted * inbox:is_unseen()
unread:mark_flagged()
-- LARGER: copied to an archive, left where they are
local big = inbox:is_larger(20000)
big:copy_messages(account['Big'])
-- an old Date: header (SENTBEFORE), and NOT of a body word: deleted
local old = inbox:sent_before('01-Jan-2020') - inbox:contain_body('keep me')
old:delete_messages()
"""


DATE = "Mon, 02 Nov 2026 10:00:00 +0000"


def msg(
    subject: str, *, sender: str = "x@remote.test", date: str = DATE, extra: str = "",
    body: str = "hello\r\n",
) -> bytes:  # fmt: skip
    return (
        f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nDate: {date}\r\n{extra}\r\n{body}"
    ).encode()


@pytest.fixture
def srv(tmp_path: Path, tls_files: TLSFiles) -> Iterator[ImapServer]:
    with_common_name(tls_files)
    server = start(tmp_path, allow_plaintext=False)
    try:
        yield server
    finally:
        server.stop()


def client(srv: ImapServer, tls_files: TLSFiles) -> imaplib.IMAP4_SSL:
    context = ssl.create_default_context()
    tls_files.ca.configure_trust(context)
    imap = imaplib.IMAP4_SSL(*srv.address("imaps"), ssl_context=context, timeout=10)
    imap.login(ALICE, PASSWORD)
    return imap


def subjects(imap: imaplib.IMAP4_SSL, mailbox: str) -> dict[str, str]:
    """Subject -> FLAGS of every message in ``mailbox``."""
    typ, data = imap.select(mailbox)
    assert typ == "OK", data
    out: dict[str, str] = {}
    typ, items = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    if items == [None]:
        return out
    for item in items:
        if isinstance(item, tuple):
            flags = item[0].decode().split("FLAGS (")[1].split(")")[0]
            subject = item[1].decode().split(":", 1)[1].strip()
            out[subject] = flags
    return out


def test_imapfilter_rules_move_flag_copy_and_delete(
    srv: ImapServer, tls_files: TLSFiles, tmp_path: Path
) -> None:
    binary = need_client("imapfilter")
    imap = client(srv, tls_files)
    messages = [
        msg("Invoice 42"),
        msg("your INVOICE is late"),
        msg("from the boss", sender="Boss <boss@example.test>"),
        msg("boss, already read", sender="boss@example.test"),
        msg("list mail", extra="List-Id: Team <team.example.test>\r\n"),
        msg("big one", body="x" * 30000 + "\r\n"),
        msg("ancient", date="Tue, 01 Jan 2019 10:00:00 +0000"),
        msg("ancient but precious", date="Wed, 02 Jan 2019 10:00:00 +0000", body="keep me\r\n"),
        msg("plain"),
    ]
    for data in messages:
        flags = r"(\Seen)" if b"already read" in data else ""
        assert imap.append("INBOX", flags, None, data)[0] == "OK"
    home = tmp_path / "home"
    (home / ".imapfilter").mkdir(parents=True)
    ca = tmp_path / "ca.pem"
    tls_files.ca.cert_pem.write_to_path(str(ca))
    config = home / ".imapfilter" / "config.lua"
    port = srv.address("imaps")[1]
    config.write_text(RULES.format(port=port, user=ALICE, password=PASSWORD))
    env = {
        "HOME": str(home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LC_ALL": "C",
    }
    done = subprocess.run(
        [binary, "-c", str(config), "-t", str(ca)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,  # an unverified certificate would ask here: fail instead
    )
    assert done.returncode == 0, done.stdout + done.stderr
    inbox = subjects(imap, "INBOX")
    assert set(inbox) == {
        "from the boss",
        "boss, already read",
        "list mail",
        "big one",
        "ancient but precious",
        "plain",
    }
    assert "\\Flagged" in inbox["from the boss"] and "\\Flagged" in inbox["list mail"]
    assert "\\Flagged" not in inbox["boss, already read"]  # not unseen
    assert "\\Flagged" not in inbox["plain"] and "\\Flagged" not in inbox["big one"]
    assert set(subjects(imap, "Invoices")) == {"Invoice 42", "your INVOICE is late"}
    assert set(subjects(imap, "Big")) == {"big one"}
    imap.logout()
