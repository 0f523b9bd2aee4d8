"""Thunderbird autoconfig: the ``clientConfig version="1.1"`` document.

Design note
-----------
Thunderbird (and K-9/Thunderbird for Android, Evolution, KMail, FairEmail)
look for ``https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=ADDR``
and ``https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml``; both
paths are served here for every local domain. The domain is the address's
when ``emailaddress`` is given, else the request's ``Host`` without an
``autoconfig.`` prefix; an unknown domain is 404, a malformed address 400.

The document follows Mozilla's config-v1.1 format (the "Autoconfiguration"
page of the Thunderbird wiki): one ``emailProvider`` whose ``id`` and
``domain`` are the domain, then one ``incomingServer`` per IMAP/POP3 listener
and one ``outgoingServer`` per submission listener, in the preference order of
:mod:`pochta.web.services` (Thunderbird takes the first it can use).
``username`` is the placeholder ``%EMAILADDRESS%``, so the document is the
same for every user of the domain. ``authentication`` is
``password-cleartext`` (PLAIN/LOGIN inside TLS): it is the only config-v1.1
value that covers what Pochta offers -- the format has no name for
SCRAM-SHA-256, and ``password-encrypted`` means CRAM-MD5, which would need
clear-text passwords on the server.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement, tostring

from aiohttp import web

from pochta.web.common import (
    context,
    domain_from_host,
    local_domain_or_none,
    parse_address_param,
    plain,
)
from pochta.web.services import Service

__all__ = ["PATHS", "config_v11", "handle_config_v11"]

#: The two URLs Thunderbird fetches (autoconfig.<domain> and the domain's well-known).
PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")

_SOCKET_TYPE = {"ssl": "SSL", "starttls": "STARTTLS", "plain": "plain"}


def config_v11(domain: str, services: list[Service]) -> bytes:
    """The config-v1.1 XML for ``domain`` (UTF-8, with declaration)."""
    root = Element("clientConfig", version="1.1")
    provider = SubElement(root, "emailProvider", id=domain)
    SubElement(provider, "domain").text = domain
    SubElement(provider, "displayName").text = f"{domain} mail"
    SubElement(provider, "displayShortName").text = domain
    for service in services:
        tag = "incomingServer" if service.incoming else "outgoingServer"
        server = SubElement(provider, tag, type=service.protocol)
        SubElement(server, "hostname").text = service.hostname
        SubElement(server, "port").text = str(service.port)
        SubElement(server, "socketType").text = _SOCKET_TYPE[service.security]
        SubElement(server, "authentication").text = "password-cleartext"
        SubElement(server, "username").text = "%EMAILADDRESS%"
    data: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


async def handle_config_v11(request: web.Request) -> web.Response:
    """GET ``/mail/config-v1.1.xml`` and ``/.well-known/autoconfig/mail/config-v1.1.xml``."""
    ctx = context(request)
    if "emailaddress" in request.query:
        address = parse_address_param(request.query.get("emailaddress"))
        if address is None:
            return plain(400, "emailaddress is not a valid mail address")
        domain = local_domain_or_none(ctx, address.domain)
    else:
        domain = local_domain_or_none(ctx, domain_from_host(request, ("autoconfig.",)))
    if domain is None:
        return plain(404, "no mail service is configured here for that domain")
    return web.Response(
        body=config_v11(domain, ctx.services()),
        content_type="application/xml",
        charset="utf-8",
    )
