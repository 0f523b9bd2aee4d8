"""Real IMAP clients (mbsync, offlineimap, mutt) against our server on loopback.

Each test runs a client binary as a subprocess, with HOME in the test's
tmp_path so no user configuration is read and all client state stays there.
Every client speaks TLS (STARTTLS on ``imap`` or implicit TLS on ``imaps``)
and verifies the server certificate against the test CA. The server side is
checked with imaplib, which is itself already tested in test_imap.py.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import imaplib
import logging
import os
import re
import select
import ssl
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from tests.conftest import TLSFiles, need_client, with_common_name
from tests.integration.test_imap import ALICE, MSG_8BIT, MSG_MULTI, PASSWORD, ImapServer, start

#: Seconds a client run may take; a normal run takes well under one second.
CLIENT_TIMEOUT = 30


@dataclass
class Env:
    """Where a client lives: its HOME and the CA file it verifies the server with."""

    home: Path
    ca_pem: Path

    def vars(self) -> dict[str, str]:
        # Only what the clients need: no user config (HOME), a stable locale
        # for their messages, and no proxy or terminal settings leaking in.
        return {
            "HOME": str(self.home),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TERM": "dumb",
        }


@pytest.fixture
def srv(tmp_path: Path, tls_files: TLSFiles) -> Iterator[ImapServer]:
    with_common_name(tls_files)  # offlineimap refuses a certificate without a CN
    server = start(tmp_path, allow_plaintext=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _server_logs_no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A client may cope with a server failure (retry, skip a message) and
    still exit 0: a session or command that failed on the server (logged
    with its traceback) fails the test too."""
    yield
    errors = [
        f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}"
        for r in caplog.get_records("call")
        if r.name.startswith("pochta") and r.levelno >= logging.ERROR
    ]
    assert not errors, "server errors:\n" + "\n".join(errors)


@pytest.fixture
def env(tmp_path: Path, tls_files: TLSFiles) -> Env:
    home = tmp_path / "home"
    home.mkdir()
    ca_pem = tmp_path / "ca.pem"
    tls_files.ca.cert_pem.write_to_path(str(ca_pem))
    return Env(home, ca_pem)


def tail(output: bytes | str | None, lines: int = 80) -> str:
    """The end of a client's output (a hung client's may be long)."""
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    return "\n".join((output or "").splitlines()[-lines:])


