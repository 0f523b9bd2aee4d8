"""ARC, the Authenticated Received Chain (RFC 8617): verify a chain, seal a hop.

Design note
-----------
Like :mod:`pochta.mailauth.dkim`, the cryptography is dkimpy's (``dkim.ARC``)
and this module keeps DNS and CPU work off the event loop: the ARC header
fields are parsed in a worker thread, every key record named by an
ARC-Seal or ARC-Message-Signature (``<s>._domainkey.<d>``) is fetched
through our asynchronous resolver, and dkimpy validates the chain in a
worker thread with a ``dnsfunc`` that only answers from what was fetched.

The chain's verdict (RFC 8617 §5.2) is ``none`` (no ARC sets), ``pass`` or
``fail``. A key that cannot be fetched right now makes the chain ``fail``
with a reason saying so: ARC has no temperror (RFC 8617 §4.1.3 cv= values),
and a receiver that relaxes DMARC for a trusted chain (RFC 8617 §7.2) must
not do so on a chain it could not check.

Sealing (RFC 8617 §5.1) is done by a forwarder *after* it recorded its own
verdicts in an ``Authentication-Results`` field with its authserv-id (RFC
8601 §2.2), including ``arc=<result>`` when the message already had a chain
(§5.1.1: the new seal's cv= is that result). dkimpy's sealer copies those
results into the ARC-Authentication-Results field; it parses them with the
optional ``authres`` package, and when that is not installed we lend it a
small RFC 8601 parser of our own (:class:`_ARHeader`) that provides the
three things it uses: the authserv-id, and each result's method, result and
text. Seals are ``rsa-sha256`` only: that is the one ARC algorithm deployed
(and the only one dkimpy's ARC accepts); an Ed25519 seal would not verify
at most receivers.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dkim

from pochta.dns.records import DNSError, TemporaryDNSError
from pochta.dns.resolver import Resolver
from pochta.mailauth.dkim import LIB_LOG, MIN_RSA_BITS, signed_header_list
from pochta.mailauth.keys import DKIMKey

__all__ = ["MAX_INSTANCES", "ARCResult", "SealError", "seal_arc", "verify_arc"]

log = logging.getLogger("pochta.mailauth.arc")

#: RFC 8617 §4.2.1: at most 50 ARC sets; a longer chain fails.
MAX_INSTANCES = 50

_ARC_FIELDS = (b"arc-seal", b"arc-message-signature")


class SealError(ValueError):
    """The message cannot be sealed as asked (no key, no Authentication-Results of ours)."""


@dataclass(frozen=True, slots=True)
class ARCResult:
    """The verdict on a message's ARC chain (RFC 8617 §5.2, RFC 8601 ``arc=``)."""

    result: Literal["none", "pass", "fail"]
    instances: int
    """ARC sets on the message (the highest i=)."""
    reason: str
    """Short and printable; "" for a pass."""


# --- verifying ---------------------------------------------------------------------


def _parse_chain(message: bytes) -> tuple[Any, int, list[str]]:
    """dkimpy's parse, the highest instance, and the key names the chain needs."""
    try:
        arc = dkim.ARC(message, logger=LIB_LOG, minkey=MIN_RSA_BITS)
    except dkim.DKIMException:
        return None, 0, []
    instances, fields = arc.sorted_arc_headers()
    names: set[str] = set()
    for _, (name, value) in fields:
        if name.lower() not in _ARC_FIELDS:
            continue
        try:
            tags = dkim.util.parse_tag_value(value)
        except dkim.util.InvalidTagValueList:
            continue  # dkimpy reports the malformed field itself
        domain = tags.get(b"d", b"").decode("utf-8", "replace").strip().lower()
        selector = tags.get(b"s", b"").decode("utf-8", "replace").strip().lower()
        if domain and selector:
            names.add(f"{selector}._domainkey.{domain}")
    return arc, int(instances), sorted(names)


async def _fetch(resolver: Resolver, name: str) -> bytes | TemporaryDNSError | None:
    """The first key record at ``name``; None if there is none; a temporary error as value."""
    try:
        answer = await resolver.txt(name)
    except TemporaryDNSError as exc:
        return exc
    except DNSError:
        return None
    for record in answer.records:
        if b"p=" in record.joined:
            return record.joined
    return answer.records[0].joined if answer.records else None


