"""pochta.web's pure parts: the advertised-port rule, documents, the POX and MTA-STS parsers.

The documents the server writes are read back with the parsers the
``pochta discover`` client uses, so both sides agree on the formats.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.accounts import parse_address
from pochta.config import parse_hostport, parse_settings
from pochta.discover.documents import parse_config_v11, parse_pox_response
from pochta.discover.model import ServerSetting
from pochta.web.autoconfig import config_v11
from pochta.web.autodiscover import BadRequest, parse_request, pox_error, pox_response
from pochta.web.mtasts import Policy, PolicyError, parse_policy
from pochta.web.services import Service, advertised_port, advertised_services

ALICE = parse_address("alice@one.test")


# -------------------------------------------------------------- port rule


@pytest.mark.parametrize(
    ("kind", "configured", "bound", "expected"),
    [
        ("imaps", ["0.0.0.0:993"], [993], 993),
        ("imaps", ["127.0.0.1:2993", "0.0.0.0:993"], [2993, 993], 993),  # standard wins
        ("imaps", ["127.0.0.1:2993"], [2993], 2993),  # nonstandard is what it is
        ("imaps", ["127.0.0.1:0"], [40123], 40123),  # port 0: what it became
        ("imaps", ["127.0.0.1:0"], [], None),  # not running
        ("imaps", [], [], None),
        ("submission", ["[::]:587"], [587], 587),
    ],
)
def test_advertised_port_rule(
    kind: str, configured: list[str], bound: list[int], expected: int | None
) -> None:
    hostports = [parse_hostport(text) for text in configured]
    assert advertised_port(kind, hostports, bound) == expected


def test_advertised_services_order_and_security(tmp_path: Path) -> None:
    listen = (
        'submission = ["0.0.0.0:587"]\nimap = ["0.0.0.0:143"]\npop3 = ["0.0.0.0:110"]\n'
        'smtp = ["0.0.0.0:25"]'
    )
    plain = parse_settings(
        f'hostname = "mail.one.test"\ndata_dir = "data"\n[listen]\n{listen}\n',
        tmp_path / "pochta.toml",
    )
    # Without [tls] and without plaintext logins nobody could log in: nothing advertised.
    assert advertised_services(plain) == []
    allowed = parse_settings(
        f'hostname = "mail.one.test"\ndata_dir = "data"\n[listen]\n{listen}\n'
        "[auth]\nallow_plaintext_without_tls = true\n",
        tmp_path / "pochta.toml",
    )
    assert [(s.kind, s.port, s.security) for s in advertised_services(allowed)] == [
        ("imap", 143, "plain"),
        ("pop3", 110, "plain"),
        ("submission", 587, "plain"),
    ]
    assert all(s.hostname == "mail.one.test" for s in advertised_services(allowed))


# -------------------------------------------------------------- documents

SERVICES = [
    Service("imaps", "imap", "mail.one.test", 993, "ssl"),
    Service("imap", "imap", "mail.one.test", 143, "starttls"),
    Service("pop3s", "pop3", "mail.one.test", 995, "ssl"),
    Service("submissions", "smtp", "mail.one.test", 465, "ssl"),
    Service("submission", "smtp", "mail.one.test", 587, "starttls"),
]


def test_config_v11_read_back_by_the_client_parser() -> None:
    incoming, outgoing, notes = parse_config_v11(config_v11("one.test", SERVICES), ALICE)
    assert notes == []
    assert [(s.protocol, s.port, s.security) for s in incoming] == [
        ("imap", 993, "ssl"),
        ("imap", 143, "starttls"),
        ("pop3", 995, "ssl"),
    ]
    assert outgoing[1] == ServerSetting(
        "smtp", "mail.one.test", 587, "starttls", "alice@one.test", ("password-cleartext",)
    )


def test_pox_response_read_back_by_the_client_parser() -> None:
    answer = parse_pox_response(pox_response(ALICE, SERVICES), ALICE)
    assert [(s.protocol, s.port, s.security) for s in answer.incoming] == [
        ("imap", 993, "ssl"),
        ("pop3", 995, "ssl"),
    ]
    assert [(s.port, s.security, s.username) for s in answer.outgoing] == [
        (465, "ssl", "alice@one.test")
    ]
    error = parse_pox_response(pox_error(500, "The e-mail address cannot be found.", "x"), ALICE)
    assert error.error == "autodiscover error 500: The e-mail address cannot be found."


def test_parse_request_by_local_names() -> None:
    body = (
        b"<Autodiscover xmlns='urn:whatever'><Request><EMailAddress> a@b.test </EMailAddress>"
        b"</Request></Autodiscover>"
    )
    assert parse_request(body) == ("a@b.test", None)
    with pytest.raises(BadRequest):
        parse_request(b"<!DOCTYPE x [<!ENTITY e 'x'>]><Autodiscover/>")


@given(st.binary(max_size=300))
def test_parse_request_never_raises_anything_else(data: bytes) -> None:
    try:
        parse_request(data)
    except BadRequest:
        pass


@given(st.text(max_size=200))
def test_parse_request_hostile_text(text: str) -> None:
    body = f"<Autodiscover><Request><EMailAddress>{text}</EMailAddress></Request></Autodiscover>"
    try:
        address, _ = parse_request(body.encode("utf-8", "surrogatepass"))
    except BadRequest:
        return
    assert isinstance(address, str)


# -------------------------------------------------------------- MTA-STS


def test_parse_policy_accepts_rfc_example() -> None:
    # RFC 8461 §3.2's example, with LF line ends (CRLF is what we send).
    text = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\n"
    text += "mx: backupmx.example.com\nmax_age: 604800\n"
    policy = parse_policy(text)
    assert policy == Policy(
        "enforce", 604800, ("mail.example.com", "*.example.net", "backupmx.example.com")
    )
    assert parse_policy(policy.text()) == policy
    assert policy.text().endswith("max_age: 604800\r\n")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "mode: enforce\nmx: a.test\nmax_age: 1\n",
        "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmx: a.test\nmax_age: \u00b2\n",
        "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1\n",
        "version: STSv1\nmode: enforce\nmax_age: 1\n",
        "version: STSv1\nmode: testing\nmx: a.test\nmax_age: 99999999999\n",
        "version: STSv1\nmode: testing\nmx: bad host\nmax_age: 1\n",
        "version: STSv1\nthis line has no colon\n",
    ],
)
def test_parse_policy_refuses(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_policy(text)


def test_parse_policy_any_order_first_of_a_repeated_field_counts() -> None:
    text = "mode: testing\nmx: a.test\nversion: STSv1\nmode: enforce\nmax_age: 5\nx.y-z: 1\n"
    assert parse_policy(text) == Policy("testing", 5, ("a.test",))


def test_parse_policy_mode_none_needs_no_mx() -> None:
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 0\nfuture: x\n").mx == ()


@given(st.text(max_size=300))
def test_parse_policy_never_raises_anything_else(text: str) -> None:
    try:
        parse_policy(text)
    except PolicyError:
        pass
