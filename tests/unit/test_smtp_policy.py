"""Pure parts of the SMTP layer: smuggling check, trace headers, reply codes."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from pochta.smtp import codes
from pochta.smtp.policy import (
    ConnectionLimiter,
    TraceInfo,
    has_bare_newline,
    new_queue_id,
    protocol_name,
    received_header,
    return_path_header,
)
from pochta.smtp.protocol import _SIMPLE_PATH, PochtaSMTP


def _reference_bare(data: bytes) -> bool:
    for i, byte in enumerate(data):
        if byte == 0x0D and data[i + 1 : i + 2] != b"\n":
            return True
        if byte == 0x0A and (i == 0 or data[i - 1] != 0x0D):
            return True
    return False


@given(
    st.binary(max_size=200) | st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n"])).map(b"".join)
)
def test_bare_newline_matches_a_byte_by_byte_scan(data: bytes) -> None:
    assert has_bare_newline(data) == _reference_bare(data)


def test_bare_newline_examples() -> None:
    assert not has_bare_newline(b"a\r\nb\r\n")
    assert has_bare_newline(b"a\nb\r\n")
    assert has_bare_newline(b"a\rb\r\n")
    assert has_bare_newline(b"a\r\n\n.\n")
    assert has_bare_newline(b"\r")


def test_queue_ids_are_unique_and_safe() -> None:
    ids = {new_queue_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[A-Z2-7]+", i) for i in ids)


def test_received_header_shape() -> None:
    info = TraceInfo(
        helo="client.example (evil)\r\nX-Injected: 1",
        peer_ip="192.0.2.1",
        hostname="mail.example.test",
        protocol=protocol_name(extended=True, tls=True, authenticated=False),
        queue_id="ABC",
        recipient="bob@example.test",
        tls="TLSv1.3 TLS_AES_256_GCM_SHA384",
        timestamp=0,
    )
    header = received_header(info)
    assert header.startswith(b"Received: from client.example??evil???X-Injected:?1 ([192.0.2.1])")
    assert b"with ESMTPS (TLSv1.3 TLS_AES_256_GCM_SHA384) id ABC" in header
    assert b"for <bob@example.test>; Thu, 01 Jan 1970 00:00:00 -0000" in header
    # Folded lines only: every line after the first starts with a tab.
    lines = header.split(b"\r\n")
    assert lines[-1] == b"" and all(line.startswith(b"\t") for line in lines[1:-1])


def test_protocol_names_rfc3848() -> None:
    assert protocol_name(extended=False, tls=False, authenticated=False) == "SMTP"
    assert protocol_name(extended=True, tls=False, authenticated=False) == "ESMTP"
    assert protocol_name(extended=True, tls=True, authenticated=True) == "ESMTPSA"
    assert protocol_name(extended=True, tls=False, authenticated=False, lmtp=True) == "LMTP"


def test_return_path() -> None:
    assert return_path_header("") == b"Return-Path: <>\r\n"
    assert return_path_header("a@b.test") == b"Return-Path: <a@b.test>\r\n"


def test_connection_limiter() -> None:
    limiter = ConnectionLimiter(total=3, per_ip=2)
    assert limiter.acquire("a") and limiter.acquire("a")
    assert not limiter.acquire("a")
    assert limiter.acquire("b")
    assert not limiter.acquire("c")  # total reached
    limiter.release("a")
    assert limiter.acquire("c")


def test_enhanced_codes_are_added_once() -> None:
    add = PochtaSMTP._with_enhanced
    assert add(b"250 OK") == b"250 2.0.0 OK"
    assert add(b"503 Error: need RCPT command") == b"503 5.5.1 need RCPT command"
    assert add(b"550 5.1.1 No such user here") == b"550 5.1.1 No such user here"
    assert add(b"354 End data with <CR><LF>.<CR><LF>") == b"354 End data with <CR><LF>.<CR><LF>"
    assert add(b"250-first\r\n250 last") == b"250-2.0.0 first\r\n250 2.0.0 last"
    assert str(codes.UNKNOWN_USER) == "550 5.1.1 No such user here"


@given(st.text(max_size=80))
def test_simple_path_only_accepts_plain_mailboxes(text: str) -> None:
    match = _SIMPLE_PATH.match(text)
    if match is not None:
        address = match.group(1)
        local, _, domain = address.rpartition("@")
        assert local and domain and ".." not in local
        assert not local.startswith(".") and not local.endswith(".")
        assert all(c.isalnum() or c in ".-" for c in domain)
