"""Outlook autodiscover: the POX (plain old XML) service and the JSON v2 locator.

Design note
-----------
POX ([MS-OXDSCLI] §2.2.3, §3.1.5): Outlook POSTs to
``/autodiscover/autodiscover.xml`` (Exchange spells it
``/Autodiscover/Autodiscover.xml``; both are routed) a request in the
``.../outlook/requestschema/2006`` namespace naming ``EMailAddress`` and the
``AcceptableResponseSchema``. The answer is an ``Account`` of ``AccountType``
email with one ``Protocol`` per type -- IMAP, POP3, SMTP, each the preferred
listener of :mod:`pochta.web.services` -- in the
``.../outlook/responseschema/2006a`` namespace. ``Encryption`` (``SSL`` for
implicit TLS, ``TLS`` for STARTTLS, ``None``) is given alongside the older
``SSL`` on/off, which Outlook ignores when ``Encryption`` is present.
``LoginName`` is the address as the user typed it (canonicalized).

The body is untrusted XML: it is parsed with defusedxml with every DTD
refused, so external entities (XXE) and entity expansion ("billion laughs")
never run; such a body, one that is not XML, or one without an
``EMailAddress`` is 400 with the schema's ``Error`` form (ErrorCode 600,
"Invalid Request"). A body over :data:`MAX_BODY` is 413 before parsing. An
address at a domain that is not ours is 404 with ErrorCode 500 ("The e-mail
address cannot be found."). A request for another response schema (e.g.
ActiveSync's ``mobilesync``) gets ErrorCode 601 ("Provider is not available").

Outlook probes ``http://autodiscover.<domain>/autodiscover/autodiscover.xml``
with GET and follows a redirect to HTTPS; a GET is therefore answered with a
302 to this server's HTTPS endpoint (or 405 when there is none).

JSON v2 (Outlook 2016+, Outlook mobile): ``GET
/autodiscover/autodiscover.json/v1.0/ADDR?Protocol=AutodiscoverV1`` (or
``/autodiscover/autodiscover.json?Email=ADDR&Protocol=...``) answers
``{"Protocol": "AutodiscoverV1", "Url": ".../autodiscover/autodiscover.xml"}``
-- the POX endpoint of this server. Other protocols (EWS, ActiveSync, REST)
are not offered: 400 ``InvalidProtocol``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import xml.etree.ElementTree as ET
from xml.etree.ElementTree import Element, SubElement

import defusedxml
import defusedxml.ElementTree
from aiohttp import web

from pochta.accounts import Address
from pochta.web.common import (
    context,
    local_domain_or_none,
    parse_address_param,
    plain,
)
from pochta.web.services import Service

__all__ = [
    "JSON_PATHS",
    "MAX_BODY",
    "OUTLOOK_RESPONSE_NS",
    "POX_PATHS",
    "REQUEST_NS",
    "RESPONSE_NS",
    "handle_json",
    "handle_pox",
    "handle_pox_get",
    "parse_request",
    "pox_error",
    "pox_response",
]

REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE_NS = (
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

POX_PATHS = ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml")
JSON_PATHS = (
    "/autodiscover/autodiscover.json",
    "/Autodiscover/Autodiscover.json",
    "/autodiscover/autodiscover.json/v1.0/{address}",
    "/Autodiscover/Autodiscover.json/v1.0/{address}",
)

#: A POX request is a few hundred bytes; anything above this is refused unread.
MAX_BODY = 16 * 1024

#: [MS-OXDSCLI] §2.2.4.2.1.1 error codes used here.
ERROR_INVALID_REQUEST = 600
ERROR_PROVIDER_UNAVAILABLE = 601
ERROR_NOT_FOUND = 500

_TYPE = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
_ENCRYPTION = {"ssl": "SSL", "starttls": "TLS", "plain": "None"}


class BadRequest(ValueError):
    """The POX body is not a usable autodiscover request."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_request(body: bytes) -> tuple[str, str | None]:
    """(EMailAddress, AcceptableResponseSchema or None) of a POX request body.

    DTDs are refused outright (defusedxml ``forbid_dtd``): no XXE, no entity
    expansion. Element names are matched by local name, so a client that
    omits or misspells the request namespace still works.
    """
    try:
        root = defusedxml.ElementTree.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DefusedXmlException as exc:
        raise BadRequest(f"refused XML construct: {type(exc).__name__}") from None
    except (ET.ParseError, ValueError, UnicodeError) as exc:
        raise BadRequest(f"not well-formed XML: {exc}") from None
    if _local(root.tag) != "Autodiscover":
        raise BadRequest("the root element is not Autodiscover")
    request = next((el for el in root if _local(el.tag) == "Request"), None)
    if request is None:
        raise BadRequest("no Request element")
    fields = {_local(el.tag): (el.text or "").strip() for el in request}
    address = fields.get("EMailAddress")
    if not address:
        raise BadRequest("no EMailAddress")
    return address, fields.get("AcceptableResponseSchema") or None


