"""Sender verification end to end: A signs, the DNS publishes, B judges.

Server A (one.test, listening on 127.0.0.2) DKIM-signs what alice submits
and its queue delivers to server B (two.test, 127.0.0.3), found by MX in a
real loopback DNS server. The zone of one.test is exactly what ``pochta dns
records`` tells the operator to publish (:func:`pochta.dns.zone.expected`):
MX, ``v=spf1 mx -all``, both DKIM keys, DMARC ``p=reject``. B's verdicts
are read back from its store: ``Authentication-Results`` (RFC 8601),
``Received-SPF`` (RFC 7208 §9.1), the mailbox (INBOX or Junk) or the SMTP
refusal.

Other clients talk to B's port 25 directly with smtplib, from a chosen
loopback source address, for the SPF, DKIM, DMARC and forged-header cases.

Addresses: A listens on 127.0.0.2, but this server has no outbound bind
address, so its connections to B leave from 127.0.0.1 (the kernel's source
for 127/8). ``mail.one.test`` therefore has both addresses in the zone and
``mx`` authorises both; a forger connects from 127.0.0.9, which nothing
authorises.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email
import email.message
import email.policy
import gzip
import logging
import re
import smtplib
import socket
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest
import trustme
from tests.conftest import ServerThread
from tests.dnsserver import DNSTestServer
from tests.integration.hosts import free_port_on, make_host

from pochta.dns.records import TXT
from pochta.dns.zone import expected
from pochta.mailauth.dkim import sign_message
from pochta.mailauth.keys import DKIMKey, DKIMKeyStore
from pochta.mailauth.results import MethodResult, parse_authentication_results
from pochta.store.interface import INBOX

A_IP = "127.0.0.2"
B_IP = "127.0.0.3"
#: Where A's outbound connections come from (see the module docstring).
A_SOURCE = "127.0.0.1"
FORGER_IP = "127.0.0.9"
ALICE = "alice@one.test"
BOB = "bob@two.test"
JUNK = "Junk"


@dataclass
class Net:
    a: ServerThread
    b: ServerThread
    dns: DNSTestServer
    ca: trustme.CA
    #: A's DKIM keys (rsa-sha256, ed25519-sha256), as published.
    keys: list[DKIMKey]
    #: A key pair of sender.test, for signing messages injected into B.
    sender_keys: list[DKIMKey]


def make_server(
    root: Path, ca: trustme.CA, domain: str, ip: str, port: int, dns: str, users: list[str]
) -> ServerThread:
    # one.test signs (what `pochta domain add one.test` does); two.test does not.
    return make_host(
        root, ca, domain, ip, port, dns, users, dkim=domain == "one.test", mailboxes=True
    )


def publish(dns: DNSTestServer, server: ServerThread, domain: str) -> None:
    """Serve the records ``pochta dns records`` prints for ``domain``."""
    by_name: dict[tuple[str, str], list[str]] = {}
    for record in expected(server.settings, domain):
        if record.in_zone:
            by_name.setdefault((record.name, record.rtype), []).append(record.value)
    for (name, rtype), values in by_name.items():
        if rtype == "CNAME":
            dns.zones.set(name, rtype, values[0])
        else:
            dns.zones.set(name, rtype, values)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("mailauth")
    port = free_port_on(A_IP, B_IP)
    zones = {
        "mail.one.test": {"A": [A_IP, A_SOURCE]},
        "two.test": {"MX": ["10 mail.two.test"]},
        "mail.two.test": {"A": [B_IP]},
        # iprev (RFC 8601 §3): forward-confirmed reverse DNS of A's addresses.
        A_IP: {"PTR": "mail.one.test"},
        A_SOURCE: {"PTR": "mail.one.test"},
    }
    with DNSTestServer(zones) as dns:
        a = make_server(root / "a", ca, "one.test", A_IP, port, dns.hostport, [ALICE])
        b = make_server(root / "b", ca, "two.test", B_IP, port, dns.hostport, [BOB])
        try:
            publish(dns, a, "one.test")
            keys = DKIMKeyStore(a.settings.data_dir).published("one.test")
            sender_keys = DKIMKeyStore(root / "sender").create("sender.test")
            for key in sender_keys:
                dns.zones.set(key.record_name, "TXT", key.public_txt)
                # The same key material serves strict.test (a second org domain).
                dns.zones.set(_moved(key, "strict.test").record_name, "TXT", key.public_txt)
            yield Net(a, b, dns, ca, keys, sender_keys)
        finally:
            a.stop()
            b.stop()


def _moved(key: DKIMKey, domain: str) -> DKIMKey:
    return dataclasses.replace(key, domain=domain)


# --- helpers -----------------------------------------------------------------------


def marker() -> str:
    return uuid.uuid4().hex[:12]


def message(sender: str, subject: str, body: str = "Hello Bob.\r\n", extra: str = "") -> bytes:
    """A well-formed message (Date and Message-ID included, so signing covers them)."""
    return (
        f"From: {sender}\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
        f"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{uuid.uuid4().hex}@test>\r\n"
        f"{extra}MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n{body}"
    ).encode()


def signed(data: bytes, keys: list[DKIMKey]) -> bytes:
    return asyncio.run(sign_message(data, keys)) + data


def inject(
    net: Net,
    mail_from: str,
    data: bytes,
    *,
    source: str = "127.0.0.1",
    helo: str = "client.example.test",
) -> tuple[int, str]:
    """One transaction on B's port 25 from ``source``: the reply to DATA."""
    with smtplib.SMTP(
        *net.b.address("smtp"), local_hostname=helo, source_address=(source, 0), timeout=10
    ) as client:
        client.ehlo()
        code, text = client.mail(mail_from)
        assert code == 250, (code, text)
        code, text = client.rcpt(BOB)
        assert code == 250, (code, text)
        code, reply = client.data(data)
        return code, reply.decode()


