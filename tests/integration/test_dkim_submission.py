"""Mail submitted on 587 leaves DKIM-signed with the From: domain's keys (RFC 6376, RFC 8463).

The delivered copy is checked the way a receiver would: the key records are
served by the loopback test DNS server and fetched by the real resolver.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import FAST_HASHER, ServerThread, TLSFiles, populate, write_settings
from tests.dnsserver import DNSTestServer

from pochta.accounts import Accounts
from pochta.config import load_settings, parse_hostport
from pochta.dns import StubResolver
from pochta.mailauth.dkim import DKIMResult, verify_dkim
from pochta.mailauth.keys import DKIMKey, DKIMKeyStore

ALICE = ("alice@example.test", "secret-alice@example.test")
CAROL = ("carol@other.test", "secret-carol@other.test")


@pytest.fixture
def sub(tmp_path: Path, tls_files: TLSFiles) -> Iterator[ServerThread]:
    path = write_settings(tmp_path)
    path.write_text(
        path.read_text().replace(
            'lmtp = ["127.0.0.1:0"]\n', 'lmtp = ["127.0.0.1:0"]\nsubmission = ["127.0.0.1:0"]\n'
        )
    )
    settings = load_settings(path)
    with Accounts.open(settings.data_dir / "accounts.sqlite", hasher=FAST_HASHER) as accounts:
        populate(accounts)
    # What `pochta domain add example.test` does; other.test gets no keys.
    DKIMKeyStore(settings.data_dir).create("example.test")
    st = ServerThread(settings)
    assert st.server._submission.dkim is not None  # [mailauth].sign is on by default
    st.start()
    try:
        yield st
    finally:
        st.stop()


def send(sub: ServerThread, tls_files: TLSFiles, login: tuple[str, str], text: str) -> None:
    ctx = ssl.create_default_context()
    tls_files.ca.configure_trust(ctx)
    with smtplib.SMTP(*sub.address("submission"), timeout=10) as client:
        client.starttls(context=ctx)
        client.login(*login)
        assert client.sendmail(login[0], ["bob@example.test"], text) == {}


def delivered(sub: ServerThread, count: int, timeout: float = 10) -> list[bytes]:
    directory = sub.settings.data_dir / "mail/example.test/bob/new"
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = sorted(directory.iterdir()) if directory.is_dir() else []
        if len(found) >= count:
            return [p.read_bytes() for p in found]
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} messages arrived in {directory}")


def verify_over_dns(keys: list[DKIMKey], message: bytes) -> list[DKIMResult]:
    zones = {k.record_name: {"TXT": [k.public_txt]} for k in keys}
    with DNSTestServer(zones) as dns:
        resolver = StubResolver([parse_hostport(dns.hostport)], cache=False)
        return asyncio.run(verify_dkim(resolver, message))


def test_submitted_mail_is_signed_and_verifies(sub: ServerThread, tls_files: TLSFiles) -> None:
    send(
        sub,
        tls_files,
        ALICE,
        "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\n"
        "Subject: signed\r\n\r\nHello Bob.\r\n",
    )
    (data,) = delivered(sub, 1)
    keys = DKIMKeyStore(sub.settings.data_dir).published("example.test")
    header = data[: data.index(b"\r\n\r\n")]
    assert header.count(b"\r\nDKIM-Signature: ") == 2
    # Trace fields on top, then our signatures, then the signed header
    # including the Date and Message-ID that submission added (RFC 6409 §8).
    assert header.index(b"\r\nReceived: ") < header.index(b"\r\nDKIM-Signature: ")
    assert header.index(b"\r\nDKIM-Signature: ") < header.index(b"\r\nDate: ")
    found = verify_over_dns(keys, data)
    assert [(r.result, r.domain, r.algorithm) for r in found] == [
        ("pass", "example.test", "rsa-sha256"),
        ("pass", "example.test", "ed25519-sha256"),
    ]
    assert {r.selector for r in found} == {k.selector for k in keys}
    signed_fields = data[data.index(b"h=") : data.index(b"bh=")]
    assert b"date" in signed_fields and b"message-id" in signed_fields


def test_domain_without_keys_goes_out_unsigned(
    sub: ServerThread, tls_files: TLSFiles, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pochta.smtp.submission")
    for n in (1, 2):
        send(sub, tls_files, CAROL, f"From: carol@other.test\r\nSubject: n{n}\r\n\r\nhi\r\n")
    messages = delivered(sub, 2)
    assert all(b"DKIM-Signature" not in m for m in messages)
    notes = [r for r in caplog.records if "has no DKIM keys" in r.getMessage()]
    assert len(notes) == 1 and "other.test" in notes[0].getMessage()


def test_rotation_while_running_signs_with_the_new_keys(
    sub: ServerThread, tls_files: TLSFiles
) -> None:
    store = DKIMKeyStore(sub.settings.data_dir)
    send(sub, tls_files, ALICE, "From: alice@example.test\r\nSubject: one\r\n\r\nx\r\n")
    delivered(sub, 1)
    new = store.rotate("example.test")  # what `pochta domain dkim rotate` does
    send(sub, tls_files, ALICE, "From: alice@example.test\r\nSubject: two\r\n\r\nx\r\n")
    second = next(m for m in delivered(sub, 2) if b"Subject: two" in m)
    found = verify_over_dns(store.published("example.test"), second)
    assert [(r.result, r.selector) for r in found] == [("pass", k.selector) for k in new]