def run(env: Env, argv: list[str], what: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run a client to completion; fail with its output if it does not exit 0."""
    try:
        done = subprocess.run(
            argv,
            env=env.vars(),
            cwd=env.home,
            input=stdin,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=CLIENT_TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"{what}: no exit within {CLIENT_TIMEOUT}s\nstdout (end):\n{tail(e.stdout)}"
            f"\nstderr (end):\n{tail(e.stderr)}"
        )
    assert done.returncode == 0, (
        f"{what}: exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return done


# --- the server side, seen through imaplib -----------------------------------------------


@dataclass(frozen=True)
class Stored:
    uid: int
    flags: frozenset[str]
    body: bytes
    #: INTERNALDATE, seconds since the epoch.
    internaldate: int


class Remote:
    """A logged-in imaplib session on imaps, for setting up and checking the server."""

    def __init__(self, srv: ImapServer, ca_pem: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca_pem))
        host, port = srv.address("imaps")
        self.client = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=10)
        self.client.login(ALICE, PASSWORD)

    def close(self) -> None:
        self.client.logout()

    def mailboxes(self) -> set[str]:
        typ, data = self.client.list('""', "*")
        assert typ == "OK", data
        names = set()
        for line in data:
            assert isinstance(line, bytes)
            m = re.fullmatch(rb'\(.*?\) (?:"/"|NIL) "?(.*?)"?', line)
            assert m, line
            names.add(m[1].decode())
        return names

    def create(self, name: str) -> None:
        typ, data = self.client.create(f'"{name}"')
        assert typ == "OK", data

    def append(self, mailbox: str, body: bytes, flags: str = "") -> None:
        typ, data = self.client.append(f'"{mailbox}"', flags or None, None, body)
        assert typ == "OK", data

    def set_flags(self, mailbox: str, uid: int, flags: str) -> None:
        assert self.client.select(f'"{mailbox}"')[0] == "OK"
        typ, data = self.client.uid("STORE", str(uid), "+FLAGS", f"({flags})")
        assert typ == "OK", data
        self.client.close()

    def expunge(self, mailbox: str, uid: int) -> None:
        self.set_flags(mailbox, uid, r"\Deleted")
        assert self.client.select(f'"{mailbox}"')[0] == "OK"
        typ, data = self.client.uid("EXPUNGE", str(uid))
        assert typ == "OK", data
        self.client.close()

    def messages(self, mailbox: str) -> dict[int, Stored]:
        """UID -> flags and exact bytes, read without setting \\Seen."""
        typ, data = self.client.select(f'"{mailbox}"', readonly=True)
        assert typ == "OK", data
        typ, data = self.client.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        assert typ == "OK", data
        found: dict[int, Stored] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue  # the closing ")" of each message
            head, body = item
            uid = re.search(rb"UID (\d+)", head)
            flags = re.search(rb"FLAGS \(([^)]*)\)", head)
            date = re.search(rb'INTERNALDATE "([^"]+)"', head)
            assert uid and flags and date, head
            when = dt.datetime.strptime(date[1].decode(), "%d-%b-%Y %H:%M:%S %z")
            found[int(uid[1])] = Stored(
                int(uid[1]), frozenset(flags[1].decode().split()), body, int(when.timestamp())
            )
        self.client.close()
        return found


@pytest.fixture
def remote(srv: ImapServer, env: Env) -> Iterator[Remote]:
    r = Remote(srv, env.ca_pem)
    try:
        yield r
    finally:
        r.close()


def message(n: int, extra: str = "") -> bytes:
    """A distinct small message with CRLF line ends, as IMAP stores them."""
    return (
        f"From: Sender {n} <s{n}@remote.test>\r\nTo: {ALICE}\r\n"
        f"Subject: message {n}{extra}\r\nDate: Mon, 02 Nov 2026 10:00:0{n % 10} +0000\r\n"
        f"Message-ID: <m{n}@remote.test>\r\n\r\nBody of message {n}.\r\nSecond line.\r\n"
    ).encode()


def to_lf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n")


def without_header(data: bytes, name: bytes | None) -> bytes:
    """``data`` (CRLF or LF line ends) without the one-line header field
    ``name`` (None: unchanged): clients add such fields to find a copied
    message again."""
    if name is None:
        return data
    eol = b"\r\n" if b"\r\n" in data else b"\n"
    head, sep, body = data.partition(eol + eol)
    prefix = name.lower() + b":"
    lines = [ln for ln in head.split(eol) if not ln.lower().startswith(prefix)]
    return eol.join(lines) + sep + body


# --- Maildir, the local side of mbsync and offlineimap ---------------------------------


def maildir_files(folder: Path) -> dict[str, Path]:
    """Base name (before ``:2,``) -> path, over cur/ and new/."""
    found = {}
    for sub in ("cur", "new"):
        for path in (folder / sub).iterdir():
            found[path.name.split(":2,")[0]] = path
    return found


def maildir_flags(path: Path) -> str:
    return path.name.partition(":2,")[2]


def by_body(folder: Path, drop: bytes | None) -> dict[bytes, Path]:
    """Message bytes (without the header field ``drop``) -> path."""
    found = {}
    for path in maildir_files(folder).values():
        data = path.read_bytes()
        found[without_header(data, drop)] = path
    return found


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative name -> bytes), to compare two runs."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


#: Messages that exercise literals and byte-exactness: 8-bit text, MIME
#: parts, no line end after the last line, a body of many long lines.
ODD_MESSAGES = (
    MSG_8BIT,
    MSG_MULTI,
    b"From: x@remote.test\r\nSubject: no final line end\r\n\r\nlast line",
    b"From: x@remote.test\r\nSubject: big\r\n\r\n"
    + b"".join(b"%05d " % i + b"x" * 994 + b"\r\n" for i in range(120)),
)

#: A local message's arrival time (its file's mtime), in the past.
ARRIVED = int(dt.datetime(2026, 1, 15, 12, 34, 56, tzinfo=dt.UTC).timestamp())

#: Folders on the server: nested, with a space, with non-ASCII (modified UTF-7).
SERVER_FOLDERS = ("Projects/2026", "Work Stuff", "Caf&AOk-")


def two_way_sync(
    srv: ImapServer,
    remote: Remote,
    maildir: Path,
    sync: Callable[[str], None],
    added: bytes | None,
    dates_down: bool,
) -> None:
    """What mbsync and offlineimap both do: sync the server with a Maildir,
    both ways, three times. ``added`` is the header field the client adds to
    the messages it copies (compared without it), if any. A new local
    message's file mtime must become its INTERNALDATE; with ``dates_down``,
    the client also gives a downloaded message's file its INTERNALDATE.

    Maildir keeps LF line ends, IMAP CRLF: the clients convert, so a local
    file is compared with the server's bytes with CRs removed.
    """
    inbox = maildir / "INBOX"
    for n in (1, 2, 3):
        srv.deliver(message(n))
    for data in ODD_MESSAGES:
        srv.deliver(data)
    remote.append("INBOX", message(4), r"(\Flagged)")
    remote.append("INBOX", message(9), r"(\Seen \Answered \Draft)")
    for n, folder in enumerate(SERVER_FOLDERS, 10):
        remote.create(folder)
        remote.append(folder, message(n))

    # 1. Server -> local: every message with its flags; folders, subfolders.
    sync("first run")
    server_inbox = remote.messages("INBOX")
    local = by_body(inbox, added)
    assert sorted(local) == sorted(to_lf(m.body) for m in server_inbox.values())
    assert maildir_flags(local[to_lf(message(4))]) == "F"
    assert maildir_flags(local[to_lf(message(9))]) == "DRS"
    assert maildir_flags(local[to_lf(message(1))]) == ""
    for n, folder in enumerate(SERVER_FOLDERS, 10):
        assert list(by_body(maildir / folder, added)) == [to_lf(message(n))], folder
    if dates_down:
        for m in server_inbox.values():
            assert int(local[to_lf(m.body)].stat().st_mtime) == m.internaldate

    # 2. Changes on both sides. Local: flags (as a mail reader renames the
    # file), a deletion, a new message, a new folder with a message. Server:
    # a new message, a flag and an expunge.
    seen = local[to_lf(message(1))]
    seen.rename(inbox / "cur" / (seen.name.split(":2,")[0] + ":2,FS"))
    local[to_lf(message(2))].unlink()
    new = inbox / "new" / "1700000000.P1Q1.client.test"
    new.write_bytes(to_lf(message(6, " é")))
    os.utime(new, (ARRIVED, ARRIVED))
    for sub in ("cur", "new", "tmp"):
        (maildir / "Local" / sub).mkdir(parents=True)
    (maildir / "Local" / "new" / "1700000001.P1Q2.client.test").write_bytes(to_lf(message(7)))
    srv.deliver(message(8))
    uid = {m.body: m.uid for m in server_inbox.values()}
    remote.set_flags("INBOX", uid[message(3)], r"\Answered")
    remote.expunge("INBOX", uid[message(4)])
    sync("second run")

    after = {without_header(m.body, added): m for m in remote.messages("INBOX").values()}
    expected = [message(1), message(3), message(6, " é"), message(8), message(9), *ODD_MESSAGES]
    assert sorted(after) == sorted(expected)
    assert after[message(1)].flags == {"\\Seen", "\\Flagged"}
    assert after[message(6, " é")].flags == set()
    assert after[message(6, " é")].internaldate == ARRIVED
    assert "Local" in remote.mailboxes()
    assert [without_header(m.body, added) for m in remote.messages("Local").values()] == [
        message(7)
    ]
    local = by_body(inbox, added)
    assert sorted(local) == sorted(to_lf(body) for body in after)
    assert maildir_flags(local[to_lf(message(3))]) == "R"
    assert maildir_flags(local[to_lf(message(1))]) == "FS"

    # 3. Nothing changed since: a third run changes nothing on either side
    # (same files, same UIDs and flags on the server).
    before_local = snapshot(maildir)
    before_remote = {box: remote.messages(box) for box in sorted(remote.mailboxes())}
    sync("third run")
    assert snapshot(maildir) == before_local
    assert {box: remote.messages(box) for box in sorted(remote.mailboxes())} == before_remote


# --- mbsync (isync) ----------------------------------------------------------------------


def mbsync_config(env: Env, srv: ImapServer, maildir: Path, tls: str) -> Path:
    _host, port = srv.address("imaps" if tls == "IMAPS" else "imap")
    config = env.home / "mbsyncrc"
    # Host is a name, not 127.0.0.1: isync 1.4 matches the host only against
    # the certificate's DNS names (then its CN, which trustme leaves out),
    # never against IP addresses. The server listens on 127.0.0.1 only.
    config.write_text(
        f"""\
IMAPAccount pochta
Host localhost
Port {port}
User {ALICE}
Pass {PASSWORD}
SSLType {tls}
CertificateFile {env.ca_pem}

IMAPStore remote
Account pochta

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
CopyArrivalDate yes
"""
    )
    return config


@pytest.mark.parametrize("tls", ["IMAPS", "STARTTLS"])
def test_mbsync_two_way_sync(srv: ImapServer, remote: Remote, env: Env, tls: str) -> None:
    """mbsync over implicit TLS and over STARTTLS: see :func:`two_way_sync`."""
    mbsync = need_client("mbsync")
    maildir = env.home / "Mail"
    maildir.mkdir()  # mbsync creates folders, not the store's root
    config = mbsync_config(env, srv, maildir, tls)

    def sync(what: str) -> None:
        run(env, [mbsync, "-c", str(config), "-a"], f"mbsync ({what})")

    # isync 1.4 adds an X-TUID field to every message it copies, either way,
    # to find the copy again if the run is interrupted.
    two_way_sync(srv, remote, maildir, sync, added=b"X-TUID", dates_down=True)


# --- offlineimap ------------------------------------------------------------------------


def offlineimap_config(env: Env, srv: ImapServer, maildir: Path, tls: str = "imaps") -> Path:
    _host, port = srv.address(tls)
    # offlineimap 8.0.0 calls imaplib2's starttls() without the CA file: over
    # STARTTLS it cannot verify the server, whatever the configuration says.
    transport = "ssl = yes" if tls == "imaps" else "ssl = no\nstarttls = yes"
    config = env.home / "offlineimaprc"
    # remotehost is a name for the same reason as mbsync's Host: offlineimap
    # matches the host against the certificate's CN and DNS names only (and
    # wants a CN: see the srv fixture).
    config.write_text(
        f"""\
[general]
accounts = test
metadata = {env.home}/.offlineimap

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {maildir}
# Subfolders as directories (Projects/2026), as mbsync's SubFolders Verbatim.
sep = /

[Repository remote]
type = IMAP
remotehost = localhost
remoteport = {port}
remoteuser = {ALICE}
remotepass = {PASSWORD}
{transport}
sslcacertfile = {env.ca_pem}
"""
    )
    return config


@pytest.mark.parametrize("tls", ["imaps", "imap"])
def test_offlineimap_two_way_sync(srv: ImapServer, remote: Remote, env: Env, tls: str) -> None:
    """offlineimap one-shot runs: see :func:`two_way_sync`.

    Over STARTTLS (``imap``) offlineimap 8.0.0 does not verify the server
    (see :func:`offlineimap_config`); it is tested there all the same,
    because imaplib2's STARTTLS trips over TLS 1.3 session tickets sent
    after the handshake: its reader thread reads them while the writer
    sends the first command on the same SSL object, and about one run in
    five hung or failed ("Too many read 0") until the server stopped
    sending tickets after IMAP STARTTLS (``Server._imap_starttls``).
    """
    offlineimap = need_client("offlineimap")
    maildir = env.home / "Mail"
    config = offlineimap_config(env, srv, maildir, tls)

    def sync(what: str) -> None:
        run(env, [offlineimap, "-c", str(config), "-o", "-u", "basic"], f"offlineimap ({what})")

    # offlineimap marks the messages it uploads with X-OfflineIMAP only when
    # the server lacks UIDPLUS (to find their UIDs): ours has it, so every
    # copy must be exact. It dates the files it writes from their Date field
    # (utime_from_header), if at all, never from INTERNALDATE.
    two_way_sync(srv, remote, maildir, sync, added=None, dates_down=False)


# --- mutt ----------------------------------------------------------------------------------


def run_in_terminal(
    env: Env, argv: list[str], what: str, *, log: Path | None = None, until: bytes = b""
) -> str:
    """Run a full-screen client on a pseudo-terminal until it exits (or, with
    ``until``, until its screen shows that: then it is killed); the screen is
    drained all along (a full pty would block the client) and returned.
    ``log`` is the client's debug log, shown when it fails."""
    master, slave = os.openpty()
    # A fixed window size: curses asks for it, and the index shows every message.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
    variables = env.vars() | {"TERM": "xterm"}
    proc = subprocess.Popen(
        argv,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=variables,
        cwd=env.home,
        start_new_session=True,
    )
    os.close(slave)
    screen = bytearray()
    deadline = time.monotonic() + CLIENT_TIMEOUT
    failure = ""
    try:
        while proc.poll() is None or select.select([master], [], [], 0)[0]:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the client closed the terminal
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                screen += chunk
            if until and until in screen:
                break
            # mutt waits for a key after an error (bad settings, a failed
            # command): fail at once with the screen rather than time out.
            if b"Press any key to continue" in screen:
                failure = "waits for a key"
            elif time.monotonic() > deadline:
                failure = f"no exit within {CLIENT_TIMEOUT}s"
            if failure:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(master)
    text = plain(bytes(screen))
    if not failure and not until and proc.returncode != 0:
        failure = f"exit {proc.returncode}"
    if failure:
        debug = tail(log.read_bytes()) if log is not None and log.exists() else "(none)"
        pytest.fail(f"{what}: {failure}\nscreen (end):\n{tail(text)}\ndebug log (end):\n{debug}")
    return text


def plain(screen: bytes) -> str:
    """Terminal output without its control sequences, for error messages."""
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]|\r", b"", screen)
    return text.decode(errors="replace")


