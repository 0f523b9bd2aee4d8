"""Two Pochta servers for two domains, found through MX records in a real DNS server.

alice@one.test submits to server A over 587 (STARTTLS + AUTH); A's queue
looks up two.test's MX in the loopback DNS server, delivers to server B on
port 25's stand-in, and bob@two.test finds it in his Maildir. Refusals come
back to alice as DSNs in her INBOX on A.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import smtplib
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner
from tests.conftest import ServerThread, traced
from tests.dnsserver import DNSTestServer
from tests.integration.hosts import free_port_on, make_host

from pochta.cli import _register, cli
from pochta.observe.trace import find
from pochta.queue import QueuedMessage


@dataclass
class Pair:
    a: ServerThread
    b: ServerThread
    dns: DNSTestServer


def make_server(
    root: Path, ca: trustme.CA, domain: str, ip: str, port: int, dns: str, users: list[str]
) -> ServerThread:
    return make_host(root, ca, domain, ip, port, dns, users)


@pytest.fixture
def pair(tmp_path: Path, ca: trustme.CA) -> Iterator[Pair]:
    port = free_port_on("127.0.0.2", "127.0.0.3")
    zones = {
        "one.test": {"MX": ["10 mail.one.test"]},
        "mail.one.test": {"A": ["127.0.0.2"]},
        "two.test": {"MX": ["10 mail.two.test"]},
        "mail.two.test": {"A": ["127.0.0.3"]},
    }
    with DNSTestServer(zones) as dns:
        a = make_server(tmp_path / "a", ca, "one.test", "127.0.0.2", port, dns.hostport,
                        ["alice@one.test"])  # fmt: skip
        b = make_server(tmp_path / "b", ca, "two.test", "127.0.0.3", port, dns.hostport,
                        ["bob@two.test"])  # fmt: skip
        try:
            yield Pair(a, b, dns)
        finally:
            a.stop()
            b.stop()


def submit(server: ServerThread, ca: trustme.CA, user: str, rcpts: list[str], body: str) -> None:
    """Send ``body`` as ``user`` through ``server``'s submission port."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with smtplib.SMTP(*server.address("submission"), timeout=10) as client:
        client.starttls(context=context)
        client.login(user, "pw-" + user)
        client.sendmail(user, rcpts, body)


def wait_inbox(server: ServerThread, user: str, count: int = 1, timeout: float = 15) -> list[bytes]:
    local, domain = user.split("@")
    new = server.settings.data_dir / "mail" / domain / local / "new"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        files = sorted(new.iterdir()) if new.is_dir() else []
        if len(files) >= count:
            return [f.read_bytes() for f in files]
        time.sleep(0.05)
    raise AssertionError(f"{user} has {len(files)} messages, expected {count}")


def test_mail_crosses_domains_through_mx(pair: Pair, ca: trustme.CA) -> None:
    body = "From: alice@one.test\r\nTo: bob@two.test\r\nSubject: across\r\n\r\nHello Bob\r\n"
    submit(pair.a, ca, "alice@one.test", ["bob@two.test"], body)
    (data,) = wait_inbox(pair.b, "bob@two.test")
    assert b"Subject: across" in data and b"Hello Bob" in data
    assert data.startswith(b"Return-Path: <alice@one.test>\r\n")
    # B's verdicts sit above its own Received header, A's Received below it.
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.index(b"Authentication-Results: mail.two.test;") < head.index(b"Received: from")
    assert b"Received: from mail.one.test" in head
    assert b"by mail.two.test (Pochta) with ESMTPS" in data  # opportunistic STARTTLS
    assert b"by mail.one.test (Pochta) with ESMTPSA" in data
    # And back again.
    submit(pair.b, ca, "bob@two.test", ["alice@one.test"],
           "From: bob@two.test\r\nSubject: re: across\r\n\r\nHi Alice\r\n")  # fmt: skip
    (reply,) = wait_inbox(pair.a, "alice@one.test")
    assert b"Subject: re: across" in reply


