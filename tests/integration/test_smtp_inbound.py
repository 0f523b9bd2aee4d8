"""Inbound SMTP against a real server on loopback, driven by smtplib and raw sockets."""

from __future__ import annotations

import smtplib
import socket
import ssl
from pathlib import Path

import pytest
from tests.conftest import ServerThread, TLSFiles

from pochta.smtp import codes
from pochta.smtp.protocol import HARD_ERROR_LIMIT
from pochta.store.interface import MessageInfo

MSG = (
    b"From: Sender <sender@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: hello\r\n"
    b"Message-ID: <1@remote.test>\r\n"
    b"\r\n"
    b"Body line one.\r\n"
    b".Line starting with a dot.\r\n"
)


def maildir(server: ServerThread, user: str) -> Path:
    local, domain = user.split("@")
    return server.settings.data_dir / "mail" / domain / local


def files(server: ServerThread, user: str, sub: str = "new") -> list[Path]:
    return sorted((maildir(server, user) / sub).iterdir())


def all_mail_files(server: ServerThread) -> list[Path]:
    root = server.settings.data_dir / "mail"
    return [p for p in root.rglob("*") if p.is_file() and p.parent.name in ("new", "cur", "tmp")]


def inbox(server: ServerThread, user: str) -> list[MessageInfo]:
    return server.call(lambda: server.server.store.mailboxes(user).messages("INBOX"))


def connect(server: ServerThread) -> smtplib.SMTP:
    host, port = server.address()
    client = smtplib.SMTP(host, port, timeout=10)
    client.ehlo("client.remote.test")
    return client


def reply(code: int, text: bytes) -> tuple[int, str]:
    return code, text.decode()


def expect(actual: tuple[int, bytes], wanted: codes.Reply) -> None:
    code, text = actual
    assert code == wanted.code, (code, text)
    assert text.decode().startswith(wanted.enhanced), (code, text)


def test_ehlo_advertises_extensions(server: ServerThread) -> None:
    client = connect(server)
    for ext in ("size", "8bitmime", "smtputf8", "pipelining", "enhancedstatuscodes", "starttls"):
        assert client.has_extn(ext), ext
    assert not client.has_extn("auth")
    assert int(client.esmtp_features["size"]) == server.settings.limits.message_size
    client.quit()


def test_accepted_mail_is_one_maildir_file_and_indexed(server: ServerThread) -> None:
    client = connect(server)
    refused = client.sendmail("sender@remote.test", ["alice@example.test"], MSG)
    assert refused == {}
    client.quit()
    (path,) = files(server, "alice@example.test")
    data = path.read_bytes()
    assert data.startswith(b"Return-Path: <sender@remote.test>\r\n")
    # The MX's verdicts (nothing is published for remote.test in the test
    # DNS), then its Received header, then the message as sent.
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"Authentication-Results: mail.example.test;" in head
    assert b"spf=none" in head and b"dkim=none" in head
    assert b"Received-SPF: none" in head
    assert head.index(b"Received-SPF:") < head.index(b"Received: from client.remote.test")
    assert b"by mail.example.test (Pochta) with ESMTP id " in data
    assert b"for <alice@example.test>;" in data
    assert data.endswith(MSG)  # dot-unstuffed once, otherwise byte-exact
    (info,) = inbox(server, "alice@example.test")
    assert info.size == len(data)
    stored = server.call(
        lambda: server.server.store.mailboxes("alice@example.test").read("INBOX", info.uid)
    )
    assert stored == data
    assert not list((maildir(server, "alice@example.test") / "tmp").iterdir())


def test_250_carries_queue_id(server: ServerThread) -> None:
    client = connect(server)
    client.mail("sender@remote.test")
    client.rcpt("alice@example.test")
    code, text = client.data(MSG)
    assert code == 250
    assert text.decode().startswith("2.0.0 OK: queued as ")
    client.quit()


def test_unknown_user_and_relay_are_refused(server: ServerThread) -> None:
    client = connect(server)
    expect(client.mail("sender@remote.test"), codes.SENDER_OK)
    expect(client.rcpt("nobody@example.test"), codes.UNKNOWN_USER)
    expect(client.rcpt("someone@elsewhere.test"), codes.RELAY_DENIED)
    code, _ = client.docmd("DATA")
    assert code == 503  # no valid recipient
    client.quit()
    assert all_mail_files(server) == []


