"""The IMAP command tables, and the commands valid in any state or before login.

Design note
-----------
:data:`TABLES` maps each RFC 9051 §3 state to the commands allowed in it
(RFC 9051 §6.1: any state; §6.2: not authenticated; §6.3: authenticated,
also valid when selected; §6.4: selected). A handler is
``async def handler(session, tag, command) -> None``; it writes its untagged
responses and the tagged completion, or raises
:class:`~pochta.imap.session.Abort` / a ``StoreError`` which the session
answers with a tagged NO and its response code.

Authentication goes through the server's one ``LoginGuard`` (argon2 off the
loop, per-address and per-account throttling, credential cache): a refused
password is ``NO [AUTHENTICATIONFAILED]``, a locked-out client
``NO [UNAVAILABLE]`` (RFC 5530 §3).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pochta import sasl
from pochta.accounts.login import TooManyFailures
from pochta.imap import mailbox, selected
from pochta.imap.encode import quoted_or_literal
from pochta.imap.parser import parse_sasl_response
from pochta.imap.session import Abort, ImapSession, State
from pochta.imap.types import (
    Authenticate,
    Capability,
    Enable,
    Id,
    Login,
    Logout,
    Namespace,
    Noop,
    ParseError,
    StartTLS,
)
from pochta.store.interface import INBOX, UserNotFound

log = logging.getLogger("pochta.imap")

Handler = Callable[[ImapSession, str, Any], Awaitable[None]]

#: What ENABLE can switch on (RFC 5161 §3.1); others are silently ignored.
ENABLEABLE = frozenset({"IMAP4REV2", "UTF8=ACCEPT", "CONDSTORE", "QRESYNC"})


# --- any state (RFC 9051 §6.1) ---------------------------------------------------


async def capability(s: ImapSession, tag: str, cmd: Capability) -> None:
    """Any state. RFC 9051 §6.1.1 CAPABILITY."""
    s.untagged("CAPABILITY " + s.capabilities())
    await s.ok(tag, cmd, "CAPABILITY completed")


async def noop(s: ImapSession, tag: str, cmd: Noop) -> None:
    """Any state. RFC 9051 §6.1.2 NOOP: also the poll for mailbox updates."""
    await s.ok(tag, cmd, "NOOP completed")


async def logout(s: ImapSession, tag: str, cmd: Logout) -> None:
    """Any state. RFC 9051 §6.1.3 LOGOUT: ``* BYE`` then the tagged OK."""
    s.untagged("BYE Pochta logging out")
    s.tagged(tag, "OK", "LOGOUT completed")
    s.state = State.LOGOUT


async def id_(s: ImapSession, tag: str, cmd: Id) -> None:
    """Any state. RFC 2971 §3.1 ID: our name; the client's is only logged."""
    if cmd.params:
        log.debug("imap client id %s ip=%s", dict(cmd.params), s.conn.peer_ip)
    s.untagged('ID ("name" "Pochta" "vendor" "Pochta")')
    await s.ok(tag, cmd, "ID completed")


# --- not authenticated (RFC 9051 §6.2) ---------------------------------------------


async def starttls(s: ImapSession, tag: str, cmd: StartTLS) -> None:
    """Not authenticated. RFC 9051 §6.2.1 STARTTLS: buffered plaintext is dropped."""
    if s.service.tls is None or s.conn.tls_active:
        raise Abort("TLS is not available here", status="BAD")
    s.tagged(tag, "OK", "Begin TLS negotiation now")
    await s.conn.drain()
    try:
        await s.conn.start_tls(s.service.tls)
    except (OSError, ConnectionError, TimeoutError):
        s.conn.close()


async def _logged_in(s: ImapSession, address: str) -> None:
    store = s.service.store.mailboxes(address)
    try:
        await store.status(INBOX)
    except UserNotFound:
        await s.service.store.create_user(address)
    s.user = address
    s.mailboxes = store
    s.state = State.AUTHENTICATED
    log.info("imap login user=%s ip=%s", address, s.conn.peer_ip)


async def _check_password(s: ImapSession, username: str, password: str) -> str:
    try:
        user = await s.service.guard.authenticate(
            s.service.accounts, username, password, s.conn.peer_ip
        )
    except TooManyFailures:
        raise Abort("Too many failed logins; try again later", "UNAVAILABLE") from None
    if user is None:
        log.info("imap login failed ip=%s", s.conn.peer_ip)
        raise Abort("Authentication failed", "AUTHENTICATIONFAILED")
    return user.address


