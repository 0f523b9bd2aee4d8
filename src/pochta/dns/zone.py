"""The DNS records a Pochta domain publishes, as zone-file lines.

``pochta dns records DOMAIN`` prints them ready to paste. What is here today:

* MX → ``hostname`` (RFC 5321 §5.1), and a reminder of its A/AAAA and PTR;
* SPF (RFC 7208) for the domain (``mx``) and for the host itself (HELO
  checks, RFC 7208 §2.3);
* the client-setup names: ``autoconfig`` and ``autodiscover`` CNAMEs, the
  ``_autodiscover._tcp`` SRV, and the RFC 6186 SRV records — a real record
  for each client service the settings advertise (the same rules as the
  autoconfig documents, ``pochta.web.services``), and the "not available"
  record (target ``.``, RFC 6186 §4 / RFC 2782) for each one they do not;
* MTA-STS (RFC 8461 §3.1) and TLS reporting (RFC 8460 §3) TXT records.

DKIM keys and DMARC come with sender verification (a later issue).
"""

from __future__ import annotations

import time

from pochta.config import Settings
from pochta.web.services import STANDARD_PORTS, advertised_services

#: RFC 6186 §3 service labels, by ``[listen]`` kind.
SRV_NAMES = {
    "imaps": "_imaps._tcp",
    "imap": "_imap._tcp",
    "pop3s": "_pop3s._tcp",
    "pop3": "_pop3._tcp",
    "submissions": "_submissions._tcp",
    "submission": "_submission._tcp",
}


def records(settings: Settings, domain: str, *, now: float | None = None) -> list[str]:
    """Zone-file lines for ``domain`` served by these settings."""
    host = settings.hostname.rstrip(".") + "."
    zone = domain.rstrip(".") + "."
    ttl = 3600
    out = [
        f"; Mail for {domain}, served by {settings.hostname}",
        f"{zone}\t{ttl}\tIN\tMX\t10 {host}",
        f"; {host} needs A/AAAA records with this server's public addresses,",
        f"; and each address a PTR record back to {host} (reverse DNS: ask your provider)",
        f'{zone}\t{ttl}\tIN\tTXT\t"v=spf1 mx -all"',
        f'{host}\t{ttl}\tIN\tTXT\t"v=spf1 a -all"',
        "",
        "; Client auto-configuration (Thunderbird, Outlook, Apple; RFC 6186)",
        f"autoconfig.{zone}\t{ttl}\tIN\tCNAME\t{host}",
        f"autodiscover.{zone}\t{ttl}\tIN\tCNAME\t{host}",
    ]
    https = 443 if settings.listen.https else None
    if https:
        out.append(f"_autodiscover._tcp.{zone}\t{ttl}\tIN\tSRV\t0 1 {https} {host}")
    offered = {service.kind: service for service in advertised_services(settings)}
    for kind, label in SRV_NAMES.items():
        service = offered.get(kind)
        if service is None:
            # RFC 6186 §4: "." as target says the service is not offered.
            out.append(f"{label}.{zone}\t{ttl}\tIN\tSRV\t0 0 0 .")
        else:
            # Implicit TLS is preferred over STARTTLS (RFC 8314 §5.1).
            priority = 0 if kind in ("imaps", "pop3s", "submissions") else 10
            port = service.port or STANDARD_PORTS[kind]
            out.append(f"{label}.{zone}\t{ttl}\tIN\tSRV\t{priority} 1 {port} {host}")
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(now))
    out += [
        "",
        "; MTA-STS (RFC 8461) and TLS reports (RFC 8460); the policy is served",
        f"; at https://mta-sts.{domain}/.well-known/mta-sts.txt",
        f"mta-sts.{zone}\t{ttl}\tIN\tCNAME\t{host}",
        f'_mta-sts.{zone}\t{ttl}\tIN\tTXT\t"v=STSv1; id={stamp}"',
        f'_smtp._tls.{zone}\t{ttl}\tIN\tTXT\t"v=TLSRPTv1; rua=mailto:postmaster@{domain}"',
    ]
    return out