def test_a_client_that_keeps_failing_is_cut_off(server: ServerThread) -> None:
    # Address (or SRS hash) guessing: Postfix's smtpd_hard_error_limit, 20.
    client = connect(server)
    expect(client.mail("sender@remote.test"), codes.SENDER_OK)
    for i in range(HARD_ERROR_LIMIT):
        expect(client.rcpt(f"nobody{i}@example.test"), codes.UNKNOWN_USER)
    # A delivered message resets the count.
    expect(client.rcpt("alice@example.test"), codes.RECIPIENT_OK)
    code, _ = client.data(b"Subject: x\r\n\r\nbody\r\n")
    assert code == 250
    expect(client.mail("sender@remote.test"), codes.SENDER_OK)
    for i in range(HARD_ERROR_LIMIT):
        expect(client.rcpt(f"again{i}@example.test"), codes.UNKNOWN_USER)
    code, _ = client.rcpt("one-more@example.test")
    assert code == 550  # the 21st error is answered, then the session ends
    try:
        # The 421 the server sent with it is what smtplib reads next.
        assert client.rcpt("and-another@example.test")[0] == 421
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.rcpt("and-yet-another@example.test")
    finally:
        client.close()


def test_too_many_recipients_is_no_error_and_cut_sessions_say_nothing_more(
    server: ServerThread,
) -> None:
    # 452 for recipients over the limit is the client's overshoot, not a
    # guess: the first 100 still get the message.
    client = connect(server)
    expect(client.mail("sender@remote.test"), codes.SENDER_OK)
    for _ in range(100):
        expect(client.rcpt("alice@example.test"), codes.RECIPIENT_OK)
    for _ in range(HARD_ERROR_LIMIT + 5):
        assert client.rcpt("alice@example.test")[0] == 452
    assert client.data(b"Subject: many\r\n\r\nbody\r\n")[0] == 250
    client.quit()
    # Commands pipelined after the cut are neither answered nor acted on.
    host, port = server.address()
    with socket.create_connection((host, port), timeout=10) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        bad = b"".join(b"RCPT TO:<x%d@example.test>\r\n" % i for i in range(HARD_ERROR_LIMIT + 1))
        raw.sendall(b"HELO client.test\r\nMAIL FROM:<s@remote.test>\r\n" + bad +
                    b"RCPT TO:<alice@example.test>\r\n")  # fmt: skip
        replies = [line.rstrip() for line in iter(reader.readline, b"")]
    assert replies[0].startswith(b"250") and replies[1].startswith(b"250")
    assert [r[:3] for r in replies[2:]] == [b"550"] * (HARD_ERROR_LIMIT + 1) + [b"421"]
    # An EHLO reply that is the last error still reaches the client, with the 421.
    with socket.create_connection((host, port), timeout=10) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        raw.sendall(b"DATA\r\n" * HARD_ERROR_LIMIT + b"EHLO\r\n")
        replies = [line.rstrip() for line in iter(reader.readline, b"")]
    assert replies[-2][:3] == b"501" and replies[-1][:3] == b"421"


def test_null_sender_bounce_is_accepted(server: ServerThread) -> None:
    client = connect(server)
    assert client.sendmail("<>", ["bob@example.test"], MSG) == {}
    client.quit()
    (path,) = files(server, "bob@example.test")
    assert path.read_bytes().startswith(b"Return-Path: <>\r\n")


def test_bad_addresses(server: ServerThread) -> None:
    client = connect(server)
    expect(client.mail("not an address@@x"), codes.BAD_ADDRESS)
    expect(client.mail("sender@remote.test"), codes.SENDER_OK)
    expect(client.rcpt("a@@example.test"), codes.BAD_ADDRESS)
    client.quit()


def test_aliases_subaddress_and_dedup(server: ServerThread) -> None:
    client = connect(server)
    rcpts = [
        "alice@example.test",
        "team@example.test",  # alice + bob
        "boss@example.test",  # alice again
        "Alice+lists@EXAMPLE.test",  # alice by subaddress, case-folded
        "carol@other.test",
    ]
    assert client.sendmail("sender@remote.test", rcpts, MSG) == {}
    client.quit()
    assert len(files(server, "alice@example.test")) == 1
    assert len(files(server, "bob@example.test")) == 1
    assert len(files(server, "carol@other.test")) == 1
    data = files(server, "bob@example.test")[0].read_bytes()
    assert b"for <" not in data  # several recipients are not named in Received


