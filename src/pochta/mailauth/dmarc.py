"""DMARC (RFC 7489): policy records, policy discovery, alignment, disposition.

Design note
-----------
:func:`check_dmarc` is a function of (resolver, inputs): the caller has
already run SPF and DKIM and passes their outcomes; here we find the policy
record, decide whether an authenticated identifier aligns with the
RFC5322.From domain, and say what the domain owner asks us to do with a
message that fails. Nothing is enforced here; the SMTP layer turns
``disposition`` into a reply or a folder.

Decisions where RFC 7489 leaves room, so that they are made once:

* **Record syntax (§6.3, §6.4).** Tag names are case-insensitive (quoted
  strings in ABNF are, RFC 5234 §2.3); ``v`` must be the first tag and its
  value exactly ``DMARC1`` (the ABNF spells it in hex, §6.3 "MUST match
  precisely"); unknown tags are ignored (§6.3); a repeated tag makes the
  record invalid (the DKIM tag-list rules §6.3 refers to, RFC 6376 §3.2).
  A missing or invalid ``p``, or an invalid ``sp``, follows §6.6.3 step 6:
  with at least one valid ``rua`` URI the record counts as ``p=none``,
  otherwise :class:`DMARCRecordError`. An invalid value of an optional tag
  (``pct=abc``, ``adkim=x``) is ignored and the default used, as for an
  unknown tag: a typo must not make a policy stricter than written.
* **Results (RFC 8601 §2.7.1).** No record, or several (§6.6.3 step 5),
  is ``none``; a DNS timeout or SERVFAIL is ``temperror`` (§6.6.3 leaves
  the handling to us; the caller may answer 4xx); a record that starts
  with ``v=DMARC1`` but is invalid, or a lookup that can never succeed, is
  ``permerror``. For all of these the disposition is ``none``: DMARC is
  not applied (§6.6.3 steps 5 and 6.2).
* **Sampling (§6.6.4).** A failing message is subject to the policy with
  probability ``pct``/100; one that is not gets the next policy down:
  ``reject`` -> ``quarantine``, ``quarantine`` -> ``none``.
* **np** (RFC 9091 §4.1, non-existent subdomains) is parsed but not
  applied: applying it needs a further lookup proving the From domain does
  not exist; until then ``sp``/``p`` apply, which is RFC 7489 behaviour.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

from pochta.accounts.address import AddressError, parse_domain
from pochta.dns.records import PermanentDNSError, TemporaryDNSError
from pochta.dns.resolver import Resolver
from pochta.mailauth.orgdomain import aligned, normalize_domain, organizational_domain
from pochta.mime.address import parse_address_list
from pochta.mime.headers import header_fields, text
from pochta.mime.params import strip_comments

__all__ = [
    "DMARCRecord",
    "DMARCRecordError",
    "DMARCResult",
    "Policy",
    "check_dmarc",
    "from_domain",
    "is_dmarc_record",
    "parse_record",
]

Policy = Literal["none", "quarantine", "reject"]
Mode = Literal["r", "s"]
Outcome = Literal["none", "pass", "fail", "temperror", "permerror"]

_POLICIES: frozenset[str] = frozenset({"none", "quarantine", "reject"})
#: §6.6.4: what a failing message gets when pct sampling leaves it out.
_NEXT_DOWN: dict[Policy, Policy] = {"reject": "quarantine", "quarantine": "none", "none": "none"}

# §6.4 dmarc-version at the start of a record; leading blanks are tolerated.
_VERSION = re.compile(r"[ \t]*[vV][ \t]*=[ \t]*DMARC1[ \t]*(?:;|\Z)")
# RFC 6376 §3.2 tag-name = ALPHA *ALNUMPUNC.
_TAG_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# §6.4 dmarc-uri = URI [ "!" 1*DIGIT [ "k" / "m" / "g" / "t" ] ]; the URI
# part is checked only for a scheme (RFC 3986 §3.1) and no blanks.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\s!,;]+(?:![0-9]+[kmgtKMGT]?)?")
_FO = frozenset({"0", "1", "d", "s"})
_KEYWORD = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")

_RNG = random.Random()


class DMARCRecordError(ValueError):
    """A TXT record that is not a usable DMARC policy record; the message says why."""


@dataclass(frozen=True, slots=True)
class DMARCRecord:
    """A parsed DMARC policy record (RFC 7489 §6.3); defaults are the RFC's."""

    p: Policy
    """Requested policy for the domain (and its subdomains unless ``sp``)."""
    sp: Policy | None = None
    """Policy for subdomains of an Organizational Domain; None: ``p`` applies."""
    np: Policy | None = None
    """RFC 9091 §4.1 policy for non-existent subdomains; parsed, not applied."""
    adkim: Mode = "r"
    aspf: Mode = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()
    """Aggregate report URIs as written, size limit (``!10m``) included."""
    ruf: tuple[str, ...] = ()
    fo: tuple[str, ...] = ("0",)
    rf: tuple[str, ...] = ("afrf",)
    ri: int = 86400
    p_fallback: bool = False
    """``p`` (or ``sp``) was missing or invalid and the record was taken
    as ``p=none`` because it names a report URI (§6.6.3 step 6.1)."""

    @property
    def subdomain_policy(self) -> Policy:
        """The policy for a subdomain of the domain holding the record (§6.3 ``sp``)."""
        return self.sp if self.sp is not None else self.p