def stored(server: ServerThread, user: str) -> list[tuple[str, bytes]]:
    """Every message of ``user`` as (mailbox, octets), INBOX and Junk."""

    async def read() -> list[tuple[str, bytes]]:
        boxes = server.server.store.mailboxes(user)
        out: list[tuple[str, bytes]] = []
        for name in (INBOX, JUNK):
            uids = [info.uid for info in await boxes.messages(name)]
            found = await boxes.read_many(name, uids)
            out.extend((name, found[uid]) for uid in uids)
        return out

    return server.call(read)


def find(
    server: ServerThread, user: str, tag: str, timeout: float = 0.0
) -> tuple[str, bytes] | None:
    """The copy of the message whose Subject holds ``tag``, waiting up to ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        for mailbox, data in stored(server, user):
            if tag.encode() in data.split(b"\r\n\r\n", 1)[0]:
                return mailbox, data
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def header_values(data: bytes, name: str) -> list[str]:
    parsed = email.message_from_bytes(data, policy=email.policy.compat32)
    return [re.sub(r"\r?\n(?=[ \t])", "", str(v)) for v in parsed.get_all(name, [])]


def our_results(data: bytes, authserv: str = "mail.two.test") -> list[MethodResult]:
    """The methods of the one Authentication-Results field B added."""
    ours = []
    for value in header_values(data, "Authentication-Results"):
        authserv_id, results = parse_authentication_results(value)
        if authserv_id.lower() == authserv:
            ours.append(results)
    assert len(ours) == 1, ours
    return ours[0]


def results_of(results: list[MethodResult], method: str) -> list[MethodResult]:
    return [r for r in results if r.method == method]


def prop(result: MethodResult, name: str) -> str:
    return dict(result.properties)[name]


def spam_score(data: bytes) -> float:
    (value,) = header_values(data, "X-Spam-Score")
    return float(value)


# --- A signs, B verifies (RFC 6376, RFC 8463, RFC 7208, RFC 7489) ------------------


def submit(net: Net, subject: str) -> None:
    context = ssl.create_default_context()
    net.ca.configure_trust(context)
    with smtplib.SMTP(*net.a.address("submission"), timeout=10) as client:
        client.starttls(context=context)
        client.login(ALICE, "pw-" + ALICE)
        client.sendmail(ALICE, [BOB], f"From: Alice <{ALICE}>\r\nTo: {BOB}\r\n"
                        f"Subject: {subject}\r\n\r\nHello Bob.\r\n")  # fmt: skip


def test_signed_mail_from_a_passes_every_check_on_b(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pochta.smtp.inbound")
    tag = marker()
    submit(net, f"across {tag}")
    found = find(net.b, BOB, tag, timeout=10)
    assert found is not None, "A never delivered to B"
    mailbox, data = found
    assert mailbox == INBOX
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.count(b"\r\nAuthentication-Results: mail.two.test;") == 1
    results = our_results(data)

    (spf,) = results_of(results, "spf")[:1]
    assert spf.result == "pass"
    assert prop(spf, "smtp.mailfrom") == ALICE
    # A's HELO name is checked too (RFC 7208 §2.3): mail.one.test has "a -all".
    helo = results_of(results, "spf")[1]
    assert (helo.result, prop(helo, "smtp.helo")) == ("pass", "mail.one.test")

    # Both of A's signatures, one per algorithm (RFC 8463 §3 signs with both).
    dkims = results_of(results, "dkim")
    assert sorted((d.result, prop(d, "header.d"), prop(d, "header.a")) for d in dkims) == [
        ("pass", "one.test", "ed25519-sha256"),
        ("pass", "one.test", "rsa-sha256"),
    ]
    assert {prop(d, "header.s") for d in dkims} == {k.selector for k in net.keys}

    (dmarc,) = results_of(results, "dmarc")
    assert dmarc.result == "pass"
    assert prop(dmarc, "header.from") == "one.test"
    assert prop(dmarc, "policy.dmarc") == "reject"
    (iprev,) = results_of(results, "iprev")
    assert (iprev.result, prop(iprev, "policy.iprev")) == ("pass", "mail.one.test")

    (received_spf,) = header_values(data, "Received-SPF")
    assert received_spf.startswith("pass (mail.two.test: domain of alice@one.test designates ")
    # A mailbox is not a dot-atom, so it is quoted (RFC 7208 §9.1).
    assert f'envelope-from="{ALICE}";' in received_spf
    assert "identity=mailfrom" in received_spf
    # DMARC pass is a small credit (pochta.antispam.score): well below Junk.
    assert spam_score(data) < 0
    # One log line gives every verdict of the message (the checks' design note).
    lines = [r.getMessage() for r in caplog.records if " checks message_id=" in r.getMessage()]
    assert any(
        "spf=pass(one.test)" in line and "dkim=pass(one.test),pass(one.test)" in line
        and "dmarc=pass(one.test,none)" in line
        for line in lines
    ), lines  # fmt: skip


def test_dkimpy_verifies_the_copy_b_stored(net: Net) -> None:
    """An independent verifier agrees: dkimpy, with keys straight from the zone data."""
    tag = marker()
    submit(net, f"independent {tag}")
    found = find(net.b, BOB, tag, timeout=10)
    assert found is not None
    _, data = found

    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode() if isinstance(name, bytes) else name
        records = net.dns.zones.lookup(text, "TXT").records
        if not records:
            return None
        record = records[0]
        assert isinstance(record, TXT)
        return b"".join(record.strings)

    def verifies(message: bytes, index: int) -> bool:
        try:
            return bool(dkim.DKIM(message).verify(idx=index, dnsfunc=dnsfunc))
        except dkim.ValidationError:  # dkimpy raises on a body hash mismatch
            return False

    fields = [v for k, v in dkim.DKIM(data).headers if k.lower() == b"dkim-signature"]
    assert len(fields) == 2
    assert [verifies(data, index) for index in range(2)] == [True, True]
    # The check has teeth: a body changed after delivery no longer verifies.
    tampered = data.replace(b"Hello Bob.", b"Hello Eve.")
    assert [verifies(tampered, index) for index in range(2)] == [False, False]


def test_body_tampered_after_signing_fails_dkim(net: Net) -> None:
    """SPF still passes (from A's address), so DMARC passes and the message is kept."""
    tag = marker()
    original = signed(message(ALICE, f"tampered {tag}"), [k for k in net.keys if k.active])
    tampered = original.replace(b"Hello Bob.", b"Send money.")
    code, reply = inject(net, ALICE, tampered, source=A_SOURCE, helo="mail.one.test")
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    results = our_results(found[1])
    dkims = results_of(results, "dkim")
    assert [d.result for d in dkims] == ["fail", "fail"]
    assert all("body hash" in d.reason for d in dkims), [d.reason for d in dkims]
    assert results_of(results, "spf")[0].result == "pass"
    assert results_of(results, "dmarc")[0].result == "pass"


def test_tampered_body_from_an_unauthorised_host_is_rejected_by_dmarc(net: Net) -> None:
    """RFC 7489 §6.6.4, §10.3: p=reject with neither SPF nor DKIM aligned-passing
    is a 550 5.7.1 after DATA, and nothing is stored."""
    tag = marker()
    original = signed(message(ALICE, f"forged {tag}"), [k for k in net.keys if k.active])
    tampered = original.replace(b"Hello Bob.", b"Send money.")
    code, reply = inject(net, ALICE, tampered, source=FORGER_IP)
    assert code == 550, reply
    assert reply.startswith("5.7.1"), reply
    assert "DMARC" in reply and "one.test" in reply
    assert find(net.b, BOB, tag) is None

    # What a sending MTA sees: smtplib raises on the refusal after DATA.
    with (
        smtplib.SMTP(
            *net.b.address("smtp"),
            local_hostname="client.example.test",
            source_address=(FORGER_IP, 0),
            timeout=10,
        ) as client,
        pytest.raises(smtplib.SMTPDataError) as refused,
    ):
        client.sendmail(ALICE, [BOB], tampered)
    assert refused.value.smtp_code == 550


def test_intact_signature_carries_dmarc_when_spf_fails(net: Net) -> None:
    """A forwarded message (SPF fails at the new hop) still passes through DKIM."""
    tag = marker()
    data = signed(message(ALICE, f"forwarded {tag}"), [k for k in net.keys if k.active])
    code, reply = inject(net, ALICE, data, source=FORGER_IP)
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    results = our_results(found[1])
    assert results_of(results, "spf")[0].result == "fail"
    assert [d.result for d in results_of(results, "dkim")] == ["pass", "pass"]
    assert results_of(results, "dmarc")[0].result == "pass"


def test_unfetchable_key_defers_rather_than_applying_the_policy(net: Net) -> None:
    """A signature we could not check might have aligned: with p=reject and SPF
    failing, a DKIM temperror (RFC 6376 §6.1.2 TEMPFAIL) is a 451, not a 550."""
    tag = marker()
    data = signed(message(ALICE, f"no key {tag}"), [k for k in net.keys if k.active])
    for key in net.keys:
        net.dns.zones.fail(key.record_name, "TXT", "servfail")
    try:
        code, reply = inject(net, ALICE, data, source=FORGER_IP)
    finally:
        for key in net.keys:
            net.dns.zones.fail(key.record_name, "TXT", None)
    assert code == 451, reply
    assert reply.startswith("4.7.0"), reply
    assert find(net.b, BOB, tag) is None
    # The retry, with DNS healed, passes through DKIM.
    code, reply = inject(net, ALICE, data, source=FORGER_IP)
    assert code == 250, reply


def test_bounce_is_judged_by_the_helo_identity(net: Net) -> None:
    """A null MAIL FROM is checked as postmaster@<HELO> (RFC 7208 §2.4), and
    that domain is what DMARC aligns with (RFC 7489 §3.1.2)."""
    tag = marker()
    data = message("MAILER-DAEMON@one.test", f"bounce {tag}")
    code, reply = inject(net, "<>", data, source=A_SOURCE, helo="mail.one.test")
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    assert found[0] == INBOX
    results = our_results(found[1])
    spf = results_of(results, "spf")[0]
    assert (spf.result, prop(spf, "smtp.mailfrom")) == ("pass", "postmaster@mail.one.test")
    assert results_of(results, "dmarc")[0].result == "pass"
    assert found[1].startswith(b"Return-Path: <>\r\n")


# --- SPF on B's port 25 (RFC 7208 §2.6, §9.1; RFC 7372) ---------------------------

SPF_CASES = {
    "pass": ["v=spf1 ip4:127.0.0.1 -all"],
    "fail": ["v=spf1 ip4:192.0.2.1 -all"],
    "softfail": ["v=spf1 ip4:192.0.2.1 ~all"],
    "neutral": ["v=spf1 ?all"],
    # RFC 7208 §4.5: two v=spf1 records are a permerror.
    "permerror": ["v=spf1 -all", "v=spf1 +all"],
    "none": [],
}


@pytest.mark.parametrize("result", list(SPF_CASES))
def test_spf_result_is_recorded(net: Net, result: str) -> None:
    domain = f"spf-{result}.test"
    if SPF_CASES[result]:
        net.dns.zones.set(domain, "TXT", SPF_CASES[result])
    tag = marker()
    sender = f"someone@{domain}"
    code, reply = inject(net, sender, message(sender, f"spf {tag}"))
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    spf = results_of(our_results(found[1]), "spf")[0]
    assert (spf.result, prop(spf, "smtp.mailfrom")) == (result, sender)
    (received_spf,) = header_values(found[1], "Received-SPF")
    assert received_spf.split()[0] == result
    assert "client-ip=127.0.0.1;" in received_spf
    assert f'envelope-from="{sender}";' in received_spf
    if result == "permerror":
        assert "problem=" in received_spf


@pytest.mark.parametrize("failure", ["servfail", "refused"])
def test_spf_temperror_asks_the_client_to_retry(net: Net, failure: str) -> None:
    """RFC 7208 §8.6 temperror → 451 4.7.24 (RFC 7372 §3.2); nothing is stored."""
    domain = f"spf-temp-{failure}.test"
    net.dns.zones.set(domain, "TXT", "v=spf1 ip4:127.0.0.1 -all")
    net.dns.zones.fail(domain, "TXT", failure)  # type: ignore[arg-type]
    tag = marker()
    sender = f"someone@{domain}"
    code, reply = inject(net, sender, message(sender, f"spf temp {tag}"))
    assert code == 451, reply
    assert reply.startswith("4.7.24"), reply
    assert find(net.b, BOB, tag) is None
    # Healed, the retry goes through.
    net.dns.zones.fail(domain, "TXT", None)
    code, reply = inject(net, sender, message(sender, f"spf temp {tag}"))
    assert code == 250, reply


# --- DMARC (RFC 7489) --------------------------------------------------------------


def test_quarantine_policy_sends_the_message_to_junk(net: Net) -> None:
    """§6.6.4 quarantine: Junk although the spam score alone would say INBOX."""
    net.dns.zones.set("_dmarc.quarantine.test", "TXT", "v=DMARC1; p=quarantine")
    tag = marker()
    sender = "news@quarantine.test"
    code, reply = inject(net, sender, message(sender, f"quarantine {tag}"))
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    mailbox, data = found
    assert mailbox == JUNK
    dmarc = results_of(our_results(data), "dmarc")[0]
    assert (dmarc.result, prop(dmarc, "policy.dmarc")) == ("fail", "quarantine")
    assert spam_score(data) < 5.0  # the policy, not the score, chose Junk
    (status,) = header_values(data, "X-Spam-Status")
    assert "decision=junk" in status


def test_reject_policy_with_pct_0_quarantines_instead(net: Net) -> None:
    """§6.6.4: a message not sampled by pct gets the next policy down."""
    net.dns.zones.set("_dmarc.pct0.test", "TXT", "v=DMARC1; p=reject; pct=0")
    tag = marker()
    sender = "news@pct0.test"
    code, reply = inject(net, sender, message(sender, f"pct0 {tag}"))
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    assert found[0] == JUNK
    dmarc = results_of(our_results(found[1]), "dmarc")[0]
    assert (dmarc.result, prop(dmarc, "policy.dmarc")) == ("fail", "reject")


def test_subdomain_from_aligns_relaxed_with_the_org_domain_signature(net: Net) -> None:
    """§3.1.1 relaxed: d=sender.test aligns with From news.sender.test, whose
    policy is found at the organizational domain (§6.6.3 step 3)."""
    net.dns.zones.set("_dmarc.sender.test", "TXT", "v=DMARC1; p=reject")
    tag = marker()
    sender = "letters@news.sender.test"
    data = signed(message(sender, f"relaxed {tag}"), net.sender_keys)
    code, reply = inject(net, "bounces@elsewhere.test", data)
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    assert found[0] == INBOX
    results = our_results(found[1])
    assert {(d.result, prop(d, "header.d")) for d in results_of(results, "dkim")} == {
        ("pass", "sender.test")
    }
    dmarc = results_of(results, "dmarc")[0]
    assert (dmarc.result, prop(dmarc, "header.from")) == ("pass", "news.sender.test")


def test_strict_dkim_alignment_fails_for_a_subdomain_from(net: Net) -> None:
    """§3.1.1 adkim=s: d=strict.test does not align with news.strict.test."""
    net.dns.zones.set("_dmarc.strict.test", "TXT", "v=DMARC1; p=quarantine; adkim=s")
    tag = marker()
    sender = "letters@news.strict.test"
    keys = [_moved(k, "strict.test") for k in net.sender_keys]
    data = signed(message(sender, f"strict {tag}"), keys)
    code, reply = inject(net, "bounces@elsewhere.test", data)
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    results = our_results(found[1])
    assert {d.result for d in results_of(results, "dkim")} == {"pass"}
    dmarc = results_of(results, "dmarc")[0]
    assert (dmarc.result, prop(dmarc, "header.from")) == ("fail", "news.strict.test")
    assert found[0] == JUNK


def test_dmarc_lookup_failure_asks_the_client_to_retry(net: Net) -> None:
    """The DMARC verdict is open, so 451 rather than a guess (RFC 7489 §6.6.3 leaves it to us)."""
    net.dns.zones.fail("_dmarc.dmarc-temp.test", "TXT", "servfail")
    tag = marker()
    sender = "news@dmarc-temp.test"
    code, reply = inject(net, sender, message(sender, f"dmarc temp {tag}"))
    assert code == 451, reply
    assert reply.startswith("4.7."), reply
    assert find(net.b, BOB, tag) is None


# --- Forged verdicts (RFC 8601 §5) --------------------------------------------------


def test_forged_authentication_results_are_removed(net: Net) -> None:
    tag = marker()
    sender = "someone@forged.test"
    extra = (
        "Authentication-Results: mail.two.test; dkim=pass header.d=one.test\r\n"
        "Authentication-Results: MAIL.TWO.TEST;\r\n\tspf=pass smtp.mailfrom=one.test\r\n"
        "Authentication-Results: (looks legit) mail.two.test; dmarc=pass\r\n"
        "Authentication-Results: mail.two.test.; dmarc=pass header.from=one.test\r\n"
        "Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=forged.test\r\n"
    )
    code, reply = inject(net, sender, message(sender, f"forged ar {tag}", extra=extra))
    assert code == 250, reply
    found = find(net.b, BOB, tag)
    assert found is not None
    values = header_values(found[1], "Authentication-Results")
    # Ours, and the other server's, which claims nothing about us (§5, §7.1).
    assert len(values) == 2, values
    assert values[0].startswith("mail.two.test;")
    assert values[1].startswith("mx.elsewhere.test;")
    results = our_results(found[1])
    assert [d.result for d in results_of(results, "dkim")] == ["none"]
    assert b"header.d=one.test" not in found[1]
    assert b"dmarc=pass" not in found[1]


# --- Who is the author? (RFC 7489 §6.6.1) -------------------------------------------


@pytest.mark.parametrize(
    "from_fields",
    [
        f"From: {ALICE}\r\nFrom: someone@forger.test\r\n",  # RFC 5322 §3.6 allows one
        f"From: someone@forger.test\r\nFrom: {ALICE}\r\n",
        f"From: {ALICE}, someone@forger.test\r\n",  # several authors
    ],
    ids=["two-fields", "two-fields-ours-second", "two-mailboxes"],
)
def test_a_second_author_does_not_dodge_the_dmarc_policy(net: Net, from_fields: str) -> None:
    """A reader may be shown alice@one.test; one.test's p=reject must still apply."""
    tag = marker()
    data = message("someone@forger.test", f"two authors {tag}")
    data = data.replace(b"From: someone@forger.test\r\n", from_fields.encode(), 1)
    code, reply = inject(net, "someone@forger.test", data, source=FORGER_IP)
    assert code == 550, reply
    assert reply.startswith("5.7.1") and "one.test" in reply, reply
    assert find(net.b, BOB, tag) is None


def test_a_helo_that_is_not_utf8_still_gets_the_mail_stored(net: Net) -> None:
    """A HELO with a byte that is not UTF-8 (aiosmtpd keeps it as a lone
    surrogate) once made every DATA fail with 451 while writing Received-SPF:
    the mail would have been retried for ever. The header says "?" instead."""
    tag = marker()
    with socket.create_connection(net.b.address("smtp"), timeout=10) as sock:
        f = sock.makefile("rb")

        def say(line: bytes) -> bytes:
            sock.sendall(line + b"\r\n")
            reply = f.readline()
            while reply[3:4] == b"-":
                reply = f.readline()
            return reply

        assert f.readline().startswith(b"220")
        assert say(b"EHLO bad\xffname.example.test").startswith(b"250")
        assert say(b"MAIL FROM:<carol@sender.test>").startswith(b"250")
        assert say(b"RCPT TO:<" + BOB.encode() + b">").startswith(b"250")
        assert say(b"DATA").startswith(b"354")
        # Signed: DMARC passes whatever other tests of this module published.
        data = signed(message("carol@sender.test", f"odd helo {tag}"), net.sender_keys)
        reply = say(data.replace(b"\r\n.", b"\r\n..") + b"\r\n.")
        assert reply.startswith(b"250"), reply
    found = find(net.b, BOB, tag, timeout=5)
    assert found is not None
    spf = header_values(found[1], "Received-SPF")[0]
    assert "bad?name.example.test" in spf


def test_dmarc_verdicts_go_into_the_next_aggregate_report(net: Net) -> None:
    """RFC 7489 §7.2: counted at the MX, reported once the day is over."""
    net.dns.zones.set(
        "_dmarc.reports.test", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@reports.test"
    )
    tag = marker()
    sender = "news@reports.test"
    code, reply = inject(net, sender, message(sender, f"report {tag}"))
    assert code == 250, reply
    checks = net.b.server._checks
    assert checks is not None
    reports = checks.reports
    sent: list[tuple[str, list[str], bytes]] = []

    async def capture(mail_from: str, rcpts: Sequence[str], data: bytes) -> str:
        sent.append((mail_from, list(rcpts), data))
        return "QID"

    now = time.time()
    reports.clock = lambda: now + 86400  # tomorrow: today's report is due
    try:
        assert net.b.call(lambda: reports.send_due(capture)) >= 1
    finally:
        reports.clock = time.time
    mine = [(frm, data) for frm, rcpts, data in sent if rcpts == ["dmarc@reports.test"]]
    assert len(mine) == 1
    mail_from, data = mine[0]
    assert mail_from == ""  # the null reverse-path: no bounce loops
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    (attachment,) = list(parsed.iter_attachments())
    assert (attachment.get_filename() or "").startswith("mail.two.test!reports.test!")
    # A server signs its reports with the keys of its host name's domain:
    # A (mail.one.test) has keys for one.test; B's two.test has none.
    signed = net.a.call(lambda: net.a.server._sign_report(data))
    assert signed.startswith(b"DKIM-Signature:") and signed.endswith(data)
    assert b"d=one.test" in signed[: len(signed) - len(data)]
    assert net.b.call(lambda: net.b.server._sign_report(data)) == data
    feedback = ET.fromstring(gzip.decompress(attachment.get_content()))
    assert feedback.findtext("policy_published/domain") == "reports.test"
    row = feedback.find("record/row")
    assert row is not None
    assert row.findtext("source_ip") == "127.0.0.1" and row.findtext("count") == "1"
    assert row.findtext("policy_evaluated/disposition") == "quarantine"
