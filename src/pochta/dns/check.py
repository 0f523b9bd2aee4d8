"""``pochta dns check DOMAIN``: is what ``pochta dns records`` prints really published?

Design note
-----------
The expectations come from :func:`pochta.dns.zone.expected`, the very list
the ``records`` command prints, so the two cannot disagree. Each one is
looked up through the :class:`~pochta.dns.resolver.Resolver` (the name
servers of ``[dns]``) and compared by meaning, not by text: what matters is
what a receiver or a mail client concludes from the record.

* **MX**: one of the exchanges is ``hostname``; other MX hosts may coexist
  (a backup MX is fine), so the line is "wrong" only when ours is absent.
* **A/AAAA of the host**: at least one address.
* **PTR** of each of those addresses names ``hostname`` -- the address came
  from the host's own A/AAAA, so a matching PTR is forward-confirmed reverse
  DNS ("iprev", RFC 8601 §3).
* **SPF** (domain and host): exactly one ``v=spf1`` record (RFC 7208 §4.5),
  and it authorises the host by a mechanism evaluated before any ``all``:
  ``mx`` / ``a`` (with or without our names) or an ``ip4:``/``ip6:`` range
  holding one of the host's addresses. This is a reading, not an evaluation:
  ``include:`` and ``redirect=`` are not followed, so a record that relies on
  them is reported, with the advice to name ``mx`` directly.
* **DKIM**: each published selector has exactly one key record whose ``p=``
  is our public key and whose ``k=`` is our algorithm; whitespace and tag
  order do not matter (RFC 6376 §3.6.1).
* **DMARC**: exactly one ``v=DMARC1`` record (RFC 7489 §6.6.3) with a ``p=``
  tag; ``p=none`` only monitors, so it is "wrong" with advice.
* **MTA-STS / TLS-RPT**: exactly one ``v=STSv1`` record with an ``id=``
  (RFC 8461 §3.1), exactly one ``v=TLSRPTv1`` record with ``rua=`` (RFC 8460
  §3); receivers ignore both when there are several.
* **autoconfig / autodiscover / mta-sts names**: resolve to addresses of the
  host. The resolver follows CNAMEs, so a CNAME to the host and A/AAAA
  records copying its addresses both pass.
* **SRV**: a record with our host and port, or for a service not offered
  only "not available" records (target ``.``, RFC 2782, RFC 6186 §4).

A lookup that fails (timeout, SERVFAIL) gives an "error" line for that
record and the other checks go on; nothing here raises for DNS trouble.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pochta.config import Settings
from pochta.dns.records import TXT, Answer, DNSError, IPAddress
from pochta.dns.resolver import Resolver, host_addresses
from pochta.dns.zone import Expected, expected

if TYPE_CHECKING:
    from pochta.mailauth.keys import DKIMKey

__all__ = ["CheckLine", "Status", "check", "parse_tags", "summary"]

Status = Literal["ok", "missing", "wrong", "error"]

#: Longest value shown in full on a report line; longer ones (DKIM keys) are cut.
SHOWN = 64


@dataclass(frozen=True, slots=True)
class CheckLine:
    """The verdict on one record: what was expected, what DNS said, what to do."""

    status: Status
    name: str
    """The owner name looked up (an address for PTR lines)."""
    rtype: str
    expected: str
    found: str
    advice: str = ""
    """One line; empty when the record is fine."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def render(self) -> str:
        """One report line: ``ok      MX example.org → mail.example.org`` or
        ``MISSING _dmarc.example.org TXT: expected "...", found nothing — advice``."""
        if self.ok:
            return f"{'ok':<8}{self.rtype} {self.name} → {_short(self.found)}"
        line = (
            f"{self.status.upper():<8}{self.name} {self.rtype}: expected "
            f"{_short(self.expected)}, found {_short(self.found)}"
        )
        return f"{line} — {self.advice}" if self.advice else line


def summary(lines: Sequence[CheckLine]) -> str:
    """``3 of 17 records missing or wrong`` (and how many could not be looked up)."""
    bad = sum(line.status in ("missing", "wrong") for line in lines)
    errors = sum(line.status == "error" for line in lines)
    text = f"{bad} of {len(lines)} records missing or wrong"
    if errors:
        text += f", {errors} could not be looked up"
    return text


def _short(text: str) -> str:
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def _quoted(text: str) -> str:
    return f'"{text}"'


def _host(name: str) -> str:
    return name.rstrip(".").lower()


def _nothing(answer: Answer[Any]) -> str:
    return "no such name" if answer.nxdomain else "nothing"


