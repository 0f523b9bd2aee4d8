"""Apple configuration profile: ``GET /apple/mobileconfig?emailaddress=ADDR``.

Design note
-----------
iOS, iPadOS and macOS install a ``.mobileconfig`` property list (Apple's
"Configuration Profile Reference", payload ``com.apple.mail.managed``) opened
from Safari or Mail. The profile holds one mail account: the preferred IMAP
listener (POP3 when there is no IMAP) and the preferred submission listener
of :mod:`pochta.web.services`, the address as user name for both, password
authentication, and ``OutgoingPasswordSameAsIncomingPassword`` so the user
types the password once while installing. ``UseSSL`` is true for implicit TLS
and for STARTTLS alike (Apple Mail then upgrades on 143/587).

Identifiers and UUIDs are derived from the canonical address (UUID version 5),
so downloading the profile again replaces the installed one instead of adding
a second account. The profile is unsigned: the device shows it as "Not
Verified" but installs it. ``plistlib`` escapes every string.
"""

from __future__ import annotations

import plistlib
import uuid
from typing import Any

from aiohttp import web

from pochta.accounts import Address
from pochta.web.common import context, local_domain_or_none, parse_address_param, plain
from pochta.web.services import Service

__all__ = ["CONTENT_TYPE", "PATH", "handle_mobileconfig", "mobileconfig"]

PATH = "/apple/mobileconfig"
CONTENT_TYPE = "application/x-apple-aspen-config"

_NAMESPACE = uuid.UUID("9b1d2a0e-5d0f-4c36-9d2e-70f4c7a1b001")  # Pochta's own UUIDv5 namespace


def _reverse(domain: str) -> str:
    return ".".join(reversed(domain.split(".")))


def mobileconfig(address: Address, incoming: Service, outgoing: Service) -> bytes:
    """The profile's XML property list."""
    key = address.key
    account_uuid = uuid.uuid5(_NAMESPACE, f"mail-account:{key}")
    profile_uuid = uuid.uuid5(_NAMESPACE, f"profile:{key}")
    text = str(address)
    account: dict[str, Any] = {
        "EmailAccountDescription": text,
        "EmailAccountType": "EmailTypeIMAP" if incoming.protocol == "imap" else "EmailTypePOP",
        "EmailAddress": text,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": incoming.hostname,
        "IncomingMailServerPortNumber": incoming.port,
        "IncomingMailServerUseSSL": incoming.security != "plain",
        "IncomingMailServerUsername": text,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": outgoing.hostname,
        "OutgoingMailServerPortNumber": outgoing.port,
        "OutgoingMailServerUseSSL": outgoing.security != "plain",
        "OutgoingMailServerUsername": text,
        "OutgoingPasswordSameAsIncomingPassword": True,
        "PayloadDescription": f"Mail account {text}",
        "PayloadDisplayName": text,
        "PayloadIdentifier": f"{_reverse(address.domain)}.mail.account.{account_uuid}",
        "PayloadType": "com.apple.mail.managed",
        "PayloadUUID": str(account_uuid).upper(),
        "PayloadVersion": 1,
        "PreventAppSheet": False,
        "PreventMove": False,
        "SMIMEEnabled": False,
        "allowMailDrop": True,
    }
    profile: dict[str, Any] = {
        "PayloadContent": [account],
        "PayloadDescription": f"Mail settings for {text}",
        "PayloadDisplayName": f"{address.domain} mail",
        "PayloadIdentifier": f"{_reverse(address.domain)}.mail.profile.{profile_uuid}",
        "PayloadOrganization": address.domain,
        "PayloadRemovalDisallowed": False,
        "PayloadType": "Configuration",
        "PayloadUUID": str(profile_uuid).upper(),
        "PayloadVersion": 1,
    }
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)


async def handle_mobileconfig(request: web.Request) -> web.Response:
    """GET ``/apple/mobileconfig?emailaddress=ADDR``."""
    ctx = context(request)
    address = parse_address_param(request.query.get("emailaddress"))
    if address is None:
        return plain(400, "emailaddress is missing or not a valid mail address")
    if local_domain_or_none(ctx, address.domain) is None:
        return plain(404, "no mail service is configured here for that domain")
    services = ctx.services()
    incoming = next((s for s in services if s.protocol == "imap"), None) or next(
        (s for s in services if s.protocol == "pop3"), None
    )
    outgoing = next((s for s in services if s.protocol == "smtp"), None)
    if incoming is None or outgoing is None:
        return plain(404, "this server has no IMAP/POP3 or submission listener to describe")
    return web.Response(
        body=mobileconfig(address, incoming, outgoing),
        content_type=CONTENT_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{address.domain}.mobileconfig"',
        },
    )
