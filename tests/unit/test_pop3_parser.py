"""The POP3 parser and the pure wire helpers: bytes in, value out; hypothesis for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.pop3.maildrop import dot_stuff, top_of
from pochta.pop3.parser import (
    CANCEL,
    SYNTAX,
    Command,
    ParseError,
    decode_base64,
    parse_command,
    parse_sasl,
)
from pochta.pop3.replies import MAX_COMMAND_LINE


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"STAT\r\n", Command("STAT")),
        (b"stat\r\n", Command("STAT")),  # RFC 1939 §3: keywords are case-insensitive
        (b"LIST\r\n", Command("LIST")),
        (b"LIST 2\r\n", Command("LIST", numbers=(2,))),
        (b"UIDL 10\n", Command("UIDL", numbers=(10,))),  # bare LF tolerated
        (b"RETR 1\r\n", Command("RETR", numbers=(1,))),
        (b"TOP 1 0\r\n", Command("TOP", numbers=(1, 0))),
        (b"DELE 007\r\n", Command("DELE", numbers=(7,))),
        (b"USER alice@example.test\r\n", Command("USER", ("alice@example.test",))),
        (b"PASS  two  spaces \r\n", Command("PASS", (" two  spaces ",))),  # RFC 1939 §7
        ("PASS пароль\r\n".encode(), Command("PASS", ("пароль",))),
        (b"AUTH\r\n", Command("AUTH")),
        (b"AUTH plain\r\n", Command("AUTH", ("PLAIN",))),
        (b"AUTH PLAIN AGEAYg==\r\n", Command("AUTH", ("PLAIN", "AGEAYg=="))),
        (b"CAPA\r\n", Command("CAPA")),
        (b"STLS\r\n", Command("STLS")),
        (b"QUIT", Command("QUIT")),
    ],
)
def test_valid_commands(line: bytes, expected: Command) -> None:
    assert parse_command(line) == expected


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"\r\n", "empty command"),
        (b"FROB\r\n", "unknown command"),
        (b"APOP alice 1234\r\n", "unknown command"),  # not offered
        (b"RETR\r\n", "syntax"),
        (b"RETR x\r\n", "syntax"),
        (b"RETR -1\r\n", "syntax"),
        (b"RETR +1\r\n", "syntax"),
        (b"RETR 1 2\r\n", "syntax"),
        (b"RETR 12345678901\r\n", "syntax"),
        (b"TOP 1\r\n", "syntax"),
        (b"STAT 1\r\n", "syntax"),
        (b"PASS\r\n", "syntax"),
        (b"USER\r\n", "syntax"),
        (b"AUTH PLAIN a b\r\n", "syntax"),
        (b"AUTH PL@IN\r\n", "syntax"),
        (b"USER a\x00b\r\n", "control"),
        (b"PASS a\rb\r\n", "control"),
        (b"USER \xff\xfe\r\n", "UTF-8"),
        (b"NOOP " + b"1" * MAX_COMMAND_LINE + b"\r\n", "line too long"),
    ],
)
def test_invalid_commands(line: bytes, why: str) -> None:
    result = parse_command(line)
    assert isinstance(result, ParseError)
    assert why in result.message
    assert result.reply.startswith(b"-ERR ") and result.reply.endswith(b"\r\n")


def test_auth_initial_response_may_exceed_the_command_limit() -> None:
    """RFC 5034 §4: SASL data may be longer than RFC 2449 §4's 255 octets."""
    long = "A" * 400
    assert parse_command(f"AUTH PLAIN {long}\r\n".encode()) == Command("AUTH", ("PLAIN", long))


def test_sasl_responses() -> None:
    assert parse_sasl(b"*\r\n") is CANCEL
    assert parse_sasl(b"AGEAYg==\r\n") == b"\0a\0b"
    assert parse_sasl(b"\r\n") == b""
    for bad in (b"AGEAYg\r\n", b"A===\r\n", b"!!!!\r\n", b"AGEA Yg==\r\n", b"=\r\n"):
        assert isinstance(parse_sasl(bad), ParseError), bad
    assert decode_base64("=") == b""  # an empty initial response (RFC 5034 §4)
    assert decode_base64("Zm9v") == b"foo"
    assert decode_base64("Zm9v\n") is None


@given(st.binary(max_size=400))
def test_parser_never_raises(line: bytes) -> None:
    result = parse_command(line)
    assert isinstance(result, Command | ParseError)
    if isinstance(result, ParseError):
        assert result.reply.startswith(b"-ERR ")
    else:
        assert result.verb in SYNTAX


@given(st.binary(max_size=400))
def test_sasl_parser_never_raises(line: bytes) -> None:
    result = parse_sasl(line)
    assert result is CANCEL or isinstance(result, bytes | ParseError)


@given(st.binary(min_size=1, max_size=300).filter(lambda b: not b[:1].isalpha()))
def test_junk_is_always_an_error(line: bytes) -> None:
    """Anything that does not start with a letter is refused, whatever follows."""
    assert isinstance(parse_command(line), ParseError)


@given(st.sampled_from(sorted(SYNTAX)), st.binary(max_size=300))
def test_known_verbs_with_junk_arguments(verb: str, rest: bytes) -> None:
    result = parse_command(verb.encode() + b" " + rest + b"\r\n")
    assert isinstance(result, Command | ParseError)
    if isinstance(result, Command):
        assert result.verb == verb
        assert all(n >= 0 for n in result.numbers)


# --- dot-stuffing and TOP -----------------------------------------------------------------


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b".\r\n")
    lines = wire[:-3].split(b"\r\n")[:-1]
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.b\r\n..\r\n", b"a\r\n..b\r\n...\r\n.\r\n"),
        (b"no newline", b"no newline\r\n.\r\n"),
        (b"a\n", b"a\r\n.\r\n"),
        # Bare LF passes as it is, but a dot after it is stuffed all the same.
        (b"bare\nlf\n.x", b"bare\nlf\n..x\r\n.\r\n"),
    ],
)
def test_dot_stuff(data: bytes, wire: bytes) -> None:
    assert dot_stuff(data) == wire


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))))
def test_dot_stuff_round_trips(lines: list[bytes]) -> None:
    data = b"".join(line + b"\r\n" for line in lines)
    wire = dot_stuff(data)
    assert b"\r\n.\r\n" not in b"\r\n" + wire[:-3]  # no early terminator
    assert unstuff(wire) == data


def stuffed_the_long_way(data: bytes) -> bytes:
    out = data.replace(b"\n.", b"\n..")
    if out[:1] == b".":
        out = b"." + out
    if out.endswith(b"\r\n") or not out:
        return out + b".\r\n"
    if out.endswith(b"\n"):
        return out[:-1] + b"\r\n.\r\n"
    return out + b"\r\n.\r\n"


@given(st.lists(st.sampled_from([b".", b"a", b"\n", b"\r\n", b"x.y", b".."]), max_size=200))
def test_dot_stuff_shortcut_agrees_with_a_full_replace(pieces: list[bytes]) -> None:
    # Many dots (past the ones looked at one by one) and none, at every place.
    data = b"".join(pieces)
    assert dot_stuff(data) == stuffed_the_long_way(data)


def test_top_of() -> None:
    msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
    assert top_of(msg, 0) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top_of(msg, 2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
    assert top_of(msg, 99) == msg
    assert top_of(b"A: 1\r\nno body", 3) == b"A: 1\r\nno body"
    assert top_of(b"A: 1\n\nx\ny\n", 1) == b"A: 1\n\nx\n"
