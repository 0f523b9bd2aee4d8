"""AUTHORIZATION-state commands: STLS, USER/PASS, AUTH PLAIN, and the login itself.

Design note
-----------
Every way in ends in ``login``: the password goes through the shared
``LoginGuard`` (argon2 off the loop, throttling, verification cache), then
the maildrop is locked (one POP3 session per user, ``[IN-USE]`` otherwise,
RFC 2449 §8.1.1) and snapshotted. Replies follow RFC 3206: ``[AUTH]`` when
the credentials are refused or TLS is missing, ``[SYS/TEMP]`` when the
client should simply try later (throttled, store or database trouble). The
reply never says whether the user exists. Three failed logins close the
connection; the guard's counters survive it.

No password is accepted before TLS unless ``[auth]
allow_plaintext_without_tls`` is set (DESIGN.md, RFC 8314 §4); in that
case USER, PASS and AUTH answer ``-ERR [AUTH]`` and CAPA does not offer
them. APOP is not offered (it needs the plaintext password on the server).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pochta.accounts.errors import AccountsError
from pochta.accounts.login import TooManyFailures
from pochta.pop3 import replies
from pochta.pop3.maildrop import Maildrop
from pochta.pop3.parser import CANCEL, Command, ParseError, decode_base64, parse_sasl
from pochta.store.interface import StoreError, UserNotFound

if TYPE_CHECKING:
    from pochta.pop3.session import Pop3Session

log = logging.getLogger("pochta.pop3")

#: SASL mechanisms offered (RFC 5034 §4); PLAIN is RFC 4616.
MECHANISMS = ("PLAIN",)


async def cmd_stls(session: Pop3Session, command: Command) -> None:
    """STLS — AUTHORIZATION state, RFC 2595 §4.

    Only before TLS and with a certificate configured. After ``+OK`` the TLS
    handshake starts at once; buffered plaintext is discarded (RFC 2595 §4)
    and any USER given before is forgotten.
    """
    if session.tls_active:
        session.write(replies.err("TLS is already active"))
        return
    if session.service.tls is None:
        session.write(replies.err("TLS is not available on this server"))
        return
    session.write(replies.ok("begin TLS negotiation"))
    session.pending_user = None
    await session.start_tls()


async def cmd_user(session: Pop3Session, command: Command) -> None:
    """USER name — AUTHORIZATION state, RFC 1939 §7.

    Always ``+OK`` when allowed: whether the user exists is revealed by
    nothing but a successful PASS.
    """
    if not session.may_authenticate:
        session.write(replies.AUTH_NEEDS_TLS)
        return
    session.pending_user = command.args[0]
    session.write(replies.ok("send PASS"))


async def cmd_pass(session: Pop3Session, command: Command) -> None:
    """PASS string — AUTHORIZATION state, RFC 1939 §7 (right after USER)."""
    if not session.may_authenticate:
        session.write(replies.AUTH_NEEDS_TLS)
        return
    name = session.pending_user
    session.pending_user = None
    if name is None:
        session.write(replies.err("give USER first"))
        return
    await login(session, name, command.args[0])


async def cmd_auth(session: Pop3Session, command: Command) -> None:
    """AUTH mechanism [initial-response] — AUTHORIZATION state, RFC 5034 §4.

    PLAIN only (RFC 4616). Without arguments, lists the mechanisms as a
    multi-line reply, as many servers do for old clients (RFC 1734 style).
    ``*`` cancels the exchange (RFC 5034 §4).
    """
    if not command.args:
        session.write(replies.multiline(replies.ok(), [m.encode() for m in MECHANISMS]))
        return
    if not session.may_authenticate:
        session.write(replies.AUTH_NEEDS_TLS)
        return
    mechanism = command.args[0]
    if mechanism not in MECHANISMS:
        session.write(replies.err(f"unsupported SASL mechanism {mechanism}"))
        return
    session.pending_user = None
    if len(command.args) == 2:
        response = decode_base64(command.args[1])
        if response is None:
            session.write(replies.err("invalid base64 in the initial response (RFC 5034 §4)"))
            return
    else:
        session.write(b"+ \r\n")  # an empty challenge (RFC 5034 §4)
        line = await session.read_line(replies.MAX_SASL_LINE)
        if line is None:
            return
        if not isinstance(line, bytes):
            session.write(replies.err("SASL response too long"))
            return
        parsed = parse_sasl(line)
        if parsed is CANCEL:
            session.write(replies.err("authentication cancelled"))
            return
        if isinstance(parsed, ParseError):
            session.write(parsed.reply)
            return
        assert isinstance(parsed, bytes)
        response = parsed
    credentials = _plain(response)
    if credentials is None:
        session.write(replies.err("malformed PLAIN response (RFC 4616 §2)", replies.AUTH))
        return
    await login(session, *credentials)


def _plain(message: bytes) -> tuple[str, str] | None:
    """(authcid, password) of an RFC 4616 §2 message; None if malformed.

    Acting for another user (a non-empty authzid other than authcid) is
    not supported and refused.
    """
    parts = message.split(b"\0")
    if len(parts) != 3:
        return None
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        return None
    if not authcid or not password or authzid not in ("", authcid):
        return None
    return authcid, password


async def login(session: Pop3Session, name: str, password: str) -> None:
    """Check the password, lock and snapshot the maildrop, enter TRANSACTION (RFC 1939 §4)."""
    service = session.service
    session.flush()  # earlier pipelined replies go out before a possible delay
    try:
        user = await service.guard.authenticate(service.accounts, name, password, session.peer_ip)
    except TooManyFailures as exc:
        log.warning("pop3 login throttled ip=%s user=%r", session.peer_ip, name[:80])
        session.write(
            replies.err(
                f"too many failed logins; try again in {exc.retry_after:.0f} seconds",
                replies.SYS_TEMP,
            )
        )
        session.close()
        return
    except AccountsError:
        log.exception("pop3 login: accounts database failed")
        session.write(replies.err("cannot check the password now; try later", replies.SYS_TEMP))
        return
    if user is None:
        session.auth_failures += 1
        log.info("pop3 login failed ip=%s user=%r", session.peer_ip, name[:80])
        session.write(replies.BAD_LOGIN)
        if session.auth_failures >= replies.MAX_AUTH_FAILURES_PER_CONNECTION:
            session.close()
        return
    if user.address in service.in_use:
        session.write(replies.err("maildrop is locked by another POP3 session", replies.IN_USE))
        return
    service.in_use[user.address] = session
    try:
        maildrop = await _open_maildrop(session, user.address)
    except BaseException as exc:
        if service.in_use.get(user.address) is session:
            del service.in_use[user.address]
        if not isinstance(exc, StoreError):
            raise
        log.exception("pop3 cannot open the maildrop of %s", user.address)
        session.write(replies.err("cannot open the maildrop; try later", replies.SYS_TEMP))
        return
    session.begin_transaction(user, maildrop)
    count, octets = maildrop.stat()
    log.info("pop3 login user=%s ip=%s messages=%d", user.address, session.peer_ip, count)
    session.write(replies.ok(f"{user.address} has {count} messages ({octets} octets)"))


async def _open_maildrop(session: Pop3Session, address: str) -> Maildrop:
    store = session.service.store
    try:
        return await Maildrop.open(store.mailboxes(address))
    except UserNotFound:
        # A user who never received mail has no mailboxes yet.
        await store.create_user(address)
        return await Maildrop.open(store.mailboxes(address))