def parse_tags(text: str) -> dict[str, str]:
    """A DKIM/DMARC/MTA-STS style ``tag=value; ...`` list as a dict.

    RFC 6376 §3.2: whitespace around tags and values is not significant;
    tag names are case-sensitive; the first occurrence of a tag counts (a
    duplicate makes a DKIM record invalid, which the caller detects by the
    mismatch it causes, not here). Empty items (``;;`` or a final ``;``) are
    skipped.
    """
    tags: dict[str, str] = {}
    for item in text.split(";"):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            continue
        tags.setdefault(name, value.strip())
    return tags


def _first_tag_is(text: str, tag: str, value: str) -> bool:
    first = text.split(";", 1)[0]
    name, eq, got = first.partition("=")
    return bool(eq) and name.strip() == tag and got.strip() == value


# ------------------------------------------------------------------------ SPF


def _is_spf(text: str) -> bool:
    # RFC 7208 §4.5: exactly "v=spf1", ended by a space or the end of the record.
    head = text[:7].lower()
    return head == "v=spf1" or head == "v=spf1 "


def _spf_authorises(
    text: str, owner: str, names: set[str], bare: set[str], addresses: Sequence[IPAddress]
) -> tuple[bool, str]:
    """Whether the SPF record ``text`` passes our host, as far as reading can tell.

    Terms are read left to right like an evaluation (RFC 7208 §4.6.2) up to
    the first ``all``: a "+" (or unqualified) ``mx``/``a`` without a domain
    (when in ``bare``), with one of ``names``, or an ``ip4``/``ip6`` range
    holding one of ``addresses`` authorises. Returns (verdict, advice).
    """
    indirect = False
    for term in text.split()[1:]:
        qualifier = term[0] if term[0] in "+-~?" else "+"
        body = term[1:] if term[0] in "+-~?" else term
        mechanism, _, arg = body.partition(":")
        mechanism = mechanism.lower()
        # "a/24" and "mx:example.org/24": the CIDR length does not change who is named.
        if not arg:
            mechanism, _, _ = mechanism.partition("/")
        domain_spec = _host(arg.partition("/")[0]) if arg else ""
        if mechanism == "all":
            if qualifier == "+":
                return False, f'"{term}" lets every host on the internet send as {owner}: use -all'
            break
        # Not followed here: they would need an SPF evaluation (RFC 7208 §5.2, §6.1).
        indirect = indirect or mechanism in ("include", "exists") or body.startswith("redirect=")
        if qualifier != "+":
            continue
        if mechanism in ("mx", "a") and (
            (not domain_spec and mechanism in bare) or domain_spec in names
        ):
            return True, ""
        if mechanism in ("ip4", "ip6") and arg:
            try:
                network = ipaddress.ip_network(arg, strict=False)
            except ValueError:
                continue
            if any(addr.version == network.version and addr in network for addr in addresses):
                return True, ""
    problem = "no term before the all names this server"
    if indirect:
        problem += " (include:, exists: and redirect= are not followed by this check)"
    return False, f"{problem}: add {'mx' if 'mx' in bare else 'a'} before the all"


# ------------------------------------------------------------------ the checker


