"""How discovery reaches the network: names through ``pochta.dns``, ports through a map.

Design note
-----------
Discovery resolves every host name with the :class:`~pochta.dns.Resolver` it
is given (DESIGN.md: only ``dns`` resolves names) -- for TCP probes, for the
IMAP/SMTP login check and, through :class:`DNSResolverForAiohttp`, for every
HTTP request -- so a test, or an administrator checking a zone before it is
public, points it at any name server (``--nameserver 127.0.0.1:5353``).

``port_map`` rewrites destination ports at connection time (``{443: 18443}``):
the report still shows what a real client would use (``autoconfig.x`` on 443,
IMAP on 993) while the bytes go to the test server's port. TLS is always
verified against the host name that was looked up (SNI and certificate
check), never against the address, with the system's CAs or ``cafile``.

Failures become :class:`NetError` whose message is a short sentence for the
report ("the name does not exist in DNS", "connection refused", "no answer
within 5 s", "TLS certificate not accepted: self-signed certificate").
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from pochta.dns import DNSError, IPAddress, Resolver, TemporaryDNSError, host_addresses

__all__ = ["DNSResolverForAiohttp", "NetError", "Network", "describe_http_error"]


class NetError(Exception):
    """A connection-level failure, described in words for the report."""


def _describe_os_error(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not accepted: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return exc.strerror or str(exc) or type(exc).__name__


class Network:
    """Name resolution, port mapping, TLS and timeouts for one discovery run."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        port_map: Mapping[int, int] | None = None,
        timeout: float = 10.0,
        cafile: Path | None = None,
    ) -> None:
        self.resolver = resolver
        self.port_map = dict(port_map or {})
        self.timeout = timeout
        self.tls = ssl.create_default_context()  # the system's CAs, hostname checks
        if cafile is not None:
            self.tls.load_verify_locations(cafile=str(cafile))  # in addition to them
        self.tls.minimum_version = ssl.TLSVersion.TLSv1_2

    def port(self, port: int) -> int:
        """The port actually connected to for ``port`` (see ``port_map``)."""
        return self.port_map.get(port, port)

    async def addresses(self, host: str) -> list[IPAddress]:
        """The addresses of ``host``; :class:`NetError` in words when there are none."""
        try:
            answer = await asyncio.wait_for(host_addresses(self.resolver, host), self.timeout)
        except TimeoutError:
            raise NetError(f"DNS gave no answer for {host} within {self.timeout:g} s") from None
        except TemporaryDNSError as exc:
            raise NetError(f"DNS lookup failed temporarily ({exc.reason})") from None
        except DNSError as exc:
            raise NetError(f"DNS lookup failed ({exc.reason})") from None
        if answer.nxdomain:
            raise NetError("the name does not exist in DNS")
        if not answer:
            raise NetError("the name has no address (A/AAAA) in DNS")
        return list(answer)

    async def open(
        self, host: str, port: int, *, tls: bool
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to ``host`` (each address in turn), TLS from the start if asked."""
        addresses = await self.addresses(host)
        last = "no address"
        for address in addresses:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(
                        str(address),
                        self.port(port),
                        ssl=self.tls if tls else None,
                        server_hostname=host if tls else None,
                        limit=64 * 1024,
                    ),
                    self.timeout,
                )
            except TimeoutError:
                last = f"no answer within {self.timeout:g} s"
            except OSError as exc:
                last = _describe_os_error(exc)
                if isinstance(exc, ssl.SSLError):
                    break  # the server is there; another address will not fix TLS
        raise NetError(last)

    async def start_tls(self, writer: asyncio.StreamWriter, host: str) -> None:
        """Upgrade a connection after STARTTLS/STLS (RFC 3207, RFC 2595)."""
        try:
            await asyncio.wait_for(writer.start_tls(self.tls, server_hostname=host), self.timeout)
        except TimeoutError:
            raise NetError(f"TLS handshake gave no answer within {self.timeout:g} s") from None
        except OSError as exc:
            raise NetError(_describe_os_error(exc)) from None

    def http_session(self) -> aiohttp.ClientSession:
        """An HTTP client whose names and ports go through this network (close it)."""
        connector = aiohttp.TCPConnector(
            resolver=DNSResolverForAiohttp(self),
            ssl=self.tls,
            use_dns_cache=False,
            limit=10,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": "pochta-discover"},
        )


class DNSResolverForAiohttp(AbstractResolver):
    """aiohttp's resolver hook: names via ``pochta.dns``, ports via the port map."""

    def __init__(self, network: Network) -> None:
        self.network = network

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            addresses = await self.network.addresses(host)
        except NetError as exc:
            raise OSError(str(exc)) from None
        results: list[ResolveResult] = []
        for address in addresses:
            fam = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            results.append(
                {
                    "hostname": host,
                    "host": str(address),
                    "port": self.network.port(port),
                    "family": fam,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            )
        return results

    async def close(self) -> None:
        return None


def describe_http_error(exc: BaseException, timeout: float) -> str:
    """An aiohttp or timeout exception as a short sentence."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        reason = getattr(cert_error, "verify_message", None) or str(cert_error)
        return f"TLS certificate not accepted: {reason}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return str(exc.os_error)
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return f"TLS handshake failed: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _describe_os_error(exc.os_error)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, aiohttp.ClientError):
        return f"HTTP error: {exc}"
    return str(exc) or type(exc).__name__
