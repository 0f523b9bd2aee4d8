"""IMAP against a real server on loopback, driven by imaplib, imapclient and raw sockets.

One server per test (fast: the test hasher keeps logins cheap); every
listener kind that matters here: imap (STARTTLS), imaps, and smtp for
deliveries that IDLE must see.
"""

from __future__ import annotations

import imaplib
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient
from tests.conftest import (
    FAST_HASHER,
    ServerThread,
    TLSFiles,
    deliver_from_another_process,
    populate,
    write_settings,
)

from pochta.accounts import Accounts
from pochta.config import load_settings
from pochta.imap import selected as selected_module
from pochta.imap.commands import TABLES
from pochta.imap.server import ImapService
from pochta.imap.session import State
from pochta.limits import ConnectionLimiter
from pochta.server import Server
from pochta.store import Recipient
from pochta.store.maildir import MaildirMailboxes

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = "secret-" + ALICE

MSG_8BIT = (
    "From: Ана <ana@remote.test>\r\nTo: alice@example.test\r\nSubject: привет\r\n"
    "Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@remote.test>\r\n"
    "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n\r\nТекст письма: café\r\n"
).encode()

MSG_MULTI = (
    b"From: Bob <bob@remote.test>\r\nTo: alice@example.test\r\nSubject: report\r\n"
    b"Date: Tue, 03 Nov 2026 11:00:00 +0100\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n\r\n'
    b"--XX\r\nContent-Type: text/plain\r\n\r\nsee the attachment\r\n"
    b"--XX\r\nContent-Type: application/octet-stream; name=a.bin\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\nAAECA/8=\r\n--XX--\r\n"
)


class ImapServer(ServerThread):
    accounts: Accounts

    async def _make(self) -> Server:
        self.accounts = Accounts.open(
            self.settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER
        )
        return Server(self.settings, accounts=self.accounts)

    @property
    def imap(self) -> ImapService:
        service = self.server._imap
        assert service is not None
        return service

    def deliver(self, data: bytes, user: str = ALICE) -> None:
        self.call(lambda: self.server.store.deliver(data, [Recipient(user)]))

    def deliver_numbered(self, count: int) -> None:
        """``count`` small messages "Subject: m0", "m1"... to ALICE's INBOX."""
        for i in range(count):
            self.deliver(b"Subject: m%d\r\n\r\nbody\r\n" % i)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.accounts.close()


def start(tmp_path: Path, allow_plaintext: bool) -> ImapServer:
    path = write_settings(
        tmp_path,
        f"\n[auth]\nallow_plaintext_without_tls = {'true' if allow_plaintext else 'false'}\n",
    )
    text = path.read_text().replace(
        'lmtp = ["127.0.0.1:0"]\n',
        'lmtp = ["127.0.0.1:0"]\nimap = ["127.0.0.1:0"]\nimaps = ["127.0.0.1:0"]\n',
    )
    path.write_text(text)
    settings = load_settings(path)
    with Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER) as accounts:
        populate(accounts)
    srv = ImapServer(settings)
    srv.start()
    for user in (ALICE, BOB):
        srv.call(lambda u=user: srv.server.store.create_user(u))  # type: ignore[misc]
    return srv


