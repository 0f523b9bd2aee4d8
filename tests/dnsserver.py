"""A real DNS server on loopback for integration tests (UDP and TCP, one port).

It serves a :class:`pochta.dns.mock.Zones` -- the same data a unit test gives
``DictResolver`` -- so a scenario runs unchanged against the real resolver::

    with DNSTestServer({"one.test": {"MX": [(10, "mail.one.test")]}}) as dns:
        settings_text = f'[dns]\\nnameservers = ["{dns.hostport}"]'
        dns.zones.set("mail.one.test", "A", ["127.0.0.1"])   # change it live

It answers as a recursive resolver would: NXDOMAIN for unknown names (with
an SOA, so negative answers are cached only for ``ttl``), CNAME
chains in the answer section, the AD bit for names marked authentic, and the
failures injected with ``zones.fail(name, type, "servfail"|"refused"|"timeout")``
("timeout" = no reply at all). UDP answers larger than 512 octets
are truncated (TC), so clients must retry over TCP as RFC 7766 §5 requires.
Built on dnslib's threaded socketserver; ``close()`` shuts both sockets.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import Any

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, SRV, TLSA, TXT, A, DNSRecord
from dnslib.server import DNSHandler, DNSServer

from pochta.dns import records
from pochta.dns.mock import Record, Zones

#: Default TTL of every record: 0, so that a caching resolver sees zone changes
#: at once (tests change zones between steps); pass ``ttl=`` to test caching.
TTL = 0
#: UDP answers above this size are truncated (RFC 1035 §4.2.1, ignoring EDNS).
UDP_LIMIT = 512

_FAILURE_RCODES = {
    "servfail": RCODE.SERVFAIL,
    "refused": RCODE.REFUSED,
}


class _Drop(Exception):
    """Raised by the resolver to send no reply (a simulated timeout)."""


class _QuietLogger:
    """dnslib logs every packet to stdout by default; tests want silence."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


class _Handler(DNSHandler):
    def handle(self) -> None:
        try:
            super().handle()
        except _Drop:
            pass

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply: DNSRecord = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp" and len(packed) > UDP_LIMIT:
            # RFC 2181 §9: set TC and keep the question (dnslib's truncate()
            # drops it, which clients reject); the client retries over TCP.
            truncated = request.reply()
            truncated.header.tc = 1
            truncated.header.rcode = reply.header.rcode
            packed = truncated.pack()
        return packed


def _rdata(rtype: str, record: Record) -> Any:
    """One typed record as dnslib rdata."""
    if rtype == "A":
        assert isinstance(record, IPv4Address)
        return A(str(record))
    if rtype == "AAAA":
        assert isinstance(record, IPv6Address)
        return AAAA(str(record))
    if rtype == "MX":
        assert isinstance(record, records.MX)
        return MX(record.exchange + "." if record.exchange else ".", record.preference)
    if rtype == "TXT":
        assert isinstance(record, records.TXT)
        return TXT(list(record.strings))
    if rtype == "SRV":
        assert isinstance(record, records.SRV)
        target = record.target + "." if record.target else "."
        return SRV(record.priority, record.weight, record.port, target)
    if rtype == "TLSA":
        assert isinstance(record, records.TLSA)
        return TLSA(record.usage, record.selector, record.mtype, record.data)
    if rtype == "PTR":
        assert isinstance(record, str)
        return PTR(record + ".")
    raise ValueError(rtype)


class _ZoneResolver:
    def __init__(self, zones: Zones, ttl: int) -> None:
        self.zones = zones
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()  # copies id, question, RD; sets QR and AA
        reply.header.ra = 1
        qname = str(request.q.qname)
        qtype = QTYPE[request.q.qtype]
        self.queries.append((qname.rstrip(".").lower(), qtype))
        result = self.zones.lookup(qname, qtype)
        if result.failure == "timeout":
            raise _Drop
        if result.failure is not None:
            reply.header.rcode = _FAILURE_RCODES[result.failure]
            return reply
        for owner, target in result.cnames:
            cname = CNAME(target + ".")
            reply.add_answer(RR(owner + ".", QTYPE.CNAME, rdata=cname, ttl=self.ttl))
        owner = (result.cnames[-1][1] if result.cnames else qname.rstrip(".")) + "."
        if result.nxdomain:
            reply.header.rcode = RCODE.NXDOMAIN
        for record in result.records:
            rdata = _rdata(qtype, record)
            reply.add_answer(RR(owner, getattr(QTYPE, qtype), rdata=rdata, ttl=self.ttl))
        if not result.records:
            # RFC 2308 §3: a negative answer carries an SOA whose MINIMUM is its
            # cache time; without one dnspython would cache it for 300 s.
            soa = SOA("ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, self.ttl))
            reply.add_auth(RR(".", QTYPE.SOA, rdata=soa, ttl=self.ttl))
        # reply() copies the request's flags, AD included: set it from the data.
        reply.header.ad = 1 if result.authentic else 0
        return reply


class DNSTestServer:
    """A UDP+TCP DNS server on 127.0.0.1 and a free port, serving ``zones``."""

    def __init__(
        self,
        zones: Mapping[str, Mapping[str, object]] | Zones | None = None,
        host: str = "127.0.0.1",
        *,
        ttl: int = TTL,
    ) -> None:
        self.zones = zones if isinstance(zones, Zones) else Zones(zones)
        self.resolver = _ZoneResolver(self.zones, ttl)
        self.host = host
        self._servers: list[DNSServer] = []
        self._threads: list[threading.Thread] = []
        self.port = self._bind()
        for server in self._servers:
            thread = threading.Thread(
                target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _bind(self) -> int:
        """UDP on a free port, then TCP on the same one (retried if it is taken)."""
        for _ in range(20):
            udp = DNSServer(self.resolver, self.host, 0, logger=_QuietLogger(), handler=_Handler)
            port: int = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    self.resolver,
                    self.host,
                    port,
                    tcp=True,
                    logger=_QuietLogger(),
                    handler=_Handler,
                )
            except OSError:
                udp.server.server_close()
                continue
            self._servers = [udp, tcp]
            return port
        raise OSError("no port free for both UDP and TCP")

    @property
    def hostport(self) -> str:
        """``"127.0.0.1:PORT"``, as ``[dns].nameservers`` and ``--nameserver`` take it."""
        return f"{self.host}:{self.port}"

    @property
    def queries(self) -> list[tuple[str, str]]:
        """Every (name, type) asked so far, over either transport."""
        return self.resolver.queries

    def close(self) -> None:
        for server in self._servers:
            server.server.shutdown()
        for thread in self._threads:
            thread.join(5)
        for server in self._servers:
            server.server.server_close()
        self._servers = []

    def __enter__(self) -> DNSTestServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
