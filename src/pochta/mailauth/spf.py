"""SPF, RFC 7208: is this client allowed to use this domain in MAIL FROM / HELO?

Design note
-----------
:func:`check_host` is the function of RFC 7208 §4, asynchronous and driven
by a :class:`~pochta.dns.Resolver` (so unit tests and the openspf test suite
run it against :class:`~pochta.dns.DictResolver`). One call builds an
``_Evaluation`` that carries what §4.6.4 says must be global to the whole
check, includes and redirects included: the count of DNS-querying terms
(include, a, mx, ptr, exists, redirect; at most 10), the count of void
lookups (at most 2), and the client's PTR names. Terminal outcomes --
permerror and temperror, which end the check wherever they happen (§4.4,
§4.6.4, §5.2) -- travel as the private ``_Abort`` exception; every other
outcome is returned.

Records are parsed whole before evaluation (:mod:`.spf_record`), macros are
expanded by :mod:`.spf_macro`. :func:`verify_sender` runs the HELO and MAIL
FROM checks an MX does (§2.3, §2.4) and :func:`received_spf` writes the trace
header of §9.1.

Choices where RFC 7208 leaves room (each also a test in the openspf suite):

* A target name that cannot be a DNS name after expansion (an empty label,
  a label over 63 octets, non-ASCII from a macro) makes a, mx, ptr and exists
  not match, like a name that does not exist (§4.3 by analogy; the RFC calls
  the case undefined); for include and redirect it is a permerror (§5.2,
  §6.1).
* More than 10 MX names is a permerror (§4.6.4); PTR names after the 10th
  are ignored; each term's own query (not the address lookups of MX and PTR
  names) counts as a void lookup when it is NXDOMAIN or empty.
* DNS errors: a failed PTR query makes ptr not match, a failed address
  lookup of a PTR name skips that name (§5.5); elsewhere a temporary error
  is temperror (§5) and a permanent one (a malformed answer) permerror.
* The whole check is bounded by ``SPFLimits.timeout`` (20 s, §4.6.4) and
  gives temperror when that runs out.
* Explanations are cut to ``MAX_EXPLANATION`` characters of printable
  ASCII: they go into an SMTP reply, whose line holds 512 octets.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal

from pochta.dns.records import (
    MX,
    Answer,
    DNSError,
    IPAddress,
)
from pochta.dns.resolver import Resolver
from pochta.mailauth.spf_macro import (
    MacroString,
    MacroSyntaxError,
    MacroValues,
    expand_domain,
    parse_explain_string,
)
from pochta.mailauth.spf_record import (
    DNS_MECHANISMS,
    Mechanism,
    Record,
    SPFSyntaxError,
    is_spf_record,
    parse_record,
)

__all__ = [
    "DEFAULT_EXPLANATION",
    "DEFAULT_LIMITS",
    "SPFLimits",
    "SPFResult",
    "SPFResultName",
    "check_host",
    "received_spf",
    "verify_sender",
]

SPFResultName = Literal["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"]
Identity = Literal["mailfrom", "helo"]

#: The explanation of a fail when the record has no usable ``exp=`` (§6.2 allows a
#: default); a macro string expanded like ``exp`` text.
DEFAULT_EXPLANATION = "%{o} does not designate %{c} as a permitted sender"

_QUALIFIER_RESULT: dict[str, SPFResultName] = {
    "+": "pass",
    "-": "fail",
    "~": "softfail",
    "?": "neutral",
}

#: Longest explanation returned; a reply line holds 512 octets (RFC 5321 §4.5.3.1.5).
MAX_EXPLANATION = 400

#: LDH labels (and "_", seen in the wild) for the domain a check starts from.
_LDH_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


@dataclass(frozen=True, slots=True)
class SPFResult:
    """The outcome of one SPF check (RFC 7208 §2.6)."""

    result: SPFResultName
    identity: Identity
    domain: str
    """The domain whose policy was checked (lower case, A-labels)."""
    sender: str
    """The <sender> used (postmaster@helo for a null MAIL FROM, §2.4)."""
    explanation: str
    """For fail: the ``exp=`` text (§6.2) or a default; otherwise ""."""
    reason: str
    """Short human text: the matched mechanism, or the error."""


@dataclass(frozen=True, slots=True)
class SPFLimits:
    """The processing limits of RFC 7208 §4.6.4, with its defaults."""

    dns_mechanisms: int = 10
    """Terms that query DNS (include, a, mx, ptr, exists, redirect) per check."""
    mx_names: int = 10
    """MX names one mx mechanism may look at; more is a permerror."""
    ptr_names: int = 10
    """PTR names looked at for ptr and %{p}; the rest are ignored."""
    void_lookups: int = 2
    """Term lookups answering NXDOMAIN or no records; more is a permerror."""
    timeout: float = 20.0
    """Seconds for the whole check ("SHOULD allow at least 20 seconds")."""


DEFAULT_LIMITS = SPFLimits()


class _Abort(Exception):
    """permerror / temperror: the check ends here, however deep (§4.4, §4.6.4, §5.2)."""

    def __init__(self, result: Literal["permerror", "temperror"], reason: str) -> None:
        super().__init__(reason)
        self.result: SPFResultName = result
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Outcome:
    """A non-error result of one check_host() level."""

    result: SPFResultName
    reason: str
    values: MacroValues | None = None
    """The macro values of the record that decided (for its explanation)."""
    exp: MacroString | None = None
    """That record's ``exp=`` (§6.2: only the deciding record's counts)."""


def _abort_for(exc: DNSError) -> _Abort:
    return _Abort("temperror" if exc.temporary else "permerror", str(exc))


def _clean(text: str) -> str:
    """Printable ASCII only: explanations and reasons end up in SMTP replies."""
    return "".join(ch if " " <= ch <= "~" else "?" for ch in text)


def _no_controls(text: str) -> str:
    """No control characters (CR, LF, NUL, C1) from untrusted input; UTF-8 stays.

    Lone surrogates (bytes that were not UTF-8, kept by ``surrogateescape``,
    e.g. a HELO of ``bad\\xff``) become "?" too: the field is written as
    UTF-8, which cannot encode them, and the mail must not wait for ever.
    """
    return "".join(
        "?" if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or 0xD800 <= ord(ch) <= 0xDFFF else ch
        for ch in text
    )


def _lookup_problem(name: str) -> str | None:
    """Why ``name`` cannot be asked of DNS, or ``None`` (RFC 1035 §2.3.4)."""
    if not name:
        return "empty name"
    if not name.isascii():
        return "not ASCII"
    if len(name) > 253:
        return "longer than 253 characters"
    for label in name.split("."):
        if not label:
            return "empty label"
        if len(label) > 63:
            return "label longer than 63 characters"
    return None


def _domain_problem(name: str) -> str | None:
    """§4.3: why ``name`` is not a domain a check can start from, or ``None``.

    Malformed (empty or over-long labels), not multi-label, or not a host
    name at all (an address literal, a dotted quad, other characters).
    """
    problem = _lookup_problem(name)
    if problem is not None:
        return problem
    labels = name.split(".")
    if len(labels) < 2:
        return "not a fully qualified domain name"
    if not all(_LDH_LABEL.fullmatch(label) for label in labels):
        return "not a host name"
    if labels[-1].isdigit():
        return "an address, not a domain name"
    return None


def _to_ascii(domain: str) -> str:
    """A-labels for a domain given with U-labels (§4.3 requires A-labels).

    A name that cannot be converted is returned as it is, and then fails
    the §4.3 checks.
    """
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _strip_dot(name: str) -> str:
    return name[:-1] if name.endswith(".") else name


def _client_address(ip: str | IPv4Address | IPv6Address) -> IPAddress:
    """The <ip>; an IPv4-mapped IPv6 address is the IPv4 address (§5, 4th paragraph)."""
    address = ip if isinstance(ip, IPv4Address | IPv6Address) else ip_address(ip.strip())
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return IPv6Address(address.packed)
    return address


def _normal_sender(sender: str, domain: str) -> str:
    """§4.3: "If the <sender> has no local-part, substitute the string "postmaster"."""
    sender = sender.strip()
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1]
    if "@" in sender:
        local, _, sender_domain = sender.rpartition("@")
    else:
        local, sender_domain = "", sender or domain
    return f"{local or 'postmaster'}@{_to_ascii(_strip_dot(sender_domain))}"


