"""DNS for all of Pochta: one async resolver interface, typed records, typed errors.

DESIGN.md: "only dns resolves names". Everything that looks up a name takes a
:class:`Resolver`: production code builds a :class:`StubResolver` from
``[dns]`` (``StubResolver.from_settings(settings.dns)``), tests pass a
:class:`DictResolver`. Lookups return an :class:`Answer` (empty for NODATA,
``nxdomain`` for a name that does not exist, ``authentic`` for DNSSEC) or
raise :class:`TemporaryDNSError` / :class:`PermanentDNSError`. See
``docs/dns.md`` for the records a Pochta domain publishes.
"""

from pochta.dns.client import DNSConfigError, StubResolver
from pochta.dns.mock import DictResolver, Zones
from pochta.dns.records import (
    MX,
    SRV,
    TLSA,
    TXT,
    Answer,
    DNSError,
    IPAddress,
    PermanentDNSError,
    TemporaryDNSError,
    order_srv,
)
from pochta.dns.resolver import Resolver, host_addresses, tlsa_name

__all__ = [
    "MX",
    "SRV",
    "TLSA",
    "TXT",
    "Answer",
    "DNSConfigError",
    "DNSError",
    "DictResolver",
    "IPAddress",
    "PermanentDNSError",
    "Resolver",
    "StubResolver",
    "TemporaryDNSError",
    "Zones",
    "host_addresses",
    "order_srv",
    "tlsa_name",
]
