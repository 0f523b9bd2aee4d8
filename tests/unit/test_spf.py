"""pochta.mailauth.spf: parser, macros, evaluation, limits, Received-SPF.

The openspf suite (``test_spf_suite.py``) covers the RFC's corner cases;
these tests pin our own choices, the public API and the examples of
RFC 7208 itself, and fuzz the parsers with Hypothesis.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_address, ip_network
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pochta.dns import TXT, Answer, DictResolver, Zones
from pochta.mailauth.spf import (
    DEFAULT_LIMITS,
    SPFLimits,
    SPFResult,
    check_host,
    received_spf,
    verify_sender,
)
from pochta.mailauth.spf_macro import (
    MacroSyntaxError,
    MacroValues,
    expand_domain,
    parse_domain_spec,
    parse_explain_string,
    parse_macro_string,
)
from pochta.mailauth.spf_record import SPFSyntaxError, is_spf_record, parse_record

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RESULTS = {"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"}
CLIENT = "192.0.2.3"


def resolver(data: Mapping[str, Any]) -> DictResolver:
    return DictResolver(data)


async def check(
    data: Mapping[str, Any] | DictResolver,
    domain: str = "example.com",
    ip: str | IPv4Address | IPv6Address = CLIENT,
    sender: str = "",
    **kwargs: Any,
) -> SPFResult:
    res = data if isinstance(data, DictResolver) else resolver(data)
    return await check_host(res, ip, domain, sender or f"user@{domain}", **kwargs)


def spf(record: str, **more: object) -> dict[str, Any]:
    return {"TXT": [record], **more}


# ------------------------------------------------------------------ macros, §7


# RFC 7208 §7.4: <sender> strong-bad@email.example.com, IPv4 192.0.2.3,
# the PTR name of the client mx.example.org.
RFC_VALUES = MacroValues(
    "strong-bad@email.example.com",
    "email.example.com",
    IPv4Address("192.0.2.3"),
    validated="mx.example.org",
)


@pytest.mark.parametrize(
    ("macro", "expansion"),
    [
        ("%{s}", "strong-bad@email.example.com"),
        ("%{o}", "email.example.com"),
        ("%{d}", "email.example.com"),
        ("%{d4}", "email.example.com"),
        ("%{d3}", "email.example.com"),
        ("%{d2}", "example.com"),
        ("%{d1}", "com"),
        ("%{dr}", "com.example.email"),
        ("%{d2r}", "example.email"),
        ("%{l}", "strong-bad"),
        ("%{l-}", "strong.bad"),
        ("%{lr}", "strong-bad"),
        ("%{lr-}", "bad.strong"),
        ("%{l1r-}", "strong"),
        ("%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"),
        ("%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"),
        ("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"),
        ("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"),
        ("%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"),
        ("%{p}", "mx.example.org"),
        ("%{p2}", "example.org"),
    ],
)
def test_rfc7208_macro_examples(macro: str, expansion: str) -> None:
    assert parse_macro_string(macro).expand(RFC_VALUES) == expansion


def test_rfc7208_ipv6_macro_example() -> None:
    values = MacroValues(
        "strong-bad@email.example.com", "email.example.com", IPv6Address("2001:db8::cb01")
    )
    expanded = parse_domain_spec("%{ir}.%{v}._spf.%{d2}").expand(values)
    # §7.4 prints the nibbles in lower case, RFC 4408 and the openspf suite in
    # upper case; DNS does not care (RFC 4343).
    assert expanded.lower() == (
        "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com"
    )


def test_escapes_and_url_encoding() -> None:
    values = MacroValues("~jack&jill=up@example.com", "example.com", IPv4Address("192.0.2.3"))
    assert parse_macro_string("%%%_%-").expand(values) == "% %20"
    # §7.3: upper-case letters are URL-escaped; unreserved characters stay.
    assert parse_macro_string("%{L}").expand(values) == "~jack%26jill%3Dup"
    assert parse_macro_string("%{S}").expand(values) == "~jack%26jill%3Dup%40example.com"
    assert parse_macro_string("%{l2r=}").expand(values) == "up.~jack&jill"
    assert parse_macro_string("%{dR}").expand(values) == "com.example"


def test_explanation_only_letters() -> None:
    values = MacroValues(
        "a@example.com", "example.com", IPv6Address("2001:db8::1"), receiver="mx.test", timestamp=42
    )
    assert parse_explain_string("%{c} via %{r} at %{t}").expand(values) == (
        "2001:db8::1 via mx.test at 42"
    )
    for letter in "crt":
        with pytest.raises(MacroSyntaxError):
            parse_domain_spec(f"%{{{letter}}}.example.com")


@pytest.mark.parametrize(
    "text",
    ["%", "%x", "%{", "%{d", "%{}", "%{q}", "%{d0}", "%{d2x}", "%{d r}", "a b", "\x00", "é"],
)
def test_macro_syntax_errors(text: str) -> None:
    with pytest.raises(MacroSyntaxError):
        parse_macro_string(text)


@pytest.mark.parametrize(
    ("spec", "valid"),
    [
        ("example.com", True),
        ("example.com.", True),
        ("%{d}", True),
        ("%{d}.", False),
        ("_spf.%{d2}", True),
        ("foo:bar/baz.example.com", True),
        ("x.xn--zckzah", True),
        ("museum", False),
        ("museum.", False),
        ("abc.123", False),
        ("example.-com", False),
        ("example.com:8080", False),
        ("", False),
    ],
)
def test_domain_end(spec: str, valid: bool) -> None:
    if valid:
        parse_domain_spec(spec)
    else:
        with pytest.raises(MacroSyntaxError):
            parse_domain_spec(spec)


def test_expanded_domain_is_truncated_from_the_left() -> None:
    long = "a" * 60
    values = MacroValues(f"x@{long}.{long}.{long}.{long}.test", "d.test", IPv4Address(CLIENT))
    name = expand_domain(parse_domain_spec("%{o}.%{o}.example.com."), values)
    assert len(name) <= 253
    assert name.endswith(".example.com")
    assert name == (f"{long}.{long}.{long}.test." * 2 + "example.com")[-len(name) :]


# ------------------------------------------------------------------ records, §4.5/§4.6


def test_record_recognition() -> None:
    assert is_spf_record(b"v=spf1")
    assert is_spf_record(b"V=SpF1 -all")
    assert not is_spf_record(b"v=spf10")
    assert not is_spf_record(b"v=spf1mx")
    assert not is_spf_record(b"spf2.0/pra -all")


def test_record_parsing() -> None:
    record = parse_record(
        "v=spf1  +a/24//64 mx:%{d}/0 -ptr:example.net ?ip4:192.0.2.0/24 "
        "~ip6:2001:db8::/32 exists:%{ir}.bl.test include:_spf.test foo=bar "
        "exp=why.%{d} redirect=other.test -all "
    )
    kinds = [(m.qualifier, m.kind) for m in record.mechanisms]
    assert kinds == [
        ("+", "a"),
        ("+", "mx"),
        ("-", "ptr"),
        ("?", "ip4"),
        ("~", "ip6"),
        ("+", "exists"),
        ("+", "include"),
        ("-", "all"),
    ]
    a, mx = record.mechanisms[:2]
    assert (a.cidr4, a.cidr6, a.domain) == (24, 64, None)
    assert (mx.cidr4, mx.cidr6) == (0, 128)
    assert record.mechanisms[3].network == IPv4Network("192.0.2.0/24")
    assert record.redirect is not None and record.redirect.text == "other.test"
    assert record.exp is not None and record.exp.text == "why.%{d}"


@pytest.mark.parametrize(
    "text",
    [
        "v=spf1 -all.",
        "v=spf1 all/8",
        "v=spf1 ip4:192.0.2.1/33",
        "v=spf1 ip4:192.0.2.01",
        "v=spf1 ip4:192.0.2.1/08",
        "v=spf1 ip6:2001:db8::1/129",
        "v=spf1 ip6:fe80::1%eth0",
        "v=spf1 a/24/64",
        "v=spf1 ptr/24",
        "v=spf1 include",
        "v=spf1 exists",
        "v=spf1 mx:",
        "v=spf1 redirect=a.test redirect=b.test",
        "v=spf1 exp=a.test exp=b.test",
        "v=spf1 redirect:a.test",
        "v=spf1 1up=x",
        "v=spf1 =x",
        "v=spf1 foo=%x",
        "v=spf1 a:example.com\t-all",
        "v=spf1 a:b\u00e9.test",
        "v=spf1 -all moo",
        "spf1 -all",
    ],
)
def test_record_syntax_errors(text: str) -> None:
    with pytest.raises(SPFSyntaxError):
        parse_record(text)


# ------------------------------------------------------------------ check_host


@pytest.mark.parametrize(
    ("qualifier", "result"),
    [("", "pass"), ("+", "pass"), ("-", "fail"), ("~", "softfail"), ("?", "neutral")],
)
async def test_qualifiers(qualifier: str, result: str) -> None:
    outcome = await check({"example.com": spf(f"v=spf1 {qualifier}ip4:192.0.2.0/24 -all")})
    assert outcome.result == result
    assert outcome.domain == "example.com"
    assert outcome.identity == "mailfrom"
    assert "ip4:192.0.2.0/24" in outcome.reason
    assert (outcome.explanation != "") == (result == "fail")


async def test_default_neutral_and_none() -> None:
    zone = {"example.com": spf("v=spf1 ip4:198.51.100.1"), "other.test": {"TXT": ["hello"]}}
    assert (await check(zone)).result == "neutral"
    assert (await check(zone, "other.test")).result == "none"
    assert (await check(zone, "missing.test")).result == "none"


async def test_a_mx_exists_ptr() -> None:
    zone = {
        "example.com": spf("v=spf1 a mx:mail.example.com ptr exists:%{i}.ok.test -all"),
        "mail.example.com": {"MX": [(10, "mx1.example.com"), (20, "mx2.example.com")]},
        "mx2.example.com": {"A": ["192.0.2.20"], "AAAA": ["2001:db8::20"]},
        "192.0.2.44.ok.test": {"A": ["127.0.0.2"]},
        "192.0.2.55": {"PTR": ["host.example.com"]},
        "host.example.com": {"A": ["192.0.2.55"]},
        "192.0.2.66": {"PTR": ["liar.example.com"]},
        "liar.example.com": {"A": ["192.0.2.1"]},
    }
    zone["example.com"]["A"] = ["192.0.2.10"]
    assert (await check(zone, ip="192.0.2.10")).result == "pass"  # a
    assert (await check(zone, ip="192.0.2.20")).result == "pass"  # mx
    assert (await check(zone, ip="2001:db8::20")).result == "pass"  # mx, AAAA
    assert (await check(zone, ip="192.0.2.44")).result == "pass"  # exists
    assert (await check(zone, ip="192.0.2.55")).result == "pass"  # ptr, validated
    assert (await check(zone, ip="192.0.2.66")).result == "fail"  # ptr does not validate


async def test_dual_cidr() -> None:
    zone = {
        "example.com": spf("v=spf1 a:hosts.example.com/24//48 -all"),
        "hosts.example.com": {"A": ["192.0.2.200"], "AAAA": ["2001:db8:1::1"]},
    }
    assert (await check(zone, ip="192.0.2.3")).result == "pass"
    assert (await check(zone, ip="192.0.3.3")).result == "fail"
    assert (await check(zone, ip="2001:db8:1:ffff::9")).result == "pass"
    assert (await check(zone, ip="2001:db8:2::1")).result == "fail"


async def test_ipv4_mapped_client_is_ipv4() -> None:
    zone = {"example.com": spf("v=spf1 ip6:::/0 ip4:192.0.2.3 -all")}
    result = await check(zone, ip="::ffff:192.0.2.3")
    assert result.result == "pass"
    assert "ip4:" in result.reason
    assert (await check(zone, ip=IPv6Address("2001:db8::1"))).result == "pass"


async def test_include_results() -> None:
    zone = {
        "example.com": spf("v=spf1 include:a.test include:b.test include:c.test -all"),
        "a.test": spf("v=spf1 ip4:192.0.2.1 -all"),
        "b.test": spf("v=spf1 ?ip4:192.0.2.2"),
        "c.test": spf("v=spf1 ip4:192.0.2.3 ~all exp=never.test"),
        "never.test": {"TXT": ["not this one"]},
    }
    assert (await check(zone, ip="192.0.2.1")).result == "pass"
    assert (await check(zone, ip="192.0.2.2")).result == "fail"  # neutral does not match
    assert (await check(zone, ip="192.0.2.3")).result == "pass"
    failed = await check(zone, ip="192.0.2.9", default_explanation="nope")
    assert (failed.result, failed.explanation) == ("fail", "nope")


async def test_include_of_nothing_is_permerror() -> None:
    zone = {"example.com": spf("v=spf1 include:nothing.test -all")}
    result = await check(zone)
    assert result.result == "permerror"
    assert "nothing.test" in result.reason


async def test_redirect_and_its_explanation() -> None:
    zone = {
        "example.com": spf("v=spf1 ip4:198.51.100.1 exp=mine.test redirect=_spf.%{d}"),
        "_spf.example.com": spf("v=spf1 ip4:192.0.2.3 -all exp=theirs.test"),
        "mine.test": {"TXT": ["from example.com"]},
        "theirs.test": {"TXT": ["from %{d}"]},
    }
    assert (await check(zone)).result == "pass"
    failed = await check(zone, ip="192.0.2.4")
    assert failed.result == "fail"
    assert failed.explanation == "from _spf.example.com"
    assert failed.domain == "example.com"
    zone["_spf.example.com"] = {"TXT": ["nothing here"]}
    assert (await check(zone)).result == "permerror"


async def test_explanation_rfc_example_and_fallbacks() -> None:
    zone = {
        "example.com": spf("v=spf1 -all exp=explain._spf.%{d}"),
        "explain._spf.example.com": {"TXT": ["See http://%{d}/why.html?s=%{S}&i=%{I}"]},
    }
    result = await check(zone, sender="strong-bad@example.com")
    assert result.explanation == (
        "See http://example.com/why.html?s=strong-bad%40example.com&i=192.0.2.3"
    )
    # §6.2: any problem with the exp= lookup falls back to the default.
    zone["explain._spf.example.com"] = {"TXT": ["one", "two"]}
    default = await check(zone, sender="strong-bad@example.com")
    assert default.explanation == "example.com does not designate 192.0.2.3 as a permitted sender"
    res = resolver({"example.com": spf("v=spf1 -all exp=explain.test")})
    res.zones.fail("explain.test", "TXT", "servfail")
    custom = await check(res, default_explanation="x %{c} %{r}", receiver="mx.test")
    assert custom.explanation == "x 192.0.2.3 mx.test"


async def test_explanation_is_printable_ascii() -> None:
    zone = {
        "example.com": spf("v=spf1 -all exp=why.test"),
        "why.test": {"TXT": ["sent by %{l}"]},
    }
    result = await check(zone, sender="bad\u00e9\x07guy@example.com")
    assert result.explanation == "sent by bad??guy"


async def test_p_macro_prefers_names_in_the_domain() -> None:
    zone = {
        "example.com": spf("v=spf1 -all exp=why.test"),
        "why.test": {"TXT": ["%{p}"]},
        CLIENT: {"PTR": ["other.test", "mail.example.com", "fake.example.com"]},
        "other.test": {"A": [CLIENT]},
        "mail.example.com": {"A": [CLIENT]},
    }
    assert (await check(zone)).explanation == "mail.example.com"
    del zone[CLIENT]
    assert (await check(zone)).explanation == "unknown"


async def test_temperror() -> None:
    res = resolver({"example.com": spf("v=spf1 a:broken.test -all")})
    res.zones.fail("broken.test", "A", "timeout")
    result = await check(res)
    assert result.result == "temperror"
    assert "broken.test" in result.reason
    res.zones.fail("example.com", "TXT", "servfail")
    assert (await check(res)).result == "temperror"


async def test_ptr_dns_errors_do_not_temperror() -> None:
    zone = {
        "example.com": spf("v=spf1 ptr -all"),
        CLIENT: {"PTR": ["broken.example.com", "good.example.com"]},
        "good.example.com": {"A": [CLIENT]},
    }
    res = resolver(zone)
    res.zones.fail("broken.example.com", "A", "servfail")
    assert (await check(res)).result == "pass"  # §5.5: the failing name is skipped
    res.zones.fail(CLIENT, "PTR", "servfail")
    assert (await check(res)).result == "fail"  # §5.5: no match on a PTR error


async def test_mx_match_wins_over_an_error() -> None:
    zone = {
        "example.com": spf("v=spf1 mx -all", MX=[(10, "a.test"), (20, "b.test")]),
        "b.test": {"A": [CLIENT]},
    }
    res = resolver(zone)
    res.zones.fail("a.test", "A", "timeout")
    assert (await check(res)).result == "pass"
    assert (await check(res, ip="192.0.2.99")).result == "temperror"


async def test_null_mx_is_skipped() -> None:
    zone = {"example.com": spf("v=spf1 mx -all", MX=[(0, ".")])}
    assert (await check(zone)).result == "fail"


def lookups_zone(count: int) -> dict[str, dict[str, object]]:
    zone: dict[str, dict[str, object]] = {
        f"h{i}.test": {"A": ["198.51.100.1"]} for i in range(1, count + 1)
    }
    terms = " ".join(f"a:h{i}.test" for i in range(1, count + 1))
    zone["example.com"] = spf(f"v=spf1 {terms} ip4:{CLIENT} -all")
    return zone


async def test_dns_lookup_limit() -> None:
    assert (await check(lookups_zone(10))).result == "pass"
    over = await check(lookups_zone(11))
    assert (over.result, over.reason) == ("permerror", "too many DNS lookups (more than 10)")
    assert (await check(lookups_zone(11), limits=SPFLimits(dns_mechanisms=11))).result == "pass"


async def test_include_loop_hits_the_limit() -> None:
    zone = {
        "example.com": spf("v=spf1 include:loop.test -all"),
        "loop.test": spf("v=spf1 include:example.com -all"),
    }
    res = resolver(zone)
    result = await check(res)
    assert result.result == "permerror"
    assert "too many DNS lookups" in result.reason
    assert len(res.queries) == 11  # the first TXT plus one per counted include
    redirect = await check({"example.com": spf("v=spf1 redirect=example.com")})
    assert redirect.result == "permerror"


async def test_void_lookup_limit() -> None:
    zone = {"example.com": spf("v=spf1 a:n1.test a:n2.test a:n3.test ip4:192.0.2.3")}
    assert (await check(zone)).result == "permerror"
    assert (await check(zone, limits=SPFLimits(void_lookups=3))).result == "pass"


async def test_mx_and_ptr_name_limits() -> None:
    mx = [(i, f"mx{i}.test") for i in range(11)]
    zone = {"example.com": spf("v=spf1 mx -all", MX=mx), "mx10.test": {"A": [CLIENT]}}
    assert (await check(zone)).result == "permerror"
    assert (await check(zone, limits=SPFLimits(mx_names=11))).result == "pass"
    names = [f"n{i}.example.com" for i in range(11)]
    zone = {
        "example.com": spf("v=spf1 ptr -all"),
        CLIENT: {"PTR": names},
        "n10.example.com": {"A": [CLIENT]},
    }
    assert (await check(zone)).result == "fail"  # the 11th name is ignored
    assert (await check(zone, limits=SPFLimits(ptr_names=11))).result == "pass"


async def test_multiple_records_and_case() -> None:
    zone = {"example.com": {"TXT": ["v=spf1 -all", "V=SPF1 +all", "unrelated"]}}
    assert (await check(zone)).result == "permerror"
    # One record in two strings, glued without a space (§3.3).
    glued = {"example.com": {"TXT": [["V=sPf1 ", "ip4:192.0.2.3"], "spf2.0/pra"]}}
    assert (await check(glued)).result == "pass"


@pytest.mark.parametrize(
    "domain",
    ["localhost", "[192.0.2.1]", "192.0.2.1", "a..example.com", "x" * 64 + ".test", ""],
)
async def test_domains_that_give_none(domain: str) -> None:
    res = resolver({})
    result = await check(res, domain, sender="x@example.com")
    assert result.result == "none"
    assert res.queries == []  # §4.3: not even asked


async def test_domain_normalisation() -> None:
    zone = {
        "example.com": spf("v=spf1 ip4:192.0.2.3 -all"),
        "xn--bcher-kva.test": spf("v=spf1 ip4:192.0.2.3 -all"),
    }
    result = await check(zone, "Example.COM.", sender="@Example.COM.")
    assert (result.result, result.domain, result.sender) == (
        "pass",
        "example.com",
        "postmaster@Example.COM",
    )
    idn = await check(zone, "bücher.test", sender="info@bücher.test")
    assert (idn.result, idn.domain, idn.sender) == (
        "pass",
        "xn--bcher-kva.test",
        "info@xn--bcher-kva.test",
    )


async def test_sender_without_local_part_is_postmaster() -> None:
    zone = {"example.com": spf("v=spf1 -all exp=why.test"), "why.test": {"TXT": ["%{l}"]}}
    for sender in ("@example.com", "example.com"):
        result = await check(zone, sender=sender)
        assert (result.sender, result.explanation) == ("postmaster@example.com", "postmaster")


async def test_invalid_target_names_do_not_match() -> None:
    zone = {"example.com": spf("v=spf1 a:%{l}.example.com ip4:192.0.2.3 -all")}
    assert (await check(zone, sender=("x" * 64) + "@example.com")).result == "pass"


async def test_bad_ip_is_a_caller_error() -> None:
    with pytest.raises(ValueError):
        await check({}, ip="not-an-ip")


async def test_hostile_records_stay_cheap() -> None:
    # Published by whoever owns the domain: parsing and expansion must stay
    # linear (a backtracking top-label regex once took seconds on this).
    zone = {
        "a.test": spf("v=spf1 a:x." + "a1" * 20000 + "-a-"),
        "b.test": spf("v=spf1 a:" + "%{s}." * 3000 + "example.com ip4:192.0.2.3"),
        "c.test": spf("v=spf1 -all exp=why.test"),
        "why.test": {"TXT": ["%{s} " * 3000]},
    }
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await check(zone, "a.test")).result == "permerror"
    assert (await check(zone, "b.test", sender="x" * 60 + "@b.test")).result == "pass"
    failed = await check(zone, "c.test", sender="y" * 60 + "@c.test")
    assert failed.result == "fail"
    assert len(failed.explanation) == 400
    assert loop.time() - started < 5


class SlowResolver(DictResolver):
    async def txt(self, name: str) -> Answer[TXT]:
        await asyncio.sleep(5)
        return await super().txt(name)


async def test_overall_timeout_is_temperror() -> None:
    res = SlowResolver({"example.com": spf("v=spf1 -all")})
    result = await check(res, limits=SPFLimits(timeout=0.05))
    assert result.result == "temperror"
    assert "longer than" in result.reason


def test_default_limits_are_the_rfc_ones() -> None:
    assert SPFLimits(10, 10, 10, 2, 20.0) == DEFAULT_LIMITS


# ------------------------------------------------------------------ verify_sender


async def test_verify_sender_checks_helo_and_mail_from() -> None:
    zone = {
        "mail.example.com": spf("v=spf1 a -all", A=[CLIENT]),
        "example.com": spf("v=spf1 -all"),
    }
    helo, mail = await verify_sender(
        resolver(zone), CLIENT, "alice@example.com", "mail.example.com", receiver="mx.test"
    )
    assert helo is not None
    assert (helo.result, helo.identity, helo.sender) == (
        "pass",
        "helo",
        "postmaster@mail.example.com",
    )
    assert (mail.result, mail.identity, mail.domain) == ("fail", "mailfrom", "example.com")


async def test_verify_sender_null_mail_from_uses_helo() -> None:
    res = resolver({"mail.example.com": spf("v=spf1 a -all", A=[CLIENT])})
    helo, mail = await verify_sender(res, CLIENT, "", "mail.example.com", receiver="mx.test")
    assert helo is not None and helo.result == mail.result == "pass"
    assert (mail.identity, mail.sender, mail.domain) == (
        "mailfrom",
        "postmaster@mail.example.com",
        "mail.example.com",
    )
    assert res.queries.count(("mail.example.com", "TXT")) == 1


@pytest.mark.parametrize(
    "name", ["[192.0.2.3]", "[IPv6:2001:db8::1]", "localhost", "192.0.2.3", ""]
)
async def test_verify_sender_skips_helo_that_is_no_fqdn(name: str) -> None:
    res = resolver({"example.com": spf("v=spf1 ip4:192.0.2.3 -all")})
    helo, mail = await verify_sender(res, CLIENT, "bob@example.com", name, receiver="mx.test")
    assert helo is None
    assert mail.result == "pass"
    helo, mail = await verify_sender(res, CLIENT, "", name, receiver="mx.test")
    assert helo is None
    assert mail.result == "none"


# ------------------------------------------------------------------ Received-SPF, §9.1


def unfold(header: bytes) -> str:
    assert header.endswith(b"\r\n")
    lines = header[:-2].split(b"\r\n")
    assert all(line.startswith(b" ") for line in lines[1:])
    assert b"\r" not in header.replace(b"\r\n", b"") and b"\n" not in header.replace(b"\r\n", b"")
    return b"".join(lines).decode("utf-8")


def spf_result(result: str = "pass", **changes: str) -> SPFResult:
    fields = {
        "result": result,
        "identity": "mailfrom",
        "domain": "example.com",
        "sender": "myname@example.com",
        "explanation": "",
        "reason": "matched ip4:192.0.2.0/24 at example.com",
    }
    fields.update(changes)
    return SPFResult(**fields)  # type: ignore[arg-type]


def test_received_spf_pass() -> None:
    header = received_spf(
        spf_result(), ip="192.0.2.1", helo="foo.example.com", receiver="mybox.example.org"
    )
    text = unfold(header)
    assert text == (
        "Received-SPF: pass (mybox.example.org: domain of myname@example.com designates "
        "192.0.2.1 as permitted sender) client-ip=192.0.2.1; "
        'envelope-from="myname@example.com"; helo=foo.example.com; '
        "receiver=mybox.example.org; identity=mailfrom"
    )
    assert all(len(line) <= 78 for line in header.split(b"\r\n"))


def test_received_spf_errors_and_quoting() -> None:
    result = spf_result("permerror", reason='bad record (see "x")\\', identity="helo")
    text = unfold(received_spf(result, ip="2001:db8::1", helo="[2001:db8::1]", receiver="mx.test"))
    assert text.startswith("Received-SPF: permerror (mx.test: permanent error in processing ")
    assert '\\(see "x"\\)\\\\)' in text
    assert 'client-ip="2001:db8::1";' in text
    assert 'helo="[2001:db8::1]";' in text
    assert "identity=helo;" in text
    assert text.endswith('problem="bad record (see \\"x\\")\\\\"')


def test_received_spf_has_no_injected_lines() -> None:
    result = spf_result("fail", sender="evil\r\nX-Injected: yes@example.com")
    header = received_spf(result, ip="192.0.2.1", helo="a\r\nB: c", receiver="mx.test")
    text = unfold(header)
    assert "X-Injected" in text  # kept as text, but never at the start of a line
    assert not re.search(rb"\r\n[^ ]", header)


def test_received_spf_with_bytes_that_were_not_utf8() -> None:
    """aiosmtpd keeps undecodable bytes as lone surrogates; the field still encodes."""
    result = spf_result("none", sender="a\udcff@example.com")
    header = received_spf(result, ip="192.0.2.1", helo="bad\udcff", receiver="mx.test")
    text = unfold(header)
    assert 'helo="bad?"' in text or "helo=bad?" in text
    assert "\udcff" not in text


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_received_spf_every_result(name: str) -> None:
    text = unfold(received_spf(spf_result(name), ip="192.0.2.1", helo="h.test", receiver="r.test"))
    assert text.startswith(f"Received-SPF: {name} (r.test: ")


# ------------------------------------------------------------------ Hypothesis

MACRO_ALPHABET = "%{}slodiphvcrtSLODIPHVCRTxq0123456789.-+,/_=:ab \t\x00é"
macro_text = st.text(alphabet=MACRO_ALPHABET, max_size=40)
VALUES = MacroValues(
    "a.b-c+d@sub.example.com", "sub.example.com", IPv6Address("2001:db8::1"), helo="h.test"
)


@SETTINGS
@given(macro_text)
def test_macro_parsers_are_total(text: str) -> None:
    for parse in (parse_macro_string, parse_explain_string, parse_domain_spec):
        try:
            parsed = parse(text)
        except MacroSyntaxError:
            continue
        assert isinstance(parsed.expand(VALUES), str)
        if parse is parse_domain_spec:
            name = expand_domain(parsed, VALUES)
            assert len(name) <= 253 or "." not in name


TERM_NAMES = ["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists", "redirect", "exp", "x"]
ARGUMENT_ALPHABET = ":/=.%{}-_+,~!dlsoiphvcrtDI0123456789abcfx"
FIXED_TERMS = [
    "-all",
    "~all",
    "a",
    "mx",
    "ptr",
    "a/24",
    "mx//64",
    "include:inc.test",
    "include:example.com",
    "redirect=inc.test",
    "exp=why.test",
    "exists:%{i}.bl.test",
    "a:%{l}.%{d}",
    "ip4:192.0.2.0/24",
    "-ip4:192.0.2.3",
    "ip6:2001:db8::/32",
    "a:broken.test",
    "ptr:%{d2}",
    "-exists:%{p}",
    "unknown=%{s}",
]
fixed_term = st.sampled_from(FIXED_TERMS)
built_term = st.builds(
    lambda q, name, arg: q + name + arg,
    st.sampled_from(["", "+", "-", "~", "?"]),
    st.sampled_from(TERM_NAMES),
    st.text(alphabet=ARGUMENT_ALPHABET, max_size=24),
)
# Mostly clean terms, so that most records get past the syntax check and are
# evaluated; sometimes anything at all (controls, non-ASCII, raw bytes).
clean_record = st.lists(st.one_of(fixed_term, fixed_term, built_term), max_size=10)
dirty_record = st.lists(st.one_of(fixed_term, built_term, st.text(max_size=12)), max_size=10)
record_text = st.one_of(clean_record, dirty_record).map(lambda terms: "v=spf1 " + " ".join(terms))
record_bytes = st.one_of(
    clean_record.map(lambda terms: ("v=spf1 " + " ".join(terms)).encode()),
    clean_record.map(lambda terms: ("v=spf1 " + " ".join(terms)).encode()),
    dirty_record.map(lambda terms: ("v=spf1 " + " ".join(terms)).encode("utf-8", "surrogatepass")),
    st.binary(max_size=60),
    st.binary(max_size=60).map(lambda b: b"v=spf1 " + b),
)


def fuzz_zones(main: bytes, included: bytes, explanation: bytes) -> Zones:
    zones = Zones(
        {
            "example.com": {
                "TXT": [TXT((main,))],
                "A": [CLIENT],
                "MX": [(10, "mx.example.com")],
            },
            "inc.test": {"TXT": [TXT((included,))]},
            "why.test": {"TXT": [TXT((explanation,))]},
            "mx.example.com": {"A": ["192.0.2.4"], "AAAA": ["2001:db8::4"]},
            CLIENT: {"PTR": ["mx.example.com", "example.com"]},
            "2001:db8::1": {"PTR": ["mx.example.com"]},
        }
    )
    zones.fail("broken.test", "A", "timeout")
    return zones


@SETTINGS
@given(
    record_bytes,
    record_bytes,
    st.binary(max_size=40) | macro_text.map(str.encode),
    st.sampled_from([CLIENT, "2001:db8::1", "::ffff:192.0.2.4", "198.51.100.7"]),
    st.text(max_size=20),
)
def test_check_host_never_raises(
    main: bytes, included: bytes, explanation: bytes, ip: str, local: str
) -> None:
    res = DictResolver(fuzz_zones(main, included, explanation))
    result = asyncio.run(
        check_host(res, ip, "example.com", f"{local}@example.com", helo="h\u00e9lo test")
    )
    assert result.result in RESULTS
    assert all(" " <= ch <= "~" for ch in result.explanation + result.reason)
    assert (result.explanation != "") == (result.result == "fail")
    header = received_spf(result, ip=ip, helo="h\r\nX: y", receiver="mx.test")
    unfold(header)
    if not main.lower().startswith(b"v=spf1"):
        assert result.result == "none"


@SETTINGS
@given(st.text(max_size=80))
def test_record_parser_is_total(text: str) -> None:
    try:
        record = parse_record(text)
    except SPFSyntaxError:
        return
    assert text[:6].lower() == "v=spf1"
    assert all(m.text in text for m in record.mechanisms)


@SETTINGS
@given(st.ip_addresses(), st.ip_addresses(), st.integers(0, 128))
def test_ip_mechanisms_match_like_ipaddress(
    client: IPv4Address | IPv6Address, network: IPv4Address | IPv6Address, prefix: int
) -> None:
    prefix = min(prefix, network.max_prefixlen)
    kind = "ip4" if network.version == 4 else "ip6"
    zone = resolver({"example.com": spf(f"v=spf1 {kind}:{network}/{prefix} -all")})
    result = asyncio.run(check_host(zone, client, "example.com", "x@example.com"))
    effective = client
    if isinstance(client, IPv6Address) and client.ipv4_mapped is not None:
        effective = client.ipv4_mapped
    net = ip_network(f"{network}/{prefix}", strict=False)
    expected = effective.version == net.version and effective in net
    assert result.result == ("pass" if expected else "fail")


@SETTINGS
@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30), st.text(max_size=60))
def test_received_spf_is_one_header_whatever_the_input(
    sender: str, helo: str, receiver: str, reason: str
) -> None:
    sender = sender.encode("utf-8", "replace").decode("utf-8")
    helo = helo.encode("utf-8", "replace").decode("utf-8")
    receiver = receiver.encode("utf-8", "replace").decode("utf-8")
    reason = reason.encode("utf-8", "replace").decode("utf-8")
    result = spf_result("temperror", sender=sender, reason=reason)
    header = received_spf(result, ip=str(ip_address(CLIENT)), helo=helo, receiver=receiver)
    text = unfold(header)
    assert text.startswith("Received-SPF: temperror (")