class _Evaluation:
    """State shared by every level of one check (§4.6.4: limits are global)."""

    def __init__(
        self,
        resolver: Resolver,
        ip: IPAddress,
        *,
        helo: str,
        receiver: str,
        limits: SPFLimits,
    ) -> None:
        self.resolver = resolver
        self.ip = ip
        self.helo = helo
        self.receiver = receiver
        self.limits = limits
        self.timestamp = int(time.time())
        self.dns_terms = 0
        self.voids = 0
        self._ptr: tuple[str, ...] | None = None
        self._ptr_asked = False

    # ------------------------------------------------------------ counting

    def _count_term(self) -> None:
        self.dns_terms += 1
        if self.dns_terms > self.limits.dns_mechanisms:
            raise _Abort(
                "permerror", f"too many DNS lookups (more than {self.limits.dns_mechanisms})"
            )

    def _void(self, records: Sequence[object]) -> None:
        """§4.6.4: count a term's lookup that found nothing (NXDOMAIN or no records)."""
        if records:
            return
        self.voids += 1
        if self.voids > self.limits.void_lookups:
            raise _Abort(
                "permerror", f"too many void DNS lookups (more than {self.limits.void_lookups})"
            )

    # ------------------------------------------------------------ check_host

    async def check(self, domain: str, sender: str, *, top: bool = False) -> _Outcome:
        """check_host(<ip>, domain, sender) of §4; raises ``_Abort`` for the errors.

        The domain a check starts from must be a host name (§4.3); the targets
        of include and redirect only need to be askable, since macros may put
        any visible character into them (§7.1).
        """
        problem = _domain_problem(domain) if top else _lookup_problem(domain)
        if problem is not None:
            return _Outcome("none", f"{domain!r} is not a usable domain name: {problem}")
        record = await self._record(domain)
        if record is None:
            return _Outcome("none", f"no SPF record at {domain}")
        values = MacroValues(
            sender,
            domain,
            self.ip,
            helo=self.helo,
            receiver=self.receiver,
            timestamp=self.timestamp,
        )
        for mechanism in record.mechanisms:
            if await self._matches(mechanism, values):
                result = _QUALIFIER_RESULT[mechanism.qualifier]
                reason = f"matched {mechanism.text} at {domain}"
                return _Outcome(result, reason, values, record.exp)
        if record.redirect is not None:
            # §6.1: redirect applies only when no mechanism matched, and its
            # result (with the target's own exp=, §6.2) is the result.
            self._count_term()
            target = await self._expand(record.redirect, values)
            outcome = await self.check(target, sender)
            if outcome.result == "none":
                raise _Abort("permerror", f"redirect={target} at {domain}: {outcome.reason}")
            return outcome
        # §4.7: "If none of the mechanisms match and there is no "redirect"
        # modifier, then the check_host() returns a result of "neutral"".
        return _Outcome("neutral", f"no mechanism matched at {domain}", values, record.exp)

    async def _record(self, domain: str) -> Record | None:
        """The SPF record of ``domain`` (§4.4, §4.5), ``None`` when there is none."""
        try:
            answer = await self.resolver.txt(domain)
        except DNSError as exc:
            raise _abort_for(exc) from None
        # §4.5: only TXT records starting "v=spf1"; the strings of one record
        # are glued without separator (§3.3); other TXT records are ignored,
        # whatever bytes they contain. Type SPF (99) is never asked (§3.1).
        records = [txt.joined for txt in answer.records if is_spf_record(txt.joined)]
        if not records:
            return None
        if len(records) > 1:
            raise _Abort("permerror", f"{domain} publishes {len(records)} SPF records")
        try:
            text = records[0].decode("ascii")
        except UnicodeDecodeError:
            raise _Abort("permerror", f"the SPF record of {domain} is not ASCII") from None
        try:
            return parse_record(text)
        except SPFSyntaxError as exc:
            raise _Abort("permerror", f"bad SPF record at {domain}: {exc}") from None

    # ------------------------------------------------------------ mechanisms

    async def _matches(self, mechanism: Mechanism, values: MacroValues) -> bool:
        kind = mechanism.kind
        if kind == "all":
            return True
        if kind in ("ip4", "ip6"):
            network = mechanism.network
            # §5.6: ip4 only ever matches an IPv4 client and ip6 an IPv6 one.
            return (
                network is not None and network.version == self.ip.version and (self.ip in network)
            )
        assert kind in DNS_MECHANISMS
        self._count_term()
        target = values.domain
        if mechanism.domain is not None:
            target = await self._expand(mechanism.domain, values)
        if kind == "include":
            return await self._include(target, values.sender, values.domain)
        if _lookup_problem(target) is not None:
            return False
        if kind == "a":
            return await self._a(target, mechanism)
        if kind == "mx":
            return await self._mx(target, mechanism)
        if kind == "ptr":
            return await self._ptr_matches(target)
        return await self._exists(target)

    async def _include(self, target: str, sender: str, domain: str) -> bool:
        """§5.2: recursive check_host(); pass matches, fail/softfail/neutral do not."""
        outcome = await self.check(target, sender)
        if outcome.result == "pass":
            return True
        if outcome.result == "none":
            # §5.2 table: an included domain without a record is a permerror.
            raise _Abort("permerror", f"include:{target} at {domain}: {outcome.reason}")
        return False

    async def _addresses(self, name: str) -> Answer[IPv4Address] | Answer[IPv6Address]:
        """A for an IPv4 client, AAAA for an IPv6 one (§5)."""
        if self.ip.version == 4:
            return await self.resolver.a(name)
        return await self.resolver.aaaa(name)

    def _in(self, addresses: Sequence[IPAddress], mechanism: Mechanism) -> bool:
        """§5.3: does <ip> fall in <address>/<cidr> for any of the addresses?"""
        bits = mechanism.cidr4 if self.ip.version == 4 else mechanism.cidr6
        width = 32 if self.ip.version == 4 else 128
        shift = width - bits
        mine = int(self.ip) >> shift
        return any(a.version == self.ip.version and int(a) >> shift == mine for a in addresses)

    async def _a(self, target: str, mechanism: Mechanism) -> bool:
        try:
            answer = await self._addresses(target)
        except DNSError as exc:
            raise _abort_for(exc) from None
        self._void(answer.records)
        return self._in(answer.records, mechanism)

    async def _mx(self, target: str, mechanism: Mechanism) -> bool:
        """§5.4: the addresses of the MX hosts, never the implicit MX."""
        try:
            answer = await self.resolver.mx(target)
        except DNSError as exc:
            raise _abort_for(exc) from None
        self._void(answer.records)
        if len(answer.records) > self.limits.mx_names:
            # §4.6.4: "If this limit is exceeded, the "mx" mechanism MUST
            # produce a "permerror" result."
            raise _Abort(
                "permerror",
                f"{target} has {len(answer.records)} MX records (more than {self.limits.mx_names})",
            )
        records: list[MX] = sorted(answer.records)
        # A null MX (RFC 7505) names no host; names that cannot be asked are skipped.
        hosts = [r.exchange for r in records if _lookup_problem(r.exchange) is None]
        results = await asyncio.gather(
            *(self._addresses(host) for host in hosts), return_exceptions=True
        )
        # MX hosts have no order in §5.4, so a match anywhere wins over an
        # error elsewhere; without a match the first error decides.
        error: DNSError | None = None
        for result in results:
            if isinstance(result, DNSError):
                error = error or result
            elif isinstance(result, BaseException):
                raise result
            elif self._in(result.records, mechanism):
                return True
        if error is not None:
            raise _abort_for(error)
        return False

    async def _exists(self, target: str) -> bool:
        """§5.7: an A query, whatever the client's address family."""
        try:
            answer = await self.resolver.a(target)
        except DNSError as exc:
            raise _abort_for(exc) from None
        self._void(answer.records)
        return bool(answer.records)

    async def _ptr_names(self) -> tuple[str, ...] | None:
        """The client's PTR names, looked up once per check; ``None`` on a DNS error."""
        # Terms are evaluated one after the other, so no two callers race here.
        if not self._ptr_asked:
            self._ptr_asked = True
            try:
                answer = await self.resolver.ptr(self.ip)
            except DNSError:
                return None
            self._ptr = tuple(_strip_dot(name).lower() for name in answer.records)
        return self._ptr

    async def _validated(self, names: Sequence[str]) -> list[str]:
        """§5.5: the names whose addresses include <ip>; a DNS error skips a name."""
        usable = [n for n in names if _lookup_problem(n) is None]
        results = await asyncio.gather(
            *(self._addresses(n) for n in usable), return_exceptions=True
        )
        validated: list[str] = []
        for name, result in zip(usable, results, strict=True):
            if isinstance(result, DNSError):
                continue
            if isinstance(result, BaseException):
                raise result
            if self.ip in result.records:
                validated.append(name)
        return validated

    async def _ptr_matches(self, target: str) -> bool:
        """§5.5: some validated PTR name is <target-name> or ends in ".<target-name>"."""
        names = await self._ptr_names()
        if names is None:
            return (
                False  # "If a DNS error occurs while doing the PTR RR lookup, ... fails to match"
            )
        self._void(names)
        target = target.lower()
        # Only the first names count (§4.6.4); validating just those that could
        # match gives the same result with fewer queries.
        candidates = [
            n for n in names[: self.limits.ptr_names] if n == target or n.endswith("." + target)
        ]
        return bool(await self._validated(candidates))

    async def _p(self, domain: str) -> str:
        """The p macro (§7.3): a validated name of <ip>, preferring <domain> and its subdomains."""
        names = await self._ptr_names()
        if not names:
            return "unknown"
        validated = await self._validated(names[: self.limits.ptr_names])
        domain = domain.lower()
        for name in validated:
            if name == domain:
                return name
        for name in validated:
            if name.endswith("." + domain):
                return name
        return validated[0] if validated else "unknown"

    async def _expand(self, spec: MacroString, values: MacroValues) -> str:
        if "p" in spec.letters:
            values = replace(values, validated=await self._p(values.domain))
        return expand_domain(spec, values)

    # ------------------------------------------------------------ explanation

    async def explain(self, outcome: _Outcome, default: str) -> str:
        """The explanation of a fail (§6.2): the deciding record's exp=, else ``default``."""
        values = outcome.values
        if values is None:  # pragma: no cover - a fail always comes from a record
            return ""
        text: str | None = None
        if outcome.exp is not None:
            text = await self._exp_text(outcome.exp, values)
            # An empty explanation (an empty TXT record, or nothing printable
            # in it) explains nothing: use the default, as without exp=.
            if text is not None and not _clean(text[:MAX_EXPLANATION]):
                text = None
        if text is None:
            try:
                template = parse_explain_string(default)
            except MacroSyntaxError:
                return _clean(default)
            text = await self._expand_text(template, values)
        return _clean(text[:MAX_EXPLANATION])

    async def _exp_text(self, spec: MacroString, values: MacroValues) -> str | None:
        """§6.2: any problem with the exp= lookup means "as if no exp modifier was given"."""
        name = await self._expand(spec, values)
        if _lookup_problem(name) is not None:
            return None
        try:
            answer = await self.resolver.txt(name)
        except DNSError:
            return None
        if len(answer.records) != 1:
            return None
        try:
            template = parse_explain_string(answer.records[0].joined.decode("ascii"))
        except (UnicodeDecodeError, MacroSyntaxError):
            return None
        return await self._expand_text(template, values)

    async def _expand_text(self, template: MacroString, values: MacroValues) -> str:
        if "p" in template.letters:
            values = replace(values, validated=await self._p(values.domain))
        return template.expand(values)