def muttrc(env: Env, srv: ImapServer, tls: str, extra: str = "") -> Path:
    """mutt's settings: the account on ``imaps`` or STARTTLS on ``imap``, the
    test CA, and every question answered in advance so a pushed key sequence
    runs to the end without waiting for a key."""
    port = srv.address(tls)[1]
    scheme = "imaps" if tls == "imaps" else "imap"
    rc = env.home / "muttrc"
    rc.write_text(
        f"""\
set folder="{scheme}://localhost:{port}/"
set spoolfile="+INBOX"
set imap_user="{ALICE}"
set imap_pass="{PASSWORD}"
set ssl_force_tls=yes
set ssl_starttls=yes
set ssl_ca_certificates_file="{env.ca_pem}"
set certificate_file="{env.home}/certificates"
set ssl_verify_host=yes
set header_cache="{env.home}/hcache"
set imap_condstore=yes
set imap_qresync=yes
set sort=mailbox-order
set quit=yes
set delete=yes
set move=no
set mark_old=no
set confirmappend=no
set confirmcreate=no
set wait_key=no
set beep=no
set help=no
set sleep_time=0
set pager_stop=yes
{extra}"""
    )
    return rc


def mutt_run(env: Env, rc: Path, keys: str, what: str = "mutt") -> None:
    """mutt on its INBOX with ``keys`` pushed as if typed; with a protocol
    log (-d 5: ~/.muttdebug0) shown if it fails."""
    mutt = need_client("mutt")
    argv = [mutt, "-n", "-d", "5", "-F", str(rc), "-e", f"push '{keys}'"]
    run_in_terminal(env, argv, what, log=env.home / ".muttdebug0")


