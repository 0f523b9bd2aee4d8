"""Forwarding aliases end to end: A forwards to B, ARC-sealed (RFC 8617).

Server A (one.test, 127.0.0.4) has aliases with remote targets at two.test;
server B (two.test, 127.0.0.5) is the remote MX, found through the loopback
DNS server. Clients talk to A's port 25 with smtplib from 127.0.0.9, the
only address sender.test's SPF record authorises; A's own connections to B
leave from a loopback address that only one.test's SPF record names, so
the forwarded mail passes SPF at B through its SRS sender at one.test,
and carries DKIM (unchanged by the forward) and A's ARC seal (one.test's
RSA key, published in the zone).

Aliases on A:

* ``fwd@one.test`` -> ``bob@two.test`` (remote only)
* ``mixed@one.test`` -> ``alice@one.test`` and ``bob@two.test``
* ``plain@three.test`` -> ``bob@two.test``: three.test has no DKIM keys,
  so its forwards go out unsealed.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from tests.conftest import ServerThread, traced
from tests.dnsserver import DNSTestServer
from tests.integration.hosts import free_port_on, make_host

from pochta.dns.mock import DictResolver
from pochta.mailauth.arc import ARCResult, verify_arc
from pochta.mailauth.dkim import sign_message
from pochta.mailauth.keys import DKIMKey, DKIMKeyStore
from pochta.mailauth.results import parse_authentication_results
from pochta.observe.trace import find
from pochta.smtp.srs import SRS

A_IP = "127.0.0.4"
B_IP = "127.0.0.5"
#: The client's address: the only one sender.test's SPF allows.
CLIENT_IP = "127.0.0.9"
ALICE = "alice@one.test"
BOB = "bob@two.test"
SENDER = "carol@sender.test"


@dataclass
class Net:
    a: ServerThread
    b: ServerThread
    dns: DNSTestServer
    #: one.test's published keys (A seals with the RSA one).
    a_keys: list[DKIMKey]
    #: sender.test's keys, to sign what the client sends.
    sender_keys: list[DKIMKey]


def make_server(
    root: Path,
    ca: trustme.CA,
    domain: str,
    ip: str,
    port: int,
    dns: str,
    users: list[str],
    *,
    extra_domains: tuple[str, ...] = (),
    aliases: tuple[tuple[str, str], ...] = (),
) -> ServerThread:
    # The main domain gets keys as `pochta domain add` makes them; extra_domains none.
    return make_host(
        root, ca, domain, ip, port, dns, users, listeners=("lmtp",),
        extra_domains=extra_domains, aliases=aliases, dkim=True, mailboxes=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, ca: trustme.CA) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("forwarding")
    port = free_port_on(A_IP, B_IP)
    zones = {
        # Forwarded mail leaves with an SRS sender at one.test (any loopback
        # source address: the kernel picks it).
        "one.test": {"MX": ["10 mail.one.test"], "TXT": ["v=spf1 ip4:127.0.0.0/8 -all"]},
        "mail.one.test": {"A": [A_IP]},
        "three.test": {"MX": ["10 mail.one.test"]},
        "two.test": {"MX": ["10 mail.two.test"]},
        "mail.two.test": {"A": [B_IP]},
        "sender.test": {"TXT": [f"v=spf1 ip4:{CLIENT_IP} -all"]},
        "_dmarc.sender.test": {"TXT": ["v=DMARC1; p=reject"]},
    }
    with DNSTestServer(zones) as dns:
        aliases = (
            ("fwd@one.test", BOB),
            ("mixed@one.test", ALICE),
            ("mixed@one.test", BOB),
            ("plain@three.test", BOB),
        )
        a = make_server(root / "a", ca, "one.test", A_IP, port, dns.hostport, [ALICE],
                        extra_domains=("three.test",), aliases=aliases)  # fmt: skip
        b = make_server(root / "b", ca, "two.test", B_IP, port, dns.hostport, [BOB])
        try:
            a_keys = DKIMKeyStore(a.settings.data_dir).published("one.test")
            sender_keys = DKIMKeyStore(root / "sender").create("sender.test")
            for key in (*a_keys, *sender_keys):
                dns.zones.set(key.record_name, "TXT", key.public_txt)
            yield Net(a, b, dns, a_keys, sender_keys)
        finally:
            a.stop()
            b.stop()


# --- helpers -----------------------------------------------------------------------


def message(marker: str, *, received: int = 0) -> bytes:
    """A message from carol@sender.test, DKIM-signed by sender.test's keys later."""
    trace = "".join(
        f"Received: from hop{i}.test by hop{i}.test; id {i}\r\n" for i in range(received)
    )
    return (
        f"{trace}From: {SENDER}\r\nTo: fwd@one.test\r\nSubject: forward {marker}\r\n"
        f"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{marker}@sender.test>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nHello via one.test {marker}\r\n"
    ).encode()