async def login(s: ImapSession, tag: str, cmd: Login) -> None:
    """Not authenticated. RFC 9051 §6.2.3 LOGIN (refused before TLS: LOGINDISABLED)."""
    if not s.may_login:
        raise Abort("Use STARTTLS first", "PRIVACYREQUIRED")
    address = await _check_password(s, cmd.username, cmd.password)
    await _logged_in(s, address)
    s.tagged(tag, "OK", "LOGIN completed", "CAPABILITY " + s.capabilities())


async def authenticate(s: ImapSession, tag: str, cmd: Authenticate) -> None:
    """Not authenticated. RFC 9051 §6.2.2 AUTHENTICATE PLAIN, with RFC 4959 SASL-IR."""
    if not s.may_login:
        raise Abort("Use STARTTLS first", "PRIVACYREQUIRED")
    if cmd.mechanism != "PLAIN":
        raise Abort("Unsupported mechanism", "CANNOT")
    mech = sasl.Plain()
    try:
        step = mech.start(cmd.initial_response)
        while isinstance(step, sasl.Challenge):
            s.out.raw(b"+ " + sasl.b64encode(step.data).encode("ascii") + b"\r\n")
            s.out.flush()
            try:
                response = parse_sasl_response(await s.read_line())
            except ParseError:
                raise Abort("Invalid base64", status="BAD") from None
            if response is None:
                raise Abort("AUTHENTICATE cancelled", status="BAD")
            step = mech.step(response)
    except sasl.SaslError:
        raise Abort("Authentication failed", "AUTHENTICATIONFAILED") from None
    if not isinstance(step, sasl.CheckPassword):
        raise Abort("Authentication failed", "AUTHENTICATIONFAILED")
    if step.authzid and step.authzid.lower() != step.username.lower():
        raise Abort("Cannot act as another user", "AUTHORIZATIONFAILED")
    address = await _check_password(s, step.username, step.password)
    await _logged_in(s, address)
    s.tagged(tag, "OK", "AUTHENTICATE completed", "CAPABILITY " + s.capabilities())


# --- authenticated: session-wide ---------------------------------------------------


async def enable(s: ImapSession, tag: str, cmd: Enable) -> None:
    """Authenticated. RFC 9051 §6.3.1 ENABLE (RFC 5161): IMAP4rev2, UTF8=ACCEPT, CONDSTORE,
    QRESYNC (which implies CONDSTORE, RFC 7162 §3.2.3)."""
    newly = [c for c in cmd.capabilities if c in ENABLEABLE and c not in s.enabled]
    s.enabled.update(newly)
    if "QRESYNC" in newly and "CONDSTORE" not in s.enabled:
        s.enabled.add("CONDSTORE")
    if {"CONDSTORE", "QRESYNC"} & set(newly) and s.selected is not None:
        s.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % s.selected.highestmodseq)
    names = {"IMAP4REV2": "IMAP4rev2"}
    s.untagged(" ".join(["ENABLED", *(names.get(c, c) for c in newly)]))
    await s.ok(tag, cmd, "ENABLE completed")


async def namespace(s: ImapSession, tag: str, cmd: Namespace) -> None:
    """Authenticated. RFC 9051 §6.3.10 NAMESPACE: one personal namespace, "/"."""
    s.untagged(b'NAMESPACE (("" ' + quoted_or_literal("/", utf8=False) + b")) NIL NIL")
    await s.ok(tag, cmd, "NAMESPACE completed")


_ANY: dict[str, Handler] = {
    "CAPABILITY": capability,
    "NOOP": noop,
    "LOGOUT": logout,
    "ID": id_,
}

_NOT_AUTH: dict[str, Handler] = {
    **_ANY,
    "STARTTLS": starttls,
    "LOGIN": login,
    "AUTHENTICATE": authenticate,
}

_AUTH: dict[str, Handler] = {
    **_ANY,
    "ENABLE": enable,
    "NAMESPACE": namespace,
    **mailbox.HANDLERS,
    **selected.SELECT_HANDLERS,
}

_SELECTED: dict[str, Handler] = {**_AUTH, **selected.HANDLERS}

#: The commands each state allows (RFC 9051 §3, §6).
TABLES: dict[State, dict[str, Handler]] = {
    State.NOT_AUTHENTICATED: _NOT_AUTH,
    State.AUTHENTICATED: _AUTH,
    State.SELECTED: _SELECTED,
    State.LOGOUT: {},
}
