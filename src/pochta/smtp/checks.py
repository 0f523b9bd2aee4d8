"""The MX's judgement of who sent a message and whether it is spam.

Design note
-----------
``InboundHandler`` calls this at two points of the transaction on the
``smtp`` listener (never on LMTP, whose client is a trusted MTA):

* **RCPT** (:meth:`SenderChecks.at_rcpt`): the recipient domain's policy
  decides the cheap refusals that should come before the client sends a
  body — a DNS block-list hit (RFC 5782; 554 5.7.1) and greylisting of an
  unknown (client network, sender, recipient) triplet (451 4.7.1).
* **DATA** (:meth:`SenderChecks.at_data`): SPF of MAIL FROM and HELO
  (RFC 7208), every DKIM signature (RFC 6376), ARC (RFC 8617), the
  client's reverse DNS (RFC 8601 §3 "iprev"), then DMARC (RFC 7489) from
  those verdicts. DNS lookups run concurrently on the loop through the
  async resolver; RSA/Ed25519 work runs in worker threads.

Decisions, in order:

1. A DNS temporary error that leaves the verdict open is a 451 4.7.x, so
   the client retries (the issue: "not a pass or a fail"): an SPF
   ``temperror`` (RFC 7372 4.7.24), a DMARC ``temperror``, or a DKIM
   ``temperror`` when the domain publishes DMARC and nothing else passed.
2. A DMARC ``reject`` disposition (after ``pct`` sampling) is a 550 5.7.1
   after DATA (RFC 7489 §6.6.4, §10.3 wants the refusal in the SMTP
   session rather than a bounce); ``quarantine`` sends every copy to Junk.
3. Otherwise each recipient's copy is scored (:mod:`pochta.antispam.score`,
   with that user's Bayesian probability) and goes to INBOX, to Junk, or
   is refused when every recipient's policy says reject.

The copy a user gets carries one ``Authentication-Results`` header with
all verdicts (RFC 8601; any header claiming our authserv-id is removed
first, §5), ``Received-SPF`` (RFC 7208 §9.1) and our ``X-Spam-*``
headers. One log line per message gives every verdict and the score's
reasons, keyed by queue id and Message-ID, so the path of a message can
be traced from the log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path

from pochta.accounts.address import AddressError, parse_domain
from pochta.antispam.bayes import Bayes
from pochta.antispam.dnsbl import DNSBL
from pochta.antispam.greylist import Greylist
from pochta.antispam.score import Score, Verdicts, decide, score, spam_headers
from pochta.config import AntispamSettings
from pochta.dns import Resolver
from pochta.dns.records import DNSError, TemporaryDNSError
from pochta.dns.resolver import host_addresses
from pochta.mailauth.arc import ARCResult, verify_arc
from pochta.mailauth.dkim import DKIMResult, verify_dkim
from pochta.mailauth.dmarc import DMARCResult, check_dmarc, from_domain
from pochta.mailauth.reports import DmarcReports
from pochta.mailauth.results import MethodResult, authentication_results, remove_forged
from pochta.mailauth.spf import SPFResult, received_spf, verify_sender
from pochta.mime.address import parse_address_list
from pochta.mime.headers import header_fields
from pochta.mime.headers import text as field_text
from pochta.smtp import codes
from pochta.store.interface import INBOX

log = logging.getLogger("pochta.smtp.checks")

JUNK_MAILBOX = "Junk"

#: RFC 7372 §3.2: SPF validation error (a temporary one here).
SPF_TEMPERROR = codes.Reply(451, "4.7.24", "Temporary DNS error while checking SPF; try later")
DNS_TEMPERROR = codes.Reply(
    451, "4.7.0", "Temporary DNS error while checking the sender's domain; try later"
)
DMARC_REJECT = codes.Reply(550, "5.7.1", "Rejected by the DMARC policy of the From: domain")
SPAM_REJECT = codes.Reply(550, "5.7.1", "Message refused as spam")
GREYLISTED = codes.Reply(451, "4.7.1", "Greylisted; please try again later")
LISTED = codes.Reply(554, "5.7.1", "Client host blocked")

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]{1,250}>)", re.IGNORECASE | re.MULTILINE)
#: iprev looks at no more PTR names than SPF's ptr mechanism (RFC 7208 §4.6.4).
MAX_PTR_NAMES = 10
#: DMARC policies looked up for a message with several authors (see _author_domains).
MAX_AUTHORS = 5
#: How strict a DMARC disposition is, to apply the strictest of several.
_SEVERITY = {"none": 0, "quarantine": 1, "reject": 2}


@dataclass(slots=True)
class Copy:
    """Where one user's copy goes and the headers only that copy carries."""

    mailbox: str
    headers: bytes


