"""DKIM signing and verification (pochta.mailauth.dkim): RFC 6376, RFC 8463, RFC 8301."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from pochta.dns.mock import DictResolver
from pochta.mailauth.dkim import (
    DKIMResult,
    SigningError,
    sign_message,
    signed_header_list,
    verify_dkim,
)
from pochta.mailauth.keys import DKIMKey, DKIMKeyStore

MESSAGE = (
    b"From: Alice <alice@example.test>\r\n"
    b"To: Bob <bob@other.test>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.test>\r\n"
    b"List-Id: <cooks.example.test>\r\n"
    b"Received: from x by y; Sat, 28 Nov 2026 10:00:00 +0000\r\n"
    b"X-Mailer: test\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[DKIMKey]:
    """One RSA and one Ed25519 key of example.test (made once: RSA generation is slow)."""
    store = DKIMKeyStore(tmp_path_factory.mktemp("keys"))
    return store.create("example.test")


def resolver_for(keys: list[DKIMKey]) -> DictResolver:
    return DictResolver({k.record_name: {"TXT": [k.public_txt]} for k in keys})


async def signed(keys: list[DKIMKey], message: bytes = MESSAGE) -> bytes:
    return await sign_message(message, keys) + message


def results(found: list[DKIMResult]) -> list[tuple[str, str, str]]:
    return [(r.result, r.algorithm, r.reason) for r in found]


# --- signing -----------------------------------------------------------------------


async def test_sign_then_verify_both_algorithms(keys: list[DKIMKey]) -> None:
    fields = await sign_message(MESSAGE, keys)
    assert fields.endswith(b"\r\n") and b"\n" not in fields.replace(b"\r\n", b"")
    assert fields.count(b"DKIM-Signature: ") == 2
    resolver = resolver_for(keys)
    found = await verify_dkim(resolver, fields + MESSAGE)
    assert results(found) == [("pass", "rsa-sha256", ""), ("pass", "ed25519-sha256", "")]
    assert [(r.domain, r.selector) for r in found] == [
        ("example.test", keys[0].selector),
        ("example.test", keys[1].selector),
    ]
    assert sorted(resolver.queries) == sorted((k.record_name, "TXT") for k in keys)


async def test_signature_tags(keys: list[DKIMKey]) -> None:
    fields = await sign_message(MESSAGE, keys[:1])
    tags = dkimpy.util.parse_tag_value(fields.split(b":", 1)[1])
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"a"] == b"rsa-sha256" and tags[b"d"] == b"example.test"
    signed_names = [h.strip() for h in re.split(rb"\s*:\s*", tags[b"h"])]
    # Present fields once each, From once more (RFC 6376 §8.15); no trace
    # fields, nothing absent (Cc, Reply-To are not in this message).
    assert signed_names == [
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"list-id",
        b"from",
    ]


def test_signed_header_list_counts_repeats() -> None:
    names = [b"Received", b"To", b"From", b"To", b"Sender", b"List-Post", b"X-Other", b"CC"]
    assert signed_header_list(names) == [
        b"to",
        b"from",
        b"to",
        b"sender",
        b"list-post",
        b"cc",
        b"from",
    ]


async def test_no_keys_signs_nothing() -> None:
    assert await sign_message(MESSAGE, []) == b""


async def test_unparsable_message_is_a_signing_error(keys: list[DKIMKey]) -> None:
    with pytest.raises(SigningError, match="DKIM signing failed"):
        await sign_message(b"From: a@example.test\r\n\x01bad header\r\n\r\nx\r\n", keys)


async def test_dkimpy_verifies_our_signatures_independently(keys: list[DKIMKey]) -> None:
    message = await signed(keys)
    records = {f"{k.record_name}.".encode(): k.public_txt.encode() for k in keys}

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records[name]

    verifier = dkimpy.DKIM(message)
    assert verifier.verify(idx=0, dnsfunc=dnsfunc) is True
    assert verifier.verify(idx=1, dnsfunc=dnsfunc) is True
    assert dkimpy.verify(message, dnsfunc=dnsfunc) is True


# --- verification outcomes -----------------------------------------------------------


async def test_tampered_body_fails(keys: list[DKIMKey]) -> None:
    message = (await signed(keys)).replace(b"hungry", b"thirsty")
    found = await verify_dkim(resolver_for(keys), message)
    assert results(found) == [
        ("fail", "rsa-sha256", "body hash mismatch"),
        ("fail", "ed25519-sha256", "body hash mismatch"),
    ]


async def test_tampered_signed_header_fails(keys: list[DKIMKey]) -> None:
    message = (await signed(keys)).replace(b"Is dinner ready?", b"Is lunch ready?")
    found = await verify_dkim(resolver_for(keys), message)
    assert [r.result for r in found] == ["fail", "fail"]
    assert found[0].reason == "signature did not verify"


async def test_added_from_breaks_the_oversigned_signature(keys: list[DKIMKey]) -> None:
    message = await signed(keys)
    end = message.index(b"\r\n\r\n")
    forged = message[:end] + b"\r\nFrom: ceo@example.test" + message[end:]
    assert [r.result for r in await verify_dkim(resolver_for(keys), forged)] == ["fail", "fail"]


async def test_relaxed_survives_refolding_and_unsigned_fields(keys: list[DKIMKey]) -> None:
    message = await signed(keys)
    changed = message.replace(b"Subject: Is dinner ready?", b"Subject:  Is dinner\r\n\tready?  ")
    changed = changed.replace(b"X-Mailer: test", b"X-Mailer: rewritten\r\nX-Spam: no")
    changed = changed.replace(b"Received: from x by y;", b"Received: from q by z;")
    changed = changed.replace(b"hungry yet?\r\n", b"hungry   yet?  \r\n\r\n\r\n")
    found = await verify_dkim(resolver_for(keys), changed)
    assert [r.result for r in found] == ["pass", "pass"]


async def test_missing_key_record_is_permerror(keys: list[DKIMKey]) -> None:
    message = await signed(keys)
    resolver = resolver_for(keys[1:])
    found = await verify_dkim(resolver, message)
    assert results(found) == [
        ("permerror", "rsa-sha256", "no key for signature"),  # RFC 6376 §6.1.2
        ("pass", "ed25519-sha256", ""),
    ]
    # A name that exists but has no TXT record (NODATA) is the same.
    resolver.zones.set(keys[0].record_name, "A", "192.0.2.1")
    found = await verify_dkim(resolver, message)
    assert found[0].result == "permerror"


async def test_dns_timeout_is_temperror(keys: list[DKIMKey]) -> None:
    message = await signed(keys)
    resolver = resolver_for(keys)
    resolver.zones.fail(keys[0].record_name, "TXT", "timeout")
    found = await verify_dkim(resolver, message)
    assert [r.result for r in found] == ["temperror", "pass"]
    assert "timed out" in found[0].reason
    resolver.zones.fail(keys[1].record_name, "TXT", "servfail")
    found = await verify_dkim(resolver, message)
    assert [r.result for r in found] == ["temperror", "temperror"]


async def test_revoked_and_mismatched_keys_are_permerror(keys: list[DKIMKey]) -> None:
    message = await signed(keys)
    resolver = DictResolver(
        {
            keys[0].record_name: {"TXT": "v=DKIM1; k=rsa; p="},
            # An Ed25519 key where the signature says RSA (and vice versa).
            keys[1].record_name: {"TXT": keys[0].public_txt},
        }
    )
    found = await verify_dkim(resolver, message)
    assert results(found) == [
        ("permerror", "rsa-sha256", "key revoked"),
        ("permerror", "ed25519-sha256", "key is rsa, signature is ed25519-sha256"),
    ]
    resolver.zones.set(keys[0].record_name, "TXT", "v=DKIM1; k=rsa; p=!!notbase64")
    resolver.zones.set(keys[1].record_name, "TXT", keys[1].public_txt + "; s=tlsrpt")
    found = await verify_dkim(resolver, message)
    assert [r.result for r in found] == ["permerror", "permerror"]
    assert found[1].reason == "key is not for email (s= tag)"


async def test_key_record_restrictions(keys: list[DKIMKey]) -> None:
    message = await signed(keys[:1])
    resolver = DictResolver({keys[0].record_name: {"TXT": keys[0].public_txt + "; h=sha1"}})
    found = await verify_dkim(resolver, message)
    assert results(found) == [("permerror", "rsa-sha256", "key does not allow sha256 (h= tag)")]
    resolver.zones.set(keys[0].record_name, "TXT", keys[0].public_txt + "; h=sha1:sha256; t=s")
    assert [r.result for r in await verify_dkim(resolver, message)] == ["pass"]


async def test_malformed_signatures_are_permerror(keys: list[DKIMKey]) -> None:
    resolver = resolver_for(keys)
    garbage = b"DKIM-Signature: this is not a tag list\r\n" + MESSAGE
    found = await verify_dkim(resolver, garbage)
    assert [r.result for r in found] == ["permerror"] and found[0].domain == ""
    missing = b"DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=x; h=from; b=AAAA\r\n"
    found = await verify_dkim(resolver, missing + MESSAGE)
    assert results(found) == [("permerror", "rsa-sha256", "missing bh=")]
    assert resolver.queries == []  # nothing was looked up for broken signatures


async def test_from_must_be_signed(keys: list[DKIMKey]) -> None:
    message = MESSAGE.replace(b"From: Alice", b"Sender: Alice")
    signer = dkimpy.DKIM(message)
    field = signer.sign(
        keys[0].selector.encode(),
        b"example.test",
        keys[0].private_key,
        include_headers=[b"sender", b"subject", b"from"],
        canonicalize=(b"relaxed", b"relaxed"),
    )
    # dkimpy insists on "from" in h=; drop it to build what RFC 6376 §6.1.1 forbids.
    field, count = re.subn(rb"h=sender\s*:\s*subject\s*:\s*from", b"h=sender : subject", field)
    assert count == 1
    found = await verify_dkim(resolver_for(keys), field + message)
    assert results(found) == [("permerror", "rsa-sha256", "From field not signed")]


async def test_rsa_sha1_is_refused_by_policy(keys: list[DKIMKey]) -> None:
    field = dkimpy.DKIM(MESSAGE).sign(
        keys[0].selector.encode(),
        b"example.test",
        keys[0].private_key,
        signature_algorithm=b"rsa-sha1",
        canonicalize=(b"relaxed", b"relaxed"),
    )
    found = await verify_dkim(resolver_for(keys), field + MESSAGE)
    assert [(r.result, r.algorithm) for r in found] == [("policy", "rsa-sha1")]  # RFC 8301 §3.1


async def test_no_signature_is_an_empty_list(keys: list[DKIMKey]) -> None:
    resolver = resolver_for(keys)
    assert await verify_dkim(resolver, MESSAGE) == []
    assert await verify_dkim(resolver, b"not a message at all") == []
    assert resolver.queries == []


async def test_header_b_and_signature_limit(keys: list[DKIMKey]) -> None:
    fields = await sign_message(MESSAGE, keys)
    b_values = [
        re.sub(rb"\s+", b"", m).decode()
        for m in re.findall(rb"\bb=([A-Za-z0-9+/=\s]+?)(?:;|\r\n(?! ))", fields)
    ]
    found = await verify_dkim(resolver_for(keys), fields + MESSAGE)
    assert [r.header_b for r in found] == [b[:12] for b in b_values]
    assert len({r.header_b for r in found}) == 2
    limited = await verify_dkim(resolver_for(keys), fields + MESSAGE, max_signatures=1)
    assert [r.algorithm for r in limited] == ["rsa-sha256"]


# --- RFC 8463 Appendix A -------------------------------------------------------------

#: RFC 8463 A.1: the Ed25519 secret seed and public key (also RFC 8032 §7.1 TEST 1).
RFC8463_SEED = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
RFC8463_PUBLIC = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#: RFC 8463 A.2: the published key records.
RFC8463_RECORDS = {
    "brisbane._domainkey.football.example.com": {
        "TXT": f"v=DKIM1; k=ed25519; p={RFC8463_PUBLIC}",
    },
    "test._domainkey.football.example.com": {
        "TXT": (
            "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
            "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
            "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
            "Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
        ),
    },
}
#: RFC 8463 A.3: the message signed with both keys.
RFC8463_SIGNED = b"""\
DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=brisbane; t=1528637909; h=from : to :
 subject : date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus
 Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==
DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;
 d=football.example.com; i=@football.example.com;
 q=dns/txt; s=test; t=1528637909; h=from : to : subject :
 date : message-id : from : subject : date;
 bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;
 b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3
 DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz
 dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=
From: Joe SixPack <joe@football.example.com>
To: Suzie Q <suzie@shopping.example.net>
Subject: Is dinner ready?
Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)
Message-ID: <20030712040037.46341.5F8J@football.example.com>

Hi.

We lost the game.  Are you hungry yet?

Joe.
""".replace(b"\n", b"\r\n")


def test_rfc8463_seed_gives_the_published_key() -> None:
    seed = base64.b64decode(RFC8463_SEED)
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64encode(raw).decode() == RFC8463_PUBLIC


async def test_rfc8463_example_verifies() -> None:
    resolver = DictResolver(RFC8463_RECORDS)
    found = await verify_dkim(resolver, RFC8463_SIGNED)
    assert [(r.result, r.algorithm, r.selector, r.domain) for r in found] == [
        ("pass", "ed25519-sha256", "brisbane", "football.example.com"),
        ("pass", "rsa-sha256", "test", "football.example.com"),
    ]
    assert found[0].header_b == "/gCrinpcQOoI"
    tampered = RFC8463_SIGNED.replace(b"lost the game", b"won the game")
    assert [r.result for r in await verify_dkim(resolver, tampered)] == ["fail", "fail"]


async def test_signing_with_the_rfc8463_key_verifies_against_its_record(tmp_path: Path) -> None:
    body_start = RFC8463_SIGNED.index(b"From: Joe")
    message = RFC8463_SIGNED[body_start:]
    key = DKIMKey(
        domain="football.example.com",
        selector="brisbane",
        algorithm="ed25519-sha256",
        private_key=RFC8463_SEED.encode(),
        public_txt=f"v=DKIM1; k=ed25519; p={RFC8463_PUBLIC}",
        active=True,
        created=0.0,
    )
    fields = await sign_message(message, [key])
    # Same body, same relaxed canonicalization: the RFC's body hash.
    assert b"bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=" in fields
    found = await verify_dkim(DictResolver(RFC8463_RECORDS), fields + message)
    assert [(r.result, r.selector) for r in found] == [("pass", "brisbane")]


# --- fuzzing -----------------------------------------------------------------------

_TAG = st.sampled_from(
    ["v=1", "a=rsa-sha256", "a=ed25519-sha256", "a=rsa-sha1", "c=relaxed/relaxed", "c=x/y",
     "d=example.test", "d=", "s=x", "s=", "h=from", "h=", "bh=AAAA", "b=AAAA", "b=", "l=5",
     "l=-1", "t=1", "x=0", "i=@example.test", "i=@other.test", "q=dns/txt", "z=", "==", ";"]
)  # fmt: skip
_VALUE = st.one_of(
    st.lists(_TAG, max_size=12).map("; ".join),
    st.text(max_size=80).map(lambda t: t.replace("\r", "").replace("\n", "")),
)


@settings(max_examples=60, deadline=None)
@given(value=_VALUE, record=st.sampled_from(["v=DKIM1; p=", "p=AAAA", "garbage", "v=DKIM1; k=x"]))
def test_any_signature_field_gives_verdicts_never_an_exception(value: str, record: str) -> None:
    # Whatever the field and the key record say, every signature gets a
    # verdict (RFC 6376 §6.1: broken ones are permerror); nothing raises.
    resolver = DictResolver({"x._domainkey.example.test": {"TXT": [record]}})
    message = b"DKIM-Signature: " + value.encode("utf-8", "replace") + b"\r\n" + MESSAGE
    found = asyncio.run(verify_dkim(resolver, message))
    assert len(found) == 1
    assert found[0].result in {"pass", "fail", "neutral", "permerror", "temperror", "policy"}


async def test_openssl_rsa_signature_is_dkimpys_byte_for_byte(keys: list[DKIMKey]) -> None:
    # PKCS#1 v1.5 is deterministic: the fast path must give the very bytes
    # dkimpy's own (pure Python) RSA gives, for SHA-256 and SHA-1 digests.
    import hashlib

    from dkim.crypto import parse_pem_private_key

    from pochta.mailauth import dkim as ours

    rsa_key = next(k for k in keys if k.algorithm == "rsa-sha256")
    parsed = parse_pem_private_key(rsa_key.private_key)
    for name in ("sha256", "sha1"):
        digest = hashlib.new(name, b"the header hash input")
        fast = ours._openssl_rsa_sign(digest, parsed)
        slow = ours.PURE_PYTHON_RSA_SIGN(hashlib.new(name, b"the header hash input"), parsed)
        assert bytes(fast) == bytes(slow)
    # And the signer really uses it.
    assert dkimpy.RSASSA_PKCS1_v1_5_sign is ours._openssl_rsa_sign


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from([b"a", b" ", b"  ", b"\t", b"\r\n", b"x y", b" \r\n", b"\r\n\r\n"]),
        max_size=40,
    )
)
def test_relaxed_body_shortcut_equals_dkimpys(pieces: list[bytes]) -> None:
    from pochta.mailauth import dkim as ours

    body = b"".join(pieces)
    assert ours._relaxed_body(body) == bytes(ours.PURE_RELAXED_BODY(body))