async def check_host(
    resolver: Resolver,
    ip: str | IPv4Address | IPv6Address,
    domain: str,
    sender: str,
    *,
    helo: str = "",
    receiver: str = "unknown",
    identity: Identity = "mailfrom",
    limits: SPFLimits = DEFAULT_LIMITS,
    default_explanation: str = DEFAULT_EXPLANATION,
) -> SPFResult:
    """RFC 7208 §4: may ``ip`` send mail for ``domain`` with <sender> ``sender``?

    ``sender`` without a local-part gets "postmaster" (§4.3); ``helo`` and
    ``receiver`` are what the h and r macros expand to. ``ip`` must be an
    IP address (``ValueError`` otherwise); everything else -- garbage
    records, failing DNS -- becomes a result, never an exception.
    """
    address = _client_address(ip)
    domain = _to_ascii(_strip_dot(domain.strip()))
    sender = _normal_sender(sender, domain)
    evaluation = _Evaluation(resolver, address, helo=helo, receiver=receiver, limits=limits)
    explanation = ""
    try:
        async with asyncio.timeout(limits.timeout):
            outcome = await evaluation.check(domain, sender, top=True)
    except _Abort as exc:
        outcome = _Outcome(exc.result, exc.reason)
    except TimeoutError:
        outcome = _Outcome("temperror", f"SPF check took longer than {limits.timeout:g} s")
    if outcome.result == "fail":
        try:
            async with asyncio.timeout(limits.timeout):
                explanation = await evaluation.explain(outcome, default_explanation)
        except TimeoutError:
            explanation = ""
    return SPFResult(
        outcome.result,
        identity,
        _no_controls(domain.lower()),
        _no_controls(sender),
        explanation,
        _clean(outcome.reason),
    )