def signed(data: bytes, keys: list[DKIMKey]) -> bytes:
    return asyncio.run(sign_message(data, keys)) + data


def send(
    address: tuple[str, int],
    mail_from: str,
    rcpts: list[str],
    data: bytes,
    *,
    source: str = CLIENT_IP,
    lmtp: bool = False,
) -> dict[str, tuple[int, bytes]]:
    """One transaction: each RCPT's reply, and DATA's under the key "DATA"."""
    replies: dict[str, tuple[int, bytes]] = {}
    client: smtplib.SMTP
    if lmtp:
        client = smtplib.LMTP(*address, source_address=(source, 0), timeout=10)
    else:
        client = smtplib.SMTP(
            *address, local_hostname="client.sender.test", source_address=(source, 0), timeout=10
        )
    with client:
        client.ehlo_or_helo_if_needed()
        code, text = client.mail(mail_from)
        assert code == 250, text
        for rcpt in rcpts:
            replies[rcpt] = client.rcpt(rcpt)
        if any(code == 250 for code, _ in replies.values()):
            replies["DATA"] = client.data(data)
    return replies


def wait_for(server: ServerThread, user: str, marker: str, timeout: float = 15) -> bytes:
    """The message in ``user``'s INBOX (new/) that contains ``marker``."""
    local, domain = user.split("@")
    new = server.settings.data_dir / "mail" / domain / local / "new"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted(new.iterdir()) if new.is_dir() else []:
            data = path.read_bytes()
            if marker.encode() in data:
                return data
        time.sleep(0.05)
    raise AssertionError(f"no message with {marker} for {user}")


def inbox_has(server: ServerThread, user: str, marker: str) -> bool:
    local, domain = user.split("@")
    new = server.settings.data_dir / "mail" / domain / local / "new"
    return new.is_dir() and any(marker.encode() in p.read_bytes() for p in new.iterdir())


def queued_with(server: ServerThread, marker: str) -> list[str]:
    """Queue ids on ``server`` whose message contains ``marker``."""
    spool = server.server.queue.spool
    return [m.qid for m in spool.messages() if marker.encode() in spool.read(m.qid)]