def copy_matching(pattern: str, folder: str) -> str:
    """mutt keys: copy the messages matching ``pattern`` to ``folder``
    (created if need be), then untag them again."""
    return (
        f"<tag-pattern>{pattern}<enter><tag-prefix><copy-message>={folder}<enter>"
        "<untag-pattern>~A<enter>"
    )


#: mutt keys: what mutt believes of INBOX, written to the server as three
#: folders: every message, the flagged ones, the unread ones.
COPY_BELIEFS = (
    copy_matching("~A", "All") + copy_matching("~F", "Flagged") + copy_matching("~U", "Unread")
)


def assert_beliefs(remote: Remote, every: list[int], flagged: list[int], unread: list[int]) -> None:
    """The folders of COPY_BELIEFS hold exactly these messages (by number)."""
    for folder, numbers in (("All", every), ("Flagged", flagged), ("Unread", unread)):
        copied = sorted(m.body for m in remote.messages(folder).values())
        assert copied == sorted(message(n) for n in numbers), folder


@pytest.mark.parametrize("tls", ["imaps", "imap"])
def test_mutt_flags_copy_move_delete(srv: ImapServer, remote: Remote, env: Env, tls: str) -> None:
    """mutt's index on a pseudo-terminal, driven by pushed keys: flag one
    message, read one, copy one to a new folder, move one (mutt 2.2's
    save-message: UID COPY, then \\Deleted), delete one, sync (EXPUNGE), quit."""
    for n in (1, 2, 3, 4, 5):
        srv.deliver(message(n))
    rc = muttrc(env, srv, tls, "set resolve=no\n")  # the cursor stays where the keys put it
    keys = (
        "1<enter><flag-message>"
        "2<enter><display-message><exit>"
        "3<enter><copy-message>=Archive<enter>"
        "4<enter><delete-message>"
        "5<enter><save-message>=Saved<enter>"
        "<sync-mailbox><quit>"
    )
    mutt_run(env, rc, keys)

    inbox = remote.messages("INBOX")
    assert {m.uid: (m.body, m.flags) for m in inbox.values()} == {
        1: (message(1), frozenset({"\\Flagged"})),
        2: (message(2), frozenset({"\\Seen"})),
        3: (message(3), frozenset()),
    }
    for folder, n in (("Archive", 3), ("Saved", 5)):
        copies = [(m.body, m.flags) for m in remote.messages(folder).values()]
        assert copies == [(message(n), frozenset())], folder