def _verify_chain(arc: Any, keys: Mapping[str, bytes]) -> tuple[bytes | None, int, str]:
    def dnsfunc(name: bytes | str, timeout: float = 5) -> bytes | None:
        text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
        return keys.get(text.rstrip(".").lower())

    try:
        cv, results, reason = arc.verify(dnsfunc=dnsfunc)
    except dkim.DKIMException as exc:
        return dkim.CV_Fail, 0, str(exc)
    except Exception as exc:  # dkimpy raises plain errors on some malformed input
        return dkim.CV_Fail, 0, f"unverifiable: {exc!r}"
    return cv, len(results), str(reason)


def _reason(text: str, limit: int = 120) -> str:
    one = " ".join(text.split())
    return "".join(c if " " <= c <= "~" else "?" for c in one)[:limit]


async def verify_arc(resolver: Resolver, message: bytes) -> ARCResult:
    """Validate the ARC chain of ``message`` (RFC 8617 §5.2)."""
    arc, instances, names = await asyncio.to_thread(_parse_chain, message)
    if arc is None or instances == 0:
        return ARCResult("none", 0, "")
    if instances > MAX_INSTANCES:
        return ARCResult("fail", instances, f"more than {MAX_INSTANCES} ARC sets")
    fetched = await asyncio.gather(*(_fetch(resolver, name) for name in names))
    keys: dict[str, bytes] = {}
    for name, outcome in zip(names, fetched, strict=True):
        if isinstance(outcome, TemporaryDNSError):
            reason = _reason(f"key {name} unavailable: {outcome.reason}")
            return ARCResult("fail", instances, reason)
        if outcome is not None:
            keys[name] = outcome
    cv, _checked, reason = await asyncio.to_thread(_verify_chain, arc, keys)
    if cv == dkim.CV_Pass:
        return ARCResult("pass", instances, "")
    if cv == dkim.CV_None:
        return ARCResult("none", instances, "")
    # None: an earlier sealer already said cv=fail, which ends the chain (§5.2 step 2).
    return ARCResult("fail", instances, _reason(reason))


# --- sealing -----------------------------------------------------------------------


class _ARSyntaxError(Exception):
    """An Authentication-Results field we cannot read (dkimpy then skips it)."""


@dataclass(frozen=True, slots=True)
class _ARResult:
    """One ``resinfo`` of an Authentication-Results field (RFC 8601 §2.2)."""

    method: str
    result: str
    text: str

    def __str__(self) -> str:
        return self.text


_RESINFO = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9_.-]*)\s*(?:/\s*\d+\s*)?=\s*([A-Za-z0-9_-]+)")


def _split_ar(value: str) -> list[str]:
    """Split at ``;`` outside comments and quoted strings (RFC 8601 §2.2, RFC 5322 §3.2)."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif char == '"' and not depth:
            quoted = True
        elif char == ";" and not depth:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if depth or quoted:
        raise _ARSyntaxError("unterminated comment or quoted string")
    parts.append("".join(current))
    return parts


def _strip_comments(text: str) -> str:
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
            if not depth:
                out.append(char)
            continue
        if char == "\\" and (quoted or depth):
            escaped = True
            if not depth:
                out.append(char)
            continue
        if quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
            continue
        elif char == ")" and depth:
            depth -= 1
            continue
        elif char == '"' and not depth:
            quoted = True
        if not depth:
            out.append(char)
    return "".join(out)


class _ARHeader:
    """The part of ``authres.AuthenticationResultsHeader`` that dkimpy's ARC sealer uses."""

    def __init__(self, authserv_id: str, results: list[_ARResult]) -> None:
        self.authserv_id = authserv_id
        self.results = results

    @classmethod
    def parse(cls, field: str) -> _ARHeader:
        """Parse ``Authentication-Results: authserv-id [version]; resinfo; ...``."""
        _, _, value = field.partition(":")
        parts = _split_ar(value)
        head = _strip_comments(parts[0]).split()
        if not head:
            raise _ARSyntaxError("no authserv-id")
        authserv_id = head[0].strip('"')
        results: list[_ARResult] = []
        for part in parts[1:]:
            text = " ".join(_strip_comments(part).split())
            if not text or text.lower() == "none":
                continue  # RFC 8601 §2.2: "none" means no results
            match = _RESINFO.match(text)
            if match is None:
                raise _ARSyntaxError(f"bad resinfo {text!r}")
            results.append(_ARResult(match.group(1).lower(), match.group(2).lower(), text))
        return cls(authserv_id, results)