def results_of(data: bytes, authserv_id: str) -> dict[str, str]:
    """method -> first result of the Authentication-Results field of ``authserv_id``
    (the first ``spf`` is MAIL FROM's, the second HELO's)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    for field in head.replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n"):
        name, _, value = field.partition(":")
        if name.lower() != "authentication-results":
            continue
        found, results = parse_authentication_results(value)
        if found == authserv_id:
            first: dict[str, str] = {}
            for result in results:
                first.setdefault(result.method, result.result)
            return first
    raise AssertionError(f"no Authentication-Results of {authserv_id}")


def marker() -> str:
    return uuid.uuid4().hex[:12]


# --- tests ---------------------------------------------------------------------------


def test_forwarded_mail_arrives_arc_sealed(net: Net) -> None:
    mark = marker()
    replies = send(net.a.address("smtp"), SENDER, ["fwd@one.test"],
                   signed(message(mark), net.sender_keys))  # fmt: skip
    assert replies["fwd@one.test"][0] == 250
    assert replies["DATA"][0] == 250
    data = wait_for(net.b, BOB, mark)
    head = data.split(b"\r\n\r\n", 1)[0]
    # The reverse-path is the SRS form of the original, at the alias's
    # domain (Return-Path, RFC 5321 §4.4, added by B).
    return_path = data.split(b"\r\n", 1)[0].decode()
    assert re.fullmatch(
        r"Return-Path: <SRS0=[A-Z2-7]{8}=[A-Z2-7]{2}=sender\.test=carol@one\.test>", return_path
    )
    # One ARC set by one.test, i=1, sealed with its RSA key, above A's own A-R.
    rsa = next(k for k in net.a_keys if k.algorithm == "rsa-sha256")
    assert head.count(b"ARC-Seal:") == 1
    seal = head[head.index(b"ARC-Seal:") :]
    assert b"i=1; cv=none; a=rsa-sha256; d=one.test;" in seal
    assert f"s={rsa.selector}".encode() in seal
    assert head.index(b"ARC-Seal:") < head.index(b"Authentication-Results: mail.one.test")
    assert b"ARC-Authentication-Results: i=1; mail.one.test;" in head
    assert b"by mail.one.test (Pochta) with ESMTP" in head
    # A's verdicts: the client was the sender's authorised host.
    ours = results_of(data, "mail.one.test")
    assert ours["spf"] == "pass" and ours["dkim"] == "pass" and ours["dmarc"] == "pass"
    assert ours["arc"] == "none"
    # B's verdicts: SPF passes for one.test thanks to SRS, DKIM survived the
    # forward, and the chain A sealed validates.
    theirs = results_of(data, "mail.two.test")
    assert theirs["arc"] == "pass"
    assert theirs["spf"] == "pass"
    assert theirs["dkim"] == "pass" and theirs["dmarc"] == "pass"
    # The stored bytes verify on their own, with only A's key published.
    resolver = DictResolver({rsa.record_name: {"TXT": [rsa.public_txt]}})
    assert asyncio.run(verify_arc(resolver, data)) == ARCResult("pass", 1, "")


def test_mixed_alias_stores_locally_and_forwards(net: Net) -> None:
    mark = marker()
    replies = send(net.a.address("smtp"), SENDER, ["mixed@one.test"],
                   signed(message(mark), net.sender_keys))  # fmt: skip
    assert replies["DATA"][0] == 250
    local = wait_for(net.a, ALICE, mark)
    assert local.startswith(f"Return-Path: <{SENDER}>\r\n".encode())
    assert b"ARC-Seal:" not in local  # sealing is for the forwarded copy only
    assert results_of(local, "mail.one.test")["dmarc"] == "pass"
    remote = wait_for(net.b, BOB, mark)
    assert b"ARC-Seal: i=1;" in remote
    # X-Spam-* fields are per local user: A's stay home, only B's are here.
    assert local.count(b"X-Spam-Status:") == 1 and remote.count(b"X-Spam-Status:") == 1
    assert results_of(remote, "mail.two.test")["arc"] == "pass"


def test_bounce_is_forwarded_with_the_null_sender(net: Net) -> None:
    mark = marker()
    replies = send(net.a.address("smtp"), "<>", ["fwd@one.test"],
                   signed(message(mark), net.sender_keys))  # fmt: skip
    assert replies["DATA"][0] == 250
    data = wait_for(net.b, BOB, mark)
    assert data.startswith(b"Return-Path: <>\r\n")
    assert results_of(data, "mail.two.test")["arc"] == "pass"


def test_a_bounce_to_an_srs_sender_goes_back_to_the_original(net: Net) -> None:
    inbound = net.a.server._inbound
    assert inbound.srs is not None
    srs_sender = inbound.srs.forward(BOB, "one.test")  # as if Bob's mail was forwarded
    mark = marker()
    bounce = signed(
        message(mark).replace(b"To: fwd@one.test", f"To: {srs_sender}".encode()),
        net.sender_keys,
    )
    replies = send(net.a.address("smtp"), "<>", [srs_sender], bounce)
    assert replies[srs_sender][0] == 250 and replies["DATA"][0] == 250
    data = wait_for(net.b, BOB, mark)
    assert data.startswith(b"Return-Path: <>\r\n")
    # One we did not make, or changed, is an unknown user: never a relay.
    local, _, domain = srs_sender.partition("@")
    forged = local[:5] + ("B" if local[5].upper() == "A" else "A") + local[6:] + "@" + domain
    other_key = SRS(b"not the key of one.test").forward("victim@elsewhere.test", "one.test")
    lowered = srs_sender.lower()  # servers that lower-case local parts: still ours
    replies = send(net.a.address("smtp"), "<>", [forged, other_key, lowered], bounce)
    assert replies[forged][0] == 550 and replies[other_key][0] == 550
    assert replies[lowered][0] == 250
    # A long original (bulk senders' bounce addresses) makes an SRS local
    # part over RFC 5321's 64 octets: accepted all the same.
    long_sender = inbound.srs.forward("bounces+" + "x" * 60 + "@two.test", "one.test")
    assert len(long_sender.partition("@")[0]) > 64
    long_reply = send(net.a.address("smtp"), "<>", [long_sender], bounce)
    assert long_reply[long_sender][0] == 250
    # A DSN our own queue makes about a forwarded copy goes to the original
    # sender, not to the SRS address (which only stands for it).
    runner = net.a.server.queue
    assert runner.dsn_recipient(srs_sender) == BOB
    assert runner.dsn_recipient(forged) == forged  # not ours: left alone
    assert runner.dsn_recipient("carol@sender.test") == "carol@sender.test"


def test_domain_without_keys_forwards_unsealed(net: Net) -> None:
    mark = marker()
    replies = send(net.a.address("smtp"), SENDER, ["plain@three.test"],
                   signed(message(mark), net.sender_keys))  # fmt: skip
    assert replies["DATA"][0] == 250
    data = wait_for(net.b, BOB, mark)
    assert b"ARC-Seal:" not in data
    assert results_of(data, "mail.one.test")["spf"] == "pass"  # A's verdicts still travel
    assert results_of(data, "mail.two.test")["arc"] == "none"


def test_refused_mail_is_not_forwarded(net: Net) -> None:
    mark = marker()
    # Unsigned, and from an address SPF does not allow: DMARC p=reject at A.
    replies = send(net.a.address("smtp"), SENDER, ["fwd@one.test"], message(mark),
                   source="127.0.0.1")  # fmt: skip
    assert replies["DATA"][0] == 550
    assert b"DMARC" in replies["DATA"][1]
    assert queued_with(net.a, mark) == []
    time.sleep(0.5)
    assert not inbox_has(net.b, BOB, mark)


def test_lmtp_does_not_forward(net: Net) -> None:
    mark = marker()
    replies = send(net.a.address("lmtp"), SENDER, ["fwd@one.test", "mixed@one.test"],
                   message(mark), lmtp=True)  # fmt: skip
    assert replies["fwd@one.test"][0] == 550
    assert replies["fwd@one.test"][1].startswith(b"5.1.1")
    assert replies["mixed@one.test"][0] == 250
    assert replies["DATA"][0] == 250
    wait_for(net.a, ALICE, mark)  # the local half of mixed@ is delivered
    assert queued_with(net.a, mark) == []


def test_forwarding_loop_is_refused(net: Net) -> None:
    mark = marker()
    looping = signed(message(mark, received=99), net.sender_keys)
    replies = send(net.a.address("smtp"), SENDER, ["fwd@one.test"], looping)
    assert replies["DATA"][0] == 554
    assert replies["DATA"][1].startswith(b"5.4.6")
    # Local delivery cannot loop: the same message to a local user is taken.
    replies = send(net.a.address("smtp"), SENDER, [ALICE], looping)
    assert replies["DATA"][0] == 250


def test_mail_from_a_local_user_to_a_forwarding_alias_is_forwarded(net: Net) -> None:
    # Submission puts a colleague's mail in the queue; the queue's local
    # delivery expands the alias and queues the copy for the remote target.
    mark = marker()
    data = message(mark).replace(SENDER.encode(), ALICE.encode())
    net.a.call(lambda: net.a.server.queue.enqueue(ALICE, ["fwd@one.test"], data))
    got = wait_for(net.b, BOB, mark)
    assert got.startswith(f"Return-Path: <{ALICE}>\r\n".encode())
    assert got.endswith(data)


def test_trace_shows_the_forward_and_the_refusal(net: Net) -> None:
    mark = marker()
    replies = send(net.a.address("smtp"), SENDER, ["mixed@one.test"],
                   signed(message(mark), net.sender_keys))  # fmt: skip
    assert replies["DATA"][0] == 250
    wait_for(net.b, BOB, mark)
    directory = net.a.settings.data_dir / "trace"
    events = traced(net.a, f"{mark}@sender.test", "sent")
    kinds = [e["ev"] for e in events]
    # A connection to B that an earlier test left open is reused: no MX lookup then.
    assert kinds in (
        ["received", "checks", "stored", "forwarded", "mx", "connection", "sent"],
        ["received", "checks", "stored", "forwarded", "connection", "sent"],
    ), kinds
    assert events[-2]["reused"] is ("mx" not in kinds)
    received, checks, stored, forwarded = events[:4]
    assert received["client"] == CLIENT_IP and received["to"] == ["mixed@one.test"]
    assert "dmarc=pass" in checks["verdicts"]
    assert (stored["user"], stored["mailbox"]) == (ALICE, "INBOX")
    (copy,) = forwarded["links"]
    assert forwarded["to"] == [BOB]
    assert {e["qid"] for e in events[4:]} == {copy}
    # Refused at DATA: the trace says with what reply.
    refused_mark = marker()
    replies = send(net.a.address("smtp"), SENDER, ["fwd@one.test"], message(refused_mark),
                   source="127.0.0.1")  # fmt: skip
    assert replies["DATA"][0] == 550
    refused = find(directory, f"<{refused_mark}@sender.test>")
    assert [e["ev"] for e in refused] == ["received", "checks", "refused"]
    assert "decision=reject" in refused[1]["verdicts"]
    assert refused[2]["reply"].startswith("550 5.7.1")