def test_mutt_resync_from_header_cache(srv: ImapServer, remote: Remote, env: Env) -> None:
    """A second mutt session starts from its header cache: SELECT (CONDSTORE),
    then UID FETCH (CHANGEDSINCE modseq VANISHED) for the UIDs it knows
    (RFC 7162 §3.1.4.1, §3.2.6) and the headers of the new ones."""
    for n in (1, 2, 3, 4):
        srv.deliver(message(n))
    rc = muttrc(env, srv, "imaps")
    mutt_run(env, rc, "<quit>", "mutt (first)")
    remote.set_flags("INBOX", 3, r"\Flagged")
    remote.set_flags("INBOX", 1, r"\Seen")
    remote.expunge("INBOX", 2)
    srv.deliver(message(5))
    mutt_run(env, rc, COPY_BELIEFS + "<quit>", "mutt (second)")
    assert_beliefs(remote, every=[1, 3, 4, 5], flagged=[3], unread=[3, 4, 5])


def test_mutt_batch_send_saves_to_imap_sent(srv: ImapServer, remote: Remote, env: Env) -> None:
    """mutt without a terminal (batch mode) sends through a sendmail
    program and saves its copy in the IMAP Sent folder (APPEND over STARTTLS)."""
    mutt = need_client("mutt")
    sent = env.home / "sent.eml"
    sendmail = env.home / "sendmail"
    sendmail.write_text(f"#!/bin/sh\ncat > {sent}\n")
    sendmail.chmod(0o755)
    rc = muttrc(
        env,
        srv,
        "imap",
        f'set sendmail="{sendmail}"\nset from="{ALICE}"\nset realname="Alice"\n'
        'set use_from=yes\nset record="=Sent"\nset copy=yes\nset send_charset="utf-8"\n',
    )
    text = "Hello Bob,\nsee you at the café.\n"
    run(env, [mutt, "-n", "-F", str(rc), "-s", "Lunch", "--", "bob@example.test"], "mutt -s", text)

    [saved] = remote.messages("Sent").values()
    # The copy is the message as sent, with IMAP's CRLF line ends, marked
    # read; mutt writes each with its own Date field (a second apart, at times).
    as_sent = sent.read_bytes().replace(b"\n", b"\r\n")
    assert without_header(saved.body, b"Date") == without_header(as_sent, b"Date")
    assert saved.flags == {"\\Seen"}
    assert b"Subject: Lunch\r\n" in saved.body
    assert saved.body.endswith("\r\n\r\nHello Bob,\r\nsee you at the café.\r\n".encode())