def _helo_domain(helo: str) -> str | None:
    """The HELO name if it is a FQDN worth an SPF check (§2.3), else ``None``."""
    name = _to_ascii(_strip_dot(helo.strip()))
    return name if _domain_problem(name) is None else None


async def verify_sender(
    resolver: Resolver,
    ip: str | IPv4Address | IPv6Address,
    mail_from: str,
    helo: str,
    *,
    receiver: str,
    limits: SPFLimits = DEFAULT_LIMITS,
    default_explanation: str = DEFAULT_EXPLANATION,
) -> tuple[SPFResult | None, SPFResult]:
    """The SPF checks of an incoming transaction: (HELO result, MAIL FROM result).

    The HELO identity is checked when it is a fully qualified domain name
    (§2.3; not for an address literal), with <sender> postmaster@<helo>.
    For a null MAIL FROM the MAIL FROM identity is postmaster@<helo> (§2.4),
    whose result is the HELO result.
    """
    helo = helo.strip()
    helo_domain = _helo_domain(helo)
    mail_from = mail_from.strip()
    if mail_from.startswith("<") and mail_from.endswith(">"):
        mail_from = mail_from[1:-1]

    async def helo_check() -> SPFResult | None:
        if helo_domain is None:
            return None
        return await check_host(
            resolver,
            ip,
            helo_domain,
            f"postmaster@{helo_domain}",
            helo=helo,
            identity="helo",
            receiver=receiver,
            limits=limits,
            default_explanation=default_explanation,
        )

    if not mail_from:
        helo_result = await helo_check()
        if helo_result is not None:
            return helo_result, replace(helo_result, identity="mailfrom")
        # Not a FQDN: check_host() itself answers "none" (§4.3).
        mail_result = await check_host(
            resolver,
            ip,
            helo,
            f"postmaster@{helo}",
            helo=helo,
            receiver=receiver,
            limits=limits,
            default_explanation=default_explanation,
        )
        return None, mail_result
    domain = mail_from.rpartition("@")[2]
    helo_result, mail_result = await asyncio.gather(
        helo_check(),
        check_host(
            resolver,
            ip,
            domain,
            mail_from,
            helo=helo,
            receiver=receiver,
            limits=limits,
            default_explanation=default_explanation,
        ),
    )
    return helo_result, mail_result


