"""The DNS records a Pochta domain publishes: one expectation list, two uses.

:func:`expected` computes, from the settings and the domain's DKIM keys, a
list of :class:`Expected` records. ``pochta dns records DOMAIN`` renders it
as zone-file lines ready to paste (:func:`records`), and ``pochta dns check
DOMAIN`` (:mod:`pochta.dns.check`) looks each one up; so what the operator is
told to publish and what is verified can never drift apart. The list holds:

* MX → ``hostname`` (RFC 5321 §5.1), plus the host's own A/AAAA and the PTR
  of each address; those two are not in the domain's zone (the host may live
  in another zone, and PTR records live in the address owner's reverse zone),
  so they are printed as reminders and only checked;
* SPF (RFC 7208) for the domain (``mx``) and for the host itself (HELO
  checks, RFC 7208 §2.3);
* each published DKIM key (RFC 6376 §3.6.1, RFC 8463 for Ed25519) at
  ``<selector>._domainkey``, retired ones marked with the date after which
  they may go;
* DMARC (RFC 7489 §6.3) at ``_dmarc``, with aggregate reports to
  ``[mailauth].dmarc_reports`` (default ``postmaster@<domain>``);
* the client-setup names: ``autoconfig`` and ``autodiscover`` CNAMEs, the
  ``_autodiscover._tcp`` SRV, and the RFC 6186 SRV records -- a real record
  for each client service the settings advertise (the same rules as the
  autoconfig documents, ``pochta.web.services``), and the "not available"
  record (target ``.``, RFC 6186 §4 / RFC 2782) for each one they do not;
* MTA-STS (RFC 8461 §3.1) and TLS reporting (RFC 8460 §3).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pochta.config import Settings
from pochta.web.services import STANDARD_PORTS, advertised_services

if TYPE_CHECKING:
    from pochta.mailauth.keys import DKIMKey

__all__ = [
    "SRV_NAMES",
    "TTL",
    "Expected",
    "Kind",
    "dmarc_report_address",
    "expected",
    "records",
    "render",
    "txt_strings",
]

#: TTL of every printed record: an hour keeps mistakes short-lived.
TTL = 3600

#: RFC 6186 §3 service labels, by ``[listen]`` kind.
SRV_NAMES = {
    "imaps": "_imaps._tcp",
    "imap": "_imap._tcp",
    "pop3s": "_pop3s._tcp",
    "pop3": "_pop3._tcp",
    "submissions": "_submissions._tcp",
    "submission": "_submission._tcp",
}

#: How long a retired DKIM key stays published at least after its successor
#: took over: mail signed just before a rotation may still sit in our queue
#: (``[delivery].max_age``) and in receivers' queues and mailboxes, and
#: verifiers fetch the key when the message arrives (RFC 6376 §3.6.2.1); a
#: week covers that and an operator's weekend.
RETIRED_KEY_GRACE = 7 * 86400

#: Longest character-string in a TXT record (RFC 1035 §3.3, §3.3.14).
MAX_CHARACTER_STRING = 255

#: What :mod:`pochta.dns.check` compares for each record.
Kind = Literal[
    "mx",
    "addresses",
    "ptr",
    "spf",
    "dkim",
    "dmarc",
    "alias",
    "srv",
    "mta-sts",
    "tls-rpt",
]

Section = Literal["mail", "dkim", "dmarc", "clients", "mta-sts"]


@dataclass(frozen=True, slots=True)
class Expected:
    """One record the domain should have (or, ``in_zone`` false, a fact to check).

    ``value`` is in zone-file presentation form for MX, CNAME and SRV
    (``"10 mail.example.org."``), the unquoted text for TXT (split and quoted
    only when rendered), and a description for the entries not in the zone.
    """

    name: str
    """Owner name, lower case, without the final dot."""
    rtype: str
    """MX, TXT, CNAME, SRV; ``A/AAAA`` and ``PTR`` for the reminders."""
    value: str
    why: str
    """One line: what breaks without it (the check's advice)."""
    kind: Kind
    section: Section
    notes: tuple[str, ...] = ()
    """Comment lines printed just above the record."""
    in_zone: bool = True
    """False for the host's addresses and their PTR: printed as comments only."""


def dmarc_report_address(settings: Settings, domain: str) -> str:
    """``[mailauth].dmarc_reports``, or ``postmaster@<domain>`` when empty."""
    return settings.mailauth.dmarc_reports or f"postmaster@{domain.rstrip('.')}"


def _fqdn(name: str) -> str:
    return name.rstrip(".") + "."


def _retired_until(key: DKIMKey, keys: Sequence[DKIMKey], settings: Settings) -> float:
    """When a retired key may leave DNS: the grace period after it was replaced.

    A key carries no retirement time, but rotation makes the successor at
    that moment: the oldest later key of the same algorithm was created when
    this one retired.
    """
    later = [k.created for k in keys if k.algorithm == key.algorithm and k.created > key.created]
    retired = min(later) if later else key.created
    return retired + max(RETIRED_KEY_GRACE, settings.delivery.max_age + 2 * 86400)


def _published_keys(settings: Settings, domain: str) -> list[DKIMKey]:
    from pochta.mailauth.keys import DKIMKeyStore

    return DKIMKeyStore(settings.data_dir).published(domain)


def expected(
    settings: Settings,
    domain: str,
    *,
    keys: Sequence[DKIMKey] | None = None,
    now: float | None = None,
) -> list[Expected]:
    """Every record ``domain`` needs when served by these settings, in print order.

    ``keys`` are the domain's published DKIM keys (active and retired); None
    reads them from the key store under ``data_dir``.
    """
    domain = domain.rstrip(".").lower()
    host = settings.hostname.rstrip(".").lower()
    if keys is None:
        keys = _published_keys(settings, domain)
    out: list[Expected] = [
        Expected(
            domain,
            "MX",
            f"10 {_fqdn(host)}",
            f"other servers cannot find where to deliver mail for {domain} (RFC 5321 §5.1)",
            "mx",
            "mail",
        ),
        Expected(
            host,
            "A/AAAA",
            "this server's public IPv4 and IPv6 addresses",
            f"publish A (and AAAA) records of {host} with this server's public addresses",
            "addresses",
            "mail",
            in_zone=False,
        ),
        Expected(
            host,
            "PTR",
            _fqdn(host),
            f"ask the owner of each address (your provider) to set its reverse DNS to {host}; "
            "many receivers distrust mail from an address without a matching PTR",
            "ptr",
            "mail",
            in_zone=False,
        ),
        Expected(
            domain,
            "TXT",
            "v=spf1 mx -all",
            f"publish exactly one v=spf1 record for {domain} that authorises {host} "
            "(mx, or ip4:/ip6: of its addresses) (RFC 7208 §4.5)",
            "spf",
            "mail",
        ),
        Expected(
            host,
            "TXT",
            "v=spf1 a -all",
            f"publish v=spf1 a -all at {host}: receivers check the HELO name too (RFC 7208 §2.3)",
            "spf",
            "mail",
        ),
    ]
    # Active before retired, so the keys in use are the first an operator
    # reads; otherwise the key store's order (newest first) is kept.
    ordered = sorted(keys, key=lambda k: not k.active)
    for key in ordered:
        notes: tuple[str, ...] = ()
        if not key.active:
            until = _retired_until(key, keys, settings)
            day = time.strftime("%Y-%m-%d", time.gmtime(until))
            # Kept so that mail signed before the rotation still verifies.
            notes = (
                f"; retired: remove after {day} "
                f"(pochta domain dkim remove {domain} {key.selector}, then this record)",
            )
        out.append(
            Expected(
                key.record_name,
                "TXT",
                key.public_txt,
                f"receivers cannot verify the {key.algorithm} DKIM signatures of selector "
                f"{key.selector} (RFC 6376 §3.6.2)",
                "dkim",
                "dkim",
                notes=notes,
            )
        )
    rua = dmarc_report_address(settings, domain)
    dmarc_notes: tuple[str, ...] = ()
    report_domain = rua.rpartition("@")[2].lower()
    if report_domain != domain:
        # RFC 7489 §7.1: reports to another domain need that domain's consent.
        dmarc_notes = (
            f"; {report_domain} must agree to receive the reports: it publishes",
            f'; {domain}._report._dmarc.{report_domain}. IN TXT "v=DMARC1" (RFC 7489 §7.1)',
        )
    out.append(
        Expected(
            f"_dmarc.{domain}",
            "TXT",
            f"v=DMARC1; p=reject; rua=mailto:{rua}; adkim=r; aspf=r",
            f"without a DMARC policy anyone can send mail as {domain} (RFC 7489 §6.3)",
            "dmarc",
            "dmarc",
            notes=dmarc_notes,
        )
    )
    for label in ("autoconfig", "autodiscover"):
        out.append(
            Expected(
                f"{label}.{domain}",
                "CNAME",
                _fqdn(host),
                f"mail clients look up {label}.{domain} to configure themselves",
                "alias",
                "clients",
            )
        )
    if settings.listen.https:
        out.append(
            Expected(
                f"_autodiscover._tcp.{domain}",
                "SRV",
                f"0 1 443 {_fqdn(host)}",
                "Outlook looks for autodiscover here when the autodiscover name fails",
                "srv",
                "clients",
            )
        )
    offered = {service.kind: service for service in advertised_services(settings)}
    for kind, label in SRV_NAMES.items():
        service = offered.get(kind)
        if service is None:
            # RFC 6186 §4: "." as target says the service is not offered.
            value = "0 0 0 ."
            why = f"tells clients {kind} is not offered here, so they do not probe for it"
        else:
            # Implicit TLS is preferred over STARTTLS (RFC 8314 §5.1).
            priority = 0 if kind in ("imaps", "pop3s", "submissions") else 10
            port = service.port or STANDARD_PORTS[kind]
            value = f"{priority} 1 {port} {_fqdn(host)}"
            why = f"clients use it to find the {kind} server (RFC 6186 §3)"
        out.append(Expected(f"{label}.{domain}", "SRV", value, why, "srv", "clients"))
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    out += [
        Expected(
            f"mta-sts.{domain}",
            "CNAME",
            _fqdn(host),
            f"senders fetch the MTA-STS policy from https://mta-sts.{domain}/ (RFC 8461 §3.3)",
            "alias",
            "mta-sts",
        ),
        Expected(
            f"_mta-sts.{domain}",
            "TXT",
            f"v=STSv1; id={stamp}",
            "senders look for exactly one v=STSv1 record before fetching the policy "
            "(RFC 8461 §3.1)",
            "mta-sts",
            "mta-sts",
        ),
        Expected(
            f"_smtp._tls.{domain}",
            "TXT",
            f"v=TLSRPTv1; rua=mailto:postmaster@{domain}",
            "senders report TLS failures only to exactly one v=TLSRPTv1 record (RFC 8460 §3)",
            "tls-rpt",
            "mta-sts",
        ),
    ]
    return out


def txt_strings(text: str) -> list[bytes]:
    """``text`` as character-strings of at most 255 octets (RFC 1035 §3.3.14).

    Receivers concatenate them without separator (RFC 7208 §3.3, RFC 6376
    §3.6.2.2), so the split points carry no meaning; they fall on UTF-8
    character boundaries so that each piece still reads as text.
    """
    data = text.encode("utf-8")
    pieces: list[bytes] = []
    while len(data) > MAX_CHARACTER_STRING:
        cut = MAX_CHARACTER_STRING
        while cut > 0 and (data[cut] & 0xC0) == 0x80:  # inside a multi-octet character
            cut -= 1
        pieces.append(data[:cut])
        data = data[cut:]
    pieces.append(data)
    return pieces


def _quote(piece: bytes) -> str:
    """One character-string in zone-file syntax (RFC 1035 §5.1): ``"`` and ``\\`` escaped."""
    text = piece.decode("utf-8")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rdata(record: Expected) -> str:
    if record.rtype != "TXT":
        return record.value
    pieces = [_quote(p) for p in txt_strings(record.value)]
    if len(pieces) == 1:
        return pieces[0]
    # Parentheses let one record span several strings on one line (RFC 1035 §5.1).
    return "( " + " ".join(pieces) + " )"


def _header(section: Section, settings: Settings, domain: str) -> list[str]:
    host = settings.hostname.rstrip(".")
    if section == "mail":
        return [f"; Mail for {domain}, served by {host}"]
    if section == "dkim":
        return ["; DKIM keys (RFC 6376 §3.6.1, RFC 8463); mail is signed with the active ones"]
    if section == "dmarc":
        return ["; DMARC (RFC 7489): reject mail that fails SPF and DKIM, send daily reports"]
    if section == "clients":
        return ["; Client auto-configuration (Thunderbird, Outlook, Apple; RFC 6186)"]
    return [
        "; MTA-STS (RFC 8461) and TLS reports (RFC 8460); the policy is served",
        f"; at https://mta-sts.{domain}/.well-known/mta-sts.txt",
    ]


def _reminder(record: Expected) -> list[str]:
    """The comment lines standing for a record that is not in this zone."""
    host = _fqdn(record.name)
    if record.kind == "addresses":
        return [f"; {host} needs A/AAAA records with this server's public addresses,"]
    return [
        f"; and each address a PTR record back to {host} (reverse DNS, RFC 1035 §3.5).",
        "; PTR records live in the reverse zone of whoever owns the address: ask your",
        "; provider. Many receivers refuse mail from an address whose PTR name does not",
        '; resolve back to it ("iprev", RFC 8601 §3).',
    ]


def render(records_: Sequence[Expected], settings: Settings, domain: str) -> list[str]:
    """Zone-file lines for ``records_``, grouped by section with a header each."""
    domain = domain.rstrip(".").lower()
    out: list[str] = []
    section: Section | None = None
    seen: set[Section] = set()
    for record in records_:
        if record.section != section:
            if out:
                out.append("")
            if record.section == "dmarc" and "dkim" not in seen:
                # DKIM comes before DMARC; say why there is none rather than nothing.
                out += _header("dkim", settings, domain)
                out += [f"; none yet: pochta domain dkim rotate {domain} makes a pair", ""]
            section = record.section
            seen.add(section)
            out += _header(section, settings, domain)
        out += record.notes
        if not record.in_zone:
            out += _reminder(record)
            continue
        out.append(f"{_fqdn(record.name)}\t{TTL}\tIN\t{record.rtype}\t{_rdata(record)}")
    return out


def records(
    settings: Settings,
    domain: str,
    *,
    keys: Sequence[DKIMKey] | None = None,
    now: float | None = None,
) -> list[str]:
    """Zone-file lines for ``domain`` served by these settings (see :func:`expected`)."""
    return render(expected(settings, domain, keys=keys, now=now), settings, domain)