#: Run by mutt (<shell-escape>) while it has INBOX open: another session
#: expunges UID 2, flags UID 3, reads UID 1 and appends a message.
_OTHER_SESSION = """
import imaplib, ssl, sys
ca, port, user, password, path = sys.argv[1:]
context = ssl.create_default_context(cafile=ca)
client = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=context, timeout=10)
client.login(user, password)
client.select("INBOX")
client.uid("STORE", "2", "+FLAGS", "(\\\\Deleted)")
client.uid("EXPUNGE", "2")
client.uid("STORE", "3", "+FLAGS", "(\\\\Flagged)")
client.uid("STORE", "1", "+FLAGS", "(\\\\Seen)")
client.append("INBOX", None, None, open(path, "rb").read())
client.logout()
"""


def test_mutt_sees_changes_of_another_session(srv: ImapServer, remote: Remote, env: Env) -> None:
    """While mutt has INBOX open, another session changes it; mutt learns of
    the changes from the untagged responses to its next command (VANISHED
    and FETCH with MODSEQ, as it enabled QRESYNC; EXISTS)."""
    for n in (1, 2, 3, 4):
        srv.deliver(message(n))
    script = env.home / "other_session.py"
    script.write_text(_OTHER_SESSION)
    new = env.home / "new.eml"
    new.write_bytes(message(5))
    port = srv.address("imaps")[1]
    other = f"{sys.executable} {script} {env.ca_pem} {port} {ALICE} {PASSWORD} {new}"
    keys = f"<shell-escape>{other}<enter><imap-fetch-mail>" + COPY_BELIEFS + "<quit>"
    mutt_run(env, muttrc(env, srv, "imaps"), keys)
    assert_beliefs(remote, every=[1, 3, 4, 5], flagged=[3], unread=[3, 4, 5])


