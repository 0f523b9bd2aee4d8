"""POP3 against a real server on loopback, driven by poplib (STLS and POP3S) and raw sockets."""

from __future__ import annotations

import base64
import poplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.conftest import FAST_HASHER, ServerThread, TLSFiles, populate

from pochta.accounts import Accounts
from pochta.accounts.login import LoginGuard, LoginPolicy
from pochta.config import Settings, load_settings
from pochta.pop3 import Pop3Service, replies
from pochta.pop3.parser import Command, parse_command
from pochta.sasl import client_final_for_tests
from pochta.server import Server
from pochta.store import DELETED, SEEN, Recipient, StoreMode

ALICE = "alice@example.test"
BOB = "bob@example.test"
PASSWORD = {ALICE: "secret-" + ALICE, BOB: "secret-" + BOB}

MSG1 = b"From: a@remote.test\r\nSubject: one\r\n\r\nfirst body\r\nsecond line\r\nthird\r\n"
MSG2 = b"From: b@remote.test\r\nSubject: two\r\n\r\n.starts with a dot\r\n.\r\n..\r\nend.\r\n"
MSG3 = b"From: c@remote.test\r\nSubject: three\r\n\r\nno final newline"


def settings_text(allow_plaintext: bool) -> str:
    return (
        'hostname = "mail.example.test"\ndata_dir = "data"\n\n'
        '[listen]\npop3 = ["127.0.0.1:0"]\npop3s = ["127.0.0.1:0"]\n\n'
        '[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n\n'
        f"[auth]\nallow_plaintext_without_tls = {'true' if allow_plaintext else 'false'}\n"
    )


class Pop3Server(ServerThread):
    """The real server, with the cheap test hasher so logins stay fast."""

    accounts: Accounts

    async def _make(self) -> Server:
        path = self.settings.data_dir / "accounts.sqlite"
        self.accounts = Accounts.open(path, hasher=FAST_HASHER)
        return Server(self.settings, accounts=self.accounts)

    @property
    def pop3(self) -> Pop3Service:
        service = self.server._pop3
        assert service is not None
        return service

    def deliver(self, user: str, *messages: bytes) -> None:
        for data in messages:
            self.call(lambda d=data: self.server.store.deliver(d, [Recipient(user)]))  # type: ignore[misc]

    def uids(self, user: str) -> list[int]:
        infos = self.call(lambda: self.server.store.mailboxes(user).messages("INBOX"))
        return [m.uid for m in infos]

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.accounts.close()


def start_server(tmp_path: Path, allow_plaintext: bool = False) -> Pop3Server:
    path = tmp_path / "pochta.toml"
    path.write_text(settings_text(allow_plaintext))
    config: Settings = load_settings(path)
    with Accounts.open(config.data_dir / "accounts.sqlite", hasher=FAST_HASHER) as accounts:
        populate(accounts)
    srv = Pop3Server(config)
    srv.start()
    for user in (ALICE, BOB):
        srv.call(lambda u=user: srv.server.store.create_user(u))  # type: ignore[misc]
    return srv