# ---------------------------------------------------------------- Received-SPF

#: atext of RFC 5322 §3.2.3: a value made of these (and inner dots) needs no quotes.
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LINE = 78


def _value(text: str) -> str:
    """dot-atom if possible, else quoted-string (RFC 7208 §9.1, RFC 5322 §3.2.4)."""
    text = _no_controls(text)
    if _DOT_ATOM.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _comment_text(result: SPFResult, ip: str, receiver: str) -> str:
    """The comment of §9.1's examples, e.g. "domain of x designates y as permitted sender"."""
    who = result.sender
    texts: dict[str, str] = {
        "pass": f"domain of {who} designates {ip} as permitted sender",
        "fail": f"domain of {who} does not designate {ip} as permitted sender",
        "softfail": f"domain of transitioning {who} does not designate {ip} as permitted sender",
        "neutral": f"{ip} is neither permitted nor denied by domain of {who}",
        "none": f"domain of {who} does not designate permitted sender hosts",
        "permerror": f"permanent error in processing domain of {who}: {result.reason}",
        "temperror": f"error in processing during lookup of {who}: {result.reason}",
    }
    return f"{receiver}: {texts[result.result]}"


def received_spf(result: SPFResult, *, ip: str, helo: str, receiver: str) -> bytes:
    """A ``Received-SPF:`` header field for ``result`` (RFC 7208 §9.1), ending in CRLF.

    ``result comment key=value; ...`` with client-ip, envelope-from, helo,
    receiver, identity (and problem for the errors); values are quoted when
    they are not dot-atoms, the comment is escaped, control characters of the
    inputs become "?", and the field is folded at spaces to stay within 78
    characters a line where it can.
    """
    comment = _no_controls(_comment_text(result, ip, receiver))
    comment = re.sub(r"([()\\])", r"\\\1", comment)
    words = ("(" + comment + ")").split()
    pairs: list[tuple[str, str]] = [
        ("client-ip", ip),
        ("envelope-from", result.sender),
        ("helo", helo),
        ("receiver", receiver),
        ("identity", result.identity),
    ]
    if result.result in ("permerror", "temperror") and result.reason:
        pairs.append(("problem", result.reason))
    items = [f"{key}={_value(value)}" for key, value in pairs if value]
    tokens = words + [item + ";" for item in items[:-1]] + items[-1:]
    lines: list[str] = []
    line = f"Received-SPF: {result.result}"
    for token in tokens:
        if len(line) + 1 + len(token) > _LINE:
            lines.append(line)
            line = " " + token  # folding: CRLF then whitespace (RFC 5322 §2.2.3)
        else:
            line += " " + token
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")
