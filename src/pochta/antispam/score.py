"""One spam score from the verdicts about a message, and what to do with it.

Design note
-----------
:func:`score` adds a weight for each piece of evidence; :func:`decide`
compares the total with the recipient domain's ``junk_score`` (default 5)
and ``reject_score`` (default 15). Weights, and why:

============================  ======  =============================================
reason                        weight  when
============================  ======  =============================================
``SPF_FAIL``                   +3.0   SPF ``fail``: the domain says "not from here"
                                      (RFC 7208 §2.6.4); forwarding breaks SPF, so
                                      not enough alone
``SPF_SOFTFAIL``               +1.0   ``softfail`` (§2.6.5: "probably not")
``SPF_PERMERROR``              +0.5   the domain's record is broken (§2.6.7)
``SPF_NONE``                   +0.5   no SPF record at all (§2.6.1)
``DKIM_FAIL``                  +2.0   a signature failed and none passed. RFC 6376
                                      §6.3 warns against deciding on a bad
                                      signature alone (lists alter bodies), so it
                                      only adds to a score
``DMARC_FAIL``                 +4.0   the From: domain is not authenticated
                                      (RFC 7489 §6.6.2); a ``reject`` disposition
                                      is refused and ``quarantine`` sent to Junk by
                                      the caller before scoring matters
``DMARC_PASS``                 -1.0   the From: domain is authenticated: a small
                                      credit, as any domain, spammers' too, can pass
``ARC_FAIL``                   +0.5   a broken ARC chain (RFC 8617 §5.2)
``DNSBL:<zone>``               +5.0   per block list that lists the client
                                      (RFC 5782); several lists add up
``NO_RDNS``                    +1.5   no forward-confirmed reverse DNS (RFC 8601
                                      §3 "iprev" fail)
``HELO_LIE``                   +2.0   HELO names us, our domain, a name that is not
                                      the client, or another address
``BAYES_00`` .. ``BAYES_99``   -3..+5 the recipient's own filter, in bands:
                                      ≤0.01 -3, ≤0.05 -2, ≤0.20 -1, 0.20..0.80 0,
                                      ≥0.80 +2, ≥0.95 +3.5, ≥0.99 +5
============================  ======  =============================================

So a DMARC failure plus an SPF failure (7) goes to Junk; a listed client
with a spammy Bayes verdict and a lying HELO (12) too; a reject needs
several strong signs together (e.g. a DNSBL hit, DMARC and SPF failing and
Bayes ≥0.99: 17). A message authenticated by DMARC that its recipient's
filter calls ham scores -4. Neutral verdicts (``pass`` for SPF and DKIM,
``neutral``, ``none``, the ``temperror`` results the caller turns into 451s)
weigh nothing and are not listed among the reasons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pochta.config import SpamPolicy

__all__ = [
    "WEIGHTS",
    "Decision",
    "Score",
    "Verdicts",
    "bayes_reason",
    "decide",
    "score",
    "spam_headers",
]

Decision = Literal["accept", "junk", "reject"]

#: Weights of the fixed reasons (see the module note).
WEIGHTS: dict[str, float] = {
    "SPF_FAIL": 3.0,
    "SPF_SOFTFAIL": 1.0,
    "SPF_PERMERROR": 0.5,
    "SPF_NONE": 0.5,
    "DKIM_FAIL": 2.0,
    "DMARC_FAIL": 4.0,
    "DMARC_PASS": -1.0,
    "ARC_FAIL": 0.5,
    "DNSBL": 5.0,
    "NO_RDNS": 1.5,
    "HELO_LIE": 2.0,
}

#: (lowest probability, reason, weight), highest band first; the ham bands
#: are matched from the bottom instead (see :func:`bayes_reason`).
_BAYES_SPAM = ((0.99, "BAYES_99", 5.0), (0.95, "BAYES_95", 3.5), (0.80, "BAYES_80", 2.0))
_BAYES_HAM = ((0.01, "BAYES_00", -3.0), (0.05, "BAYES_05", -2.0), (0.20, "BAYES_20", -1.0))

_SPF = {
    "fail": "SPF_FAIL",
    "softfail": "SPF_SOFTFAIL",
    "permerror": "SPF_PERMERROR",
    "none": "SPF_NONE",
}

# What a reason name may contain in a header (zone names come from the config).
_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")


@dataclass(frozen=True, slots=True)
class Verdicts:
    """Everything known about one message's origin and content."""

    spf: str | None = None
    """"pass", "fail", "softfail", "neutral", "none", "permerror", "temperror"."""
    dkim: tuple[str, ...] = ()
    """The result of each DKIM signature."""
    dmarc: str | None = None
    """"pass", "fail", "none", ..."""
    dmarc_policy: str | None = None
    """The disposition: "none", "quarantine", "reject" (acted on by the caller)."""
    arc: str | None = None
    dnsbl: tuple[str, ...] = ()
    """Zones that list the client."""
    rdns: bool | None = None
    """The client has forward-confirmed reverse DNS; None if unknown."""
    helo_lie: bool = False
    """HELO claims a name or address the client cannot honestly use."""
    bayes: float | None = None
    """Spam probability 0..1 from the recipient's filter; None if it has no opinion."""


