"""ARC (RFC 8617): sealing a hop and validating a chain (pochta.mailauth.arc)."""

from __future__ import annotations

import re

import dkim as dkimpy
import pytest

from pochta.dns.mock import DictResolver
from pochta.mailauth.arc import (
    ARCResult,
    SealError,
    _ARHeader,
    _ARSyntaxError,
    seal_arc,
    verify_arc,
)
from pochta.mailauth.keys import DKIMKey, DKIMKeyStore

MESSAGE = (
    b"From: Alice <alice@origin.test>\r\n"
    b"To: list@lists.test\r\n"
    b"Subject: hello list\r\n"
    b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@origin.test>\r\n"
    b"\r\n"
    b"Hello everybody.\r\n"
)

#: What our MX wrote before forwarding (RFC 8601); the first hop has no chain yet.
OUR_AR = (
    b"Authentication-Results: mx.forwarder.test;\r\n"
    b" spf=pass (sender is allowed) smtp.mailfrom=alice@origin.test;\r\n"
    b" dkim=pass header.d=origin.test header.s=sel;\r\n"
    b" dmarc=pass header.from=origin.test\r\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[DKIMKey]:
    return DKIMKeyStore(tmp_path_factory.mktemp("keys")).create("forwarder.test")


@pytest.fixture(scope="module")
def keys2(tmp_path_factory: pytest.TempPathFactory) -> list[DKIMKey]:
    return DKIMKeyStore(tmp_path_factory.mktemp("keys2")).create("second.test")


def resolver_for(*key_lists: list[DKIMKey]) -> DictResolver:
    return DictResolver(
        {k.record_name: {"TXT": [k.public_txt]} for keys in key_lists for k in keys}
    )


async def sealed_once(keys: list[DKIMKey]) -> bytes:
    message = OUR_AR + MESSAGE
    return await seal_arc(message, keys, authserv_id="mx.forwarder.test") + message


async def test_seal_then_verify_passes(keys: list[DKIMKey]) -> None:
    message = OUR_AR + MESSAGE
    fields = await seal_arc(message, keys, authserv_id="mx.forwarder.test")
    names = re.findall(rb"^([A-Za-z-]+):", fields, re.MULTILINE)
    assert names == [b"ARC-Seal", b"ARC-Message-Signature", b"ARC-Authentication-Results"]
    assert fields.endswith(b"\r\n") and b"\n" not in fields.replace(b"\r\n", b"")
    assert b"i=1; cv=none; a=rsa-sha256; d=forwarder.test" in fields
    assert f"s={keys[0].selector}".encode() in fields  # the RSA key seals
    aar = fields[fields.index(b"ARC-Authentication-Results:") :]
    assert b"i=1; mx.forwarder.test;" in aar
    for result in (b"spf=pass smtp.mailfrom=alice@origin.test", b"dkim=pass", b"dmarc=pass"):
        assert result in aar
    resolver = resolver_for(keys)
    assert await verify_arc(resolver, fields + message) == ARCResult("pass", 1, "")
    assert resolver.queries == [(keys[0].record_name, "TXT")]


async def test_dkimpy_validates_our_seal_independently(keys: list[DKIMKey]) -> None:
    message = await sealed_once(keys)
    record = {f"{keys[0].record_name}.".encode(): keys[0].public_txt.encode()}
    cv, _results, reason = dkimpy.arc_verify(message, dnsfunc=lambda n, timeout=5: record[n])
    assert (cv, reason) == (dkimpy.CV_Pass, "success")


async def test_tampering_fails(keys: list[DKIMKey]) -> None:
    message = await sealed_once(keys)
    resolver = resolver_for(keys)
    body = await verify_arc(resolver, message.replace(b"everybody", b"nobody"))
    assert body.result == "fail" and body.instances == 1
    assert "ARC-Message-Signature did not validate" in body.reason
    header = await verify_arc(resolver, message.replace(b"hello list", b"buy now"))
    assert header.result == "fail"
    seal = await verify_arc(resolver, message.replace(b"cv=none", b"cv=pass"))
    assert seal.result == "fail"


async def test_no_chain_is_none(keys: list[DKIMKey]) -> None:
    resolver = resolver_for(keys)
    assert await verify_arc(resolver, OUR_AR + MESSAGE) == ARCResult("none", 0, "")
    assert await verify_arc(resolver, b"garbage without headers") == ARCResult("none", 0, "")
    assert resolver.queries == []


async def test_key_problems_fail(keys: list[DKIMKey]) -> None:
    message = await sealed_once(keys)
    missing = await verify_arc(DictResolver({}), message)
    assert missing.result == "fail"
    resolver = resolver_for(keys)
    resolver.zones.fail(keys[0].record_name, "TXT", "timeout")
    timed_out = await verify_arc(resolver, message)
    assert timed_out.result == "fail" and "unavailable" in timed_out.reason


async def test_second_hop_extends_the_chain(keys: list[DKIMKey], keys2: list[DKIMKey]) -> None:
    first = await sealed_once(keys)
    resolver = resolver_for(keys, keys2)
    verdict = await verify_arc(resolver, first)
    assert verdict.result == "pass"
    # The second forwarder records the chain's verdict (RFC 8617 §5.1.1) and seals.
    ar2 = b"Authentication-Results: relay.second.test; arc=pass (1 set);\r\n dkim=none\r\n"
    message = ar2 + first
    fields = await seal_arc(message, keys2, authserv_id="relay.second.test")
    assert b"i=2; cv=pass" in fields
    assert await verify_arc(resolver, fields + message) == ARCResult("pass", 2, "")
    # A second hop that forgets arc= does not extend the chain.
    without = b"Authentication-Results: relay.second.test; dkim=none\r\n" + first
    assert await seal_arc(without, keys2, authserv_id="relay.second.test") == b""


async def test_seal_needs_our_results_and_an_rsa_key(keys: list[DKIMKey]) -> None:
    with pytest.raises(SealError, match=r"no Authentication-Results field of mx\.forwarder\.test"):
        await seal_arc(MESSAGE, keys, authserv_id="mx.forwarder.test")
    other = b"Authentication-Results: someone.else; spf=pass\r\n" + MESSAGE
    with pytest.raises(SealError, match="no Authentication-Results"):
        await seal_arc(other, keys, authserv_id="mx.forwarder.test")
    with pytest.raises(SealError, match="rsa-sha256"):
        await seal_arc(OUR_AR + MESSAGE, keys[1:], authserv_id="mx.forwarder.test")


async def test_authserv_id_and_field_name_case(keys: list[DKIMKey]) -> None:
    # RFC 8601 §2.5: authserv-ids compare case-insensitively; field names always do.
    message = OUR_AR.replace(b"Authentication-Results", b"authentication-results") + MESSAGE
    fields = await seal_arc(message, keys, authserv_id="MX.Forwarder.TEST")
    assert b"i=1; mx.forwarder.test;" in fields
    assert (await verify_arc(resolver_for(keys), fields + message)).result == "pass"


def test_authentication_results_parser() -> None:
    parsed = _ARHeader.parse(
        'Authentication-Results: "mx.x.test" 1 (comment; with semicolon);'
        ' spf=pass (a "quoted;" comment) smtp.mailfrom=a@x.test;'
        ' dkim/1=FAIL reason="bad; sig" header.d=x.test; arc=none'
    )
    assert parsed.authserv_id == "mx.x.test"
    assert [(r.method, r.result) for r in parsed.results] == [
        ("spf", "pass"),
        ("dkim", "fail"),
        ("arc", "none"),
    ]
    assert str(parsed.results[0]) == "spf=pass smtp.mailfrom=a@x.test"
    assert str(parsed.results[1]) == 'dkim/1=FAIL reason="bad; sig" header.d=x.test'
    assert _ARHeader.parse("Authentication-Results: mx.x.test; none").results == []
    for bad in ("Authentication-Results: ", "Authentication-Results: x; (open", "A-R: x; =y"):
        with pytest.raises(_ARSyntaxError):
            _ARHeader.parse(bad)
