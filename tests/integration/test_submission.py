"""Submission (587 STARTTLS, 465 implicit TLS) with AUTH, through the queue, into Maildir."""

from __future__ import annotations

import asyncio
import base64
import os
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest
from tests.conftest import (
    FAST_HASHER,
    ServerThread,
    TLSFiles,
    need_client,
    populate,
    write_settings,
)

from pochta.accounts import Accounts
from pochta.config import load_settings
from pochta.sasl import client_final_for_tests
from pochta.smtp import codes

BODY = "Subject: hello\r\nTo: bob@example.test\r\n\r\nHi Bob.\r\n"


@pytest.fixture
def sub(tmp_path: Path, tls_files: TLSFiles) -> Iterator[ServerThread]:
    path = write_settings(tmp_path)
    text = path.read_text().replace(
        'lmtp = ["127.0.0.1:0"]\n',
        'lmtp = ["127.0.0.1:0"]\nsubmission = ["127.0.0.1:0"]\nsubmissions = ["127.0.0.1:0"]\n',
    )
    path.write_text(text)
    settings = load_settings(path)
    accounts = Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER)
    populate(accounts)
    accounts.close()
    st = ServerThread(settings)
    st.start()
    try:
        yield st
    finally:
        st.stop()


def context(tls_files: TLSFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    tls_files.ca.configure_trust(ctx)
    return ctx


def starttls(sub: ServerThread, tls_files: TLSFiles) -> smtplib.SMTP:
    client = smtplib.SMTP(*sub.address("submission"), timeout=10)
    client.starttls(context=context(tls_files))
    client.ehlo("laptop.example.test")
    return client


def wait_for_file(directory: Path, timeout: float = 10) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if directory.is_dir():
            found = sorted(directory.iterdir())
            if found:
                return found[0]
        time.sleep(0.02)
    raise AssertionError(f"nothing arrived in {directory}")


def bob_new(sub: ServerThread) -> Path:
    return sub.settings.data_dir / "mail/example.test/bob/new"


ALICE = ("alice@example.test", "secret-alice@example.test")


def test_no_auth_before_tls(sub: ServerThread) -> None:
    client = smtplib.SMTP(*sub.address("submission"), timeout=10)
    client.ehlo("x")
    assert client.has_extn("starttls") and not client.has_extn("auth")
    code, text = client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0a\0b").decode())
    assert (code, text.decode()[:6]) == (538, "5.7.11")
    code, text = client.docmd("MAIL", "FROM:<alice@example.test>")
    assert (code, text.decode()[:5]) == (530, "5.7.0")
    client.quit()


def test_plain_over_starttls_delivers_locally(sub: ServerThread, tls_files: TLSFiles) -> None:
    client = starttls(sub, tls_files)
    assert (
        "PLAIN" in client.esmtp_features["auth"]
        and "SCRAM-SHA-256" in client.esmtp_features["auth"]
    )
    client.login(*ALICE)
    refused = client.sendmail(
        "alice@example.test",
        ["bob@example.test"],
        BODY.replace("Subject", "From: Alice <alice@example.test>\r\nSubject"),
    )
    assert refused == {}
    client.quit()
    data = wait_for_file(bob_new(sub)).read_bytes()
    assert data.startswith(b"Return-Path: <alice@example.test>\r\nReceived: from laptop")
    assert b" with ESMTPSA (TLSv1." in data
    assert b"\r\nDate: " in data and b"\r\nMessage-ID: <" in data  # RFC 6409 §8


def test_wrong_password_and_login_mechanism(sub: ServerThread, tls_files: TLSFiles) -> None:
    client = starttls(sub, tls_files)
    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
        client.login("alice@example.test", "wrong")
    assert info.value.smtp_code == 535
    client.user, client.password = ALICE
    code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
    assert code == 235
    client.quit()


def test_scram_sha_256(sub: ServerThread, tls_files: TLSFiles) -> None:
    client = starttls(sub, tls_files)
    first_bare = "n=alice@example.test,r=clientnonce123"
    code, challenge = client.docmd(
        "AUTH", "SCRAM-SHA-256 " + base64.b64encode(b"n,," + first_bare.encode()).decode()
    )
    assert code == 334
    server_first = base64.b64decode(challenge).decode()
    final = client_final_for_tests(ALICE[1], first_bare, server_first)
    code, challenge = client.docmd(base64.b64encode(final.encode()).decode())
    assert code == 334 and base64.b64decode(challenge).startswith(b"v=")
    code, text = client.docmd("")
    assert code == 235, text
    client.quit()


def test_sender_must_be_own(sub: ServerThread, tls_files: TLSFiles) -> None:
    client = starttls(sub, tls_files)
    client.login(*ALICE)
    code, text = client.mail("bob@example.test")
    assert (code, text.decode()) == (553, str(codes.SENDER_NOT_OWNED)[4:])
    client.rset()
    # An alias reaching alice is hers; so is a subaddress.
    assert client.mail("boss@example.test")[0] == 250
    client.rset()
    assert client.mail("alice+lists@example.test")[0] == 250
    client.rset()
    with pytest.raises(smtplib.SMTPDataError) as info:
        client.sendmail(
            "alice@example.test",
            ["bob@example.test"],
            "From: Bob <bob@example.test>\r\nSubject: forged\r\n\r\nx\r\n",
        )
    assert info.value.smtp_code == 553 and info.value.smtp_error.startswith(b"5.7.1")
    client.quit()


def test_implicit_tls_port(sub: ServerThread, tls_files: TLSFiles) -> None:
    client = smtplib.SMTP_SSL(*sub.address("submissions"), context=context(tls_files), timeout=10)
    client.ehlo("laptop")
    assert not client.has_extn("starttls") and client.has_extn("auth")
    client.login(*ALICE)
    client.sendmail(
        "alice@example.test",
        ["bob@example.test"],
        "From: alice@example.test\r\nSubject: via 465\r\n\r\nhi\r\n",
    )
    client.quit()
    assert b"Subject: via 465" in wait_for_file(bob_new(sub)).read_bytes()


def test_aiosmtplib_client(sub: ServerThread, tls_files: TLSFiles) -> None:
    async def send() -> None:
        host, port = sub.address("submission")
        await aiosmtplib.send(
            "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: aio\r\n\r\nhi\r\n",
            sender="alice@example.test",
            recipients=["bob@example.test"],
            hostname=host,
            port=port,
            start_tls=True,
            tls_context=context(tls_files),
            username=ALICE[0],
            password=ALICE[1],
        )

    asyncio.run(send())
    assert b"Subject: aio" in wait_for_file(bob_new(sub)).read_bytes()


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest.mark.parametrize("auth", ["plain", "scram-sha-256"])
def test_msmtp_submits(
    sub: ServerThread, tls_files: TLSFiles, tmp_path: Path, tls: str, auth: str
) -> None:
    """msmtp, the sendmail of mutt and many scripts, submits with STARTTLS or
    implicit TLS (RFC 8314), verifying the certificate, with PLAIN or SCRAM."""
    binary = need_client("msmtp")
    ca = tmp_path / "ca.pem"
    tls_files.ca.cert_pem.write_to_path(str(ca))
    kind = "submission" if tls == "starttls" else "submissions"
    rc = tmp_path / "msmtprc"
    rc.write_text(
        f"account default\nhost 127.0.0.1\nport {sub.address(kind)[1]}\n"
        f"tls on\ntls_starttls {'on' if tls == 'starttls' else 'off'}\n"
        f"tls_trust_file {ca}\ntls_host_override mail.example.test\n"
        f"auth {auth}\nuser {ALICE[0]}\npassword {ALICE[1]}\nfrom {ALICE[0]}\n"
        "domain laptop.example.test\n"
    )
    rc.chmod(0o600)
    message = f"From: Alice <{ALICE[0]}>\r\nTo: bob@example.test\r\nSubject: via msmtp\r\n"
    message += "\r\nHi.\r\n"
    done = subprocess.run(
        [binary, "-C", str(rc), "bob@example.test"],
        input=message.encode(),
        capture_output=True,
        timeout=30,
        env={"HOME": str(tmp_path), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = wait_for_file(bob_new(sub)).read_bytes()
    assert b"Subject: via msmtp" in data and data.endswith(b"\r\n\r\nHi.\r\n")
    assert b"Received: from laptop.example.test" in data and b" with ESMTPSA (TLSv1." in data
