"""Address parsing: RFC 5321 §4.1.2 Mailbox, RFC 6531 UTF-8, IDNA domains."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pochta.accounts import (
    Address,
    AddressError,
    parse_address,
    parse_domain,
    split_subaddress,
)
from pochta.accounts.address import MAX_DOMAIN_OCTETS, MAX_LOCAL_OCTETS
from pochta.errors import UserFacingError

# (input, local, domain, str(parsed))
VALID = [
    ("bob@example.test", "bob", "example.test", "bob@example.test"),
    ("Bob@Example.TEST", "Bob", "example.test", "Bob@example.test"),
    ("first.last@example.test", "first.last", "example.test", "first.last@example.test"),
    ("user+tag@example.test", "user+tag", "example.test", "user+tag@example.test"),
    ("!#$%&'*+-/=?^_`{|}~@example.test", "!#$%&'*+-/=?^_`{|}~", "example.test", None),
    ("x@localhost", "x", "localhost", "x@localhost"),
    ("x@a-b.c0.example", "x", "a-b.c0.example", "x@a-b.c0.example"),
    ("x@123.example", "x", "123.example", "x@123.example"),
    # Quoted-string local parts, RFC 5321 §4.1.2.
    ('"john doe"@example.test', "john doe", "example.test", '"john doe"@example.test'),
    ('"a@b"@example.test', "a@b", "example.test", '"a@b"@example.test'),
    ('"a\\"b"@example.test', 'a"b', "example.test", '"a\\"b"@example.test'),
    ('"a\\\\b"@example.test', "a\\b", "example.test", '"a\\\\b"@example.test'),
    ('"a..b"@example.test', "a..b", "example.test", '"a..b"@example.test'),
    ('".a"@example.test', ".a", "example.test", '".a"@example.test'),
    ('"\\x"@example.test', "x", "example.test", "x@example.test"),  # needless quoted-pair
    ('"plain"@example.test', "plain", "example.test", "plain@example.test"),  # needless quotes
    # RFC 6531 UTF-8 local parts; IDNA domains become A-labels.
    ("ünïcode@example.test", "ünïcode", "example.test", "ünïcode@example.test"),
    ("用户@例子.广告", "用户", "xn--fsqu00a.xn--4rr70v", "用户@xn--fsqu00a.xn--4rr70v"),
    ("user@bücher.example", "user", "xn--bcher-kva.example", "user@xn--bcher-kva.example"),
    ("user@BÜCHER.example", "user", "xn--bcher-kva.example", None),
    ("user@XN--BCHER-KVA.example", "user", "xn--bcher-kva.example", None),
    ("user@faß.de", "user", "xn--fa-hia.de", None),  # IDNA2008: ß is kept, not "ss"
    ("user@bu\u0308cher.example", "user", "xn--bcher-kva.example", None),  # NFC
    ("user@例子。广告", "user", "xn--fsqu00a.xn--4rr70v", None),  # ideographic full stop
    ("user@\u212a.example", "user", "k.example", None),  # KELVIN SIGN folds to ASCII
]

# (input, fragment of the message)
INVALID = [
    ("", "empty"),
    ("bob", "missing '@'"),
    ("@example.test", "empty local part"),
    ('""@example.test', "empty local part"),
    ("bob@", "empty domain"),
    ("a b@example.test", "U+0020"),
    (" bob@example.test", "U+0020"),
    ("bob@example.test ", "U+0020"),
    ("bob@exa mple.test", "U+0020"),
    ("bob\r\n@example.test", "U+000D"),
    ("bob@example.test\n", "U+000A"),
    ("bo\0b@example.test", "U+0000"),
    ('"bo\0b"@example.test', "U+0000"),
    ('"bo\rb"@example.test', "U+000D"),
    ('"bo\\\nb"@example.test', "cannot be quoted"),
    ('"bob@example.test', "unterminated"),
    ('"bob\\', "unterminated"),
    ('"bob"x@example.test', "expected '@'"),
    ('bo"b@example.test', "'\"'"),
    (".bob@example.test", "leading"),
    ("bob.@example.test", "trailing"),
    ("b..ob@example.test", "doubled"),
    ("a@b@example.test", "more than one '@'"),
    ("<bob@example.test>", "'<'"),
    ("bob@[192.0.2.1]", "address literals"),
    ("bob@[IPv6:2001:db8::1]", "address literals"),
    ("bob@192.0.2.1", "all digits"),
    ("bob@.example.test", "empty label"),
    ("bob@example.test.", "empty label"),
    ("bob@example..test", "empty label"),
    ("bob@-example.test", "starts or ends with '-'"),
    ("bob@example-.test", "starts or ends with '-'"),
    ("bob@exa_mple.test", "'_'"),
    ("bob@ab--cd.test", "positions 3-4"),
    ("bob@xn--zz.test", "punycode"),
    ("bob@xn--abc-.test", "starts or ends with '-'"),
    ("bob@xn--bcher-kva-.test", "starts or ends with '-'"),
    ("bob@xn--ls8h.test", "RFC 5892"),  # an emoji is not PVALID
    ("bob@\u0301a.test", "combining mark"),
    ("bob@a\u00b7b.test", "RFC 5892"),  # MIDDLE DOT: CONTEXTO, refused
    ("bob@ex\u00a0ample.test", "RFC 5892"),
    ("bob@" + "a" * 64 + ".test", "more than 63"),
    ("a" * (MAX_LOCAL_OCTETS + 1) + "@example.test", "RFC 5321 §4.5.3.1.1"),
    ("ü" * 33 + "@example.test", "RFC 5321 §4.5.3.1.1"),  # 66 octets in UTF-8
    ("b\u00a0ob@example.test", "U+00A0"),
    ("b\u2028ob@example.test", "U+2028"),
    ("b\udc80ob@example.test", "U+DC80"),
    ("bob@" + ".".join(["a" * 61] * 4) + ".test", "RFC 5321 §4.5.3.1.3"),
]


@pytest.mark.parametrize(("text", "local", "domain", "shown"), VALID)
def test_valid_addresses(text: str, local: str, domain: str, shown: str | None) -> None:
    address = parse_address(text)
    assert address == Address(local, domain)
    if shown is not None:
        assert str(address) == shown
    assert parse_address(str(address)) == address


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_addresses(text: str, fragment: str) -> None:
    with pytest.raises(AddressError) as info:
        parse_address(text)
    message = str(info.value)
    assert fragment in message
    assert message.startswith("invalid address ")
    assert "\n" not in message and "\r" not in message


def test_address_error_is_user_facing_and_value_error() -> None:
    assert issubclass(AddressError, UserFacingError)
    assert issubclass(AddressError, ValueError)


def test_long_input_is_shortened_in_the_message() -> None:
    with pytest.raises(AddressError) as info:
        parse_address("x" * 10_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    "text", ["ü@example.test", '"ü"@example.test', "bob@bücher.example", "bob@例子。广告"]
)
def test_non_ascii_needs_utf8(text: str) -> None:
    parse_address(text)
    with pytest.raises(AddressError, match="SMTPUTF8"):
        parse_address(text, allow_utf8=False)


def test_ascii_alabel_is_fine_without_utf8() -> None:
    assert parse_address("bob@xn--bcher-kva.example", allow_utf8=False).domain == (
        "xn--bcher-kva.example"
    )


def test_local_part_of_64_octets_is_the_limit() -> None:
    assert parse_address("a" * MAX_LOCAL_OCTETS + "@example.test").local == "a" * 64


def test_domain_length_limit() -> None:
    labels = ["a" * 63] * 3 + ["b" * 63]  # 255 octets
    assert len(parse_domain(".".join(labels))) == MAX_DOMAIN_OCTETS
    with pytest.raises(AddressError, match=re.escape("RFC 5321 §4.5.3.1.2")):
        parse_domain(".".join([*labels, "c"]))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Example.TEST", "example.test"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("παράδειγμα.δοκιμή", "xn--hxajbheg2az3al.xn--jxalpdlp"),
        ("localhost", "localhost"),
    ],
)
def test_parse_domain(text: str, expected: str) -> None:
    assert parse_domain(text) == expected
    assert parse_domain(expected) == expected


@pytest.mark.parametrize(
    "text", ["", ".", "a..b", "-a.test", "a_b.test", "[127.0.0.1]", "1.2.3.4", "a b", "a@b"]
)
def test_parse_domain_rejects(text: str) -> None:
    with pytest.raises(AddressError, match=r"^invalid domain "):
        parse_domain(text)


def test_key_folds_local_part_case() -> None:
    assert parse_address("Bob@EXAMPLE.test").key == "bob@example.test"
    assert parse_address("ÜSER@example.test").key == "üser@example.test"
    assert parse_address('"John Doe"@example.test').key == '"john doe"@example.test'
    # NFC: precomposed and decomposed spellings share one key.
    assert parse_address("u\u0308@x.test").key == parse_address("\u00fc@x.test").key
    # The local part itself is kept as written.
    assert parse_address("Bob@example.test").local == "Bob"


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("user+tag", ("user", "tag")),
        ("user+tag+more", ("user", "tag+more")),
        ("user+", ("user", "")),
        ("+tag", ("+tag", None)),
        ("user", ("user", None)),
        ("", ("", None)),
    ],
)
def test_split_subaddress(local: str, expected: tuple[str, str | None]) -> None:
    assert split_subaddress(local) == expected


def test_split_subaddress_other_separator() -> None:
    assert split_subaddress("user-tag", "-") == ("user", "tag")
    assert split_subaddress("user+tag", "-") == ("user+tag", None)


# --- properties ---------------------------------------------------------------

_LOCAL_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.\"\\ @\t\r\nüß用\u0301"
_DOMAIN_CHARS = "abcXYZ019-.[]_ üßÜ例\u3002\u0301\u212a"
_address_like = st.builds(
    lambda local, sep, domain: local + sep + domain,
    st.text(_LOCAL_CHARS, max_size=20),
    st.sampled_from(["@", "@", "@", "", "@@"]),
    st.one_of(
        st.text(_DOMAIN_CHARS, max_size=20),
        st.builds(lambda s: "xn--" + s, st.text("abcdefghijkz0123456789-", max_size=10)),
    ),
)


@given(st.one_of(st.text(), _address_like), st.booleans())
@example('"\\', True)
@example("a@xn--", True)
@example("a@xn---", True)
@example("a@xn--a", True)
@example("a@xn--99999999999", True)
def test_parse_raises_only_address_error_and_round_trips(text: str, utf8: bool) -> None:
    try:
        address = parse_address(text, allow_utf8=utf8)
    except AddressError as exc:
        assert "\n" not in str(exc)
        return
    again = parse_address(str(address), allow_utf8=utf8)
    assert again == address
    assert again.key == address.key
    assert address.domain == address.domain.lower()
    assert address.domain.isascii()


@given(st.text(max_size=30))
def test_any_quoted_local_part_round_trips(local: str) -> None:
    """Whatever ``str`` produces for a local part, the parser reads it back."""
    try:
        address = parse_address(str(Address(local, "example.test")))
    except AddressError:
        return
    assert address == Address(local, "example.test")


@given(st.one_of(st.text(), st.text(_DOMAIN_CHARS)))
def test_parse_domain_is_idempotent(text: str) -> None:
    try:
        domain = parse_domain(text)
    except AddressError:
        return
    assert parse_domain(domain) == domain