@pytest.fixture
def srv(tmp_path: Path, tls_files: TLSFiles) -> Iterator[ImapServer]:
    server = start(tmp_path, allow_plaintext=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client_tls(tls_files: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_files.ca.configure_trust(context)
    return context


Connect = Callable[..., imaplib.IMAP4]


@pytest.fixture
def connect(srv: ImapServer, client_tls: ssl.SSLContext) -> Iterator[Connect]:
    """imaplib clients over STARTTLS (default) or imaps; logged in unless told not to."""
    opened: list[imaplib.IMAP4] = []

    def open_client(kind: str = "imap", login: bool = True) -> imaplib.IMAP4:
        host, port = srv.address(kind)
        client: imaplib.IMAP4
        if kind == "imaps":
            client = imaplib.IMAP4_SSL(host, port, ssl_context=client_tls, timeout=10)
        else:
            client = imaplib.IMAP4(host, port, timeout=10)
            client.starttls(client_tls)
        opened.append(client)
        if login:
            client.login(ALICE, PASSWORD)
        return client

    yield open_client
    for client in opened:
        try:
            client.shutdown()
        except OSError:
            pass


class Raw:
    """A line-oriented raw client for what imaplib cannot send."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        return self.file.readline()

    def until(self, tag: bytes) -> list[bytes]:
        """Lines up to and including the one tagged ``tag``."""
        lines = []
        while True:
            line = self.file.readline()
            assert line, "connection closed"
            lines.append(line)
            if line.startswith(tag + b" "):
                return lines
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                lines.append(self.file.read(int(m[1])))

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def raw(srv: ImapServer, client_tls: ssl.SSLContext) -> Iterator[Callable[..., Raw]]:
    opened: list[Raw] = []

    def open_raw(login: bool = True) -> Raw:
        sock = socket.create_connection(srv.address("imaps"), timeout=10)
        r = Raw(client_tls.wrap_socket(sock, server_hostname="mail.example.test"))
        opened.append(r)
        assert r.line().startswith(b"* OK [CAPABILITY ")
        if login:
            r.send(b'l1 LOGIN alice@example.test "' + PASSWORD.encode() + b'"\r\n')
            assert r.until(b"l1")[-1].startswith(b"l1 OK")
        return r

    yield open_raw
    for r in opened:
        r.close()


# --- connection layer: greeting, TLS, login ---------------------------------------------


def test_plaintext_greeting_offers_starttls_and_disables_login(srv: ImapServer) -> None:
    with socket.create_connection(srv.address("imap"), timeout=10) as sock:
        r = Raw(sock)
        greeting = r.line()
        assert greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS LOGINDISABLED")
        assert b"AUTH=PLAIN" not in greeting
        r.send(b'a LOGIN alice@example.test "x"\r\nb AUTHENTICATE PLAIN\r\n')
        assert r.line().startswith(b"a NO [PRIVACYREQUIRED]")
        assert r.line().startswith(b"b NO [PRIVACYREQUIRED]")


def test_starttls_then_login_and_capabilities(connect: Connect) -> None:
    client = connect()
    typ, data = client.capability()
    caps = data[0].split()
    assert typ == "OK"
    for cap in (b"IMAP4rev2", b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"LITERAL+"):
        assert cap in caps
    assert b"STARTTLS" not in caps and b"LOGINDISABLED" not in caps
    assert client.select("INBOX")[0] == "OK"


def test_starttls_sends_no_session_tickets_imaps_does(connect: Connect) -> None:
    """TLS 1.3 tickets after STARTTLS break offlineimap (see Server._imap_starttls)."""
    for kind, tickets in (("imap", False), ("imaps", True)):
        client = connect(kind)
        client.noop()  # the tickets, if any, come right after the handshake
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() == "TLSv1.3"
        session = sock.session
        assert session is not None
        assert session.has_ticket is tickets, kind


def test_imaps_login_and_bad_password(connect: Connect) -> None:
    client = connect("imaps", login=False)
    assert b"AUTH=PLAIN" in client.capability()[1][0]
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(ALICE, "wrong")
    assert client.login(ALICE, PASSWORD)[0] == "OK"


def test_authenticate_plain_with_and_without_initial_response(
    connect: Connect, raw: Callable[..., Raw]
) -> None:
    client = connect("imaps", login=False)
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{ALICE}\0{PASSWORD}".encode())
    assert typ == "OK"
    r = raw(login=False)
    import base64

    ir = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    r.send(b"a AUTHENTICATE PLAIN " + ir + b"\r\n")
    assert r.until(b"a")[-1].startswith(b"a OK [CAPABILITY")
    r.send(b"b AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice@example.test\0no") + b"\r\n")
    assert r.until(b"b")[-1].startswith(b"b BAD")  # already authenticated


def test_starttls_discards_pipelined_plaintext(srv: ImapServer, client_tls: ssl.SSLContext) -> None:
    sock = socket.create_connection(srv.address("imap"), timeout=10)
    r = Raw(sock)
    r.line()
    sock.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
    assert r.line().startswith(b"a OK")
    tls = client_tls.wrap_socket(sock, server_hostname="mail.example.test")
    t = Raw(tls)
    tls.sendall(b"c NOOP\r\n")
    assert t.line().startswith(b"c OK")  # no answer to the injected "b CAPABILITY"
    t.close()


def test_plaintext_login_allowed_when_configured(tmp_path: Path, tls_files: TLSFiles) -> None:
    server = start(tmp_path, allow_plaintext=True)
    try:
        client = imaplib.IMAP4(*server.address("imap"), timeout=10)
        assert b"LOGINDISABLED" not in client.capability()[1][0]
        assert client.login(ALICE, PASSWORD)[0] == "OK"
        client.logout()
    finally:
        server.stop()


def test_autologout(srv: ImapServer, raw: Callable[..., Raw]) -> None:
    srv.imap.autologout = 0.3
    r = raw()
    assert r.line().startswith(b"* BYE")


def test_connection_limit_says_bye(srv: ImapServer) -> None:
    srv.imap.limiter = ConnectionLimiter(total=100, per_ip=2)
    socks = [socket.create_connection(srv.address("imap"), timeout=10) for _ in range(3)]
    try:
        greetings = [Raw(sock).line() for sock in socks]
        assert greetings[0].startswith(b"* OK") and greetings[1].startswith(b"* OK")
        assert greetings[2].startswith(b"* BYE [UNAVAILABLE]")
    finally:
        for sock in socks:
            sock.close()


# --- mailboxes ------------------------------------------------------------------------


def test_folder_lifecycle_with_special_use(connect: Connect, raw: Callable[..., Raw]) -> None:
    client = connect()
    assert client.create("Projects/2026")[0] == "OK"
    _typ, data = client.list('""', "*")
    lines = [d.decode() for d in data if isinstance(d, bytes)]
    assert '(\\HasChildren) "/" "Projects"' in lines
    assert '(\\HasNoChildren) "/" "Projects/2026"' in lines
    assert '(\\HasNoChildren \\Sent) "/" "Sent"' in lines
    assert client.list('""', "Projects/%")[1] == [b'(\\HasNoChildren) "/" "Projects/2026"']
    assert client.rename("Projects/2026", "Projects/Old")[0] == "OK"
    assert client.subscribe("Projects/Old")[0] == "OK"
    assert client.lsub('""', "Projects/*")[1] == [b'() "/" "Projects/Old"']
    assert client.create("Projects/Old")[0] == "NO"
    assert b"ALREADYEXISTS" in client.create("Projects/Old")[1][0]
    assert client.delete("Projects/Old")[0] == "OK"
    assert b"NONEXISTENT" in client.delete("Nope")[1][0]
    assert client.delete("INBOX")[0] == "NO"

    r = raw()
    r.send(b"a CREATE Stuff (USE (\\Flagged))\r\n")
    assert r.until(b"a")[-1].startswith(b"a OK")
    r.send(b'b LIST (SPECIAL-USE) "" "*"\r\n')
    out = b"".join(r.until(b"b"))
    assert b'"Stuff"' in out and b"\\Flagged" in out and b'"Projects"' not in out
    r.send(b'c LIST "" "INBOX" RETURN (STATUS (MESSAGES UIDNEXT SIZE))\r\n')
    out = b"".join(r.until(b"c"))
    assert b'* STATUS "INBOX" (MESSAGES 0 UIDNEXT 1 SIZE 0)' in out


@pytest.mark.parametrize(
    "name",
    [
        "../evil",
        "a/../../evil",
        "..",
        "foo/../bar",
        "/abs",
        "x//y",
        ".hidden/..",
        "a/./b",
        "a*b",
        "a%b",
        "&AC4ALg-",  # ".." in modified UTF-7
        "&AC8-etc",  # "/etc" in modified UTF-7
    ],
)
def test_path_traversal_names_refused(
    srv: ImapServer, connect: Connect, tmp_path: Path, name: str
) -> None:
    client = connect()
    for command in (client.create, client.select, client.delete):
        typ, data = command(f'"{name}"')
        assert typ == "NO", (command, data)
    typ, data = client.rename("INBOX", f'"{name}"')
    assert typ == "NO"
    typ, data = client.append(f'"{name}"', None, None, b"Subject: x\r\n\r\nx\r\n")
    assert typ == "NO"
    assert not (tmp_path / "evil").exists()
    assert not (tmp_path / "data" / "evil").exists()
    assert not (tmp_path / "data" / "mail" / "evil").exists()
    assert client.noop()[0] == "OK"


def test_utf7_mailbox_names(connect: Connect) -> None:
    client = connect()
    assert client.create("&BB8EQAQ4BDIENQRC-")[0] == "OK"  # "Привет" in modified UTF-7
    listed = [d for d in client.list('""', "*")[1] if isinstance(d, bytes)]
    assert b'(\\HasNoChildren) "/" "&BB8EQAQ4BDIENQRC-"' in listed
    assert client.select("&BB8EQAQ4BDIENQRC-")[0] == "OK"


# --- messages ------------------------------------------------------------------------


def test_append_fetch_byte_exact_and_structure(srv: ImapServer, client_tls: ssl.SSLContext) -> None:
    host, port = srv.address("imaps")
    with IMAPClient(host, port, ssl=True, ssl_context=client_tls, timeout=10) as c:
        c.login(ALICE, PASSWORD)
        r1 = c.append("INBOX", MSG_8BIT, flags=("\\Flagged",))
        r2 = c.append("INBOX", MSG_MULTI)
        assert b"APPENDUID" in r1 and b"APPENDUID" in r2
        c.select_folder("INBOX")
        data = c.fetch([1, 2], ["BODY.PEEK[]", "ENVELOPE", "BODYSTRUCTURE", "FLAGS", "RFC822.SIZE"])
        assert data[1][b"BODY[]"] == MSG_8BIT
        assert data[2][b"BODY[]"] == MSG_MULTI
        assert data[1][b"RFC822.SIZE"] == len(MSG_8BIT)
        assert b"\\Flagged" in data[1][b"FLAGS"]
        env = data[2][b"ENVELOPE"]
        assert env.subject == b"report"
        assert env.from_[0].mailbox == b"bob" and env.from_[0].host == b"remote.test"
        body = data[2][b"BODYSTRUCTURE"]
        assert body.is_multipart
        assert body[0][0][:2] == (b"TEXT", b"PLAIN")
        assert body[1] == b"MIXED"
        part = c.fetch(
            2, ["BODY[2]", "BINARY.SIZE[2]", "BODY[1.MIME]", "BODY[HEADER.FIELDS (SUBJECT)]"]
        )
        assert part[2][b"BODY[2]"] == b"AAECA/8="
        assert part[2][b"BINARY.SIZE[2]"] == 5
        assert part[2][b"BODY[1.MIME]"] == b"Content-Type: text/plain\r\n\r\n"
        assert part[2][b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: report\r\n\r\n"
        # a non-PEEK body fetch sets \Seen
        assert b"\\Seen" in part[2][b"FLAGS"]
        assert b"FLAGS" not in c.fetch(2, ["BODY[TEXT]"])[2]  # already \\Seen: no FLAGS


def test_append_binary_literal8_round_trip(raw: Callable[..., Raw]) -> None:
    r = raw()
    msg = b"Subject: bin\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\xff\r\n"
    r.send(b"a APPEND INBOX ~{%d}\r\n" % len(msg))
    assert r.line().startswith(b"+")
    r.send(msg + b"\r\n")
    assert b"APPENDUID" in r.until(b"a")[-1]
    r.send(b"b SELECT INBOX\r\nc FETCH 1 BODY.PEEK[]\r\n")
    r.until(b"b")
    lines = r.until(b"c")
    assert msg in lines
    r.send(b"d FETCH 1 BINARY.PEEK[1]\r\n")
    out = b"".join(r.until(b"d"))
    assert b"BINARY[1] ~{5}\r\n\x00\x01\xff\r\n)" in out


def test_multiappend_and_trycreate(raw: Callable[..., Raw]) -> None:
    r = raw()
    r.send(b"a APPEND INBOX {8+}\r\nS: a\r\n\r\n (\\Seen) {8+}\r\nS: b\r\n\r\n\r\n")
    last = r.until(b"a")[-1]
    assert re.match(rb"a OK \[APPENDUID \d+ 1:2\]|a OK \[APPENDUID \d+ 1,2\]", last)
    r.send(b"b APPEND Nope {8+}\r\nS: a\r\n\r\n\r\n")
    assert r.until(b"b")[-1].startswith(b"b NO [TRYCREATE]")


def test_search_keys_through_the_wire(srv: ImapServer, connect: Connect) -> None:
    srv.deliver(MSG_8BIT)
    srv.deliver(MSG_MULTI)
    srv.deliver(b"From: c@remote.test\r\nSubject: third\r\n\r\n" + b"x" * 5000 + b"\r\n")
    client = connect()
    client.select("INBOX")
    client.store("3", "+FLAGS", "\\Flagged")

    def search(*criteria: str, uid: bool = False) -> list[int]:
        typ, data = client.uid("SEARCH", *criteria) if uid else client.search(None, *criteria)
        assert typ == "OK"
        return [int(n) for n in data[0].split()]

    assert search("ALL") == [1, 2, 3]
    assert search("FROM", "bob") == [2]
    assert search("SUBJECT", "report") == [2]
    assert search("BODY", "attachment") == [2]
    assert search("TEXT", "REMOTE.TEST") == [1, 2, 3]
    assert search("FLAGGED") == [3]
    assert search("NOT", "FLAGGED") == [1, 2]
    assert search("LARGER", "4000") == [3]
    assert search("OR", "FROM", "bob", "FROM", "c@") == [2, 3]
    assert search("SENTBEFORE", "03-Nov-2026") == [1]
    assert search("UID", "2:*") == [2, 3]
    assert search("2:3", "UNSEEN", uid=True) == [2, 3]
    client.literal = "привет".encode()
    _typ, data = client.search("UTF-8", "SUBJECT")
    assert data[0].split() == [b"1"]
    _typ, data = client._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    assert client.untagged_responses.pop("ESEARCH")[0].endswith(b"MIN 1 MAX 3 COUNT 3")


def test_flag_searches_agree_with_their_negations(srv: ImapServer, connect: Connect) -> None:
    """A single system-flag key is answered from the view's rows; it must give
    what the general search gives for NOT NOT key, with message numbers
    moved by expunges and a message another session expunged (pending)."""
    srv.deliver_numbered(6)
    client, other = connect(), connect()
    client.select("INBOX")
    other.select("INBOX")
    client.store("1,4", "+FLAGS", "(\\Seen \\Flagged)")
    client.store("2", "+FLAGS", "(\\Deleted \\Answered)")
    client.expunge()  # UID 2 goes: message numbers of 3..6 move down
    other.uid("STORE", "5", "+FLAGS", "(\\Deleted)")
    other.expunge()  # UID 5: pending in the client's view until a NOOP

    def search(*criteria: str, uid: bool) -> list[bytes]:
        typ, data = client.uid("SEARCH", *criteria) if uid else client.search(None, *criteria)
        assert typ == "OK"
        return data[0].split()

    for key in ("SEEN", "UNSEEN", "FLAGGED", "UNFLAGGED", "ANSWERED", "DELETED", "RECENT"):
        for uid in (False, True):
            assert search(key, uid=uid) == search("NOT", "NOT", key, uid=uid), (key, uid)
    assert search("UNSEEN", uid=True) == [b"3", b"6"]
    assert search("SEEN", uid=False) == [b"1", b"3"]


def test_store_expunge_copy_move_with_uidplus(srv: ImapServer, connect: Connect) -> None:
    srv.deliver_numbered(5)
    client = connect()
    client.select("INBOX")
    typ, data = client.store("1:2", "+FLAGS", "(\\Deleted $Work)")
    assert typ == "OK" and data[0] is not None and b"$Work" in data[0]
    typ, data = client.uid("COPY", "3:4", "Archive")
    assert typ == "OK"
    copyuid = client.untagged_responses.pop("COPYUID", [b""])[0]
    assert re.fullmatch(rb"\d+ 3:4 1:2", copyuid), copyuid
    typ, data = client.uid("MOVE", "5", "Trash")
    assert typ == "OK"
    typ, data = client.expunge()
    assert sorted(data, reverse=True) == data and len(data) == 3  # 5 (moved) then 2, 1
    assert client.select("INBOX")[1] == [b"2"]
    assert client.select("Archive")[1] == [b"2"]
    assert client.select("Trash")[1] == [b"1"]
    assert b"TRYCREATE" in client.copy("1", "Nope")[1][0]
    client.select("Trash", readonly=True)
    assert b"READ-ONLY" in client.store("1", "+FLAGS", "\\Seen")[1][0]


def test_uid_expunge_only_named(srv: ImapServer, connect: Connect) -> None:
    srv.deliver_numbered(3)
    client = connect()
    client.select("INBOX")
    client.store("1:3", "+FLAGS", "\\Deleted")
    typ, _ = client.uid("EXPUNGE", "2")
    assert typ == "OK"
    assert client.untagged_responses.pop("EXPUNGE") == [b"2"]
    assert client.close()[0] == "OK"  # expunges the other two silently
    assert client.select("INBOX")[1] == [b"0"]


# --- push and concurrency ---------------------------------------------------------------


def test_idle_sees_smtp_delivery(srv: ImapServer, client_tls: ssl.SSLContext) -> None:
    host, port = srv.address("imaps")
    with IMAPClient(host, port, ssl=True, ssl_context=client_tls, timeout=10) as c:
        c.login(ALICE, PASSWORD)
        c.select_folder("INBOX")
        c.idle()
        with smtplib.SMTP(*srv.address("smtp"), timeout=10) as smtp:
            smtp.sendmail("x@remote.test", [ALICE], b"Subject: pushed\r\n\r\nhi\r\n")
        sent = time.monotonic()
        responses = c.idle_check(timeout=5)
        delay = time.monotonic() - sent
        c.idle_done()
        assert (1, b"EXISTS") in responses
        assert delay < 1.0


def test_idle_sees_other_sessions_flags_and_expunge(srv: ImapServer, connect: Connect) -> None:
    srv.deliver(b"Subject: a\r\n\r\nx\r\n")
    srv.deliver(b"Subject: b\r\n\r\nx\r\n")
    idler, other = connect(), connect()
    idler.select("INBOX")
    other.select("INBOX")
    tag = idler._command("IDLE")
    assert idler._get_response() is None  # the continuation
    seen: list[bytes] = []

    def wait_for(line: bytes) -> None:
        deadline = time.monotonic() + 5
        while line not in seen and time.monotonic() < deadline:
            seen.append(idler._get_line())

    # One change at a time: were both made at once, the idler could find the
    # message already gone when it looks, and rightly report only EXPUNGE.
    other.store("1", "+FLAGS", "\\Deleted")
    wait_for(b"* 1 FETCH (UID 1 FLAGS (\\Deleted))")
    other.expunge()
    wait_for(b"* 1 EXPUNGE")
    idler.send(b"DONE\r\n")
    assert idler._command_complete("IDLE", tag)[0] == "OK"
    assert b"* 1 FETCH (UID 1 FLAGS (\\Deleted))" in seen
    assert b"* 1 EXPUNGE" in seen


def test_other_sessions_changes_show_after_own_changes(srv: ImapServer, connect: Connect) -> None:
    """Two sessions on one mailbox (RFC 9051 §7.5.1): each one's STORE, APPEND
    and EXPUNGE reach the other at its next command, also when that command
    is a STORE that changes nothing; both views end as a fresh session sees
    the mailbox (flags, MODSEQ, INTERNALDATE, size)."""
    for i in range(4):
        srv.deliver(b"Subject: %d\r\n\r\nx\r\n" % i)
    a, b = connect(), connect()
    for session in (a, b):
        assert session.enable("CONDSTORE")[0] == "OK"
        session.select("INBOX")
    assert a.uid("STORE", "1", "+FLAGS", "(\\Seen)")[0] == "OK"
    typ, _ = a.append("INBOX", "(\\Flagged $Label)", None, b"Subject: 5\r\n\r\nx\r\n")
    assert typ == "OK" and a.untagged_responses.pop("EXISTS")[-1] == b"5"
    assert b.uid("STORE", "2", "+FLAGS", "(\\Flagged)")[0] == "OK"
    typ, data = a.uid("STORE", "3", "+FLAGS", "(\\Answered)")
    assert typ == "OK"
    assert any(b"UID 2 " in d and b"\\Flagged" in d for d in data), data
    assert b.uid("STORE", "1:2", "+FLAGS", "(\\Seen)")[0] == "OK"
    typ, data = a.uid("STORE", "1", "+FLAGS", "(\\Seen)")  # changes nothing itself
    assert typ == "OK"
    assert any(b"UID 2 " in d and b"\\Seen" in d for d in data), data
    assert a.uid("STORE", "4", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert a.expunge() == ("OK", [b"4"])
    assert b.noop()[1] == [b"4"] or b.untagged_responses.get("EXPUNGE") == [b"4"]
    fresh = connect()
    assert fresh.enable("CONDSTORE")[0] == "OK"
    fresh.select("INBOX")
    items = "(FLAGS MODSEQ INTERNALDATE RFC822.SIZE)"
    want = fresh.uid("FETCH", "1:*", items)[1]
    assert re.findall(rb"MODSEQ \((\d+)\)", b"".join(want))  # CONDSTORE was on
    assert a.uid("FETCH", "1:*", items)[1] == want
    assert b.uid("FETCH", "1:*", items)[1] == want


def _idle_during(
    srv: ImapServer, client_tls: ssl.SSLContext, action: Callable[[], None]
) -> tuple[list[Any], float]:
    """An IDLE session of ALICE's INBOX while ``action`` runs: its responses
    and the seconds from the end of ``action`` to their arrival."""
    host, port = srv.address("imaps")
    with IMAPClient(host, port, ssl=True, ssl_context=client_tls, timeout=10) as c:
        c.login(ALICE, PASSWORD)
        c.select_folder("INBOX")
        c.idle()
        action()
        done = time.monotonic()
        responses = c.idle_check(timeout=5)
        delay = time.monotonic() - done
        c.idle_done()
    return responses, delay


def test_idle_sees_a_delivery_by_another_process(
    srv: ImapServer, client_tls: ssl.SSLContext
) -> None:
    """A second process on the same data directory (the CLI, another server)
    stores a message: the IDLE session hears of it at once, not by polling."""
    responses, delay = _idle_during(
        srv, client_tls, lambda: deliver_from_another_process(srv.settings.data_dir, ALICE)
    )
    assert (1, b"EXISTS") in responses
    assert delay < 1.0  # RESYNC_EVERY-style polling does not reach IDLE at all


def test_idle_finds_changes_it_was_not_told_of(
    srv: ImapServer, client_tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Notices between processes are best effort: an IDLE session that hears
    nothing still asks the store every IDLE_RECHECK seconds."""
    monkeypatch.setattr(selected_module, "IDLE_RECHECK", 0.3)
    responses, _delay = _idle_during(
        srv,
        client_tls,
        lambda: deliver_from_another_process(srv.settings.data_dir, ALICE, lose_notice=True),
    )
    assert (1, b"EXISTS") in responses


def test_expunge_not_sent_during_fetch(srv: ImapServer, connect: Connect) -> None:
    srv.deliver_numbered(3)
    a, b = connect(), connect()
    a.select("INBOX")
    b.select("INBOX")
    b.store("2", "+FLAGS", "\\Deleted")
    b.expunge()
    typ, data = a.fetch("1:3", "(UID)")  # message 2 is gone, numbers stay valid
    assert typ == "OK"
    assert "EXPUNGE" not in a.untagged_responses
    # the expunged message may still answer, but numbers stay as they were
    assert next(d for d in data if d) == b"1 (UID 1)"
    assert [d for d in data if d][-1] == b"3 (UID 3)"
    typ, data = a.noop()
    assert a.untagged_responses.pop("EXPUNGE") == [b"2"]
    assert a.fetch("2", "(UID)")[1] == [b"2 (UID 3)"]


def test_reselect_matches_a_fresh_select(
    srv: ImapServer, raw: Callable[..., Raw], connect: Connect
) -> None:
    """A re-SELECT builds its view from the previous one and the changes
    since; what the client sees must equal a new session's SELECT."""
    srv.deliver_numbered(5)
    a = raw()
    a.send(b"s1 SELECT INBOX\r\n")
    a.until(b"s1")
    other = connect()
    other.select("INBOX")
    other.store("2", "+FLAGS", "\\Deleted")
    other.expunge()  # uid 2 gone
    a.send(b"f1 FETCH 1:* (UID)\r\n")  # a learns of it only as pending
    assert not any(b"EXPUNGE" in line for line in a.until(b"f1"))
    other.store("3", "+FLAGS", "(\\Seen $Label)")  # uid 4, a new keyword
    other.store("1", "+FLAGS", "\\Deleted")
    other.expunge()  # uid 1 gone, a has not heard at all
    srv.deliver(b"Subject: late\r\n\r\nbody\r\n")  # uid 6

    def selected(r: Raw, mailbox: bytes) -> list[bytes]:
        r.send(b"s2 SELECT " + mailbox + b"\r\ns3 UID FETCH 1:* (FLAGS)\r\n")
        lines = r.until(b"s2") + r.until(b"s3")
        return [line for line in lines if b"[CLOSED]" not in line]

    again = selected(a, b"inbox")
    fresh = selected(raw(), b"INBOX")
    assert again == fresh
    assert b"* 4 EXISTS\r\n" in again
    assert any(b"$Label" in line and line.startswith(b"* FLAGS") for line in again)
    fetched = [line for line in again if line.startswith(b"* ") and b" FETCH " in line]
    assert [line.split(b" (", 1)[1] for line in fetched] == [
        b"UID 3 FLAGS ())\r\n",
        b"UID 4 FLAGS (\\Seen $Label))\r\n",
        b"UID 5 FLAGS ())\r\n",
        b"UID 6 FLAGS ())\r\n",
    ]


def test_reselect_after_mailbox_recreated(raw: Callable[..., Raw], connect: Connect) -> None:
    r = raw()
    r.send(b"a CREATE Again\r\nb SELECT Again\r\n")
    before = r.until(b"b")
    other = connect()
    assert other.delete("Again")[0] == "OK"
    assert other.create("Again")[0] == "OK"
    assert other.append("Again", "", None, b"Subject: new\r\n\r\nx\r\n")[0] == "OK"
    r.send(b"c SELECT Again\r\n")
    after = r.until(b"c")
    assert b"* 1 EXISTS\r\n" in after

    def validity(lines: list[bytes]) -> bytes:
        return next(line for line in lines if b"[UIDVALIDITY" in line)

    assert validity(after) != validity(before)


# --- robustness -------------------------------------------------------------------------


def test_oversize_literals_and_lines(raw: Callable[..., Raw]) -> None:
    r = raw()
    r.send(b"a APPEND INBOX {999999999}\r\n")
    assert r.line().startswith(b"a NO [TOOBIG]")
    r.send(b"b LOGIN {99999999}\r\n")
    assert r.line().startswith(b"b BAD [TOOBIG]")
    r.send(b"c NOOP " + b"x" * 200_000 + b"\r\n")
    assert r.line().startswith(b"* BAD")
    r.send(b"d NOOP\r\n")
    assert r.line().startswith(b"d OK")


def test_wrong_state_and_garbage(raw: Callable[..., Raw]) -> None:
    r = raw(login=False)
    r.send(b"a SELECT INBOX\r\nb FOO\r\n\r\n* x\r\nc NOOP\r\n")
    assert r.line().startswith(b"a BAD")
    assert r.line().startswith(b"b BAD")
    assert r.line().startswith(b"* BAD")
    assert r.line().startswith(b"* BAD")
    assert r.line().startswith(b"c OK")


_WORDS = st.sampled_from(
    [
        b"FETCH", b"UID", b"STORE", b"SEARCH", b"LIST", b"SELECT", b"APPEND", b"COPY",
        b"MOVE", b"STATUS", b"ENABLE", b"NOOP", b"1:*", b"*", b"(", b")", b"[", b"]",
        b'"', b"\\", b"{5}", b"{0+}", b"~{3}", b"BODY[", b"INBOX", b"$", b"%", b"\x00",
        b"\xff", b"\xd0\x9f", b"RETURN", b"(FLAGS)", b"+FLAGS", b"NOT", b"OR", b"<0.5>",
    ]
)  # fmt: skip
_LINES = st.lists(st.one_of(_WORDS, st.binary(max_size=8)), max_size=8).map(
    lambda parts: b" ".join(parts).replace(b"\r", b"").replace(b"\n", b"").replace(b"{", b"(")
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(_LINES, min_size=1, max_size=4))
def test_fuzzed_lines_never_break_the_session(
    srv: ImapServer, raw: Callable[..., Raw], lines: list[bytes]
) -> None:
    """Random command lines: each gets a tagged or untagged BAD/NO (or an OK), never a
    crash; a NOOP afterwards still works."""
    srv.deliver(b"Subject: fuzz\r\n\r\nbody\r\n")
    r = raw()
    r.send(b"s SELECT INBOX\r\n")
    r.until(b"s")
    for i, line in enumerate(lines):
        tag = b"f%d" % i
        r.send(tag + b" " + line + b"\r\n")
        while True:
            got = r.line()
            assert got, "connection closed"
            assert b"SERVERBUG" not in got
            if got.startswith((tag + b" ", b"* BAD")):
                break
            if got.startswith(b"+"):
                r.send(b"\r\n")
    r.send(b"z NOOP\r\n")
    assert r.until(b"z")[-1].startswith(b"z OK")


def test_condstore_resync(srv: ImapServer, raw: Callable[..., Raw], connect: Connect) -> None:
    srv.deliver_numbered(3)
    r = raw()
    r.send(b"a SELECT INBOX (CONDSTORE)\r\n")
    out = b"".join(r.until(b"a"))
    m = re.search(rb"\[HIGHESTMODSEQ (\d+)\]", out)
    assert m
    since = int(m[1])
    r.send(b"u UNSELECT\r\n")
    r.until(b"u")
    other = connect()
    other.select("INBOX")
    other.store("2", "+FLAGS", "$Important")
    r.send(b"b SELECT INBOX (CONDSTORE)\r\nc UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)\r\n" % since)
    r.until(b"b")
    lines = r.until(b"c")
    fetched = [ln for ln in lines if ln.startswith(b"* ") and b" FETCH " in ln]
    assert len(fetched) == 1
    assert re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(\$Important\) MODSEQ \(\d+\)\)", fetched[0])
    r.send(b"d STORE 1,2 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Flagged)\r\n" % since)
    lines = r.until(b"d")
    assert lines[-1].startswith(b"d OK [MODIFIED 2]")
    assert any(ln.startswith(b"* 1 FETCH (FLAGS (\\Flagged) MODSEQ (") for ln in lines)
    r.send(b"e SEARCH MODSEQ %d\r\n" % (since + 1))
    lines = r.until(b"e")
    assert re.match(rb"\* SEARCH 1 2 \(MODSEQ \d+\)", lines[0])
    other.store("3", "+FLAGS", "\\Seen")
    r.send(b"f NOOP\r\n")
    lines = r.until(b"f")
    assert re.match(rb"\* 3 FETCH \(UID 3 FLAGS \(\\Seen\) MODSEQ \(\d+\)\)", lines[0])


def test_qresync_resync_after_changes(
    srv: ImapServer, raw: Callable[..., Raw], connect: Connect
) -> None:
    srv.deliver_numbered(4)
    r = raw()
    r.send(b"a ENABLE QRESYNC\r\nb SELECT INBOX\r\n")
    assert r.until(b"a")[0] == b"* ENABLED QRESYNC\r\n"
    out = b"".join(r.until(b"b"))
    uidvalidity = int(re.findall(rb"\[UIDVALIDITY (\d+)\]", out)[0])
    modseq = int(re.findall(rb"\[HIGHESTMODSEQ (\d+)\]", out)[0])
    r.send(b"c UNSELECT\r\n")
    r.until(b"c")
    other = connect()
    other.select("INBOX")
    other.store("1", "+FLAGS", "\\Answered")
    other.store("2", "+FLAGS", "\\Deleted")
    other.expunge()
    r.send(b"d SELECT INBOX (QRESYNC (%d %d 1:4))\r\n" % (uidvalidity, modseq))
    lines = r.until(b"d")
    assert b"* VANISHED (EARLIER) 2\r\n" in lines
    assert any(
        re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Answered\) MODSEQ \(\d+\)\)", x) for x in lines
    )
    assert b"* 3 EXISTS\r\n" in lines
    other.store("2", "+FLAGS", "\\Deleted")  # UID 3 now
    other.expunge()
    r.send(b"e NOOP\r\n")
    assert r.until(b"e")[0] == b"* VANISHED 3\r\n"
    r.send(b"f UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n" % modseq)
    lines = r.until(b"f")
    assert lines[0] == b"* VANISHED (EARLIER) 2:3\r\n"
    assert re.match(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Answered\) MODSEQ \(\d+\)\)", lines[1])
    r.send(b"g SELECT INBOX (QRESYNC (1 1))\r\n")  # wrong UIDVALIDITY: a plain SELECT
    lines = r.until(b"g")
    assert lines[0].startswith(b"* OK [CLOSED]") and not any(b"VANISHED" in x for x in lines)


