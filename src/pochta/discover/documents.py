"""Reading the documents servers answer: config-v1.1 and autodiscover POX.

Design note
-----------
Pure functions, bytes in, settings out; the bytes come from servers we do not
trust, so they are parsed with defusedxml with DTDs refused, and every value
is checked (ports are 1..65535, host names are names, security values are the
documented ones); a server element with anything unusable is skipped with a
note rather than guessed at.

config-v1.1 (Thunderbird's "Autoconfiguration" format): ``incomingServer`` of
type ``imap`` or ``pop3`` and ``outgoingServer`` of type ``smtp``, each with
``hostname``, ``port``, ``socketType`` (``SSL``, ``STARTTLS``, ``plain``),
``username`` (with the placeholders ``%EMAILADDRESS%``, ``%EMAILLOCALPART%``,
``%EMAILDOMAIN%``) and ``authentication``. Placeholders in hostnames are
substituted too (``%EMAILDOMAIN%`` is common in shared documents).

POX ([MS-OXDSCLI] §2.2.4): ``Response/Account`` with ``Action`` ``settings``
(``Protocol`` entries of ``Type`` IMAP/POP3/SMTP), ``redirectAddr``
(``RedirectAddr``: ask again for another address) or ``redirectUrl``
(``RedirectUrl``: ask another server); or ``Response/Error``. Encryption:
``Encryption`` when present (``SSL``, ``TLS`` = STARTTLS, ``None``, ``Auto``
read as SSL), else ``SSL`` on/off (on meaning implicit TLS on 993/995/465 and
STARTTLS on any other port).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import defusedxml
import defusedxml.ElementTree

from pochta.accounts import Address
from pochta.discover.model import Protocol, Security, ServerSetting

__all__ = [
    "DocumentError",
    "PoxAnswer",
    "expand",
    "parse_config_v11",
    "parse_pox_response",
]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"(?=.{{1,254}}$){_LABEL}(?:\.{_LABEL})*\.?")
#: Ports on which "SSL on" without Encryption means TLS from the first byte.
_IMPLICIT_TLS_PORTS = frozenset({993, 995, 465})
_SOCKET_TYPES: dict[str, Security] = {"ssl": "ssl", "starttls": "starttls", "plain": "plain"}
_POX_ENCRYPTION: dict[str, Security] = {
    "ssl": "ssl",
    "tls": "starttls",
    "none": "plain",
    "auto": "ssl",
}
_POX_TYPES: dict[str, Protocol] = {"imap": "imap", "pop3": "pop3", "smtp": "smtp"}


class DocumentError(ValueError):
    """The document is not XML we may read, or not of the expected kind."""


def _parse(data: bytes) -> ET.Element:
    try:
        return defusedxml.ElementTree.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DefusedXmlException as exc:
        raise DocumentError(f"refused XML construct ({type(exc).__name__})") from None
    except (ET.ParseError, ValueError, UnicodeError) as exc:
        raise DocumentError(f"not well-formed XML ({exc})") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return ""


def expand(template: str, address: Address) -> str:
    """Substitute Thunderbird's placeholders with parts of ``address``."""
    local = str(address).rsplit("@", 1)[0]
    return (
        template.replace("%EMAILADDRESS%", str(address))
        .replace("%EMAILLOCALPART%", local)
        .replace("%EMAILDOMAIN%", address.domain)
    )


def _port(text: str) -> int | None:
    if not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def _host(text: str) -> str | None:
    return text.rstrip(".").lower() if _HOST_RE.fullmatch(text) else None


def parse_config_v11(
    data: bytes, address: Address
) -> tuple[list[ServerSetting], list[ServerSetting], list[str]]:
    """(incoming, outgoing, notes) from a config-v1.1 document, in document order."""
    root = _parse(data)
    if _local(root.tag) != "clientConfig":
        raise DocumentError("the root element is not clientConfig")
    providers = _children(root, "emailProvider")
    if not providers:
        raise DocumentError("no emailProvider element")
    incoming: list[ServerSetting] = []
    outgoing: list[ServerSetting] = []
    notes: list[str] = []
    for element in providers[0]:
        tag = _local(element.tag)
        if tag not in ("incomingServer", "outgoingServer"):
            continue
        kind = element.get("type", "").lower()
        wanted = ("imap", "pop3") if tag == "incomingServer" else ("smtp",)
        if kind not in wanted:
            notes.append(f"{tag} of type {kind or '?'} ignored")
            continue
        host = _host(expand(_text(element, "hostname"), address))
        port = _port(_text(element, "port"))
        security = _SOCKET_TYPES.get(_text(element, "socketType").lower())
        if host is None or port is None or security is None:
            notes.append(f"{tag} of type {kind} with an unusable hostname, port or socketType")
            continue
        username = expand(_text(element, "username") or "%EMAILADDRESS%", address)
        auth = tuple(
            (child.text or "").strip()
            for child in _children(element, "authentication")
            if (child.text or "").strip()
        )
        setting = ServerSetting(_POX_TYPES[kind], host, port, security, username, auth)
        (incoming if tag == "incomingServer" else outgoing).append(setting)
    return incoming, outgoing, notes


@dataclass(frozen=True, slots=True)
class PoxAnswer:
    """An autodiscover answer: settings, a redirect, or an error."""

    incoming: tuple[ServerSetting, ...] = ()
    outgoing: tuple[ServerSetting, ...] = ()
    redirect_address: str | None = None
    redirect_url: str | None = None
    error: str | None = None


def parse_pox_response(data: bytes, address: Address) -> PoxAnswer:
    """Read an autodiscover POX response ([MS-OXDSCLI] §2.2.4)."""
    root = _parse(data)
    if _local(root.tag) != "Autodiscover":
        raise DocumentError("the root element is not Autodiscover")
    responses = _children(root, "Response")
    if not responses:
        raise DocumentError("no Response element")
    response = responses[0]
    errors = _children(response, "Error")
    if errors:
        code = _text(errors[0], "ErrorCode") or "?"
        message = _text(errors[0], "Message") or "no message"
        return PoxAnswer(error=f"autodiscover error {code}: {message}")
    accounts = _children(response, "Account")
    if not accounts:
        raise DocumentError("no Account element")
    account = accounts[0]
    action = _text(account, "Action").lower()
    if action == "redirectaddr":
        return PoxAnswer(redirect_address=_text(account, "RedirectAddr") or None)
    if action == "redirecturl":
        return PoxAnswer(redirect_url=_text(account, "RedirectUrl") or None)
    incoming: list[ServerSetting] = []
    outgoing: list[ServerSetting] = []
    for protocol in _children(account, "Protocol"):
        kind = _POX_TYPES.get(_text(protocol, "Type").lower())
        host = _host(_text(protocol, "Server"))
        port = _port(_text(protocol, "Port"))
        if kind is None or host is None or port is None:
            continue
        encryption = _text(protocol, "Encryption").lower()
        if encryption:
            security = _POX_ENCRYPTION.get(encryption)
            if security is None:
                continue
        else:
            # Older answers only say SSL on/off; on a STARTTLS port that means STARTTLS.
            if _text(protocol, "SSL").lower() == "off":
                security = "plain"
            else:
                security = "ssl" if port in _IMPLICIT_TLS_PORTS else "starttls"
        username = _text(protocol, "LoginName") or str(address)
        setting = ServerSetting(kind, host, port, security, username)
        (outgoing if kind == "smtp" else incoming).append(setting)
    return PoxAnswer(tuple(incoming), tuple(outgoing))