@dataclass(frozen=True, slots=True)
class DMARCResult:
    """The outcome of :func:`check_dmarc` for one message."""

    result: Outcome
    domain: str
    """The RFC5322.From domain evaluated (normalized)."""
    policy_domain: str
    """Where the record was found: the From domain or its Organizational
    Domain; ``""`` when no record was found."""
    policy: Policy
    """The policy the domain owner requests for this message (``sp`` when the
    record came from the Organizational Domain and From is a subdomain);
    ``none`` unless ``result`` is ``pass`` or ``fail``."""
    disposition: Policy
    """What to do with the message: ``none`` for a pass, else ``policy``
    after ``pct`` sampling (§6.6.4)."""
    spf_aligned: bool
    dkim_aligned: bool
    record: str
    """The record text as published, ``""`` when none was used."""
    reason: str
    """One human-readable line, e.g. for a ``reason=`` in Authentication-Results."""


def is_dmarc_record(record: str) -> bool:
    """Whether a TXT record starts with ``v=DMARC1`` (§6.6.3 steps 2 and 4)."""
    return _VERSION.match(record) is not None


def _policy(value: str) -> Policy | None:
    lowered = value.lower()
    return cast(Policy, lowered) if lowered in _POLICIES else None


def _uris(value: str) -> tuple[str, ...]:
    """The syntactically valid URIs of a ``rua``/``ruf`` list (§6.4, comma-separated)."""
    out: list[str] = []
    for item in value.split(","):
        uri = item.strip(" \t")
        if _URI.fullmatch(uri):
            out.append(uri)
    return tuple(out)


def _mode(value: str) -> Mode | None:
    lowered = value.lower()
    return cast(Mode, lowered) if lowered in ("r", "s") else None