#: Stands in for the ``authres`` module inside dkimpy when it is not installed.
_AUTHRES_STANDIN = types.SimpleNamespace(
    AuthenticationResultsHeader=_ARHeader,
    core=types.SimpleNamespace(SyntaxError=_ARSyntaxError),
    AuthresNotFoundError=dkim.AuthresNotFoundError,
)


def _ensure_authres() -> None:
    """Give dkimpy an Authentication-Results parser if ``authres`` is not installed."""
    if getattr(dkim, "authres", None) is None:
        dkim.authres = _AUTHRES_STANDIN


def _our_authserv_id(headers: list[list[bytes]], authserv_id: str) -> bytes | None:
    """The authserv-id as spelled in our Authentication-Results field, if there is one.

    RFC 8601 §2.5 compares authserv-ids case-insensitively; dkimpy compares
    exactly, so it is handed the spelling found in the message.
    """
    wanted = authserv_id.strip().lower()
    for header in headers:
        if header[0].lower() != b"authentication-results":
            continue
        # dkimpy only looks at this exact spelling of the field name; the name
        # is not signed by the seal, so normalizing it changes nothing signed.
        header[0] = b"Authentication-Results"
        try:
            parsed = _ARHeader.parse("x:" + header[1].decode("utf-8", "replace"))
        except _ARSyntaxError:
            continue
        if parsed.authserv_id.lower() == wanted:
            return parsed.authserv_id.encode("utf-8")
    return None


def _seal_sync(message: bytes, key: DKIMKey, authserv_id: str, timestamp: int) -> bytes:
    _ensure_authres()
    try:
        arc = dkim.ARC(message, logger=LIB_LOG, signature_algorithm=b"rsa-sha256")
    except dkim.DKIMException as exc:
        raise SealError(f"cannot seal: {exc}") from exc
    srv_id = _our_authserv_id(arc.headers, authserv_id)
    if srv_id is None:
        raise SealError(
            f"the message has no Authentication-Results field of {authserv_id} to seal "
            "(RFC 8617 §5.1: add it first)"
        )
    include = signed_header_list([name for name, _ in arc.headers])
    try:
        fields = arc.sign(
            key.selector.encode("ascii"),
            key.domain.encode("ascii"),
            key.private_key,
            srv_id,
            include_headers=include,
            timestamp=timestamp,
        )
    except dkim.DKIMException as exc:
        raise SealError(f"cannot seal: {exc}") from exc
    return b"".join(fields)


async def seal_arc(
    message: bytes,
    keys: Sequence[DKIMKey],
    *,
    authserv_id: str,
    now: float | None = None,
) -> bytes:
    """ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results to prepend.

    ``message`` must carry our Authentication-Results field (``authserv_id``),
    with ``arc=<verify_arc result>`` if it already had ARC sets. The RSA key
    among ``keys`` seals. Returns b"" when dkimpy declines to extend a chain
    (an existing chain but no ``arc=`` result of ours: RFC 8617 §5.1.1 needs
    one). Raises :class:`SealError` without an RSA key or our A-R field.
    """
    key = next((k for k in keys if k.algorithm == "rsa-sha256"), None)
    if key is None:
        raise SealError("ARC sealing needs an rsa-sha256 key")
    timestamp = int(time.time() if now is None else now)
    sealed = await asyncio.to_thread(_seal_sync, message, key, authserv_id, timestamp)
    if not sealed:
        log.info("not sealed: the message has an ARC chain but our A-R has no arc= result")
    return sealed