class _Checker:
    """The checks of one domain; ``addresses`` is filled in before the others run."""

    def __init__(self, settings: Settings, domain: str, resolver: Resolver) -> None:
        self.domain = domain
        self.host = _host(settings.hostname)
        self.resolver = resolver
        self.addresses: list[IPAddress] | None = None
        """The host's addresses; None when their lookup failed."""

    def line(
        self, status: Status, record: Expected, found: str, advice: str = "", *, name: str = ""
    ) -> CheckLine:
        shown = _quoted(record.value) if record.rtype == "TXT" else record.value
        if record.kind in ("mx", "alias", "ptr"):
            shown = self.host
        return CheckLine(
            status,
            name or record.name,
            record.rtype,
            shown,
            found,
            "" if status == "ok" else advice,
        )

    async def run(self, record: Expected) -> list[CheckLine]:
        checks: dict[str, Callable[[Expected], Awaitable[list[CheckLine]]]] = {
            "mx": self.mx,
            "addresses": self.host_addresses,
            "ptr": self.ptr,
            "spf": self.spf,
            "dkim": self.dkim,
            "dmarc": self.dmarc,
            "alias": self.alias,
            "srv": self.srv,
            "mta-sts": self.mta_sts,
            "tls-rpt": self.tls_rpt,
        }
        try:
            return await checks[record.kind](record)
        except DNSError as exc:
            advice = (
                "the name servers did not answer; try again, or check [dns].nameservers"
                if exc.temporary
                else "the lookup cannot succeed as asked"
            )
            return [self.line("error", record, exc.reason, advice)]

    async def mx(self, record: Expected) -> list[CheckLine]:
        answer = await self.resolver.mx(record.name)
        exchanges = [mx.exchange or "." for mx in sorted(answer)]
        found = ", ".join(exchanges) or _nothing(answer)
        if self.host in exchanges:
            return [self.line("ok", record, found)]
        if not answer:
            return [self.line("missing", record, found, record.why)]
        if any(mx.is_null for mx in answer):
            advice = f"a null MX (RFC 7505) says {record.name} takes no mail: replace it with "
            return [self.line("wrong", record, found, advice + f"MX {record.value}")]
        advice = f"mail for {record.name} goes to another server; publish MX {record.value}"
        return [self.line("wrong", record, found, advice)]

    async def host_addresses(self, record: Expected) -> list[CheckLine]:
        try:
            answer = await host_addresses(self.resolver, record.name)
        except DNSError:
            self.addresses = None
            raise
        self.addresses = list(answer)
        if not answer:
            return [self.line("missing", record, _nothing(answer), record.why)]
        return [self.line("ok", record, ", ".join(str(a) for a in answer))]

    async def ptr(self, record: Expected) -> list[CheckLine]:
        if self.addresses is None:
            advice = f"the addresses of {self.host} could not be looked up; try again"
            return [self.line("error", record, "not looked up", advice)]

        async def one(address: IPAddress) -> CheckLine:
            name = str(address)
            try:
                answer = await self.resolver.ptr(address)
            except DNSError as exc:
                advice = "the name servers did not answer; try again"
                return self.line("error", record, exc.reason, advice, name=name)
            names = [_host(n) for n in answer]
            if self.host in names:
                return self.line("ok", record, self.host, name=name)
            if not names:
                return self.line("missing", record, _nothing(answer), record.why, name=name)
            return self.line("wrong", record, ", ".join(names), record.why, name=name)

        return list(await asyncio.gather(*(one(a) for a in self.addresses)))

    async def spf(self, record: Expected) -> list[CheckLine]:
        answer = await self.resolver.txt(record.name)
        found = [t.text for t in answer if _is_spf(t.text)]
        if not found:
            return [self.line("missing", record, _nothing(answer), record.why)]
        shown = " | ".join(_quoted(t) for t in found)
        if len(found) > 1:
            advice = "several v=spf1 records are an error (RFC 7208 §4.5): merge them into one"
            return [self.line("wrong", record, shown, advice)]
        if record.name == self.host:
            names, bare = {self.host}, {"a"}
        else:
            names, bare = {self.host, record.name}, {"a", "mx"}
        ok, problem = _spf_authorises(found[0], record.name, names, bare, self.addresses or [])
        if ok:
            return [self.line("ok", record, shown)]
        return [self.line("wrong", record, shown, f"{problem} ({_quoted(record.value)})")]

    async def dkim(self, record: Expected) -> list[CheckLine]:
        answer = await self.resolver.txt(record.name)
        if not answer:
            return [self.line("missing", record, _nothing(answer), record.why)]
        ours = parse_tags(record.value)
        want_key = _b64(ours.get("p", ""))
        want_type = ours.get("k", "rsa")
        texts = [t.text for t in answer]
        shown = " | ".join(_quoted(t) for t in texts)
        matching = []
        for text in texts:
            tags = parse_tags(text)
            # RFC 6376 §3.6.1: k= defaults to rsa; a v= tag, if any, must be DKIM1.
            if tags.get("v", "DKIM1") != "DKIM1":
                continue
            if _b64(tags.get("p", "")) == want_key and tags.get("k", "rsa") == want_type:
                matching.append(text)
        if matching and len(texts) == 1:
            return [self.line("ok", record, shown)]
        if matching:
            advice = (
                "remove the other records at this name: a verifier may pick any one "
                "(RFC 6376 §3.6.2.2)"
            )
            return [self.line("wrong", record, shown, advice)]
        advice = "the published key is not ours: replace it with the record from pochta dns records"
        return [self.line("wrong", record, shown, advice)]

    async def dmarc(self, record: Expected) -> list[CheckLine]:
        answer = await self.resolver.txt(record.name)
        found = [t.text for t in answer if _first_tag_is(t.text, "v", "DMARC1")]
        if not found:
            return [self.line("missing", record, _nothing(answer), record.why)]
        shown = " | ".join(_quoted(t) for t in found)
        if len(found) > 1:
            advice = "with several DMARC records none applies (RFC 7489 §6.6.3): keep one"
            return [self.line("wrong", record, shown, advice)]
        policy = parse_tags(found[0]).get("p", "").lower()
        if policy in ("reject", "quarantine"):
            return [self.line("ok", record, shown)]
        if policy == "none":
            advice = (
                "p=none only monitors; once the reports show your mail passes, "
                "set p=reject (or p=quarantine)"
            )
        else:
            advice = "the record needs p=reject, p=quarantine or p=none (RFC 7489 §6.3)"
        return [self.line("wrong", record, shown, advice)]

    def _one_versioned(
        self, record: Expected, version: str, needed: str, answer: Answer[TXT]
    ) -> list[CheckLine]:
        found = [t.text for t in answer if _first_tag_is(t.text, "v", version)]
        if not found:
            return [self.line("missing", record, _nothing(answer), record.why)]
        shown = " | ".join(_quoted(t) for t in found)
        if len(found) > 1:
            return [self.line("wrong", record, shown, f"keep exactly one; {record.why}")]
        if not parse_tags(found[0]).get(needed):
            advice = f"the record has no {needed}= tag; {record.why}"
            return [self.line("wrong", record, shown, advice)]
        return [self.line("ok", record, shown)]

    async def mta_sts(self, record: Expected) -> list[CheckLine]:
        # The id changes with every policy, so only its presence is checked.
        answer = await self.resolver.txt(record.name)
        return self._one_versioned(record, "STSv1", "id", answer)

    async def tls_rpt(self, record: Expected) -> list[CheckLine]:
        answer = await self.resolver.txt(record.name)
        return self._one_versioned(record, "TLSRPTv1", "rua", answer)

    async def alias(self, record: Expected) -> list[CheckLine]:
        # The resolver follows the CNAME (RFC 1034 §3.6.2), so comparing
        # addresses accepts a CNAME to the host and copies of its A/AAAA alike.
        answer = await host_addresses(self.resolver, record.name)
        if not answer:
            return [self.line("missing", record, _nothing(answer), record.why)]
        found = ", ".join(str(a) for a in answer)
        if self.addresses is None:
            advice = f"the addresses of {self.host} could not be looked up to compare"
            return [self.line("error", record, found, advice)]
        if set(answer) <= set(self.addresses):
            return [self.line("ok", record, f"{found} (the addresses of {self.host})")]
        advice = f"it does not lead to {self.host}: make it a CNAME to {self.host}."
        return [self.line("wrong", record, found, advice)]

    async def srv(self, record: Expected) -> list[CheckLine]:
        answer = await self.resolver.srv(record.name)
        found = ", ".join(
            f"{r.priority} {r.weight} {r.port} {r.target + '.' if r.target else '.'}"
            for r in answer
        )
        if not answer:
            return [self.line("missing", record, _nothing(answer), record.why)]
        _priority, _weight, port, target = record.value.split()
        target = _host(target)
        if not target:  # a service we do not offer: only "not available" records
            if all(not r.target for r in answer):
                return [self.line("ok", record, found)]
            advice = f"this server does not offer the service; publish SRV {record.value}"
            return [self.line("wrong", record, found, advice)]
        if any(r.target == target and r.port == int(port) for r in answer):
            return [self.line("ok", record, found)]
        return [self.line("wrong", record, found, f"publish SRV {record.value}; {record.why}")]


def _b64(value: str) -> str:
    """A base64 value with its whitespace removed (RFC 6376 §3.6.1, p= allows FWS)."""
    return "".join(value.split())


async def check(
    settings: Settings, domain: str, resolver: Resolver, keys: Sequence[DKIMKey]
) -> list[CheckLine]:
    """Look up every record ``pochta dns records`` prints for ``domain``; one line each.

    PTR gives one line per address of the host. DNS failures become "error"
    lines; this never raises :class:`~pochta.dns.records.DNSError`.
    """
    domain = _host(domain)
    expectations = expected(settings, domain, keys=keys)
    checker = _Checker(settings, domain, resolver)
    # The host's addresses come first: SPF, PTR and the alias names compare
    # with them. The rest are independent and asked all at once.
    first = {i: await checker.run(r) for i, r in enumerate(expectations) if r.kind == "addresses"}
    rest = [r for i, r in enumerate(expectations) if i not in first]
    answers = iter(await asyncio.gather(*(checker.run(r) for r in rest)))
    return [
        line
        for i in range(len(expectations))
        for line in (first[i] if i in first else next(answers))
    ]
