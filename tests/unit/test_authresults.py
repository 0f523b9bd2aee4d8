"""pochta.mailauth.results: building, parsing and de-forging Authentication-Results."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pochta.mailauth.results import (
    MAX_VALUE_OCTETS,
    MethodResult,
    authentication_results,
    authserv_id_of,
    parse_authentication_results,
    remove_forged,
)

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PREFIX = b"Authentication-Results:"


def value_of(field: bytes) -> str:
    """The value part of a built field, as a header parser would hand it over."""
    assert field.startswith(PREFIX) and field.endswith(b"\r\n")
    return field[len(PREFIX) : -2].decode("utf-8")


# --- building ----------------------------------------------------------------


def test_none_form_when_nothing_was_checked() -> None:
    # RFC 8601 §2.2 no-result.
    assert authentication_results("mx.example.org", []) == (
        b"Authentication-Results: mx.example.org; none\r\n"
    )


def test_short_result_shares_the_first_line() -> None:
    field = authentication_results(
        "mx.example.org", [MethodResult("spf", "pass", properties=(("smtp.mailfrom", "a@b.org"),))]
    )
    assert field == b"Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=a@b.org\r\n"


def test_each_resinfo_on_its_own_folded_line() -> None:
    field = authentication_results(
        "mx.example.org",
        [
            MethodResult("SPF", "Pass", properties=(("smtp.mailfrom", "user@example.com"),)),
            MethodResult(
                "dkim",
                "pass",
                properties=(
                    ("header.d", "example.com"),
                    ("header.s", "sel1"),
                    ("header.b", "ab/cd+="),
                    ("header.a", "rsa-sha256"),
                ),
            ),
            MethodResult("dmarc", "pass", properties=(("header.from", "example.com"),)),
        ],
    )
    lines = field.split(b"\r\n")
    assert lines[-1] == b""
    assert lines[0] == b"Authentication-Results: mx.example.org;"
    assert lines[1] == b"\tspf=pass smtp.mailfrom=user@example.com;"
    # "/" and "=" are tspecials: the DKIM b= prefix is quoted (RFC 2045 §5.1).
    assert lines[2] == b'\tdkim=pass header.d=example.com header.s=sel1 header.b="ab/cd+="'
    assert lines[3] == b"\t  header.a=rsa-sha256;"
    assert lines[4] == b"\tdmarc=pass header.from=example.com"
    assert all(len(line) <= 78 for line in lines)


def test_long_resinfo_folds_between_its_parts() -> None:
    reason = "x" * 60
    field = authentication_results(
        "mx.example.org",
        [MethodResult("dkim", "fail", reason, (("header.d", "a" * 50 + ".example"),))],
    )
    lines = field.rstrip(b"\r\n").split(b"\r\n")
    assert len(lines) == 3
    assert all(line.startswith(b"\t") for line in lines[1:])
    assert parse_authentication_results(value_of(field))[1][0].reason == reason


def test_untrusted_text_cannot_start_a_header_field() -> None:
    evil = 'bad\r\nX-Spam: no\r\n\r\nbody "quoted" back\\slash\x00'
    field = authentication_results(
        "mx.example.org",
        [MethodResult("spf", "fail", evil, (("smtp.mailfrom", "x\r\nBcc: victim@example.org"),))],
    )
    assert b"\r\nX-Spam" not in field and b"\r\nBcc" not in field
    assert b"\x00" not in field and b"\n\n" not in field
    # Every line break is a fold: the next line starts with a blank.
    for line in field.split(b"\r\n")[1:-1]:
        assert line.startswith(b"\t")
    _, results = parse_authentication_results(value_of(field))
    assert results[0].reason == 'bad  X-Spam: no    body "quoted" back\\slash '
    assert results[0].properties == (("smtp.mailfrom", "x  Bcc: victim@example.org"),)


def test_values_are_quoted_only_when_needed() -> None:
    field = authentication_results(
        "mx.example.org",
        [
            MethodResult(
                "spf",
                "pass",
                properties=(
                    ("smtp.mailfrom", "user+tag@example.com"),  # bare local-part@domain
                    ("smtp.helo", "[192.0.2.1]"),  # tspecials
                    ("smtp.rcptto", ""),  # empty: a token needs one character
                    ("policy.x", "Grüße"),  # non-ASCII, UTF-8 per RFC 6532
                    ("header.i", "@example.com"),  # §2.2: local-part is optional
                ),
            )
        ],
    )
    text = field.decode("utf-8")
    assert "smtp.mailfrom=user+tag@example.com" in text
    assert 'smtp.helo="[192.0.2.1]"' in text
    assert 'smtp.rcptto=""' in text
    assert 'policy.x="Grüße"' in text
    assert "header.i=@example.com" in text


def test_authserv_id_is_quoted_when_not_a_token() -> None:
    field = authentication_results("my host; x=y", [])
    assert field == b'Authentication-Results: "my host; x=y"; none\r\n'
    assert parse_authentication_results(value_of(field)) == ("my host; x=y", [])


def test_long_values_are_cut_and_lines_stay_legal() -> None:
    value = '"' * 2000
    field = authentication_results(
        "mx.example.org", [MethodResult("dkim", "fail", "é" * 2000, (("header.b", value),))]
    )
    assert all(len(line) <= 998 for line in field.split(b"\r\n"))
    result = parse_authentication_results(value_of(field))[1][0]
    assert len(result.reason.encode()) <= MAX_VALUE_OCTETS
    assert result.reason == "é" * (MAX_VALUE_OCTETS // 2)
    assert result.properties[0][1] == '"' * MAX_VALUE_OCTETS


def test_lone_surrogates_become_replacement_characters() -> None:
    field = authentication_results("mx", [MethodResult("spf", "none", "a\udcffb")])
    assert parse_authentication_results(value_of(field))[1][0].reason == "a\ufffdb"


@pytest.mark.parametrize(
    "result",
    [
        MethodResult("", "pass"),
        MethodResult("spf", "pass fail"),
        MethodResult("sp f", "pass"),
        MethodResult("spf", "pass", properties=(("mailfrom", "a@b"),)),
        MethodResult("spf", "pass", properties=(("smtp.", "a@b"),)),
        MethodResult("spf", "pass", properties=(("smtp.mail from", "a@b"),)),
        MethodResult("spf", "-pass"),
    ],
)
def test_names_must_be_keywords(result: MethodResult) -> None:
    with pytest.raises(ValueError):
        authentication_results("mx.example.org", [result])


# --- parsing -----------------------------------------------------------------

# RFC 8601 Appendix B, header by header (value after the colon).
RFC_EXAMPLES: list[tuple[str, tuple[str, list[MethodResult]]]] = [
    # B.2: nothing was checked; the version follows the authserv-id.
    (" example.org 1; none", ("example.org", [])),
    # B.3
    (
        " example.com;\r\n                  spf=pass smtp.mailfrom=example.net",
        ("example.com", [MethodResult("spf", "pass", "", (("smtp.mailfrom", "example.net"),))]),
    ),
    # B.4: a comment after the result, and two fields.
    (
        " example.com;\r\n                  auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n"
        "                  spf=pass smtp.mailfrom=example.net",
        (
            "example.com",
            [
                MethodResult("auth", "pass", "", (("smtp.auth", "sender@example.net"),)),
                MethodResult("spf", "pass", "", (("smtp.mailfrom", "example.net"),)),
            ],
        ),
    ),
    (
        " example.com; iprev=pass\r\n                  policy.iprev=192.0.2.200",
        ("example.com", [MethodResult("iprev", "pass", "", (("policy.iprev", "192.0.2.200"),))]),
    ),
    # B.5
    (
        " example.com;\r\n                  sender-id=fail header.from=example.com;\r\n"
        "                  dkim=pass (good signature) header.d=example.com",
        (
            "example.com",
            [
                MethodResult("sender-id", "fail", "", (("header.from", "example.com"),)),
                MethodResult("dkim", "pass", "", (("header.d", "example.com"),)),
            ],
        ),
    ),
    # B.6: reasons as quoted-strings, header.i with an empty local part.
    (
        ' example.com;\r\n                  dkim=pass reason="good signature"\r\n'
        "                    header.i=@mail-router.example.net;\r\n"
        '                  dkim=fail reason="bad signature"\r\n'
        "                    header.i=@newyork.example.com",
        (
            "example.com",
            [
                MethodResult(
                    "dkim", "pass", "good signature", (("header.i", "@mail-router.example.net"),)
                ),
                MethodResult(
                    "dkim", "fail", "bad signature", (("header.i", "@newyork.example.com"),)
                ),
            ],
        ),
    ),
    # B.7
    (
        " mail-router.example.net;\r\n                  dkim=pass (good signature)\r\n"
        "                    header.d=newyork.example.com header.b=oINEO8hg;\r\n"
        "                  dkim=fail (bad signature)\r\n"
        "                    header.d=mail-router.example.net header.b=EToRSuvU",
        (
            "mail-router.example.net",
            [
                MethodResult(
                    "dkim",
                    "pass",
                    "",
                    (("header.d", "newyork.example.com"), ("header.b", "oINEO8hg")),
                ),
                MethodResult(
                    "dkim",
                    "fail",
                    "",
                    (("header.d", "mail-router.example.net"), ("header.b", "EToRSuvU")),
                ),
            ],
        ),
    ),
]


@pytest.mark.parametrize(("value", "expected"), RFC_EXAMPLES)
def test_rfc_8601_appendix_b_examples(value: str, expected: tuple[str, list[MethodResult]]) -> None:
    assert parse_authentication_results(value) == expected


def test_comments_everywhere_the_grammar_allows_cfws() -> None:
    value = (
        " (leading) mx.example.org (trailing (nested) \\) ) 1 (after version) ;"
        " (before method) dkim (m) / (v) 1 (after version) = (r) PASS (after result)"
        ' reason (x) = (y) "ok" header (a) . (b) d (c) = (d) Example.COM (end) ;'
        ' spf=pass smtp.mailfrom="a b"@example.com ;'
    )
    authserv_id, results = parse_authentication_results(value)
    assert authserv_id == "mx.example.org"
    assert results == [
        MethodResult("dkim", "pass", "ok", (("header.d", "Example.COM"),)),
        MethodResult("spf", "pass", "", (("smtp.mailfrom", '"a b"@example.com'),)),
    ]


def test_lenient_with_common_deviations() -> None:
    value = (
        "mx.google.com;\r\n       dkim=pass header.i=@example.com header.s=s1 header.b=Ab/+c=;\r\n"
        "       spf=pass (google.com: domain of a@b.com designates 192.0.2.1 as permitted"
        " sender) smtp.mailfrom=a@b.com;\r\n"
        "       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=b.com;"
        "compauth=pass reason=100; dmarc=none action=none header.from=example.com"
    )
    authserv_id, results = parse_authentication_results(value)
    assert authserv_id == "mx.google.com"
    assert [r.method for r in results] == ["dkim", "spf", "dmarc", "compauth", "dmarc"]
    assert results[0].properties[2] == ("header.b", "Ab/+c=")
    assert results[3].reason == "100"
    assert results[4].properties == (("action", "none"), ("header.from", "example.com"))


def test_names_are_lower_cased_values_are_not() -> None:
    _, results = parse_authentication_results("MX; DKIM=PASS Header.D=Example.ORG")
    assert results == [MethodResult("dkim", "pass", "", (("header.d", "Example.ORG"),))]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "(only a comment)",
        ";",
        "example.com",
        "example.com 2; none",
        "example.com; spf",
        "example.com; spf=",
        "example.com; =pass",
        "example.com; spf=pass smtp.mailfrom",
        "example.com; spf=pass smtp.mailfrom=",
        "example.com; spf=pass smtp.=x",
        'example.com; spf=pass reason="unterminated',
        "example.com (unterminated; spf=pass",
        "example.com; spf=pass (unterminated",
        "example.com; dkim/=pass",
        "example.com; spf=pass; ;",
        "example.com spf=pass",
        '"example.com',
        'example.com; spf=pass smtp.mailfrom="a\\',
    ],
)
def test_garbage_is_a_value_error(value: str) -> None:
    with pytest.raises(ValueError):
        parse_authentication_results(value)


def test_authserv_id_of() -> None:
    assert authserv_id_of(" (c) MX.Example.ORG 1; none") == "MX.Example.ORG"
    assert authserv_id_of(' "quoted id" ; none') == "quoted id"
    with pytest.raises(ValueError):
        authserv_id_of(" (only a comment)")


# --- property tests ----------------------------------------------------------

KEYWORD = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
# Text as it survives sanitising unchanged: no controls, no lone surrogates.
TEXT = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
MAILBOXES = st.from_regex(
    r"[a-z0-9.+_=/-]{0,10}@[a-z0-9]{1,10}(?:\.[a-z0-9]{1,5}){0,2}", fullmatch=True
)
PROPERTY = st.tuples(
    st.builds(lambda a, b: f"{a}.{b}", KEYWORD, KEYWORD), st.one_of(TEXT, MAILBOXES)
)
METHOD_RESULTS = st.builds(
    MethodResult,
    method=KEYWORD,
    result=KEYWORD,
    reason=TEXT,
    properties=st.lists(PROPERTY, max_size=4).map(tuple),
)


def lowered(result: MethodResult) -> MethodResult:
    return MethodResult(
        result.method.lower(),
        result.result.lower(),
        result.reason,
        tuple((name.lower(), value) for name, value in result.properties),
    )


@SETTINGS
@given(authserv_id=TEXT, results=st.lists(METHOD_RESULTS, max_size=5))
def test_build_then_parse_round_trips(authserv_id: str, results: list[MethodResult]) -> None:
    field = authentication_results(authserv_id, results)
    assert field.endswith(b"\r\n") and field.count(b"\n") == field.count(b"\r\n")
    for line in field.split(b"\r\n")[1:-1]:
        assert line[:1] in (b" ", b"\t")  # only folds, never a new field
    assert all(len(line) <= 998 for line in field.split(b"\r\n"))
    parsed_id, parsed = parse_authentication_results(value_of(field))
    assert parsed_id == authserv_id
    assert parsed == [lowered(r) for r in results]


@SETTINGS
@given(st.text(max_size=200))
def test_parser_raises_only_value_error(value: str) -> None:
    try:
        authserv_id, results = parse_authentication_results(value)
    except ValueError:
        return
    assert isinstance(authserv_id, str)
    assert all(isinstance(r, MethodResult) for r in results)


FIELDS = [
    ("mx.example.org; spf=pass", True),
    ("MX.EXAMPLE.ORG; none", True),
    ("(c) mx.example.org 1;\r\n\tdkim=fail", True),
    ('"mx.example.org"; none', True),
    ("other.example; spf=pass", False),
    ("mx.example.org.evil; none", False),
    ("(junk", False),
]


@SETTINGS
@given(st.lists(st.sampled_from(FIELDS), max_size=6), st.binary(max_size=60))
def test_remove_forged_keeps_everything_but_our_fields(
    fields: list[tuple[str, bool]], body: bytes
) -> None:
    def header(chosen: list[tuple[str, bool]]) -> bytes:
        lines = b"".join(f"Authentication-Results: {v}\r\n".encode() for v, _ in chosen)
        return b"Received: from x\r\n" + lines + b"Subject: hi\r\n\r\n"

    cleaned = remove_forged(header(fields) + body, "mx.example.org")
    assert cleaned == header([f for f in fields if not f[1]]) + body


# --- remove_forged -----------------------------------------------------------


def test_remove_forged_drops_ours_keeps_others_and_the_body() -> None:
    message = (
        b"Return-Path: <a@b.example>\r\n"
        b"Authentication-Results: Mx.Example.Org; spf=pass\r\n"
        b"  smtp.mailfrom=b.example\r\n"
        b"Authentication-Results: upstream.example; dkim=pass header.d=b.example\r\n"
        b"ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n"
        b"authentication-results :(forged) mx.example.org 1;\r\n\tnone\r\n"
        b"Subject: test\r\n"
        b"\r\n"
        b"Authentication-Results: mx.example.org; spf=pass\r\n"
    )
    assert remove_forged(message, "mx.example.org") == (
        b"Return-Path: <a@b.example>\r\n"
        b"Authentication-Results: upstream.example; dkim=pass header.d=b.example\r\n"
        b"ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n"
        b"Subject: test\r\n"
        b"\r\n"
        b"Authentication-Results: mx.example.org; spf=pass\r\n"
    )


def test_remove_forged_with_bare_lf_and_no_body() -> None:
    message = b"From: a@b.example\nAuthentication-Results: mx; none\nSubject: x\n"
    assert remove_forged(message, "MX") == b"From: a@b.example\nSubject: x\n"


def test_remove_forged_leaves_a_clean_message_alone() -> None:
    message = b"Subject: x\r\nAuthentication-Results: (no id)\r\n\r\nbody"
    assert remove_forged(message, "mx.example.org") is message
