"""DANE on delivery (pochta.queue.dane, pochta.queue.remote), end to end.

The MX host is a real SMTP server (aiosmtpd) on 127.0.0.2 with a
certificate of a test CA that the deliverer does *not* trust: DANE-EE
authenticates by the TLSA record alone. ``DictResolver(..., authentic=...)``
plays a validating resolver that sets the AD bit for the names listed.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pochta.dns.mock import DictResolver
from pochta.dns.records import TLSA
from pochta.queue.dane import DanePolicy, usable
from pochta.queue.remote import MXDeliverer

MSG = b"From: alice@one.test\r\nTo: bob@two.test\r\nSubject: hi\r\n\r\nhello\r\n"
SECURE = ["two.test", "mx1.two.test", "_25._tcp.mx1.two.test"]


@dataclass
class Received:
    messages: list[bool] = field(default_factory=list)  # TLS used, per message

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(session.ssl is not None)
        return "250 2.0.0 queued"


@dataclass
class Mx:
    received: Received
    certificate: bytes  # DER
    spki: bytes  # DER SubjectPublicKeyInfo


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def mx(ca: trustme.CA) -> AsyncIterator[Callable[..., asyncio.Future[Mx]]]:
    servers: list[asyncio.Server] = []
    port = free_port("127.0.0.2")

    async def start(*, tls: bool = True) -> Mx:
        received = Received()
        issued = ca.issue_cert("mx1.two.test")
        context = None
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            issued.configure_cert(context)

        def factory() -> SMTP:
            return SMTP(received, hostname="mx1.two.test", tls_context=context)

        servers.append(await asyncio.get_running_loop().create_server(factory, "127.0.0.2", port))
        cert = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes())
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return Mx(received, cert.public_bytes(serialization.Encoding.DER), spki)

    start.port = port  # type: ignore[attr-defined]
    yield start  # type: ignore[misc]
    for server in servers:
        server.close()
        await server.wait_closed()


async def deliver(
    port: int, tlsa: list[object], *, authentic: list[str] = SECURE, tlsa_failure: bool = False
) -> tuple[int, str, str]:
    zones: dict[str, dict[str, object]] = {
        "two.test": {"MX": ["10 mx1.two.test"]},
        "mx1.two.test": {"A": ["127.0.0.2"]},
        "_25._tcp.mx1.two.test": {"TLSA": tlsa},
    }
    resolver = DictResolver(zones, authentic=authentic)
    if tlsa_failure:
        resolver.zones.fail("_25._tcp.mx1.two.test", "TLSA", "servfail")
    deliverer = MXDeliverer(resolver, hostname="mail.one.test", port=port, timeout=5)
    try:
        out = await deliverer.deliver("two.test", "a@one.test", ["bob@two.test"], MSG)
    finally:
        await deliverer.close()
    result = out["bob@two.test"]
    return result.code, result.enhanced, result.text


@pytest.mark.parametrize(
    "record",
    [
        lambda m: (3, 1, 1, hashlib.sha256(m.spki).digest()),
        lambda m: (3, 1, 2, hashlib.sha512(m.spki).digest()),
        lambda m: (3, 1, 0, m.spki),
        lambda m: (3, 0, 1, hashlib.sha256(m.certificate).digest()),
    ],
    ids=["3-1-1", "3-1-2", "3-1-0", "3-0-1"],
)
async def test_a_matching_dane_ee_record_authenticates_an_untrusted_certificate(
    mx: Callable[..., asyncio.Future[Mx]], record: Callable[[Mx], tuple[object, ...]]
) -> None:
    server = await mx()
    code, _, _ = await deliver(mx.port, [record(server)])  # type: ignore[attr-defined]
    assert code == 250
    assert server.received.messages == [True]


async def test_a_certificate_that_matches_no_record_is_refused(
    mx: Callable[..., asyncio.Future[Mx]],
) -> None:
    server = await mx()
    wrong = (3, 1, 1, hashlib.sha256(b"another key").digest())
    code, enhanced, text = await deliver(mx.port, [wrong])  # type: ignore[attr-defined]
    assert (code, enhanced) == (451, "4.7.5") and "DANE" in text
    assert server.received.messages == []


async def test_dane_requires_starttls(mx: Callable[..., asyncio.Future[Mx]]) -> None:
    server = await mx(tls=False)
    record = (3, 1, 1, hashlib.sha256(b"x").digest())
    code, enhanced, text = await deliver(mx.port, [record])  # type: ignore[attr-defined]
    assert (code, enhanced) == (451, "4.7.5") and "STARTTLS" in text
    assert server.received.messages == []


async def test_only_unusable_records_still_require_tls(
    mx: Callable[..., asyncio.Future[Mx]],
) -> None:
    pkix = (1, 1, 1, hashlib.sha256(b"x").digest())  # PKIX-EE: not for SMTP (§3.1.3)
    with_tls = await mx()
    assert (await deliver(mx.port, [pkix]))[0] == 250  # type: ignore[attr-defined]
    assert with_tls.received.messages == [True]  # unauthenticated, but TLS


async def test_only_unusable_records_and_no_tls_is_refused(
    mx: Callable[..., asyncio.Future[Mx]],
) -> None:
    plain = await mx(tls=False)
    pkix = (2, 1, 1, hashlib.sha256(b"x").digest())  # DANE-TA: not supported here
    code, enhanced, _ = await deliver(mx.port, [pkix])  # type: ignore[attr-defined]
    assert (code, enhanced) == (451, "4.7.5")
    assert plain.received.messages == []


@pytest.mark.parametrize(
    "authentic",
    [
        ["two.test", "mx1.two.test"],  # the TLSA answer is not validated
        ["two.test", "_25._tcp.mx1.two.test"],  # the host's addresses are not
    ],
)
async def test_records_without_dnssec_are_ignored(
    mx: Callable[..., asyncio.Future[Mx]], authentic: list[str]
) -> None:
    plain = await mx(tls=False)
    wrong = (3, 1, 1, hashlib.sha256(b"another key").digest())
    code, _, _ = await deliver(mx.port, [wrong], authentic=authentic)  # type: ignore[attr-defined]
    assert code == 250
    assert plain.received.messages == [False]  # opportunistic, as without DANE


async def test_a_failed_tlsa_lookup_is_not_cleartext(
    mx: Callable[..., asyncio.Future[Mx]],
) -> None:
    plain = await mx(tls=False)
    code, enhanced, text = await deliver(mx.port, [], tlsa_failure=True)  # type: ignore[attr-defined]
    assert code == 451 and enhanced.startswith("4.") and "TLSA" in text
    assert plain.received.messages == []


def test_usable_records_and_matching() -> None:
    assert usable(TLSA(3, 1, 1, b"x"))
    assert usable(TLSA(3, 0, 2, b"x"))
    assert not usable(TLSA(2, 1, 1, b"x"))
    assert not usable(TLSA(1, 1, 1, b"x"))
    assert not usable(TLSA(3, 2, 1, b"x"))
    assert not usable(TLSA(3, 1, 3, b"x"))
    policy = DanePolicy("mx", (TLSA(3, 1, 1, b"\x00" * 32),))
    assert not policy.matches(b"not a certificate")