def test_too_many_recipients(server: ServerThread) -> None:
    limit = server.settings.limits.recipients
    client = connect(server)
    client.mail("sender@remote.test")
    for _ in range(limit):
        expect(client.rcpt("alice@example.test"), codes.RECIPIENT_OK)
    expect(client.rcpt("bob@example.test"), codes.TOO_MANY_RECIPIENTS)
    code, _ = client.data(MSG)
    assert code == 250
    client.quit()
    assert len(files(server, "alice@example.test")) == 1
    assert not (maildir(server, "bob@example.test") / "new").exists() or not files(
        server, "bob@example.test"
    )


def test_size_limit_at_mail_and_at_data(server: ServerThread) -> None:
    limit = server.settings.limits.message_size
    client = connect(server)
    code, text = client.mail("sender@remote.test", [f"SIZE={limit + 1}"])
    expect((code, text), codes.MESSAGE_TOO_BIG)
    client.rset()
    client.mail("sender@remote.test")
    client.rcpt("alice@example.test")
    line = b"x" * 998 + b"\r\n"
    big = MSG + line * (limit // len(line) + 2)
    code, text = client.data(big)
    expect((code, text), codes.MESSAGE_TOO_BIG)
    # The session goes on after the refusal.
    assert client.sendmail("sender@remote.test", ["alice@example.test"], MSG) == {}
    client.quit()
    assert len(files(server, "alice@example.test")) == 1


class RawSMTP:
    """A byte-exact SMTP client for what smtplib would tidy up."""

    def __init__(self, server: ServerThread) -> None:
        self.sock = socket.create_connection(server.address(), timeout=10)
        self.buf = b""
        self.read_reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self) -> tuple[int, str]:
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(x[4:] for x in lines)

    def cmd(self, line: bytes) -> tuple[int, str]:
        self.send(line + b"\r\n")
        return self.read_reply()

    def close(self) -> None:
        self.sock.close()


def start_data(raw: RawSMTP) -> None:
    assert raw.cmd(b"EHLO raw.test")[0] == 250
    assert raw.cmd(b"MAIL FROM:<sender@remote.test>")[0] == 250
    assert raw.cmd(b"RCPT TO:<alice@example.test>")[0] == 250
    assert raw.cmd(b"DATA")[0] == 354


@pytest.mark.parametrize(
    "body",
    [
        b"Subject: x\r\n\r\nbare LF here\nnext\r\n",
        b"Subject: x\r\n\r\nbare CR here\rnext\r\n",
        # The smuggling shape: a fake end of data with bare LF, then a second
        # transaction that a lenient server would accept as a new message.
        b"Subject: x\r\n\r\nhi\r\n\n.\nMAIL FROM:<evil@remote.test>\nRCPT TO:<bob@example.test>\n"
        b"DATA\nSubject: smuggled\n\nboo\r\n",
        b"Subject: x\r\n\r\nhi\r\n\r.\r\nsmuggled\r\n",
    ],
)
def test_bare_cr_or_lf_is_refused(server: ServerThread, body: bytes) -> None:
    raw = RawSMTP(server)
    start_data(raw)
    code, text = raw.cmd(body + b".")
    assert code == codes.BARE_NEWLINE.code
    assert text.startswith(codes.BARE_NEWLINE.enhanced)
    assert raw.cmd(b"QUIT")[0] == 221
    raw.close()
    assert all_mail_files(server) == []


def test_pipelining(server: ServerThread) -> None:
    raw = RawSMTP(server)
    assert raw.cmd(b"EHLO raw.test")[0] == 250
    raw.send(
        b"MAIL FROM:<sender@remote.test>\r\nRCPT TO:<nobody@example.test>\r\n"
        b"RCPT TO:<bob@example.test>\r\nDATA\r\n"
    )
    assert raw.read_reply()[0] == 250
    assert raw.read_reply()[0] == 550
    assert raw.read_reply()[0] == 250
    assert raw.read_reply()[0] == 354
    assert raw.cmd(MSG + b".")[0] == 250
    raw.close()
    assert len(files(server, "bob@example.test")) == 1


