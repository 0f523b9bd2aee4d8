"""AUTHORIZATION-state commands: STLS, USER/PASS, AUTH (PLAIN, SCRAM-SHA-256), the login.

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

from pochta import sasl
from pochta.accounts.errors import AccountsError
from pochta.accounts.login import TooManyFailures
from pochta.pop3 import replies
from pochta.pop3.maildrop import Maildrop
from pochta.pop3.parser import CANCEL, Command, ParseError, decode_base64, parse_sasl
from pochta.store.interface import StoreError, UserNotFound

if TYPE_CHECKING:
    from pochta.accounts.registry import User
    from pochta.pop3.session import Pop3Session

log = logging.getLogger("pochta.pop3")

#: SASL mechanisms offered (RFC 5034 §4): PLAIN (RFC 4616), SCRAM-SHA-256 (RFC 7677).
MECHANISMS = ("PLAIN", "SCRAM-SHA-256")


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

    PLAIN (RFC 4616) and SCRAM-SHA-256 (RFC 5802, RFC 7677), through the
    mechanisms of ``pochta.sasl`` that SMTP submission uses too. Without
    arguments, lists the mechanisms as a multi-line reply, as many servers
    do for old clients (RFC 1734 style). ``*`` cancels the exchange (RFC
    5034 §4). SCRAM's server-final message goes out as one more challenge,
    answered by an empty line, since +OK carries no SASL data (RFC 5034 §4).
    """
    if not command.args:
        session.write(replies.multiline(replies.ok(), [m.encode() for m in MECHANISMS]))
        return
    if not session.may_authenticate:
        session.write(replies.AUTH_NEEDS_TLS)
        return
    name = command.args[0]
    mechanism: sasl.Plain | sasl.ScramSha256
    if name == "PLAIN":
        mechanism = sasl.Plain()
    elif name == "SCRAM-SHA-256":
        mechanism = sasl.ScramSha256(session.service.accounts.scram_credentials)
    else:
        session.write(replies.err(f"unsupported SASL mechanism {name}"))
        return
    session.pending_user = None
    initial: bytes | None = None
    if len(command.args) == 2:
        initial = decode_base64(command.args[1])
        if initial is None:
            session.write(replies.err("invalid base64 in the initial response (RFC 5034 §4)"))
            return
    try:
        step = mechanism.start(initial)
        while isinstance(step, sasl.Challenge):
            response = await _sasl_response(session, step.data)
            if response is None:
                return
            step = mechanism.step(response)
        if isinstance(step, sasl.Verified) and await _sasl_response(session, step.final) is None:
            return
    except sasl.SaslError:
        session.auth_failures += 1
        session.write(replies.BAD_LOGIN)
        return
    if isinstance(step, sasl.CheckPassword):
        if step.authzid not in ("", step.username):
            session.write(replies.err("acting for another user is not supported", replies.AUTH))
            return
        await login(session, step.username, step.password)
        return
    user = session.service.accounts.get_user(step.username)
    if user is None:
        session.write(replies.BAD_LOGIN)
        return
    await enter(session, user)


async def _sasl_response(session: Pop3Session, challenge: bytes) -> bytes | None:
    """Send ``+ <challenge>``, read the client's line; None (replied) if it gave up."""
    session.write(b"+ " + sasl.b64encode(challenge).encode() + b"\r\n")
    line = await session.read_line(replies.MAX_SASL_LINE)
    if line is None:
        return None
    if not isinstance(line, bytes):
        session.write(replies.err("SASL response too long"))
        return None
    parsed = parse_sasl(line)
    if parsed is CANCEL:
        session.write(replies.err("authentication cancelled"))
        return None
    if isinstance(parsed, ParseError):
        session.write(parsed.reply)
        return None
    assert isinstance(parsed, bytes)
    return parsed


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
    await enter(session, user)


async def enter(session: Pop3Session, user: User) -> None:
    """Lock and snapshot the maildrop of an authenticated user (RFC 1939 §4, §8)."""
    service = session.service
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