def test_refusal_comes_back_as_a_dsn(pair: Pair, ca: trustme.CA) -> None:
    submit(pair.a, ca, "alice@one.test", ["nobody@two.test"],
           "From: alice@one.test\r\nSubject: lost\r\n\r\nx\r\n")  # fmt: skip
    (dsn,) = wait_inbox(pair.a, "alice@one.test")
    assert dsn.startswith(b"Return-Path: <>\r\n")
    parsed = email.message_from_bytes(dsn, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    text = dsn.decode()
    assert "Final-Recipient: rfc822; nobody@two.test" in text
    assert "Action: failed" in text and "Status: 5.1.1" in text
    assert "Remote-MTA: dns; mail.two.test" in text
    assert "Subject: lost" in text


def test_unreachable_domain_is_retried_then_delivered(pair: Pair, ca: trustme.CA) -> None:
    pair.dns.zones.fail("two.test", "MX", "servfail")
    submit(pair.a, ca, "alice@one.test", ["bob@two.test"],
           "From: alice@one.test\r\nSubject: later\r\n\r\nx\r\n")  # fmt: skip
    time.sleep(0.5)
    (message,) = pair.a.call(lambda: _messages(pair.a))
    assert message.recipients[0].state == "queued"
    assert message.recipients[0].last_reply is not None
    assert message.recipients[0].last_reply.startswith("451 4.4.3")
    pair.dns.zones.fail("two.test", "MX", None)
    (data,) = wait_inbox(pair.b, "bob@two.test")
    assert b"Subject: later" in data


async def _messages(server: ServerThread) -> list[QueuedMessage]:
    return server.server.queue.spool.messages()


def test_trace_follows_a_message_across_both_servers(pair: Pair, ca: trustme.CA) -> None:
    body = (
        "From: alice@one.test\r\nTo: bob@two.test\r\nSubject: traced\r\n"
        "Message-ID: <traced.1@one.test>\r\n\r\nx\r\n"
    )
    submit(pair.a, ca, "alice@one.test", ["bob@two.test"], body)
    (data,) = wait_inbox(pair.b, "bob@two.test")
    sent = traced(pair.a, "traced.1@one.test", "sent")
    assert [e["ev"] for e in sent] == ["submitted", "mx", "connection", "sent"]
    submitted, mx, connection, done = sent
    assert submitted["user"] == "alice@one.test" and submitted["to"] == ["bob@two.test"]
    assert submitted["dkim"] == (["one.test"] if b"DKIM-Signature:" in data else [])
    assert mx["domain"] == "two.test" and mx["hosts"] == ["mail.two.test"]
    assert connection["host"] == "mail.two.test" and connection["address"] == "127.0.0.3"
    assert connection["tls"] is True  # opportunistic STARTTLS
    assert done["relay"] == "mail.two.test" and done["reply"].startswith("250 ")
    assert done["qid"] == submitted["qid"]
    # The id in A's Received field (not the spool's) finds the message too.
    received_id = re.search(rb"by mail\.one\.test \(Pochta\) with ESMTPSA[^;]* id (\w+)", data)
    assert received_id is not None
    by_received = find(pair.a.settings.data_dir / "trace", received_id.group(1).decode())
    assert [e["ev"] for e in by_received] == ["submitted", "mx", "connection", "sent"]
    # The receiving side: the same Message-ID, its own queue id.
    got = traced(pair.b, "<traced.1@one.test>", "stored")
    assert [e["ev"] for e in got] == ["received", "checks", "stored"]
    received, checks, stored = got
    assert received["client"].startswith("127.") and received["helo"] == "mail.one.test"
    assert received["tls"].startswith("TLSv1.")
    assert "spf=" in checks["verdicts"] and "dkim=" in checks["verdicts"]
    assert (stored["user"], stored["mailbox"]) == ("bob@two.test", "INBOX")
    assert stored["uid"] >= 1
    # The reply named B's queue id, so that id finds the same events.
    assert [e["ev"] for e in find(pair.b.settings.data_dir / "trace", received["qid"])] == [
        "received",
        "checks",
        "stored",
    ]


def test_trace_of_a_refusal_reaches_the_dsn(pair: Pair, ca: trustme.CA) -> None:
    submit(pair.a, ca, "alice@one.test", ["nobody@two.test"],
           "From: alice@one.test\r\nMessage-ID: <lost.1@one.test>\r\n\r\nx\r\n")  # fmt: skip
    wait_inbox(pair.a, "alice@one.test")
    events = traced(pair.a, "lost.1@one.test", "stored")
    kinds = [e["ev"] for e in events]
    assert kinds[:4] == ["submitted", "mx", "connection", "failed"], kinds
    failed = events[3]
    assert failed["to"] == "nobody@two.test" and failed["reply"].startswith("550 5.1.1")
    (dsn,) = [e for e in events if e["ev"] == "dsn"]
    assert dsn["kind"] == "failed" and dsn["to"] == "alice@one.test"
    (dsn_qid,) = dsn["links"]
    # The DSN's own delivery into alice's INBOX is part of the same trace.
    assert ("stored", dsn_qid) in [(e["ev"], e["qid"]) for e in events]
    # B refused at RCPT: nothing was received there.
    assert find(pair.b.settings.data_dir / "trace", "lost.1@one.test") == []


def test_pochta_trace_command(pair: Pair, ca: trustme.CA) -> None:
    submit(pair.a, ca, "alice@one.test", ["bob@two.test"],
           "From: alice@one.test\r\nMessage-ID: <cli.1@one.test>\r\n\r\nx\r\n")  # fmt: skip
    wait_inbox(pair.b, "bob@two.test")
    traced(pair.a, "cli.1@one.test", "sent")
    config = pair.a.settings.data_dir.parent / "pochta.toml"
    _register()
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "trace", "<cli.1@one.test>"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split()[3] for line in lines] == ["submitted", "mx", "connection", "sent"]
    assert "relay=mail.two.test" in lines[-1]
    as_json = runner.invoke(cli, ["--config", str(config), "trace", "--json", "cli.1@one.test"])
    assert [json.loads(line)["ev"] for line in as_json.output.splitlines()] == [
        "submitted",
        "mx",
        "connection",
        "sent",
    ]
    missing = runner.invoke(cli, ["--config", str(config), "trace", "<none@one.test>"])
    assert missing.exit_code == 1 and "no trace of <none@one.test>" in missing.output
