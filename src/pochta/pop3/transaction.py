"""TRANSACTION-state commands: STAT, LIST, RETR, DELE, NOOP, RSET, TOP, UIDL.

Design note
-----------
Each handler is a small function over the session's ``Maildrop`` snapshot
(message numbers fixed at login, RFC 1939 §8). A number outside the
snapshot or marked deleted is ``-ERR`` (RFC 1939 §5). Message bytes are
read by UID through the store for every RETR/TOP; a message another client
expunged meanwhile is a clean ``-ERR`` and the session goes on. Store
failures are ``-ERR [SYS/TEMP]`` (RFC 3206 §4).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pochta.pop3 import replies
from pochta.pop3.maildrop import Maildrop, NoSuchMessage, dot_stuff, top_of
from pochta.pop3.parser import Command
from pochta.store.interface import MessageNotFound, StoreError

if TYPE_CHECKING:
    from pochta.pop3.session import Pop3Session

log = logging.getLogger("pochta.pop3")


def _maildrop(session: Pop3Session) -> Maildrop:
    assert session.maildrop is not None  # TRANSACTION state implies a maildrop
    return session.maildrop


def _no_such(exc: NoSuchMessage) -> bytes:
    return replies.DELETED_MESSAGE if exc.deleted else replies.NO_SUCH_MESSAGE


async def cmd_stat(session: Pop3Session, command: Command) -> None:
    """STAT — TRANSACTION state, RFC 1939 §5: ``+OK count octets``."""
    count, octets = _maildrop(session).stat()
    session.write(replies.ok(f"{count} {octets}"))


async def cmd_list(session: Pop3Session, command: Command) -> None:
    """LIST [msg] — TRANSACTION state, RFC 1939 §5: sizes, one or all (not deleted)."""
    maildrop = _maildrop(session)
    if command.numbers:
        (number,) = command.numbers
        try:
            size = maildrop.size(number)
        except NoSuchMessage as exc:
            session.write(_no_such(exc))
            return
        session.write(replies.ok(f"{number} {size}"))
        return
    count, octets = maildrop.stat()
    sizes = maildrop.sizes
    lines = [b"%d %d" % (n, sizes[n - 1]) for n in maildrop.live()]
    session.write(replies.multiline(replies.ok(f"{count} messages ({octets} octets)"), lines))


async def cmd_uidl(session: Pop3Session, command: Command) -> None:
    """UIDL [msg] — TRANSACTION state, RFC 1939 §7: ``<UIDVALIDITY>.<UID>``, stable ids."""
    maildrop = _maildrop(session)
    if command.numbers:
        (number,) = command.numbers
        try:
            unique = maildrop.unique_id(number)
        except NoSuchMessage as exc:
            session.write(_no_such(exc))
            return
        session.write(replies.ok(f"{number} {unique}"))
        return
    prefix = b"%d." % maildrop.uidvalidity
    uids = maildrop.uids
    lines = [b"%d %s%d" % (n, prefix, uids[n - 1]) for n in maildrop.live()]
    session.write(replies.multiline(replies.ok("unique-id listing follows"), lines))


async def _send_message(session: Pop3Session, number: int, lines: int | None) -> None:
    maildrop = _maildrop(session)
    try:
        if lines is None:
            head = b"+OK %d octets\r\n" % maildrop.size(number)
            response = await maildrop.retr(number, head)
        else:
            head = b"+OK top of message follows\r\n"
            response = dot_stuff(top_of(await maildrop.read(number), lines), head)
    except NoSuchMessage as exc:
        session.write(_no_such(exc))
        return
    except MessageNotFound:
        session.write(replies.err(f"message {number} was removed by another client"))
        return
    except StoreError:
        log.exception("pop3 cannot read message %d", number)
        session.write(replies.err("cannot read the message now; try later", replies.SYS_TEMP))
        return
    session.write(response)


async def cmd_retr(session: Pop3Session, command: Command) -> None:
    """RETR msg — TRANSACTION state, RFC 1939 §5: the message, dot-stuffed, byte-exact."""
    await _send_message(session, command.numbers[0], None)


async def cmd_top(session: Pop3Session, command: Command) -> None:
    """TOP msg n — TRANSACTION state, RFC 1939 §7: header, blank line, first n body lines."""
    number, lines = command.numbers
    await _send_message(session, number, lines)


async def cmd_dele(session: Pop3Session, command: Command) -> None:
    """DELE msg — TRANSACTION state, RFC 1939 §5: mark deleted; removed only at QUIT (§6)."""
    (number,) = command.numbers
    try:
        _maildrop(session).delete(number)
    except NoSuchMessage as exc:
        session.write(_no_such(exc))
        return
    session.write(replies.ok(f"message {number} deleted"))


async def cmd_noop(session: Pop3Session, command: Command) -> None:
    """NOOP — TRANSACTION state, RFC 1939 §5."""
    session.write(replies.ok())


async def cmd_rset(session: Pop3Session, command: Command) -> None:
    """RSET — TRANSACTION state, RFC 1939 §5: unmark every message marked deleted."""
    maildrop = _maildrop(session)
    maildrop.reset()
    count, octets = maildrop.stat()
    session.write(replies.ok(f"maildrop has {count} messages ({octets} octets)"))