def parse_record(text: str) -> DMARCRecord:
    """Parse a DMARC TXT record (RFC 7489 §6.3, §6.4); see the module note.

    Raises :class:`DMARCRecordError` when the record does not start with
    ``v=DMARC1``, repeats a tag, or has no valid ``p`` (or an invalid
    ``sp``) and no valid ``rua`` to fall back on (§6.6.3 step 6.2).
    """
    if not is_dmarc_record(text):
        raise DMARCRecordError("the record does not start with v=DMARC1 (RFC 7489 §6.3)")
    tags: dict[str, str] = {}
    for part in text.split(";")[1:]:
        spec = part.strip(" \t")
        if not spec:
            continue  # the optional final separator (§6.4), or a doubled one
        name, eq, value = spec.partition("=")
        name = name.rstrip(" \t").lower()
        if not eq or not _TAG_NAME.fullmatch(name):
            continue  # not a tag-spec at all: ignored like an unknown tag
        if name in tags or name == "v":
            raise DMARCRecordError(f"tag {name!r} occurs more than once (RFC 6376 §3.2)")
        tags[name] = value.strip(" \t")

    rua = _uris(tags.get("rua", ""))
    p = _policy(tags["p"]) if "p" in tags else None
    sp = _policy(tags["sp"]) if "sp" in tags else None
    sp_invalid = "sp" in tags and sp is None
    fallback = False
    if p is None or sp_invalid:
        if not rua:
            what = "an invalid sp" if p is not None else "no valid p"
            raise DMARCRecordError(
                f"the record has {what} and no valid rua (RFC 7489 §6.6.3 step 6)"
            )
        # §6.6.3 step 6.1: act as if "v=DMARC1; p=none" had been published.
        p, sp, fallback = "none", None, True

    pct = 100
    raw_pct = tags.get("pct", "")
    if re.fullmatch(r"[0-9]{1,3}", raw_pct) and int(raw_pct) <= 100:
        pct = int(raw_pct)
    ri = 86400
    raw_ri = tags.get("ri", "")
    if re.fullmatch(r"[0-9]{1,10}", raw_ri):
        ri = int(raw_ri)
    fo: tuple[str, ...] = ("0",)
    if "fo" in tags:
        options = tuple(o.strip(" \t").lower() for o in tags["fo"].split(":"))
        if options and all(o in _FO for o in options):
            fo = options
    rf: tuple[str, ...] = ("afrf",)
    if "rf" in tags:
        formats = tuple(f.strip(" \t").lower() for f in tags["rf"].split(":"))
        if formats and all(_KEYWORD.fullmatch(f) for f in formats):
            rf = formats
    return DMARCRecord(
        p=p,
        sp=sp,
        np=_policy(tags["np"]) if "np" in tags else None,
        adkim=_mode(tags.get("adkim", "")) or "r",
        aspf=_mode(tags.get("aspf", "")) or "r",
        pct=pct,
        rua=rua,
        ruf=_uris(tags.get("ruf", "")),
        fo=fo,
        rf=rf,
        ri=ri,
        p_fallback=fallback,
    )


@dataclass(frozen=True, slots=True)
class _Lookup:
    """Outcome of one ``_dmarc`` query: the DMARC records, or an error result."""

    records: tuple[str, ...]
    error: tuple[Outcome, str] | None = None


async def _query(resolver: Resolver, domain: str) -> _Lookup:
    name = f"_dmarc.{domain}"
    try:
        answer = await resolver.txt(name)
    except TemporaryDNSError as exc:
        return _Lookup((), ("temperror", str(exc)))
    except PermanentDNSError as exc:
        return _Lookup((), ("permerror", str(exc)))
    # §6.6.3 steps 2 and 4: only records that start with v=DMARC1 count.
    return _Lookup(tuple(r.text for r in answer.records if is_dmarc_record(r.text)))