@pytest.fixture
def pop(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Pop3Server]:
    srv = start_server(tmp_path)
    srv.deliver(ALICE, MSG1, MSG2, MSG3)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def client_tls(tls_files: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_files.ca.configure_trust(context)
    return context


Connect = Callable[..., poplib.POP3]


@pytest.fixture
def connect(pop: Pop3Server, client_tls: ssl.SSLContext) -> Iterator[Connect]:
    """Open poplib clients (STLS by default, or POP3S); all are closed afterwards."""
    opened: list[poplib.POP3] = []

    def open_client(kind: str = "pop3", login: str | None = None) -> poplib.POP3:
        host, port = pop.address(kind)
        client: poplib.POP3
        if kind == "pop3s":
            client = poplib.POP3_SSL(host, port, context=client_tls, timeout=10)
        else:
            client = poplib.POP3(host, port, timeout=10)
        opened.append(client)
        if kind == "pop3":
            client.stls(context=client_tls)
        if login is not None:
            client.user(login)
            client.pass_(PASSWORD[login])
        return client

    yield open_client
    for client in opened:
        client.close()


def retr(client: poplib.POP3, number: int) -> bytes:
    _, lines, _ = client.retr(number)
    return b"".join(line + b"\r\n" for line in lines)


class Raw:
    """A byte-exact POP3 client for what poplib tidies up."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    @classmethod
    def connect(cls, address: tuple[str, int], context: ssl.SSLContext | None = None) -> Raw:
        sock = socket.create_connection(address, timeout=10)
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname=address[0])
        raw = cls(sock)
        assert raw.line().startswith(b"+OK")
        return raw

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def multiline(self) -> bytes:
        """The raw body of a multi-line response, still dot-stuffed, with its terminator."""
        data = b"\r\n" + self.buf
        while b"\r\n.\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        end = data.index(b"\r\n.\r\n") + 5
        self.buf = data[end:]
        return data[2:end]

    def cmd(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.line()

    def login(self, user: str) -> None:
        assert self.cmd(b"USER " + user.encode()).startswith(b"+OK")
        assert self.cmd(b"PASS " + PASSWORD[user].encode()).startswith(b"+OK")

    def closed(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.sock.close()


def unstuff(wire: bytes) -> bytes:
    """A multi-line body as sent (terminator included) back to the bytes it carries."""
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    out = body.replace(b"\r\n..", b"\r\n.")
    return out[1:] if out.startswith(b"..") else out


# --- capabilities and TLS ----------------------------------------------------------


def test_capa_before_and_after_stls(pop: Pop3Server, client_tls: ssl.SSLContext) -> None:
    client = poplib.POP3(*pop.address("pop3"), timeout=10)
    try:
        before = client.capa()
        assert "STLS" in before and "USER" not in before and "SASL" not in before
        for cap in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"):
            assert cap in before, cap
        assert before["EXPIRE"] == ["NEVER"] and before["LOGIN-DELAY"] == ["0"]
        assert before["IMPLEMENTATION"] == ["Pochta"]
        client.stls(context=client_tls)
        after = client.capa()
        assert (
            "STLS" not in after and "USER" in after and after["SASL"] == ["PLAIN", "SCRAM-SHA-256"]
        )
        client.quit()
    finally:
        client.close()


def test_full_session_over_stls(pop: Pop3Server, connect: Connect) -> None:
    uids = pop.uids(ALICE)
    client = connect(login=ALICE)
    assert client.stat() == (3, len(MSG1) + len(MSG2) + len(MSG3))
    _, listing, _ = client.list()
    assert listing == [b"1 %d" % len(MSG1), b"2 %d" % len(MSG2), b"3 %d" % len(MSG3)]
    assert client.list(2) == b"+OK 2 %d" % len(MSG2)
    assert retr(client, 1) == MSG1
    assert retr(client, 2) == MSG2
    assert retr(client, 3) == MSG3 + b"\r\n"  # the last line gets its CRLF on the wire
    assert client.noop() == b"+OK"
    watch = pop.call(lambda: _watch(pop))
    client.dele(1)
    assert client.stat() == (2, len(MSG2) + len(MSG3))
    with pytest.raises(poplib.error_proto, match="deleted"):
        client.retr(1)
    assert client.quit().startswith(b"+OK")
    assert pop.uids(ALICE) == uids[1:]
    # IMAP sessions hear about it: a change notice and the UID as vanished.
    notices = pop.call(lambda: watch.wait(5))
    assert notices and notices[0].mailbox == "INBOX"
    changes = pop.call(lambda: pop.server.store.mailboxes(ALICE).changes("INBOX", 0))
    assert uids[0] in changes.vanished
    watch.close()


async def _watch(pop: Pop3Server):  # type: ignore[no-untyped-def]
    return pop.server.store.mailboxes(ALICE).watch()


def test_the_same_message_can_be_retrieved_again(pop: Pop3Server, connect: Connect) -> None:
    # A client retrying after a timeout asks again; the read-ahead must not
    # have given the bytes away with the first answer.
    client = connect(login=ALICE)
    assert retr(client, 1) == MSG1
    assert retr(client, 2) == MSG2
    assert retr(client, 1) == MSG1
    assert retr(client, 2) == MSG2
    assert client.quit().startswith(b"+OK")


def test_pop3s_with_sasl_plain(pop: Pop3Server, connect: Connect) -> None:
    client = connect("pop3s")
    assert "STLS" not in client.capa()
    token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD[ALICE].encode())
    assert client._shortcmd("AUTH PLAIN " + token.decode()).startswith(b"+OK")
    assert retr(client, 2) == MSG2
    client.quit()


def test_sasl_plain_with_continuation_and_cancel(
    pop: Pop3Server, client_tls: ssl.SSLContext
) -> None:
    raw = Raw.connect(pop.address("pop3s"), client_tls)
    try:
        assert raw.cmd(b"AUTH PLAIN") == b"+ "
        assert raw.cmd(b"*").startswith(b"-ERR")
        assert raw.cmd(b"AUTH PLAIN") == b"+ "
        assert raw.cmd(b"%%%").startswith(b"-ERR")
        assert raw.cmd(b"AUTH PLAIN") == b"+ "
        wrong = base64.b64encode(b"\0" + ALICE.encode() + b"\0wrong")
        assert raw.cmd(wrong).startswith(b"-ERR [AUTH]")
        assert raw.cmd(b"AUTH PLAIN") == b"+ "
        good = base64.b64encode(b"\0" + BOB.encode() + b"\0" + PASSWORD[BOB].encode())
        assert raw.cmd(good).startswith(b"+OK")
        assert raw.cmd(b"STAT") == b"+OK 0 0"
    finally:
        raw.close()


def test_sasl_scram_sha_256(pop: Pop3Server, client_tls: ssl.SSLContext) -> None:
    """RFC 5034 with SCRAM-SHA-256: the server-final data comes as a last challenge."""
    raw = Raw.connect(pop.address("pop3s"), client_tls)
    try:
        first = f"n={ALICE},r=popclientnonce"
        reply = raw.cmd(b"AUTH SCRAM-SHA-256 " + base64.b64encode(b"n,," + first.encode()))
        assert reply.startswith(b"+ ")
        server_first = base64.b64decode(reply[2:]).decode()
        final = client_final_for_tests(PASSWORD[ALICE], first, server_first)
        reply = raw.cmd(base64.b64encode(final.encode()))
        assert reply.startswith(b"+ ") and base64.b64decode(reply[2:]).startswith(b"v=")
        assert raw.cmd(b"").startswith(b"+OK")
        assert raw.cmd(b"STAT").startswith(b"+OK 3 ")  # alice's maildrop
    finally:
        raw.close()


# --- commands ----------------------------------------------------------------------


def test_top(pop: Pop3Server, connect: Connect) -> None:
    client = connect(login=ALICE)
    _, lines, _ = client.top(1, 0)
    assert lines == [b"From: a@remote.test", b"Subject: one", b""]
    _, lines, _ = client.top(1, 2)
    assert lines[-2:] == [b"first body", b"second line"]
    _, lines, _ = client.top(1, 100)
    assert b"".join(line + b"\r\n" for line in lines) == MSG1
    _, lines, _ = client.top(2, 2)
    assert lines[-2:] == [b".starts with a dot", b"."]  # poplib unstuffs
    with pytest.raises(poplib.error_proto):
        client.top(9, 1)
    client.quit()


def test_uidl_stable_across_sessions_and_imap_changes(pop: Pop3Server, connect: Connect) -> None:
    uids = pop.uids(ALICE)
    info = pop.call(lambda: pop.server.store.mailboxes(ALICE).status("INBOX"))
    first = connect(login=ALICE)
    _, listing, _ = first.uidl()
    assert listing == [b"%d %d.%d" % (n, info.uidvalidity, u) for n, u in enumerate(uids, 1)]
    assert first.uidl(3) == b"+OK 3 %d.%d" % (info.uidvalidity, uids[2])
    first.quit()
    # An IMAP client reads message 1 (its file is renamed), expunges message 2,
    # and new mail arrives.
    boxes = pop.server.store.mailboxes(ALICE)
    pop.call(lambda: boxes.store("INBOX", [uids[0]], [SEEN], StoreMode.ADD))
    pop.call(lambda: boxes.store("INBOX", [uids[1]], [DELETED], StoreMode.ADD))
    pop.call(lambda: boxes.expunge("INBOX", [uids[1]]))
    pop.deliver(ALICE, MSG1)
    second = connect(login=ALICE)
    _, listing, _ = second.uidl()
    ids = [line.split()[1] for line in listing]
    assert ids[:2] == [b"%d.%d" % (info.uidvalidity, u) for u in (uids[0], uids[2])]
    assert len(ids) == 3 and ids[2] not in {b"%d.%d" % (info.uidvalidity, u) for u in uids}
    second.quit()


def test_dele_then_rset(pop: Pop3Server, connect: Connect) -> None:
    client = connect(login=ALICE)
    client.dele(1)
    client.dele(3)
    with pytest.raises(poplib.error_proto, match="deleted"):
        client.dele(1)
    assert client.stat()[0] == 1
    assert client.rset().startswith(b"+OK")
    assert client.stat()[0] == 3
    assert client.quit().startswith(b"+OK")
    assert len(pop.uids(ALICE)) == 3


def test_dele_then_disconnect_deletes_nothing(pop: Pop3Server, connect: Connect) -> None:
    client = connect(login=ALICE)
    client.dele(1)
    client.dele(2)
    client.close()  # no QUIT: no UPDATE state (RFC 1939 §6)
    deadline = time.monotonic() + 5
    while ALICE in pop.pop3.in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(pop.uids(ALICE)) == 3
    again = connect(login=ALICE)  # the lock was released
    assert again.stat()[0] == 3
    again.quit()


def test_second_session_is_in_use(pop: Pop3Server, connect: Connect) -> None:
    first = connect(login=ALICE)
    second = connect("pop3s")
    second.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        second.pass_(PASSWORD[ALICE])
    other = connect("pop3s", login=BOB)  # other users are not affected
    other.quit()
    first.quit()
    second.user(ALICE)
    assert second.pass_(PASSWORD[ALICE]).startswith(b"+OK")
    second.quit()


def test_message_expunged_by_imap_during_session(pop: Pop3Server, connect: Connect) -> None:
    uids = pop.uids(ALICE)
    client = connect(login=ALICE)
    boxes = pop.server.store.mailboxes(ALICE)
    pop.call(lambda: boxes.store("INBOX", [uids[1]], [DELETED], StoreMode.ADD))
    pop.call(lambda: boxes.expunge("INBOX", [uids[1]]))
    pop.deliver(ALICE, b"Subject: late\r\n\r\nnot in this session\r\n")
    with pytest.raises(poplib.error_proto, match="removed by another client"):
        client.retr(2)
    assert retr(client, 3) == MSG3 + b"\r\n"  # numbers did not shift
    assert client.stat()[0] == 3  # the snapshot taken at login
    client.dele(2)
    client.dele(1)
    assert client.quit().startswith(b"+OK")
    assert pop.uids(ALICE)[:1] == [uids[2]] and len(pop.uids(ALICE)) == 2


# --- bytes on the wire -----------------------------------------------------------------


def test_eight_bit_and_binary_messages_are_byte_exact(
    pop: Pop3Server, client_tls: ssl.SSLContext
) -> None:
    eight_bit = "Subject: =?utf-8?q?x?=\r\n\r\nПривет, мир — ünïcödé\r\n".encode()
    binary = b"Subject: bin\r\n\r\n" + bytes(b for b in range(256) if b not in b"\r\n") + b"\r\n"
    binary += bytes(range(128, 256)) + b"\x00\x00\r\n"
    pop.deliver(BOB, eight_bit, binary)
    raw = Raw.connect(pop.address("pop3s"), client_tls)
    try:
        raw.login(BOB)
        for number, data in ((1, eight_bit), (2, binary)):
            assert raw.cmd(b"RETR %d" % number) == b"+OK %d octets" % len(data)
            assert unstuff(raw.multiline()) == data
    finally:
        raw.close()


def test_dot_stuffing_on_the_wire(pop: Pop3Server, client_tls: ssl.SSLContext) -> None:
    leading = b".first line is a dot line\r\n\r\n.\r\nx\r\n"
    pop.deliver(BOB, MSG2, leading)
    raw = Raw.connect(pop.address("pop3s"), client_tls)
    try:
        raw.login(BOB)
        raw.cmd(b"RETR 1")
        wire = raw.multiline()
        assert b"\r\n..starts with a dot\r\n..\r\n...\r\nend.\r\n.\r\n" in wire
        assert unstuff(wire) == MSG2
        raw.cmd(b"RETR 2")
        wire = raw.multiline()
        assert wire.startswith(b"..first line") and b"\r\n..\r\nx\r\n.\r\n" in wire
        assert unstuff(wire) == leading
    finally:
        raw.close()


def test_pipelined_retrs_wait_for_a_slow_reader(
    pop: Pop3Server, client_tls: ssl.SSLContext
) -> None:
    """Output stays bounded when a client pipelines RETRs and does not read (RFC 2449 §6.6)."""
    big = b"Subject: big\r\n\r\n" + b"x" * 998 + b"\r\n"
    pop.deliver(BOB, big * 200)  # ~200 KB
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(10)
    sock.connect(pop.address("pop3s"))
    raw = Raw(client_tls.wrap_socket(sock, server_hostname="127.0.0.1"))
    try:
        assert raw.line().startswith(b"+OK")
        raw.login(BOB)
        raw.sock.sendall(b"RETR 1\r\n" * 100)  # ~20 MB of replies
        time.sleep(0.5)
        session = pop.pop3.in_use[BOB]
        transport = session._transport
        assert transport is not None
        assert transport.get_write_buffer_size() < 1_000_000
        for _ in range(100):
            assert raw.line().startswith(b"+OK")
            raw.multiline()
        assert raw.cmd(b"NOOP") == b"+OK"
    finally:
        raw.close()


# --- security --------------------------------------------------------------------------


def test_plaintext_login_refused_without_tls(pop: Pop3Server) -> None:
    client = poplib.POP3(*pop.address("pop3"), timeout=10)
    try:
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_(PASSWORD[ALICE])
        token = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD[ALICE].encode())
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client._shortcmd("AUTH PLAIN " + token.decode())
        with pytest.raises(poplib.error_proto):
            client.stat()  # not in AUTHORIZATION state
        client.quit()
    finally:
        client.close()


def test_plaintext_login_allowed_when_configured(tmp_path: Path, tls_files: TLSFiles) -> None:
    srv = start_server(tmp_path, allow_plaintext=True)
    try:
        srv.deliver(ALICE, MSG1)
        client = poplib.POP3(*srv.address("pop3"), timeout=10)
        try:
            assert "USER" in client.capa()
            client.user(ALICE)
            client.pass_(PASSWORD[ALICE])
            assert retr(client, 1) == MSG1
            client.quit()
        finally:
            client.close()
    finally:
        srv.stop()


def test_stls_discards_pipelined_plaintext(pop: Pop3Server, client_tls: ssl.SSLContext) -> None:
    """STARTTLS command injection (CVE-2011-0411): RFC 2595 §4."""
    raw = Raw.connect(pop.address("pop3"))
    try:
        raw.sock.sendall(b"STLS\r\nCAPA\r\n")
        assert raw.line().startswith(b"+OK")
        assert raw.buf == b""
        raw.sock = client_tls.wrap_socket(raw.sock, server_hostname="127.0.0.1")
        # The injected CAPA must not be answered; the first reply is to NOOP.
        assert raw.cmd(b"NOOP").startswith(b"-ERR NOOP is not valid")
        assert raw.cmd(b"STLS").startswith(b"-ERR")
    finally:
        raw.close()


def test_failed_logins_are_throttled(pop: Pop3Server, connect: Connect) -> None:
    pop.pop3.guard = LoginGuard(LoginPolicy(free_failures=2, refuse_after=4, base_delay=0.01))
    client = connect()
    for _ in range(3):  # the third failure closes this connection
        client.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_("wrong")
    client = connect()
    client.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        client.pass_("wrong")  # the fourth failure, delayed
    client = connect()
    client.user(ALICE)
    # Now even the right password is refused, with a "try later" code, not [AUTH].
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] too many failed logins"):
        client.pass_(PASSWORD[ALICE])
    client = connect()
    client.user(BOB)
    # The client's IP is locked out too, whatever account it tries next.
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
        client.pass_(PASSWORD[BOB])


def test_connection_limit_answers_err(pop: Pop3Server) -> None:
    pop.pop3.limiter.per_ip = 2
    held = [Raw.connect(pop.address("pop3")) for _ in range(2)]
    try:
        sock = socket.create_connection(pop.address("pop3"), timeout=10)
        with sock:
            assert sock.recv(1024) == replies.TOO_MANY_CONNECTIONS
    finally:
        for raw in held:
            raw.close()


def test_long_lines_are_refused_and_the_session_goes_on(pop: Pop3Server) -> None:
    raw = Raw.connect(pop.address("pop3"))
    try:
        assert raw.cmd(b"CAPA " + b"x" * 300).startswith(b"-ERR line too long")
        assert raw.cmd(b"X" * 20000) == replies.LINE_TOO_LONG.rstrip()
        assert raw.cmd(b"CAPA").startswith(b"+OK")
    finally:
        raw.close()


def test_idle_session_is_closed_without_update(pop: Pop3Server, client_tls: ssl.SSLContext) -> None:
    pop.pop3.idle_timeout = 0.3
    raw = Raw.connect(pop.address("pop3s"), client_tls)
    try:
        raw.login(ALICE)
        assert raw.cmd(b"DELE 1").startswith(b"+OK")
        raw.sock.settimeout(5)
        assert raw.closed()  # RFC 1939 §3: no reply, no UPDATE
    finally:
        raw.close()
    assert len(pop.uids(ALICE)) == 3


def test_server_stop_tells_idle_sessions(tmp_path: Path, tls_files: TLSFiles) -> None:
    srv = start_server(tmp_path, allow_plaintext=True)
    raw = Raw.connect(srv.address("pop3"))
    try:
        srv.stop()
        assert raw.line() == replies.SHUTTING_DOWN.rstrip()
    finally:
        raw.close()


# --- a live session under random input ------------------------------------------------

MULTILINE = {"CAPA", "RETR", "TOP"}
VERBS = [b"STAT", b"LIST", b"UIDL", b"RETR", b"DELE", b"TOP", b"NOOP", b"RSET", b"CAPA",
         b"USER", b"PASS", b"AUTH", b"STLS", b"APOP", b""]  # fmt: skip
junk = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
fuzz_lines = st.one_of(
    junk,
    st.tuples(st.sampled_from(VERBS), junk).map(lambda t: t[0] + b" " + t[1]),
    st.tuples(st.sampled_from(VERBS), st.integers(-2, 5), st.integers(-1, 3)).map(
        lambda t: t[0] + b" %d %d" % (t[1], t[2])
    ),
    st.tuples(st.sampled_from(VERBS), st.integers(0, 5)).map(lambda t: t[0] + b" %d" % t[1]),
).filter(lambda line: not line.upper().startswith(b"QUIT"))


def expects_multiline(line: bytes) -> bool:
    command = parse_command(line)
    if not isinstance(command, Command):
        return False
    if command.verb in ("LIST", "UIDL"):
        return not command.numbers
    return command.verb in MULTILINE


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(fuzz_lines, min_size=1, max_size=10))
def test_random_lines_in_a_live_session(
    pop: Pop3Server, client_tls: ssl.SSLContext, sent: list[bytes]
) -> None:
    raw = Raw.connect(pop.address("pop3s"), client_tls)
    try:
        raw.login(ALICE)
        for line in sent:
            reply = raw.cmd(line)
            assert reply.startswith((b"+OK", b"-ERR")), (line, reply)
            if reply.startswith(b"+OK") and expects_multiline(line):
                raw.multiline()
        assert raw.cmd(b"RSET").startswith(b"+OK")  # still usable, and nothing is deleted
        assert raw.cmd(b"QUIT").startswith(b"+OK")
    finally:
        raw.close()