# --- certificate verification ---------------------------------------------------------------


@pytest.mark.parametrize("client", ["mbsync", "offlineimap", "mutt"])
def test_clients_refuse_a_certificate_from_another_ca(
    srv: ImapServer, env: Env, client: str
) -> None:
    """The clients really verify: with another CA's certificate as their
    trust anchor, none of them logs in (so the tests above are not passing
    with verification quietly off)."""
    trustme.CA().cert_pem.write_to_path(str(env.ca_pem))
    maildir = env.home / "Mail"
    maildir.mkdir()
    if client == "mutt":
        mutt = need_client("mutt")
        # mutt asks what to do with a certificate it cannot verify.
        rc = muttrc(env, srv, "imaps")
        screen = run_in_terminal(env, [mutt, "-n", "-F", str(rc)], "mutt", until=b"(r)eject")
        assert "(r)eject" in screen
        return
    if client == "mbsync":
        argv = [
            need_client("mbsync"),
            "-c",
            str(mbsync_config(env, srv, maildir, "STARTTLS")),
            "-a",
        ]
    else:
        config = offlineimap_config(env, srv, maildir)
        argv = [need_client("offlineimap"), "-c", str(config), "-o", "-u", "basic"]
    done = subprocess.run(
        argv, env=env.vars(), capture_output=True, text=True, timeout=CLIENT_TIMEOUT
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert re.search("certificate|verify", output, re.IGNORECASE), output
    assert not (maildir / "INBOX").exists()
