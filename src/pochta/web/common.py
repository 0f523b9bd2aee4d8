"""What every HTTP handler shares: the context, request parsing, safe responses.

Design note
-----------
Handlers are small functions of (request) that read the shared
:class:`WebContext` from the application. Everything a client sends is
untrusted: the ``Host`` header and the address parameters are parsed into a
canonical domain or :class:`~pochta.accounts.Address` before use, and a value
that does not parse is a 400 whose body never repeats it. Documents are built
with XML/plist/JSON serializers (never string formatting), so whatever does
appear in them is escaped by construction.

Who exists is not revealed: the documents depend only on the domain, so an
address at a local domain gets the domain's settings whether or not the user
exists (answering differently would let anyone enumerate accounts without a
password). Unknown domains are 404.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from pochta.accounts import Accounts, Address, AddressError, parse_address, parse_domain
from pochta.config import Settings
from pochta.web.services import BoundPorts, Service, advertised_port, advertised_services

__all__ = [
    "CONTEXT",
    "MAX_ADDRESS_LENGTH",
    "WebContext",
    "context",
    "domain_from_host",
    "local_domain_or_none",
    "parse_address_param",
    "plain",
    "security_headers",
]

log = logging.getLogger("pochta.web")

#: RFC 5321 §4.5.3.1.3: a path is at most 256 octets; anything longer is refused early.
MAX_ADDRESS_LENGTH = 320

#: Sent with every response: no sniffing, no script, no framing, no caching of
#: per-address documents by shared caches.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, max-age=300",
}


@dataclass(frozen=True)
class WebContext:
    """Settings, accounts and the live listener ports the handlers need."""

    settings: Settings
    accounts: Accounts
    bound: BoundPorts

    def services(self) -> list[Service]:
        """The services to advertise, computed per request (ports may be bound late)."""
        return advertised_services(self.settings, self.bound)

    def base_url(self) -> str:
        """This server's public web address: https when it has an HTTPS listener."""
        for scheme, default in (("https", 443), ("http", 80)):
            configured = getattr(self.settings.listen, scheme)
            port = advertised_port(scheme, configured, self.bound(scheme))
            if port is not None:
                suffix = "" if port == default else f":{port}"
                return f"{scheme}://{self.settings.hostname}{suffix}"
        return f"https://{self.settings.hostname}"

    def is_local_domain(self, domain: str) -> bool:
        return self.accounts.is_local_domain(domain)


CONTEXT = web.AppKey("pochta.web.context", WebContext)


def plain(status: int, text: str) -> web.Response:
    """A short text/plain response; ``text`` must not contain client input."""
    return web.Response(status=status, text=text + "\n", content_type="text/plain")


def domain_from_host(request: web.Request, prefixes: tuple[str, ...] = ()) -> str | None:
    """The mail domain a request's ``Host`` names, or None.

    ``autoconfig.example.org:8080`` with prefix ``autoconfig.`` -> ``example.org``.
    IP literals and names that are not valid domains give None; the result is
    canonical (lower case, A-labels) as :func:`~pochta.accounts.parse_domain` makes it.
    """
    host = request.headers.get("Host", "").strip()
    if not host or host.startswith("[") or len(host) > 300:
        return None
    name, colon, port = host.rpartition(":")
    if not colon:
        name = host
    elif not port.isdigit():
        return None
    name = name.rstrip(".").lower()
    try:
        ipaddress.ip_address(name)
        return None
    except ValueError:
        pass
    for prefix in prefixes:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    try:
        return parse_domain(name)
    except AddressError:
        return None


def parse_address_param(text: str | None) -> Address | None:
    """An address from a query parameter or body; None when it is not one."""
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > MAX_ADDRESS_LENGTH:
        return None
    try:
        return parse_address(text)
    except AddressError:
        return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Add :data:`SECURITY_HEADERS`; turn an unexpected exception into a bare 500."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        for name, value in SECURITY_HEADERS.items():
            exc.headers.setdefault(name, value)
        raise
    except Exception:
        log.exception("http error method=%s path=%s", request.method, request.path)
        response = plain(500, "internal error")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def local_domain_or_none(ctx: WebContext, domain: str | None) -> str | None:
    """``domain`` if it is one of ours."""
    if domain is None or not ctx.is_local_domain(domain):
        return None
    return domain


def context(request: web.Request) -> WebContext:
    return request.app[CONTEXT]