def test_command_line_too_long(server: ServerThread) -> None:
    raw = RawSMTP(server)
    assert raw.cmd(b"EHLO raw.test")[0] == 250
    code, text = raw.cmd(b"NOOP " + b"x" * 2000)
    assert code == 500 and text.startswith("5.5.2")
    assert raw.cmd(b"NOOP")[0] == 250  # still talking
    raw.close()


def test_data_line_too_long(server: ServerThread) -> None:
    raw = RawSMTP(server)
    start_data(raw)
    code, text = raw.cmd(b"Subject: x\r\n\r\n" + b"y" * 1200 + b"\r\n.")
    assert code == 500 and text.startswith("5.5.2")
    raw.close()
    assert all_mail_files(server) == []


def test_every_reply_has_an_enhanced_code(server: ServerThread) -> None:
    raw = RawSMTP(server)
    raw.cmd(b"EHLO raw.test")
    for line in (
        b"NOOP",
        b"RCPT TO:<a@example.test>",
        b"DATA",
        b"FOO",
        b"MAIL FROM:<a@b.test> X=1",
        b"AUTH PLAIN AGFAAGI=",
        b"VRFY alice",
        b"RSET",
        b"HELP",
    ):
        code, text = raw.cmd(line)
        assert text[:1] == str(code)[0] and text[1] == ".", (line, code, text)
    raw.close()


def test_starttls_then_mail(server: ServerThread, tls_files: TLSFiles) -> None:
    context = ssl.create_default_context()
    tls_files.ca.configure_trust(context)
    client = connect(server)
    client.starttls(context=context)
    client.ehlo("client.remote.test")
    assert not client.has_extn("starttls")
    assert client.sendmail("sender@remote.test", ["alice@example.test"], MSG) == {}
    client.quit()
    data = files(server, "alice@example.test")[0].read_bytes()
    assert b" with ESMTPS (TLSv1." in data


def test_connection_limit_answers_421(server: ServerThread) -> None:
    per_ip = server.settings.limits.smtp_connections_per_ip
    held = [RawSMTP(server) for _ in range(per_ip)]
    try:
        sock = socket.create_connection(server.address(), timeout=10)
        data = sock.recv(1024)
        sock.close()
        assert data.startswith(str(codes.TOO_MANY_CONNECTIONS).encode())
    finally:
        for raw in held:
            raw.close()


@pytest.mark.parametrize(
    ("wire", "stored_tail"),
    [
        # An empty message: the end-of-data mark is the first line.
        (b".\r\n", b"id "),
        # Lines ending in a dot, a dot-only line stuffed as "..", a ".." line stuffed as "...".
        (
            b"Subject: dots\r\n\r\nend with a dot.\r\n..\r\n...\r\nx.\r\n.\r\n",
            b"Subject: dots\r\n\r\nend with a dot.\r\n.\r\n..\r\nx.\r\n",
        ),
        # The longest line RFC 5321 allows, and the same line dot-stuffed.
        (
            b"Subject: long\r\n\r\n" + b"a" * 998 + b"\r\n." + b"b" * 998 + b"\r\n.\r\n",
            b"a" * 998 + b"\r\n" + b"b" * 998 + b"\r\n",
        ),
    ],
)
def test_data_transparency(server: ServerThread, wire: bytes, stored_tail: bytes) -> None:
    raw = RawSMTP(server)
    start_data(raw)
    raw.send(wire)
    code, _ = raw.read_reply()
    assert code == 250
    raw.close()
    (path,) = files(server, "alice@example.test")
    data = path.read_bytes()
    if stored_tail == b"id ":  # empty message: only our trace headers
        assert data.startswith(b"Return-Path:") and data.endswith(b"\r\n")
        assert b"\r\n\r\n" not in data
    else:
        assert data.endswith(stored_tail)


def test_data_split_across_many_segments(server: ServerThread) -> None:
    raw = RawSMTP(server)
    start_data(raw)
    raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in MSG + b".\r\n":
        raw.send(bytes([byte]))
    assert raw.read_reply()[0] == 250
    raw.close()
    (path,) = files(server, "alice@example.test")
    assert path.read_bytes().endswith(MSG.replace(b"\r\n.Line", b"\r\nLine"))
