"""pochta.mailauth.dmarc and .orgdomain: records, discovery, alignment, From."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pochta.dns.mock import DictResolver
from pochta.mailauth.dmarc import (
    DMARCRecord,
    DMARCRecordError,
    DMARCResult,
    check_dmarc,
    from_domain,
    is_dmarc_record,
    parse_record,
)
from pochta.mailauth.orgdomain import aligned, normalize_domain, organizational_domain

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- organizational domains (RFC 7489 §3.2) ----------------------------------


@pytest.mark.parametrize(
    ("name", "org"),
    [
        ("example.com", "example.com"),
        ("mail.example.com", "example.com"),
        ("a.b.c.example.com", "example.com"),
        ("Mail.Example.COM.", "example.com"),
        ("  example.com  ", "example.com"),
        ("mail.example.co.uk", "example.co.uk"),
        ("co.uk", "co.uk"),  # a public suffix is its own (nothing to add)
        ("com", "com"),
        ("localhost", "localhost"),  # single label
        ("a.b.unknowntld", "b.unknowntld"),  # the implicit "*" rule
        ("a.city.kawasaki.jp", "city.kawasaki.jp"),  # exception rule !city.kawasaki.jp
        ("a.b.example.ck", "b.example.ck"),  # wildcard rule *.ck
        ("x.someone.blogspot.com", "someone.blogspot.com"),  # private section
        ("mail.bücher.example", "xn--bcher-kva.example"),  # U-label -> A-label
        ("a.пример.рф", "xn--e1afmkfd.xn--p1ai"),  # IDN public suffix
        ("a.xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
        ("a_b.example.com", "example.com"),  # not a host name, still a domain
        ("a..example.com", "a..example.com"),  # junk: itself
        ("", ""),
        (".", ""),
    ],
)
def test_organizational_domain(name: str, org: str) -> None:
    assert organizational_domain(name) == org


def test_normalize_domain() -> None:
    assert normalize_domain("Bücher.Example.") == "xn--bcher-kva.example"
    assert normalize_domain("XN--BCHER-KVA.example") == "xn--bcher-kva.example"
    assert normalize_domain("_DMARC.Example.com") == "_dmarc.example.com"


@pytest.mark.parametrize(
    ("a", "b", "relaxed", "strict"),
    [
        ("example.com", "example.com", True, True),
        ("EXAMPLE.com.", "example.COM", True, True),
        ("news.example.com", "example.com", True, False),
        ("news.example.com", "mail.example.com", True, False),
        ("example.com", "example.org", False, False),
        ("example.co.uk", "other.co.uk", False, False),  # public suffix is no org
        ("a.blogspot.com", "b.blogspot.com", False, False),
        ("bücher.example", "mail.xn--bcher-kva.example", True, False),
        ("", "", False, False),
        ("example.com", "", False, False),
    ],
)
def test_aligned(a: str, b: str, relaxed: bool, strict: bool) -> None:
    assert aligned(a, b, "r") is relaxed
    assert aligned(a, b, "s") is strict
    assert aligned(b, a, "r") is relaxed


@SETTINGS
@given(st.text(max_size=80))
@example("0 .")  # the trailing dot hid a space: normalizing twice gave "0"
@example("a. . .")
def test_organizational_domain_is_total_and_a_suffix(name: str) -> None:
    org = organizational_domain(name)
    normal = normalize_domain(name)
    assert normal == org or normal.endswith("." + org)
    assert organizational_domain(org) == org
    assert aligned(name, org, "r") is bool(normal)


@SETTINGS
@given(st.from_regex(r"(?:[a-z0-9]{1,8}\.){0,4}(?:com|co\.uk|org|jp|example)", fullmatch=True))
def test_subdomains_share_the_organizational_domain(name: str) -> None:
    org = organizational_domain(name)
    deeper = organizational_domain("deeper." + name)
    if deeper != org:
        # Only when ``name`` is itself a public suffix (then it is its own).
        assert deeper == "deeper." + name and org == name
    assert aligned("x." + name, name, "r") is (deeper == org)


# --- records (RFC 7489 §6.3, §6.4) ---------------------------------------------


def test_record_defaults() -> None:
    assert parse_record("v=DMARC1; p=none") == DMARCRecord(p="none")
    record = parse_record("v=DMARC1;p=reject")
    assert (record.p, record.sp, record.adkim, record.aspf, record.pct) == (
        "reject",
        None,
        "r",
        "r",
        100,
    )
    assert (record.fo, record.rf, record.ri) == (("0",), ("afrf",), 86400)
    assert record.subdomain_policy == "reject"


def test_record_every_tag() -> None:
    record = parse_record(
        "v=DMARC1; p=quarantine; sp=reject; np=reject; adkim=s; aspf=s; pct=25;"
        " rua=mailto:agg@example.com!10m, mailto:other@example.net;"
        " ruf=mailto:forensic@example.com; fo=1:d; rf=afrf; ri=3600; future=ignored;"
    )
    assert record == DMARCRecord(
        p="quarantine",
        sp="reject",
        np="reject",
        adkim="s",
        aspf="s",
        pct=25,
        rua=("mailto:agg@example.com!10m", "mailto:other@example.net"),
        ruf=("mailto:forensic@example.com",),
        fo=("1", "d"),
        rf=("afrf",),
        ri=3600,
    )
    assert record.subdomain_policy == "reject"


def test_record_tag_names_and_keywords_are_case_insensitive() -> None:
    record = parse_record("V = DMARC1 ;  P = Reject ; ADKIM=S")
    assert (record.p, record.adkim) == ("reject", "s")


@pytest.mark.parametrize(
    "text",
    [
        "v=DMARC2; p=reject",
        "v=dmarc1; p=reject",  # the version must match precisely (§6.3)
        "p=reject; v=DMARC1",  # v must come first
        "v=DMARC1p=reject",
        "v=spf1 -all",
        "",
    ],
)
def test_not_a_dmarc_record(text: str) -> None:
    assert not is_dmarc_record(text)
    with pytest.raises(DMARCRecordError):
        parse_record(text)


@pytest.mark.parametrize(
    "text",
    [
        "v=DMARC1",
        "v=DMARC1; p=bogus",
        "v=DMARC1; p=",
        "v=DMARC1; p=reject; sp=bogus",
        "v=DMARC1; p=bogus; rua=not a uri",
        "v=DMARC1; p=reject; p=none",  # duplicate tag (RFC 6376 §3.2)
        "v=DMARC1; v=DMARC1; p=reject",
    ],
)
def test_invalid_dmarc_record(text: str) -> None:
    assert is_dmarc_record(text)
    with pytest.raises(DMARCRecordError):
        parse_record(text)


@pytest.mark.parametrize(
    "text",
    [
        "v=DMARC1; rua=mailto:a@example.com",
        "v=DMARC1; p=bogus; rua=mailto:a@example.com",
        "v=DMARC1; p=reject; sp=bogus; rua=junk, mailto:a@example.com",
    ],
)
def test_invalid_policy_with_rua_counts_as_p_none(text: str) -> None:
    # §6.6.3 step 6.1.
    record = parse_record(text)
    assert (record.p, record.sp, record.subdomain_policy, record.p_fallback) == (
        "none",
        None,
        "none",
        True,
    )
    assert record.rua == ("mailto:a@example.com",)


def test_invalid_optional_values_fall_back_to_defaults() -> None:
    record = parse_record("v=DMARC1; p=reject; pct=150; adkim=x; aspf=; fo=2; rf=; ri=soon; np=x")
    assert record == DMARCRecord(p="reject")
    assert parse_record("v=DMARC1; p=reject; pct=abc").pct == 100
    assert parse_record("v=DMARC1; p=reject; pct=0").pct == 0


@SETTINGS
@given(
    p=st.sampled_from(["none", "quarantine", "reject"]),
    sp=st.none() | st.sampled_from(["none", "quarantine", "reject"]),
    adkim=st.sampled_from(["r", "s"]),
    aspf=st.sampled_from(["r", "s"]),
    pct=st.integers(0, 100),
    ri=st.integers(0, 10**9),
    fo=st.lists(st.sampled_from(["0", "1", "d", "s"]), min_size=1, max_size=4),
    rua=st.lists(
        st.from_regex(
            r"mailto:[a-z]{1,8}@[a-z]{1,8}\.example(?:![0-9]{1,3}[kmgt]?)?", fullmatch=True
        ),
        max_size=3,
    ),
    order=st.randoms(use_true_random=False),
    spaces=st.sampled_from(["", " ", "\t", "  "]),
    trailing=st.booleans(),
)
def test_record_round_trip(
    p: str,
    sp: str | None,
    adkim: str,
    aspf: str,
    pct: int,
    ri: int,
    fo: list[str],
    rua: list[str],
    order: random.Random,
    spaces: str,
    trailing: bool,
) -> None:
    tags = [f"p={p}", f"adkim={adkim}", f"aspf={aspf}", f"pct={pct}", f"ri={ri}"]
    tags.append("fo=" + ":".join(fo))
    if sp is not None:
        tags.append(f"sp={sp}")
    if rua:
        tags.append("rua=" + ",".join(rua))
    order.shuffle(tags)
    sep = f"{spaces};{spaces}"
    text = sep.join(["v=DMARC1", *tags]) + (sep if trailing else "")
    record = parse_record(text)
    assert record.p == p and record.sp == sp
    assert (record.adkim, record.aspf, record.pct, record.ri) == (adkim, aspf, pct, ri)
    assert record.fo == tuple(fo) and record.rua == tuple(rua)
    assert not record.p_fallback


def check_record_parser(text: str) -> None:
    try:
        record = parse_record(text)
    except DMARCRecordError:
        return
    assert is_dmarc_record(text)
    assert record.p in ("none", "quarantine", "reject")
    assert 0 <= record.pct <= 100


@SETTINGS
@given(st.text(max_size=120))
def test_record_parser_raises_only_record_errors(text: str) -> None:
    check_record_parser(text)


RECORD_PARTS = ["v=DMARC1", "p=reject", "sp=none", "pct=5", "x", "=", ";", " ", "rua=mailto:a@b"]


@SETTINGS
@given(st.lists(st.sampled_from(RECORD_PARTS), max_size=10).map("".join))
def test_record_parser_on_record_like_junk(text: str) -> None:
    check_record_parser(text)


# --- policy discovery and evaluation (RFC 7489 §6.6) -------------------------


async def evaluate(
    zones: dict[str, list[str]],
    domain: str = "example.com",
    *,
    spf: tuple[str, str] = ("fail", "bounce.example.org"),
    dkim: Sequence[str] = (),
    rng: random.Random | None = None,
) -> tuple[DMARCResult, DictResolver]:
    resolver = DictResolver({name: {"TXT": records} for name, records in zones.items()})
    result = await check_dmarc(
        resolver,
        domain,
        spf_result=spf[0],
        spf_domain=spf[1],
        dkim_pass_domains=dkim,
        rng=rng,
    )
    return result, resolver


@pytest.mark.parametrize("policy", ["none", "quarantine", "reject"])
async def test_failing_message_gets_the_requested_policy(policy: str) -> None:
    record = f"v=DMARC1; p={policy}"
    result, resolver = await evaluate({"_dmarc.example.com": [record]})
    assert result == DMARCResult(
        result="fail",
        domain="example.com",
        policy_domain="example.com",
        policy=policy,  # type: ignore[arg-type]
        disposition=policy,  # type: ignore[arg-type]
        spf_aligned=False,
        dkim_aligned=False,
        record=record,
        reason="no aligned SPF or DKIM pass",
    )
    assert resolver.queries == [("_dmarc.example.com", "TXT")]


async def test_aligned_spf_passes() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    result, _ = await evaluate(zones, spf=("pass", "bounce.example.com"))
    assert (result.result, result.disposition, result.policy) == ("pass", "none", "reject")
    assert result.spf_aligned and not result.dkim_aligned
    assert result.reason == "aligned SPF pass"


async def test_aligned_dkim_passes() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    result, _ = await evaluate(zones, dkim=["other.example", "example.com"])
    assert (result.result, result.dkim_aligned, result.spf_aligned) == ("pass", True, False)


async def test_spf_pass_for_another_domain_does_not_align() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    result, _ = await evaluate(zones, spf=("pass", "example.org"), dkim=["example.net"])
    assert (result.result, result.disposition) == ("fail", "reject")


async def test_spf_result_other_than_pass_does_not_align() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    for spf_result in ("softfail", "neutral", "none", "temperror"):
        result, _ = await evaluate(zones, spf=(spf_result, "example.com"))
        assert not result.spf_aligned and result.result == "fail"
    result, _ = await evaluate(zones, spf=("PASS", "example.com"))
    assert result.spf_aligned


async def test_aspf_strict() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject; aspf=s"]}
    result, _ = await evaluate(zones, spf=("pass", "bounce.example.com"))
    assert (result.result, result.spf_aligned) == ("fail", False)
    result, _ = await evaluate(zones, spf=("pass", "Example.COM"))
    assert (result.result, result.spf_aligned) == ("pass", True)


async def test_adkim_strict() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject; adkim=s"]}
    result, _ = await evaluate(zones, dkim=["mail.example.com"])
    assert (result.result, result.dkim_aligned) == ("fail", False)
    result, _ = await evaluate(zones, dkim=["mail.example.com", "example.com"])
    assert (result.result, result.dkim_aligned) == ("pass", True)


async def test_subdomain_from_uses_the_organizational_record() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    result, resolver = await evaluate(zones, "news.example.com", dkim=["example.com"])
    assert resolver.queries == [("_dmarc.news.example.com", "TXT"), ("_dmarc.example.com", "TXT")]
    assert (result.result, result.domain, result.policy_domain) == (
        "pass",
        "news.example.com",
        "example.com",
    )
    assert result.dkim_aligned  # relaxed: same Organizational Domain


async def test_subdomain_from_with_strict_alignment_fails() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject; adkim=s; aspf=s"]}
    result, _ = await evaluate(
        zones, "news.example.com", spf=("pass", "example.com"), dkim=["example.com"]
    )
    assert (result.result, result.disposition) == ("fail", "reject")
    assert not result.spf_aligned and not result.dkim_aligned


async def test_sp_applies_to_subdomains_only() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject; sp=quarantine"]}
    sub, _ = await evaluate(zones, "news.example.com")
    assert (sub.result, sub.policy, sub.disposition) == ("fail", "quarantine", "quarantine")
    top, _ = await evaluate(zones, "example.com")
    assert (top.policy, top.disposition) == ("reject", "reject")
    # Without sp, p applies to subdomains too.
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    sub, _ = await evaluate(zones, "a.b.example.com")
    assert (sub.policy, sub.policy_domain) == ("reject", "example.com")


async def test_a_subdomain_record_wins_over_the_organizational_one() -> None:
    zones = {
        "_dmarc.news.example.com": ["v=DMARC1; p=none; sp=reject"],
        "_dmarc.example.com": ["v=DMARC1; p=reject"],
    }
    result, resolver = await evaluate(zones, "news.example.com")
    assert (result.policy_domain, result.policy, result.disposition) == (
        "news.example.com",
        "none",
        "none",
    )
    assert resolver.queries == [("_dmarc.news.example.com", "TXT")]


async def test_from_domain_is_normalized() -> None:
    zones = {"_dmarc.xn--bcher-kva.example": ["v=DMARC1; p=quarantine"]}
    result, _ = await evaluate(zones, "Bücher.Example.", dkim=["XN--BCHER-KVA.example"])
    assert (result.result, result.domain) == ("pass", "xn--bcher-kva.example")


async def test_pct_zero_applies_the_next_policy_down() -> None:
    # §6.6.4: reject -> quarantine, quarantine -> none.
    result, _ = await evaluate({"_dmarc.example.com": ["v=DMARC1; p=reject; pct=0"]})
    assert (result.policy, result.disposition) == ("reject", "quarantine")
    assert "not sampled (pct=0)" in result.reason
    result, _ = await evaluate({"_dmarc.example.com": ["v=DMARC1; p=quarantine; pct=0"]})
    assert (result.policy, result.disposition) == ("quarantine", "none")


async def test_pct_fifty_samples_with_the_given_rng() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject; pct=50"]}
    rng = random.Random(20240601)
    outcomes = [(await evaluate(zones, rng=rng))[0].disposition for _ in range(400)]
    assert set(outcomes) == {"reject", "quarantine"}
    assert 150 < outcomes.count("reject") < 250
    # The same seed gives the same decisions: the rng is the only randomness.
    again = random.Random(20240601)
    assert outcomes == [(await evaluate(zones, rng=again))[0].disposition for _ in range(400)]
    expected = random.Random(20240601)
    assert outcomes[:20] == [
        "reject" if expected.randrange(100) < 50 else "quarantine" for _ in range(20)
    ]


async def test_pct_does_not_touch_passing_messages_or_full_sampling() -> None:
    class NoRandom(random.Random):
        def randrange(self, *args: object, **kwargs: object) -> int:
            raise AssertionError("sampling is not needed here")

    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject; pct=50"]}
    result, _ = await evaluate(zones, dkim=["example.com"], rng=NoRandom())
    assert (result.result, result.disposition) == ("pass", "none")
    zones = {"_dmarc.example.com": ["v=DMARC1; p=reject"]}
    result, _ = await evaluate(zones, rng=NoRandom())
    assert result.disposition == "reject"


async def test_no_record_is_none() -> None:
    result, resolver = await evaluate({}, "mail.example.com", spf=("pass", "example.com"))
    assert (result.result, result.policy, result.disposition, result.policy_domain) == (
        "none",
        "none",
        "none",
        "",
    )
    assert result.spf_aligned  # reported with the default relaxed mode
    assert resolver.queries == [("_dmarc.mail.example.com", "TXT"), ("_dmarc.example.com", "TXT")]


async def test_organizational_domain_is_not_asked_twice() -> None:
    result, resolver = await evaluate({}, "example.com")
    assert result.result == "none"
    assert resolver.queries == [("_dmarc.example.com", "TXT")]


async def test_other_txt_records_are_ignored() -> None:
    zones = {"_dmarc.example.com": ["v=spf1 -all", "v=DMARC1; p=reject", "hello"]}
    result, _ = await evaluate(zones)
    assert (result.result, result.record) == ("fail", "v=DMARC1; p=reject")


async def test_only_non_dmarc_records_fall_back_to_the_organizational_domain() -> None:
    zones = {
        "_dmarc.news.example.com": ["v=spf1 -all"],
        "_dmarc.example.com": ["v=DMARC1; p=quarantine"],
    }
    result, _ = await evaluate(zones, "news.example.com")
    assert (result.policy_domain, result.disposition) == ("example.com", "quarantine")


async def test_multiple_records_mean_no_dmarc() -> None:
    # §6.6.3 step 5, and no fallback to the Organizational Domain.
    zones = {
        "_dmarc.news.example.com": ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
        "_dmarc.example.com": ["v=DMARC1; p=reject"],
    }
    result, resolver = await evaluate(zones, "news.example.com")
    assert (result.result, result.disposition) == ("none", "none")
    assert "2 DMARC records" in result.reason
    assert resolver.queries == [("_dmarc.news.example.com", "TXT")]
    result, _ = await evaluate({"_dmarc.example.com": ["v=DMARC1; p=reject"] * 2})
    assert result.result == "none"


async def test_record_split_into_strings_is_joined() -> None:
    resolver = DictResolver({"_dmarc.example.com": {"TXT": [["v=DMARC1; p=rej", "ect; adkim=s"]]}})
    result = await check_dmarc(
        resolver, "example.com", spf_result="none", spf_domain="", dkim_pass_domains=()
    )
    assert (result.disposition, result.record) == ("reject", "v=DMARC1; p=reject; adkim=s")


@pytest.mark.parametrize("failure", ["timeout", "servfail", "refused"])
async def test_dns_trouble_is_temperror(failure: str) -> None:
    resolver = DictResolver({"_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject"]}})
    resolver.zones.fail("_dmarc.example.com", "TXT", failure)  # type: ignore[arg-type]
    result = await check_dmarc(
        resolver, "example.com", spf_result="fail", spf_domain="x.example", dkim_pass_domains=()
    )
    assert (result.result, result.policy, result.disposition) == ("temperror", "none", "none")
    assert result.policy_domain == "example.com"
    # ... also when it is the Organizational Domain's lookup that fails.
    result = await check_dmarc(
        resolver, "news.example.com", spf_result="fail", spf_domain="", dkim_pass_domains=()
    )
    assert (result.result, result.policy_domain) == ("temperror", "example.com")


async def test_a_temperror_at_the_from_domain_stops_discovery() -> None:
    resolver = DictResolver({"_dmarc.example.com": {"TXT": ["v=DMARC1; p=reject"]}})
    resolver.zones.fail("_dmarc.news.example.com", "TXT", "timeout")
    result = await check_dmarc(
        resolver, "news.example.com", spf_result="fail", spf_domain="", dkim_pass_domains=()
    )
    assert result.result == "temperror"
    assert resolver.queries == [("_dmarc.news.example.com", "TXT")]


async def test_malformed_record_is_permerror_without_policy() -> None:
    # §6.6.3 step 6.2: no DMARC processing; RFC 8601 §2.7.1 calls it permerror.
    zones = {"_dmarc.example.com": ["v=DMARC1; p=rejected"]}
    result, _ = await evaluate(zones)
    assert (result.result, result.policy, result.disposition) == ("permerror", "none", "none")
    assert result.record == "v=DMARC1; p=rejected"
    assert "invalid DMARC record" in result.reason


async def test_malformed_policy_with_rua_is_evaluated_as_p_none() -> None:
    zones = {"_dmarc.example.com": ["v=DMARC1; p=rejected; rua=mailto:d@example.com"]}
    result, _ = await evaluate(zones)
    assert (result.result, result.policy, result.disposition) == ("fail", "none", "none")


async def test_wrong_version_is_no_record() -> None:
    result, _ = await evaluate({"_dmarc.example.com": ["v=DMARC2; p=reject"]})
    assert result.result == "none"


async def test_invalid_from_domain() -> None:
    resolver = DictResolver({})
    result = await check_dmarc(
        resolver, " . ", spf_result="pass", spf_domain="example.com", dkim_pass_domains=()
    )
    assert (result.result, result.disposition) == ("permerror", "none")
    assert resolver.queries == []
    result = await check_dmarc(
        resolver, "a" * 64 + ".example", spf_result="pass", spf_domain="", dkim_pass_domains=()
    )
    assert result.result == "permerror"  # the name cannot be looked up at all


# --- the RFC5322.From domain (RFC 7489 §6.6.1) -------------------------------


@pytest.mark.parametrize(
    ("header", "domain"),
    [
        (b"From: user@Example.COM\r\n", "example.com"),
        (b"From: Joe User <user@example.com>\r\n", "example.com"),
        (b'From: "User, Joe" <user@example.com>\r\n', "example.com"),
        (b"from : user@example.com (Joe)\r\n", "example.com"),
        (b"FROM:<user@sub.example.com>\r\n", "sub.example.com"),
        # Folded (RFC 5322 §2.2.3).
        (b"From: A Very Long\r\n Display Name\r\n\t<user@example.com>\r\n", "example.com"),
        # An encoded-word display name hiding an address is only a name.
        (b"From: =?utf-8?q?boss@bank.example?= <x@evil.example>\r\n", "evil.example"),
        (b"From: =?utf-8?b?SsO2cmc=?= <j@example.org>\r\n", "example.org"),
        # UTF-8 header (RFC 6532): the domain becomes A-labels.
        ("From: Jörg <jörg@bücher.example>\r\n".encode(), "xn--bcher-kva.example"),
        (b"From: user@example.com.\r\n", None),  # a trailing dot is no domain
        # Only one author, but several addresses or none.
        (b"From: a@example.com, b@example.com\r\n", None),
        (b"From: a@example.com, b@example.org\r\n", None),
        # Group syntax is not allowed in From (RFC 5322 §3.6.2).
        (b"From: undisclosed-recipients:;\r\n", None),
        (b"From: team: a@example.com;\r\n", None),
        # No domain, or no usable one.
        (b"From: user\r\n", None),
        (b"From: Joe <user>\r\n", None),
        (b"From: <>\r\n", None),
        (b"From:\r\n", None),
        (b"From: user@[192.0.2.1]\r\n", None),
        (b"From: user@=?utf-8?q?example.com?=\r\n", None),
        (b"From: user@exa mple.com\r\n", None),
        (b"From: user@-example.com\r\n", None),
        (b"From: Joe <user@exa mple.com>\r\n", None),
        (b"From: user @ example.com\r\n", "example.com"),  # CFWS around atoms is fine
        (b"From: Joe (x) < user@example.com (y) >\r\n", "example.com"),
    ],
)
def test_from_domain(header: bytes, domain: str | None) -> None:
    message = b"Received: x\r\n" + header + b"Subject: test\r\n\r\nbody\r\n"
    assert from_domain(message) == domain


def test_from_domain_needs_exactly_one_from_field() -> None:
    one = b"From: a@example.com\r\n"
    assert from_domain(one + b"\r\n") == "example.com"
    assert from_domain(one + b"from: a@example.com\r\n\r\n") is None
    assert from_domain(one + b"From: b@example.org\r\n\r\n") is None
    assert from_domain(b"Subject: no author\r\n\r\nFrom: a@example.com\r\n") is None
    assert from_domain(b"") is None
    # Lines in the body never count, a bare LF header is still a header.
    assert from_domain(one + b"\r\nFrom: b@example.org\r\n") == "example.com"
    assert from_domain(b"Subject: x\nFrom: a@Example.org\n\nbody") == "example.org"


def check_from_domain(message: bytes) -> None:
    domain = from_domain(message)
    assert domain is None or domain == normalize_domain(domain)


@SETTINGS
@given(st.binary(max_size=200))
def test_from_domain_is_total(message: bytes) -> None:
    check_from_domain(message)


FROM_PARTS = [
    b"From: ",
    b"a@example.com",
    b"<b@example.org>",
    b", ",
    b"grp:",
    b";",
    b"\r\n ",
    b"\r\n",
    b'"x@y, z" ',
    b"(c@d.example)",
    b"=?utf-8?q?e@f?=",
    b"\xc3\xa4",
]


@SETTINGS
@given(st.lists(st.sampled_from(FROM_PARTS), max_size=12).map(b"".join))
def test_from_domain_on_header_like_junk(message: bytes) -> None:
    check_from_domain(message)
