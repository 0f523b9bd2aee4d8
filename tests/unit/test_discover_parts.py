"""pochta.discover's parts without a mail server: documents, MX heuristic, timeouts.

Names come from ``DictResolver``; the only sockets are a silent loopback
listener (to prove timeouts) and nothing else.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.accounts import parse_address
from pochta.discover import Network, discover
from pochta.discover.documents import (
    DocumentError,
    expand,
    parse_config_v11,
    parse_pox_response,
)
from pochta.discover.model import Attempt, Found, Report, ServerSetting
from pochta.discover.probe import check_login, probe
from pochta.dns import MX, Answer, DictResolver

ALICE = parse_address("Alice.Smith@one.test")

CONFIG = b"""<?xml version="1.0"?>
<clientConfig version="1.1">
  <emailProvider id="one.test">
    <domain>one.test</domain>
    <incomingServer type="imap">
      <hostname>imap.%EMAILDOMAIN%</hostname><port>993</port><socketType>SSL</socketType>
      <username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication>
      <authentication>OAuth2</authentication>
    </incomingServer>
    <incomingServer type="exchange"><hostname>x.test</hostname></incomingServer>
    <incomingServer type="pop3">
      <hostname>bad host</hostname><port>995</port><socketType>SSL</socketType>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.one.test.</hostname><port>587</port><socketType>STARTTLS</socketType>
      <username>%EMAILADDRESS%</username>
    </outgoingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.one.test</hostname><port>99999</port><socketType>SSL</socketType>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""


def test_config_v11_placeholders_and_skips() -> None:
    incoming, outgoing, notes = parse_config_v11(CONFIG, ALICE)
    assert incoming == [
        ServerSetting(
            "imap", "imap.one.test", 993, "ssl", "Alice.Smith", ("password-cleartext", "OAuth2")
        )
    ]
    assert outgoing == [
        ServerSetting("smtp", "smtp.one.test", 587, "starttls", "Alice.Smith@one.test")
    ]
    assert len(notes) == 3  # exchange type, bad host name, bad port


@pytest.mark.parametrize(
    "data",
    [
        b'<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]><clientConfig>&x;</clientConfig>',
        b"<clientConfig/>",
        b"<other/>",
        b"\xff\xfe garbage",
    ],
)
def test_config_v11_refuses(data: bytes) -> None:
    with pytest.raises(DocumentError):
        parse_config_v11(data, ALICE)


@given(st.binary(max_size=400))
def test_document_parsers_raise_only_document_error(data: bytes) -> None:
    for parse in (parse_config_v11, parse_pox_response):
        try:
            parse(data, ALICE)  # type: ignore[operator]
        except DocumentError:
            pass


def pox(account: str) -> bytes:
    return (
        '<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/'
        '2006"><Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/'
        f'responseschema/2006a"><Account>{account}</Account></Response></Autodiscover>'
    ).encode()


def test_pox_redirects_and_old_ssl_flag() -> None:
    redirect = parse_pox_response(
        pox("<Action>redirectAddr</Action><RedirectAddr>a@two.test</RedirectAddr>"), ALICE
    )
    assert redirect.redirect_address == "a@two.test"
    url = parse_pox_response(
        pox("<Action>redirectUrl</Action><RedirectUrl>https://x.test/a.xml</RedirectUrl>"), ALICE
    )
    assert url.redirect_url == "https://x.test/a.xml"
    settings = parse_pox_response(
        pox(
            "<Action>settings</Action>"
            "<Protocol><Type>IMAP</Type><Server>m.test</Server><Port>143</Port><SSL>on</SSL>"
            "</Protocol><Protocol><Type>SMTP</Type><Server>m.test</Server><Port>465</Port>"
            "<SSL>on</SSL></Protocol><Protocol><Type>POP3</Type><Server>m.test</Server>"
            "<Port>110</Port><SSL>off</SSL></Protocol>"
            "<Protocol><Type>WEB</Type></Protocol>"
        ),
        ALICE,
    )
    assert [(s.protocol, s.security, s.username) for s in settings.incoming] == [
        ("imap", "starttls", "Alice.Smith@one.test"),
        ("pop3", "plain", "Alice.Smith@one.test"),
    ]
    assert settings.outgoing[0].security == "ssl"


def test_expand() -> None:
    assert expand("%EMAILLOCALPART%+%EMAILDOMAIN%", ALICE) == "Alice.Smith+one.test"


def test_report_json_and_text() -> None:
    setting = ServerSetting("imap", "m.test", 993, "ssl", "a@one.test")
    report = Report("a@one.test", [Attempt(3, "srv", "SRV _imaps._tcp.one.test", "found", "x")])
    assert not report.ok and report.to_json()["advice"]
    assert "6. manual setup" in report.render()
    report.found = Found(3, "srv", "SRV records", (setting,), (setting,), ("careful",))
    data = report.to_json()
    assert data["found"] and data["incoming"][0]["port"] == 993 and data["warnings"] == ["careful"]
    assert "  warning: careful" in report.render()


# ------------------------------------------------------------------ MX heuristic


@pytest.mark.parametrize(
    ("mx", "expected"),
    [
        ("mx1.mail.provider.test", "mail.provider.test -> provider.test"),
        ("mx.provider.test", "provider.test"),
        ("mail.one.test", None),
        ("localhost", None),
    ],
)
async def test_mx_domain_candidates(mx: str, expected: str | None) -> None:
    resolver = DictResolver({"one.test": {"MX": [MX(10, mx), MX(20, "other.test")]}})
    report = await discover(ALICE, Network(resolver, timeout=1), step_timeout=5)
    attempt = next(a for a in report.attempts if a.method == "mx")
    if expected is None:
        assert attempt.outcome == "not-found"
    else:
        tried = expected.replace(" -> ", ", ")
        assert attempt.detail == f"{mx} -> trying {tried}"
        steps = {a.target for a in report.attempts if a.step == 4}
        assert f"SRV _imaps._tcp.{expected.split(' -> ')[-1]}" in steps


# ---------------------------------------------------------------------- timeouts


class SlowResolver(DictResolver):
    async def srv(self, name: str) -> Answer:  # type: ignore[override,type-arg]
        await asyncio.sleep(5)
        return await super().srv(name)


async def test_a_slow_step_is_cut_and_reported() -> None:
    report = await discover(ALICE, Network(SlowResolver(), timeout=0.2), step_timeout=0.5)
    timeouts = [a for a in report.attempts if a.outcome == "timeout"]
    assert any(a.method == "autodiscover" and a.target.startswith("SRV ") for a in timeouts)
    assert any(a.method == "step" and a.step == 3 for a in timeouts)
    assert report.found is None


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts connections into its backlog and never speaks."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


async def test_silent_server_probe_times_out_in_words(silent_port: int) -> None:
    resolver = DictResolver({"imap.one.test": {"A": ["127.0.0.1"]}})
    net = Network(resolver, port_map={143: silent_port, 993: silent_port}, timeout=0.3)
    with pytest.raises(Exception, match=r"said nothing for 0\.3 s"):
        await probe(net, "imap", "imap.one.test", 143, "a@one.test")
    with pytest.raises(Exception, match=r"no answer within 0\.3 s"):
        await probe(net, "imap", "imap.one.test", 993, "a@one.test")


async def test_login_is_never_attempted_in_clear() -> None:
    net = Network(DictResolver(), timeout=0.3)
    check = await check_login(
        net, ServerSetting("imap", "m.test", 143, "plain", "a@one.test"), "secret"
    )
    assert not check.ok and "clear text" in check.detail