async def check_dmarc(
    resolver: Resolver,
    from_domain: str,
    *,
    spf_result: str,
    spf_domain: str,
    dkim_pass_domains: Sequence[str],
    rng: random.Random | None = None,
) -> DMARCResult:
    """Evaluate DMARC for a message whose RFC5322.From domain is ``from_domain``.

    ``spf_result`` is the SPF result for ``spf_domain``, the RFC5321.MailFrom
    domain (or the HELO domain when MAIL FROM was null, RFC 7489 §3.1.2 and
    RFC 7208 §2.4); ``dkim_pass_domains`` are the ``d=`` domains of the DKIM
    signatures that verified. ``rng`` drives ``pct`` sampling (seed it in
    tests). Never raises for DNS trouble; see :class:`DMARCResult`.
    """
    domain = normalize_domain(from_domain)

    def outcome(
        result: Outcome,
        reason: str,
        *,
        policy_domain: str = "",
        record: DMARCRecord | None = None,
        record_text: str = "",
        policy: Policy = "none",
        disposition: Policy = "none",
    ) -> DMARCResult:
        spf_ok, dkim_ok = _alignment(domain, record, spf_result, spf_domain, dkim_pass_domains)
        return DMARCResult(
            result=result,
            domain=domain,
            policy_domain=policy_domain,
            policy=policy,
            disposition=disposition,
            spf_aligned=spf_ok,
            dkim_aligned=dkim_ok,
            record=record_text,
            reason=reason,
        )

    if not domain:
        return outcome("permerror", "no RFC5322.From domain (RFC 7489 §6.6.1)")

    # §6.6.3 steps 1-4: the From domain first, then its Organizational Domain.
    policy_domain = domain
    found = await _query(resolver, domain)
    if found.error is None and not found.records:
        org = organizational_domain(domain)
        if org != domain:
            policy_domain = org
            found = await _query(resolver, org)
    if found.error is not None:
        result, message = found.error
        return outcome(result, message, policy_domain=policy_domain)
    if not found.records:
        return outcome("none", f"no DMARC record for {domain}")
    if len(found.records) > 1:
        # §6.6.3 step 5: several records, DMARC is not applied.
        return outcome(
            "none",
            f"{len(found.records)} DMARC records at _dmarc.{policy_domain} (RFC 7489 §6.6.3)",
            policy_domain=policy_domain,
        )
    text_ = found.records[0]
    try:
        record = parse_record(text_)
    except DMARCRecordError as exc:
        return outcome(
            "permerror",
            f"invalid DMARC record at _dmarc.{policy_domain}: {exc}",
            policy_domain=policy_domain,
            record_text=text_,
        )

    # §6.3 sp: a record found at the Organizational Domain speaks for the
    # subdomain From with its subdomain policy.
    policy = record.subdomain_policy if policy_domain != domain else record.p
    spf_ok, dkim_ok = _alignment(domain, record, spf_result, spf_domain, dkim_pass_domains)
    if spf_ok or dkim_ok:
        which = " and ".join(name for name, ok in (("SPF", spf_ok), ("DKIM", dkim_ok)) if ok)
        return outcome(
            "pass",
            f"aligned {which} pass",
            policy_domain=policy_domain,
            record=record,
            record_text=text_,
            policy=policy,
        )

    disposition = policy
    reason = "no aligned SPF or DKIM pass"
    if policy != "none" and record.pct < 100:
        sampled = record.pct > 0 and (rng or _RNG).randrange(100) < record.pct
        if not sampled:
            disposition = _NEXT_DOWN[policy]
            reason += f"; not sampled (pct={record.pct}), {disposition} instead of {policy}"
    return outcome(
        "fail",
        reason,
        policy_domain=policy_domain,
        record=record,
        record_text=text_,
        policy=policy,
        disposition=disposition,
    )


def _alignment(
    domain: str,
    record: DMARCRecord | None,
    spf_result: str,
    spf_domain: str,
    dkim_pass_domains: Sequence[str],
) -> tuple[bool, bool]:
    """(SPF aligned, DKIM aligned) per §3.1.1 and §3.1.2.

    Without a record the default relaxed modes are used, so that a
    ``none`` result still tells what would have aligned.
    """
    if not domain:
        return False, False
    aspf: Mode = record.aspf if record is not None else "r"
    adkim: Mode = record.adkim if record is not None else "r"
    spf_ok = spf_result.strip().lower() == "pass" and aligned(spf_domain, domain, aspf)
    dkim_ok = any(aligned(d, domain, adkim) for d in dkim_pass_domains)
    return spf_ok, dkim_ok


def from_domain(message: bytes) -> str | None:
    """The RFC5322.From domain of ``message`` (RFC 7489 §6.6.1), normalized.

    Returns None unless the header has exactly one From field holding
    exactly one mailbox whose domain is a valid domain name (lower case,
    A-labels). A message without one -- no From, two From fields (RFC 5322
    §3.6 allows one), several authors, group syntax (not allowed in From,
    RFC 5322 §3.6.2), no or an invalid domain, an address literal --
    cannot be evaluated: §6.6.1 says such messages are typically rejected,
    and the caller should treat None as a failing, invalid message rather
    than skip DMARC, or the check is trivially evaded. Encoded-words
    (RFC 2047) may only appear in the display name, which is not examined.
    """
    values = [v for name, v in header_fields(message, 0, len(message)) if name.lower() == b"from"]
    if len(values) != 1:
        return None
    value = text(values[0])
    addresses = parse_address_list(value)
    if len(addresses) != 1:
        return None  # several mailboxes, or a group (start and end markers)
    host = addresses[0].host
    if not host or addresses[0].mailbox is None:
        return None
    # The tolerant address parser joins the atoms of a domain, so that
    # "a@exa mple.com" reads as example.com. Such a domain is not what a
    # reader sees (and not RFC 5322 syntax): insist it was written in one piece.
    if not re.search(rf"@[ \t]*{re.escape(host)}[ \t]*(?:>|,|\Z)", strip_comments(value)):
        return None
    try:
        return parse_domain(host)
    except AddressError:
        return None