@dataclass(slots=True)
class Judgement:
    """The outcome of :meth:`SenderChecks.at_data`."""

    refusal: codes.Reply | None
    """A reply refusing the whole message, or None to deliver it."""
    message: bytes = b""
    """The message to store: as received, less forged Authentication-Results."""
    headers: bytes = b""
    """Headers every copy gets, to prepend above the trace headers."""
    copies: dict[str, Copy] = field(default_factory=dict)
    """Per recipient user: mailbox and extra headers."""
    summary: str = ""
    """The verdicts for the log line."""


def antispam_dir(data_dir: Path) -> Path:
    """``data_dir/antispam``: the greylist and Bayes databases."""
    directory = data_dir / "antispam"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def _message_id(message: bytes) -> str:
    head = message.split(b"\r\n\r\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    return match.group(1).decode("ascii", "replace") if match else "-"


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def _helo_lies(helo: str, ip: str, hostname: str, is_local: Callable[[str], bool]) -> bool:
    """HELO names us or our domains, or is an address literal that is not the client's.

    RFC 5321 §4.1.4 lets a server not refuse over a HELO it cannot verify;
    these are the claims that are never honest, so they only add to the score.
    """
    name = helo.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        literal = name[1:-1]
        if literal.startswith("ipv6:"):
            literal = literal[5:]
        try:
            return ip_address(literal) != ip_address(ip)
        except ValueError:
            return True
    if ip_address(ip).is_loopback:
        return False
    return name == hostname.lower() or is_local(name)


class SenderChecks:
    """SPF, DKIM, DMARC, ARC, iprev, DNSBL, greylisting and scoring for the MX."""

    def __init__(
        self,
        *,
        hostname: str,
        resolver: Resolver,
        antispam: AntispamSettings,
        data_dir: Path,
        bayes: Bayes,
        is_local_domain: Callable[[str], bool] = lambda _name: False,
    ) -> None:
        self.hostname = hostname
        self.resolver = resolver
        self.antispam = antispam
        self.is_local_domain = is_local_domain
        self.dnsbl = DNSBL(resolver)
        self.greylist = Greylist(antispam_dir(data_dir) / "greylist.sqlite")
        #: Shared with the IMAP server, which trains it (the caller closes it).
        self.bayes = bayes
        #: DMARC verdicts counted for aggregate reports (RFC 7489 §7.2).
        self.reports = DmarcReports(
            antispam_dir(data_dir) / "dmarc-reports.sqlite", hostname=hostname, resolver=resolver
        )

    async def close(self) -> None:
        await self.greylist.close()
        self.reports.close()

    # ------------------------------------------------------------------ RCPT

    async def at_rcpt(
        self, ip: str, mail_from: str, recipient: str, greylisted: set[str]
    ) -> codes.Reply | None:
        """DNSBL and greylisting for one recipient, by its domain's policy.

        ``greylisted`` collects the recipients let through after a
        greylisting check, so that a delivery can tell the greylist.
        """
        policy = self.antispam.for_domain(_domain_of(recipient))
        if policy.dnsbl and policy.dnsbl_reject:
            listings = await self.dnsbl.check(ip, policy.dnsbl)
            if listings:
                first = listings[0]
                text = f"Client host [{ip}] blocked using {first.zone}"
                if first.text:
                    text += f"; {_printable(first.text)}"
                log.info("client=%s rcpt=<%s> refused: listed in %s", ip, recipient, first.zone)
                return LISTED.with_text(text)
        if policy.greylisting:
            verdict = await self.greylist.check(
                ip,
                mail_from,
                recipient,
                delay=policy.greylist_delay,
                expire=policy.greylist_expire,
            )
            if not verdict.allowed:
                log.info(
                    "client=%s from=<%s> rcpt=<%s> greylisted: %s",
                    ip,
                    mail_from,
                    recipient,
                    verdict.reason,
                )
                return GREYLISTED.with_text(
                    f"Greylisted, please try again in {max(verdict.retry_after, 1)} seconds"
                )
            greylisted.add(recipient)
        return None

    async def delivered(self, ip: str) -> None:
        """A greylisted client's message was accepted (auto-allow counts these)."""
        await self.greylist.delivered(ip)

    # ------------------------------------------------------------------ DATA

    async def iprev(self, ip: str) -> tuple[str, str]:
        """RFC 8601 §3 iprev: (result, policy.iprev name) — forward-confirmed reverse DNS."""
        try:
            names = (await self.resolver.ptr(ip)).records
        except TemporaryDNSError:
            return "temperror", ""
        except DNSError:
            return "permerror", ""
        if not names:
            return "fail", ""
        wanted = ip_address(ip)
        for name in list(names)[:MAX_PTR_NAMES]:
            try:
                addresses = await host_addresses(self.resolver, name)
            except DNSError:
                continue
            if wanted in addresses.records:
                return "pass", name.rstrip(".")
        return "fail", ""

    async def at_data(
        self,
        *,
        ip: str,
        helo: str,
        mail_from: str,
        recipients: Sequence[str],
        users: Sequence[str],
        message: bytes,
    ) -> Judgement:
        """Verify and score ``message``; see the module docstring for the order."""
        message = remove_forged(message, self.hostname)
        spf_task = asyncio.ensure_future(
            verify_sender(self.resolver, ip, mail_from, helo, receiver=self.hostname)
        )
        dkim_task = asyncio.ensure_future(verify_dkim(self.resolver, message))
        arc_task = asyncio.ensure_future(verify_arc(self.resolver, message))
        iprev_task = asyncio.ensure_future(self.iprev(ip))
        helo_spf, spf = await spf_task
        dkim = await dkim_task
        arc = await arc_task
        iprev, iprev_name = await iprev_task

        author = from_domain(message)
        # Without a single author (two From fields, several mailboxes) every
        # From domain is a candidate for what the reader is shown, and the
        # strictest verdict applies: otherwise adding a second From would
        # dodge a p=reject (RFC 7489 §6.6.1).
        authors = [author] if author is not None else _author_domains(message)
        candidates = [
            await check_dmarc(
                self.resolver,
                domain,
                spf_result=spf.result,
                spf_domain=spf.domain,
                dkim_pass_domains=[d.domain for d in dkim if d.result == "pass"],
            )
            for domain in authors
        ]
        dmarc: DMARCResult | None = None
        if candidates:
            # Strictest disposition; then a fail, then an open verdict (a
            # temperror, so the client retries) rather than a pass.
            dmarc = max(
                candidates,
                key=lambda r: (
                    _SEVERITY[r.disposition],
                    r.result == "fail",
                    r.result == "temperror",
                ),
            )

        results = _method_results(spf, helo_spf, dkim, dmarc, arc, iprev, iprev_name, ip, author)
        common = authentication_results(self.hostname, results) + received_spf(
            spf, ip=ip, helo=helo, receiver=self.hostname
        )
        summary = _summary(spf, dkim, dmarc, arc, iprev, author, _message_id(message))

        refusal = self._temporary(spf, dkim, dmarc)
        if refusal is not None:
            return Judgement(refusal, summary=summary + " decision=tempfail")
        if dmarc is not None and self.reports.wanted(dmarc):
            # Counted once: a message answered 4yz above comes again. Off
            # the loop (only for domains that want reports: most do not):
            # the report sender may hold the database a while.
            await asyncio.to_thread(self.reports.record, dmarc, source_ip=ip, spf=spf, dkim=dkim)
        if dmarc is not None and dmarc.disposition == "reject":
            text = f"Rejected by the DMARC policy of {dmarc.domain}"
            return Judgement(DMARC_REJECT.with_text(text), summary=summary + " decision=reject")

        listed: tuple[str, ...] = ()
        zones = sorted(
            {z for r in recipients for z in self.antispam.for_domain(_domain_of(r)).dnsbl}
        )
        if zones:
            listed = tuple(listing.zone for listing in await self.dnsbl.check(ip, zones))
        base = Verdicts(
            spf=spf.result,
            dkim=tuple(d.result for d in dkim),
            dmarc=dmarc.result if dmarc else None,
            dmarc_policy=dmarc.disposition if dmarc else None,
            arc=arc.result,
            dnsbl=listed,
            rdns={"pass": True, "fail": False}.get(iprev),
            helo_lie=_helo_lies(helo, ip, self.hostname, self.is_local_domain),
        )
        quarantine = dmarc is not None and dmarc.disposition == "quarantine"
        copies: dict[str, Copy] = {}
        decisions: list[str] = []
        notes: list[str] = []
        for user in users:
            policy = self.antispam.for_domain(_domain_of(user))
            probability = None
            if policy.bayes:
                probability = await self.bayes.probability(user, message)
            # Only the lists this user's domain asks count for its copy: the
            # lookup above covers every recipient domain's lists at once.
            own = tuple(zone for zone in listed if zone in policy.dnsbl)
            verdicts = dataclasses.replace(base, bayes=probability, dnsbl=own)
            result: Score = score(verdicts)
            decision = decide(result, policy)
            if quarantine and decision == "accept":
                decision = "junk"
            decisions.append(decision)
            notes.append(f"{user}:{decision}:{result.describe()}")
            mailbox = INBOX if decision == "accept" else JUNK_MAILBOX
            copies[user] = Copy(mailbox, spam_headers(result, decision))
        summary += " " + " ".join(notes)
        if decisions and all(d == "reject" for d in decisions):
            return Judgement(SPAM_REJECT, summary=summary + " decision=reject")
        return Judgement(None, message, headers=common, copies=copies, summary=summary)

    @staticmethod
    def _temporary(
        spf: SPFResult, dkim: Sequence[DKIMResult], dmarc: DMARCResult | None
    ) -> codes.Reply | None:
        if spf.result == "temperror":
            return SPF_TEMPERROR
        if dmarc is None:
            return None
        if dmarc.result == "temperror":
            return DNS_TEMPERROR
        if (
            dmarc.result == "fail"
            and dmarc.policy != "none"
            and any(d.result == "temperror" for d in dkim)
        ):
            # A signature we could not check might have aligned: retry
            # rather than apply a reject/quarantine policy on half the facts.
            return DNS_TEMPERROR
        return None


def _author_domains(message: bytes) -> list[str]:
    """The distinct domains of every From: mailbox, for a message whose author
    is not a single mailbox; at most :data:`MAX_AUTHORS`, in order."""
    domains: list[str] = []
    for name, value in header_fields(message, 0, len(message)):
        if name.lower() != b"from":
            continue
        for address in parse_address_list(field_text(value)):
            if not address.host or address.mailbox is None:
                continue
            try:
                domain = parse_domain(address.host)
            except AddressError:
                continue
            if domain not in domains:
                domains.append(domain)
    return domains[:MAX_AUTHORS]


def _printable(text: str, limit: int = 200) -> str:
    """Text from DNS shown in our replies and logs: printable ASCII only."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:limit]


def _method_results(
    spf: SPFResult,
    helo_spf: SPFResult | None,
    dkim: Sequence[DKIMResult],
    dmarc: DMARCResult | None,
    arc: ARCResult,
    iprev: str,
    iprev_name: str,
    ip: str,
    author: str | None,
) -> list[MethodResult]:
    """RFC 8601 §2.7 method results, in the order readers expect."""
    out: list[MethodResult] = []
    spf_props: list[tuple[str, str]] = []
    if spf.identity == "mailfrom":
        spf_props.append(("smtp.mailfrom", spf.sender))
    else:
        spf_props.append(("smtp.helo", spf.domain))
    out.append(MethodResult("spf", spf.result, spf.reason, tuple(spf_props)))
    if helo_spf is not None and spf.identity == "mailfrom":
        out.append(
            MethodResult("spf", helo_spf.result, helo_spf.reason, (("smtp.helo", helo_spf.domain),))
        )
    if not dkim:
        out.append(MethodResult("dkim", "none"))
    for signature in dkim:
        props = [("header.d", signature.domain), ("header.s", signature.selector)]
        if signature.header_b:
            props.append(("header.b", signature.header_b))
        props.append(("header.a", signature.algorithm))
        out.append(MethodResult("dkim", signature.result, signature.reason, tuple(props)))
    if dmarc is not None:
        out.append(
            MethodResult(
                "dmarc",
                dmarc.result,
                dmarc.reason,
                (("header.from", dmarc.domain), ("policy.dmarc", dmarc.policy)),
            )
        )
    elif author is None:
        out.append(MethodResult("dmarc", "permerror", "no single From: address"))
    out.append(MethodResult("arc", arc.result, arc.reason))
    iprev_props = [("smtp.remote-ip", ip)]
    if iprev_name:
        iprev_props.append(("policy.iprev", iprev_name))
    out.append(MethodResult("iprev", iprev, "", tuple(iprev_props)))
    return out


def _summary(
    spf: SPFResult,
    dkim: Sequence[DKIMResult],
    dmarc: DMARCResult | None,
    arc: ARCResult,
    iprev: str,
    author: str | None,
    message_id: str,
) -> str:
    dkim_text = ",".join(f"{d.result}({d.domain})" for d in dkim) or "none"
    dmarc_text = f"{dmarc.result}({dmarc.domain},{dmarc.disposition})" if dmarc else "none"
    return (
        f"message_id={message_id} from_domain={author or '-'} spf={spf.result}({spf.domain}) "
        f"dkim={dkim_text} dmarc={dmarc_text} arc={arc.result} iprev={iprev}"
    )
