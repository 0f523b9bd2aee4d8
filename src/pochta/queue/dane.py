"""DANE for the mail we send (RFC 7672): TLSA records say how an MX host's
TLS certificate is authenticated, when DNSSEC vouches for them.

Design note
-----------
We do not validate DNSSEC ourselves: the resolver does, and says so with
the AD bit (``Answer.authentic``; docs/dns.md: point ``[dns].nameservers``
at a validating resolver on loopback). For each MX host, after its address
lookup (:func:`dane_policy`):

* addresses not authentic: DANE does not apply to the host (RFC 7672
  §2.2.2: the TLSA base domain must be secure); opportunistic TLS as before;
* ``_25._tcp.<host>`` TLSA asked. Not authentic, or none: DANE does not
  apply. The lookup failing (a timeout, SERVFAIL) is not "none": the host
  is skipped for now (§2.2: a failed lookup must not become cleartext);
* authentic TLSA records: STARTTLS is required, with the MX host name as
  SNI (§8.1). The *usable* ones authenticate the certificate: DANE-EE
  (usage 3, §3.1.1) with selector 0 (the whole certificate) or 1 (its
  SubjectPublicKeyInfo) and matching type 0 (exact), 1 (SHA-256) or 2
  (SHA-512). DANE-EE checks no name, dates or issuer, only that match.
  When every record is unusable, TLS is still required but not
  authenticated (§2.2: "mandatory unauthenticated TLS").

Not done: DANE-TA (usage 2) needs the peer's certificate chain, which
Python 3.11's ssl module does not give; such records count as unusable.
A host with DANE is authenticated by DANE, not by MTA-STS's PKIX check
(RFC 8461 §2); an MTA-STS policy still limits which MX hosts are used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pochta.dns.records import TLSA, DNSError, TemporaryDNSError
from pochta.dns.resolver import Resolver

__all__ = ["DaneError", "DanePolicy", "dane_policy", "usable"]

#: RFC 7672 §3.1.1 DANE-EE(3); §3.1.3: PKIX-TA(0)/PKIX-EE(1) are not for SMTP.
DANE_EE = 3


class DaneError(Exception):
    """The host's TLSA records could not be looked up (try it later)."""


@dataclass(frozen=True, slots=True)
class DanePolicy:
    """An MX host's authentic TLSA records: TLS is required; ``records``
    (the usable ones) authenticate it, none means unauthenticated TLS."""

    host: str
    records: tuple[TLSA, ...]

    def matches(self, certificate: bytes) -> bool:
        """Whether the server's certificate (DER) matches a usable record."""
        try:
            cert = x509.load_der_x509_certificate(certificate)
        except ValueError:
            return False
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for record in self.records:
            selected = certificate if record.selector == 0 else spki
            if record.mtype == 1:
                selected = hashlib.sha256(selected).digest()
            elif record.mtype == 2:
                selected = hashlib.sha512(selected).digest()
            if selected == record.data:
                return True
        return False


def usable(record: TLSA) -> bool:
    """A record this client can authenticate with (see the module note)."""
    return record.usage == DANE_EE and record.selector in (0, 1) and record.mtype in (0, 1, 2)


async def dane_policy(
    resolver: Resolver, host: str, addresses_authentic: bool
) -> DanePolicy | None:
    """The DANE policy of MX ``host``, None when DANE does not apply to it.

    Raises DaneError when the TLSA lookup itself failed.
    """
    if not addresses_authentic:
        return None
    try:
        answer = await resolver.tlsa(f"_25._tcp.{host}")
    except TemporaryDNSError as exc:
        raise DaneError(f"TLSA lookup for {host} failed: {exc}") from exc
    except DNSError:
        return None
    if not answer or not answer.authentic:
        return None
    return DanePolicy(host, tuple(r for r in answer if usable(r)))