def test_qresync_after_old_tombstones_were_pruned(
    srv: ImapServer, raw: Callable[..., Raw], connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the tombstones a client's MODSEQ needs are pruned, QRESYNC SELECT
    and UID FETCH (VANISHED) report every UID of the range that no longer
    exists (RFC 7162 §3.2.5.2) but never a message the session has not been
    told of yet; a session idle across the pruning still hears of its
    expunges (also of one racing its two reads); a re-SELECT reads afresh."""
    from pochta.store.mailbox_jobs import PruneTombstonesJob

    srv.deliver_numbered(8)
    r = raw()
    r.send(b"a ENABLE QRESYNC\r\nb SELECT INBOX\r\n")
    r.until(b"a")
    out = b"".join(r.until(b"b"))
    uidvalidity = int(re.findall(rb"\[UIDVALIDITY (\d+)\]", out)[0])
    modseq = int(re.findall(rb"\[HIGHESTMODSEQ (\d+)\]", out)[0])
    idle, reselect = connect(), connect()
    idle.select("INBOX")
    reselect.select("INBOX")
    other = connect()
    other.select("INBOX")
    for uid in ("2", "3", "6"):  # three expunges, three MODSEQs
        other.uid("STORE", uid, "+FLAGS", "(\\Deleted)")
        other.expunge()
    store = srv.server.store
    assert srv.call(lambda: store._submit(PruneTombstonesJob(1))) == 2  # UID 6's stays
    # The idle session's view is older than the floor: it compares its UIDs
    # with the existing ones, in a second read. UID 8 changes (in the first
    # read) and is expunged just before the second: it must not come back.
    other.uid("STORE", "8", "+FLAGS", "(\\Deleted)")
    original = MaildirMailboxes.messages
    raced: list[str] = []

    async def racing(self: MaildirMailboxes, name: str) -> Any:
        if not raced:
            raced.append(name)
            await self.expunge(name, [8])
        return await original(self, name)

    monkeypatch.setattr(MaildirMailboxes, "messages", racing)
    idle.untagged_responses.clear()  # the SELECT's
    assert idle.noop()[0] == "OK"
    monkeypatch.setattr(MaildirMailboxes, "messages", original)
    assert raced == ["INBOX"]
    assert sorted(idle.untagged_responses.pop("EXPUNGE", [])) == [b"2", b"3", b"6", b"8"]
    assert "EXISTS" not in idle.untagged_responses
    assert idle.uid("SEARCH", "ALL")[1] == [b"1 4 5 7"]
    # QRESYNC from before the floor: every UID of 1:8 that is gone.
    r.send(b"c UNSELECT\r\n")
    r.until(b"c")
    r.send(b"d SELECT INBOX (QRESYNC (%d %d 1:8))\r\n" % (uidvalidity, modseq))
    lines = r.until(b"d")
    assert b"* VANISHED (EARLIER) 2:3,6,8\r\n" in lines
    assert b"* 4 EXISTS\r\n" in lines
    # New mail the session has not been told of is not "vanished".
    srv.deliver(b"Subject: new\r\n\r\nbody\r\n")
    r.send(b"e UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n" % modseq)
    lines = r.until(b"e")
    assert lines[0] == b"* VANISHED (EARLIER) 2:3,6,8\r\n", lines
    assert b"* 5 EXISTS\r\n" in lines  # announced after the command
    r.send(b"f UID FETCH 4:7 (FLAGS) (CHANGEDSINCE %d VANISHED)\r\n" % modseq)
    assert r.until(b"f")[0] == b"* VANISHED (EARLIER) 6\r\n"
    # A re-SELECT of the same mailbox from a view older than the floor.
    assert reselect.select("INBOX")[1] == [b"5"]
    assert reselect.uid("SEARCH", "ALL")[1] == [b"1 4 5 7 9"]


def test_list_extended_recursivematch(raw: Callable[..., Raw]) -> None:
    r = raw()
    r.send(b"a CREATE Top/Child\r\nb UNSUBSCRIBE Top\r\nc SUBSCRIBE Top/Child\r\n")
    r.until(b"c")
    r.send(b'd LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"\r\n')
    lines = r.until(b"d")
    assert b'* LIST (\\HasChildren) "/" "Top" ("CHILDINFO" ("SUBSCRIBED"))\r\n' in lines
    r.send(b'e LIST "" ("Top" "Top/*") RETURN (SUBSCRIBED CHILDREN)\r\n')
    lines = r.until(b"e")
    assert lines[:2] == [
        b'* LIST (\\HasChildren) "/" "Top"\r\n',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Top/Child"\r\n',
    ]
    r.send(b'f LIST "" ""\r\n')
    assert r.until(b"f")[0] == b'* LIST (\\Noselect) "/" ""\r\n'


def test_handler_bug_is_serverbug_and_session_goes_on(
    raw: Callable[..., Raw], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setitem(TABLES[State.AUTHENTICATED], "NAMESPACE", broken)
    r = raw()
    r.send(b"a NAMESPACE\r\nb NOOP\r\n")
    assert r.line().startswith(b"a NO [SERVERBUG]")
    assert r.line().startswith(b"b OK")


def test_selected_mailbox_deleted_by_other_session(
    raw: Callable[..., Raw], connect: Connect
) -> None:
    r = raw()
    r.send(b"a CREATE Doomed\r\nb SELECT Doomed\r\n")
    r.until(b"b")
    other = connect()
    assert other.delete("Doomed")[0] == "OK"
    r.send(b"c NOOP\r\n")
    lines = r.until(b"c")
    assert lines[0].startswith(b"* BYE")


def test_enable_imap4rev2_switches_behaviour(srv: ImapServer, raw: Callable[..., Raw]) -> None:
    srv.deliver(MSG_8BIT)
    r = raw()
    r.send(b"a ENABLE IMAP4rev2\r\n")
    assert r.until(b"a")[0] == b"* ENABLED IMAP4rev2\r\n"
    r.send(b'b CREATE "\xd0\x9f\xd0\xb0\xd0\xbf\xd0\xba\xd0\xb0"\r\nc SELECT INBOX\r\n')
    assert r.until(b"b")[-1].startswith(b"b OK")
    lines = r.until(b"c")
    assert not any(b"RECENT" in x or b"[UNSEEN" in x for x in lines)
    r.send(b'd SEARCH SUBJECT "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"\r\n')
    assert r.until(b"d")[0] == b'* ESEARCH (TAG "d") ALL 1\r\n'
    r.send(b'e LIST "" "\xd0\x9f*"\r\n')
    assert (
        r.until(b"e")[0]
        == b'* LIST (\\HasNoChildren) "/" "\xd0\x9f\xd0\xb0\xd0\xbf\xd0\xba\xd0\xb0"\r\n'
    )
    r.send(b"f FETCH 1 (ENVELOPE)\r\n")
    assert "привет".encode() in b"".join(r.until(b"f"))


def test_server_stop_says_bye(tmp_path: Path, tls_files: TLSFiles) -> None:
    server = start(tmp_path, allow_plaintext=True)
    try:
        sock = socket.create_connection(server.address("imap"), timeout=10)
        r = Raw(sock)
        r.line()
        r.send(b'a LOGIN alice@example.test "' + PASSWORD.encode() + b'"\r\nb IDLE\r\n')
        r.until(b"a")
        assert r.line().startswith(b"+")
    finally:
        server.stop()
    assert r.line().startswith(b"* BYE")
    assert r.line() == b""
    r.close()