@dataclass(frozen=True, slots=True)
class Score:
    """A total and the reasons that make it up, in the order they were found."""

    total: float
    reasons: tuple[tuple[str, float], ...]

    def describe(self) -> str:
        """``score=7.0 SPF_FAIL=3.0 DMARC_FAIL=4.0``, for logs and headers."""
        parts = [f"score={_number(self.total)}"]
        parts.extend(f"{name}={_number(weight)}" for name, weight in self.reasons)
        return " ".join(parts)


def _number(value: float) -> str:
    return f"{value:.1f}" if abs(value - round(value, 1)) < 1e-9 else f"{value:.2f}"


def bayes_reason(probability: float) -> tuple[str, float] | None:
    """The band of a Bayesian spam probability; None in the neutral middle."""
    if probability != probability:  # NaN: no opinion
        return None
    for lowest, name, weight in _BAYES_SPAM:
        if probability >= lowest:
            return name, weight
    for highest, name, weight in _BAYES_HAM:
        if probability <= highest:
            return name, weight
    return None


def score(verdicts: Verdicts) -> Score:
    """Add up the weights of ``verdicts`` (see the module note)."""
    reasons: list[tuple[str, float]] = []
    spf = _SPF.get((verdicts.spf or "").lower())
    if spf is not None:
        reasons.append((spf, WEIGHTS[spf]))
    dkim = {result.lower() for result in verdicts.dkim}
    if "fail" in dkim and "pass" not in dkim:
        reasons.append(("DKIM_FAIL", WEIGHTS["DKIM_FAIL"]))
    dmarc = (verdicts.dmarc or "").lower()
    if dmarc == "fail":
        reasons.append(("DMARC_FAIL", WEIGHTS["DMARC_FAIL"]))
    elif dmarc == "pass":
        reasons.append(("DMARC_PASS", WEIGHTS["DMARC_PASS"]))
    if (verdicts.arc or "").lower() == "fail":
        reasons.append(("ARC_FAIL", WEIGHTS["ARC_FAIL"]))
    seen: set[str] = set()
    for zone in verdicts.dnsbl:
        name = "DNSBL:" + _UNSAFE.sub("_", zone.lower().rstrip("."))[:100]
        if name not in seen:
            seen.add(name)
            reasons.append((name, WEIGHTS["DNSBL"]))
    if verdicts.rdns is False:
        reasons.append(("NO_RDNS", WEIGHTS["NO_RDNS"]))
    if verdicts.helo_lie:
        reasons.append(("HELO_LIE", WEIGHTS["HELO_LIE"]))
    if verdicts.bayes is not None:
        band = bayes_reason(verdicts.bayes)
        if band is not None:
            reasons.append(band)
    # Rounded so that 0.1 steps do not leave 4.999999 just under a threshold.
    total = round(sum(weight for _, weight in reasons), 6)
    return Score(total, tuple(reasons))


def decide(score: Score, policy: SpamPolicy) -> Decision:
    """ "reject" at ``reject_score`` or more, "junk" at ``junk_score`` or more."""
    if score.total >= policy.reject_score:
        return "reject"
    if score.total >= policy.junk_score:
        return "junk"
    return "accept"


#: RFC 5322 §2.1.1: lines SHOULD be at most 78 characters.
_LINE = 78


def spam_headers(score: Score, decision: str) -> bytes:
    """Our ``X-Spam-*`` header fields for a stored copy, CRLF-terminated.

    ::

        X-Spam-Flag: YES                 (only for junk and reject)
        X-Spam-Score: 7.0
        X-Spam-Status: Yes, score=7.0 decision=junk
         tests=SPF_FAIL=3.0,DMARC_FAIL=4.0

    Only printable ASCII from a fixed alphabet appears (reason names are
    sanitised), and long lists are folded (RFC 5322 §2.2.3), so the fields
    are always well formed whatever a zone name in the config holds.
    """
    spam = decision in ("junk", "reject")
    safe_decision = _UNSAFE.sub("_", decision)[:20] or "unknown"
    total = _number(score.total)
    tests = ",".join(
        f"{_UNSAFE.sub('_', name)[:110]}={_number(weight)}" for name, weight in score.reasons
    )
    status = f"X-Spam-Status: {'Yes' if spam else 'No'}, score={total} decision={safe_decision}"
    words = [f"tests={tests}" if tests else "tests=none"]
    lines = _fold(status, words)
    out = []
    if spam:
        out.append("X-Spam-Flag: YES")
    out.append(f"X-Spam-Score: {total}")
    out.extend(lines)
    return ("\r\n".join(out) + "\r\n").encode("ascii")


def _fold(first: str, words: list[str]) -> list[str]:
    """``first`` then ``words``, folded before a word or after a comma so that
    lines stay short; a single over-long item gets a line of its own."""
    pieces: list[str] = []
    for word in words:
        items = word.split(",")
        pieces.extend(item + "," for item in items[:-1])
        pieces.append(items[-1])
    lines = [first]
    for index, piece in enumerate(pieces):
        glue = " " if index == 0 else ""
        if len(lines[-1]) + len(glue) + len(piece) <= _LINE:
            lines[-1] += glue + piece
        else:
            lines.append(" " + piece)
    return lines
