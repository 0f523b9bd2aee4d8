"""The spam score, the accept/junk/reject decision and our X-Spam-* headers."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pochta.antispam.score import (
    WEIGHTS,
    Score,
    Verdicts,
    bayes_reason,
    decide,
    score,
    spam_headers,
)
from pochta.config import SpamPolicy


def names(s: Score) -> list[str]:
    return [name for name, _ in s.reasons]


def test_nothing_known_scores_zero() -> None:
    assert score(Verdicts()) == Score(0.0, ())


def test_clean_authenticated_message_gets_credit() -> None:
    result = score(Verdicts(spf="pass", dkim=("pass",), dmarc="pass", rdns=True, bayes=0.001))
    assert result.reasons == (("DMARC_PASS", -1.0), ("BAYES_00", -3.0))
    assert result.total == -4.0
    assert decide(result, SpamPolicy()) == "accept"


@pytest.mark.parametrize(
    ("spf", "reason"),
    [
        ("fail", "SPF_FAIL"),
        ("softfail", "SPF_SOFTFAIL"),
        ("permerror", "SPF_PERMERROR"),
        ("none", "SPF_NONE"),
        ("FAIL", "SPF_FAIL"),
    ],
)
def test_spf(spf: str, reason: str) -> None:
    assert score(Verdicts(spf=spf)).reasons == ((reason, WEIGHTS[reason]),)


@pytest.mark.parametrize("spf", ["pass", "neutral", "temperror", None])
def test_spf_neutral_results_weigh_nothing(spf: str | None) -> None:
    assert score(Verdicts(spf=spf)) == Score(0.0, ())


def test_dkim_fail_only_without_a_passing_signature() -> None:
    assert names(score(Verdicts(dkim=("fail",)))) == ["DKIM_FAIL"]
    assert names(score(Verdicts(dkim=("fail", "fail")))) == ["DKIM_FAIL"]
    assert score(Verdicts(dkim=("fail", "pass"))).reasons == ()
    assert score(Verdicts(dkim=("temperror", "permerror", "neutral"))).reasons == ()


def test_dmarc_and_arc() -> None:
    assert score(Verdicts(dmarc="fail", dmarc_policy="none")).total == 4.0
    assert score(Verdicts(dmarc="none")).total == 0.0
    assert score(Verdicts(arc="fail")).total == 0.5
    assert score(Verdicts(arc="pass")).total == 0.0


def test_each_dnsbl_zone_counts_once() -> None:
    result = score(Verdicts(dnsbl=("zen.test", "other.test", "ZEN.test.")))
    assert result.reasons == (("DNSBL:zen.test", 5.0), ("DNSBL:other.test", 5.0))
    assert result.total == 10.0


def test_rdns_and_helo() -> None:
    assert names(score(Verdicts(rdns=False))) == ["NO_RDNS"]
    assert score(Verdicts(rdns=None)).total == 0.0
    assert score(Verdicts(rdns=True)).total == 0.0
    assert score(Verdicts(helo_lie=True)).reasons == (("HELO_LIE", 2.0),)


@pytest.mark.parametrize(
    ("p", "band"),
    [
        (1.0, ("BAYES_99", 5.0)),
        (0.99, ("BAYES_99", 5.0)),
        (0.97, ("BAYES_95", 3.5)),
        (0.85, ("BAYES_80", 2.0)),
        (0.79, None),
        (0.5, None),
        (0.21, None),
        (0.2, ("BAYES_20", -1.0)),
        (0.04, ("BAYES_05", -2.0)),
        (0.01, ("BAYES_00", -3.0)),
        (0.0, ("BAYES_00", -3.0)),
        (float("nan"), None),
    ],
)
def test_bayes_bands(p: float, band: tuple[str, float] | None) -> None:
    assert bayes_reason(p) == band


@given(st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.0, max_value=1.0))
def test_bayes_weight_is_monotonic(a: float, b: float) -> None:
    low, high = sorted((a, b))
    weight = [0.0 if r is None else r[1] for r in (bayes_reason(low), bayes_reason(high))]
    assert -3.0 <= weight[0] <= weight[1] <= 5.0


def test_typical_spam_goes_to_junk_and_worse_is_rejected() -> None:
    policy = SpamPolicy()
    junk = score(Verdicts(spf="fail", dmarc="fail", dmarc_policy="none"))
    assert junk.total == 7.0
    assert decide(junk, policy) == "junk"
    worst = score(
        Verdicts(
            spf="fail",
            dkim=("fail",),
            dmarc="fail",
            dnsbl=("zen.test",),
            rdns=False,
            helo_lie=True,
            bayes=0.999,
        )
    )
    assert worst.total == 22.5
    assert decide(worst, policy) == "reject"


def test_decide_thresholds_are_inclusive() -> None:
    policy = SpamPolicy(junk_score=5.0, reject_score=15.0)
    assert decide(Score(4.9, ()), policy) == "accept"
    assert decide(Score(5.0, ()), policy) == "junk"
    assert decide(Score(14.9, ()), policy) == "junk"
    assert decide(Score(15.0, ()), policy) == "reject"
    assert decide(Score(-10.0, ()), policy) == "accept"
    strict = SpamPolicy(junk_score=2.0, reject_score=6.0)
    assert decide(score(Verdicts(helo_lie=True)), strict) == "junk"
    assert decide(score(Verdicts(dnsbl=("z.test",), rdns=False)), strict) == "reject"


def test_total_has_no_float_dust() -> None:
    # 0.5 + 1.0 + 1.5 + 2.0 ... sum exactly; rounding guards odd combinations.
    result = score(Verdicts(spf="none", arc="fail", rdns=False, helo_lie=True, bayes=0.85))
    assert result.total == 6.5


def test_describe() -> None:
    result = score(Verdicts(spf="fail", dkim=("fail",), dmarc="pass"))
    assert result.describe() == "score=4.0 SPF_FAIL=3.0 DKIM_FAIL=2.0 DMARC_PASS=-1.0"
    assert Score(0.0, ()).describe() == "score=0.0"
    assert Score(1.25, (("X", 1.25),)).describe() == "score=1.25 X=1.25"


def test_spam_headers_for_junk() -> None:
    result = score(Verdicts(spf="fail", dmarc="fail"))
    assert spam_headers(result, "junk") == (
        b"X-Spam-Flag: YES\r\n"
        b"X-Spam-Score: 7.0\r\n"
        b"X-Spam-Status: Yes, score=7.0 decision=junk tests=SPF_FAIL=3.0,DMARC_FAIL=4.0\r\n"
    )


def test_spam_headers_for_clean_mail() -> None:
    assert spam_headers(score(Verdicts()), "accept") == (
        b"X-Spam-Score: 0.0\r\nX-Spam-Status: No, score=0.0 decision=accept tests=none\r\n"
    )


def test_spam_headers_fold_and_sanitise() -> None:
    zones = (*(f"list{i}.example.test" for i in range(12)), "evil\r\nBcc: x@y.test")
    result = score(Verdicts(dnsbl=zones, spf="fail"))
    block = spam_headers(result, "reject")
    text = block.decode("ascii")
    lines = text.split("\r\n")
    assert lines[-1] == ""
    for line in lines[:-1]:
        assert len(line) <= 78
        assert re.fullmatch(r"[ -~]+", line)
    # Continuation lines start with a blank (RFC 5322 §2.2.3); no injected field.
    fields = [line for line in lines[:-1] if not line.startswith(" ")]
    assert [f.split(":", 1)[0] for f in fields] == ["X-Spam-Flag", "X-Spam-Score", "X-Spam-Status"]
    unfolded = text.replace("\r\n ", " ")
    assert "DNSBL:list11.example.test=5.0" in unfolded
    # Neutralised, inside the value: no line can start a new field.
    assert "DNSBL:evil__bcc:_x_y.test=5.0" in unfolded


def test_spam_headers_unknown_decision_is_neutralised() -> None:
    block = spam_headers(Score(1.0, ()), "reject\r\nInjected: yes")
    assert block.count(b"\r\n") == 2
    assert b"decision=reject__Injected:_" in block
    assert b"X-Spam-Flag" not in block


@given(
    st.lists(st.text(max_size=30), max_size=8),
    st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
)
def test_spam_headers_always_well_formed(zones: list[str], decision: str, extra: float) -> None:
    result = score(Verdicts(dnsbl=tuple(zones)))
    result = Score(result.total + extra, (*result.reasons, ("EXTRA", extra)))
    block = spam_headers(result, decision)
    assert block.endswith(b"\r\n")
    for line in block.split(b"\r\n")[:-1]:
        assert line and len(line) <= 998  # RFC 5322 §2.1.1
        assert re.fullmatch(rb"[ -~]+", line)