def _document(root: Element) -> bytes:
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def pox_response(address: Address, services: list[Service]) -> bytes:
    """The 2006a ``Account`` answer: one ``Protocol`` per protocol type."""
    # Literal xmlns attributes keep the namespaces as default namespaces, as
    # Exchange writes them; ElementTree would otherwise invent ns0: prefixes.
    root = Element("Autodiscover", xmlns=RESPONSE_NS)
    response = SubElement(root, "Response", xmlns=OUTLOOK_RESPONSE_NS)
    account = SubElement(response, "Account")
    SubElement(account, "AccountType").text = "email"
    SubElement(account, "Action").text = "settings"
    seen: set[str] = set()
    for service in services:
        if service.protocol in seen:
            continue
        seen.add(service.protocol)
        protocol = SubElement(account, "Protocol")
        SubElement(protocol, "Type").text = _TYPE[service.protocol]
        SubElement(protocol, "Server").text = service.hostname
        SubElement(protocol, "Port").text = str(service.port)
        SubElement(protocol, "DomainRequired").text = "off"
        SubElement(protocol, "LoginName").text = str(address)
        SubElement(protocol, "SPA").text = "off"
        SubElement(protocol, "SSL").text = "off" if service.security == "plain" else "on"
        SubElement(protocol, "Encryption").text = _ENCRYPTION[service.security]
        SubElement(protocol, "AuthRequired").text = "on"
        if service.protocol == "smtp":
            SubElement(protocol, "UsePOPAuth").text = "off"
            SubElement(protocol, "SMTPLast").text = "off"
    return _document(root)


def pox_error(code: int, message: str, server_name: str) -> bytes:
    """The schema's ``Error`` form ([MS-OXDSCLI] §2.2.4.2.1)."""
    root = Element("Autodiscover", xmlns=RESPONSE_NS)
    response = SubElement(root, "Response")
    now = dt.datetime.now(dt.UTC).strftime("%H:%M:%S.%f")
    ident = str(int.from_bytes(hashlib.sha256(server_name.encode()).digest()[:4], "big"))
    error = SubElement(response, "Error", Time=now, Id=ident)
    SubElement(error, "ErrorCode").text = str(code)
    SubElement(error, "Message").text = message
    SubElement(error, "DebugData")
    return _document(root)


def _xml(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type="text/xml", charset="utf-8")


async def handle_pox(request: web.Request) -> web.Response:
    """POST ``/autodiscover/autodiscover.xml``: the Outlook POX service."""
    ctx = context(request)
    hostname = ctx.settings.hostname
    if request.content_length is not None and request.content_length > MAX_BODY:
        return plain(413, "request body too large")
    body = bytearray()
    while len(body) <= MAX_BODY:
        chunk = await request.content.read(MAX_BODY + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > MAX_BODY:
        return plain(413, "request body too large")
    try:
        text, schema = parse_request(bytes(body))
    except BadRequest:
        return _xml(400, pox_error(ERROR_INVALID_REQUEST, "Invalid Request", hostname))
    if schema is not None and schema != OUTLOOK_RESPONSE_NS:
        unavailable = pox_error(ERROR_PROVIDER_UNAVAILABLE, "Provider is not available", hostname)
        return _xml(200, unavailable)
    address = parse_address_param(text)
    if address is None:
        return _xml(400, pox_error(ERROR_INVALID_REQUEST, "Invalid Request", hostname))
    if local_domain_or_none(ctx, address.domain) is None:
        return _xml(
            404, pox_error(ERROR_NOT_FOUND, "The e-mail address cannot be found.", hostname)
        )
    return _xml(200, pox_response(address, ctx.services()))


async def handle_pox_get(request: web.Request) -> web.Response:
    """GET on the POX path: redirect to the HTTPS endpoint (Outlook's HTTP probe)."""
    ctx = context(request)
    url = ctx.base_url()
    if not url.startswith("https://"):
        return plain(405, "autodiscover needs POST")
    location = url + POX_PATHS[0]
    return web.Response(status=302, headers={"Location": location}, text="")


def _json(status: int, data: dict[str, str]) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


async def handle_json(request: web.Request) -> web.Response:
    """GET ``/autodiscover/autodiscover.json/v1.0/ADDR?Protocol=...`` (Autodiscover v2)."""
    ctx = context(request)
    text = request.match_info.get("address") or request.query.get("Email")
    address = parse_address_param(text)
    if address is None:
        return _json(400, {"ErrorCode": "InvalidUser", "ErrorMessage": "Invalid email address."})
    protocol = request.query.get("Protocol", "")
    if protocol.lower() != "autodiscoverv1":
        return _json(
            400,
            {
                "ErrorCode": "InvalidProtocol",
                "ErrorMessage": "The given protocol value is invalid. "
                "Supported values are 'AutodiscoverV1'.",
            },
        )
    if local_domain_or_none(ctx, address.domain) is None:
        return _json(404, {"ErrorCode": "NotFound", "ErrorMessage": "Unknown domain."})
    url = ctx.base_url() + POX_PATHS[0]
    return _json(200, {"Protocol": "AutodiscoverV1", "Url": url})
