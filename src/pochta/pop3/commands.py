"""The POP3 states and the commands allowed in each: the explicit dispatch table.

Design note
-----------
RFC 1939 §3 defines three states. ``TABLES[state]`` maps a command keyword
to its handler; a valid command absent from the current state's table is
answered ``-ERR`` by the session without running anything. Nothing is
looked up by name or reflection: grep finds every handler from here.

* AUTHORIZATION (after the greeting): CAPA, STLS, USER, PASS, AUTH, QUIT.
* TRANSACTION (after a login): CAPA, STAT, LIST, RETR, DELE, NOOP, RSET,
  TOP, UIDL, QUIT.
* UPDATE (after QUIT in TRANSACTION): none; the deletions are applied and
  the connection closes.

CAPA and both QUITs live here because they serve more than one state; the
others are in ``auth`` and ``transaction``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from pochta.pop3 import auth, replies, transaction
from pochta.pop3.parser import Command
from pochta.store.interface import StoreError

if TYPE_CHECKING:
    from pochta.pop3.session import Pop3Session

log = logging.getLogger("pochta.pop3")

Handler = Callable[["Pop3Session", Command], Awaitable[None]]


class State(enum.Enum):
    """RFC 1939 §3 session states."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"


def capabilities(session: Pop3Session) -> list[bytes]:
    """The CAPA lines for this session (RFC 2449 §6, RFC 2595 §4, RFC 5034 §6).

    Login methods appear only where they may be used (TLS active, or
    plaintext allowed); RFC 2449 §5 asks that AUTHORIZATION-only
    capabilities be listed in TRANSACTION too, so the list does not depend
    on the state.
    """
    caps = [
        b"TOP",  # RFC 2449 §6.1
        b"UIDL",  # RFC 2449 §6.11
        b"RESP-CODES",  # RFC 2449 §6.4
        b"AUTH-RESP-CODE",  # RFC 3206 §6
        b"PIPELINING",  # RFC 2449 §6.6
        b"EXPIRE NEVER",  # RFC 2449 §6.7: the server never deletes mail by itself
        b"LOGIN-DELAY 0",  # RFC 2449 §6.8: no minimum time between logins
    ]
    if session.may_authenticate:
        caps.append(b"USER")  # RFC 2449 §6.2
        caps.append(b"SASL " + " ".join(auth.MECHANISMS).encode())  # RFC 5034 §6
    if session.can_stls:
        caps.append(b"STLS")  # RFC 2595 §4
    caps.append(b"IMPLEMENTATION Pochta")  # RFC 2449 §6.9
    return caps


async def cmd_capa(session: Pop3Session, command: Command) -> None:
    """CAPA — AUTHORIZATION and TRANSACTION states, RFC 2449 §5."""
    session.write(replies.multiline(replies.ok("capability list follows"), capabilities(session)))


async def cmd_quit_authorization(session: Pop3Session, command: Command) -> None:
    """QUIT — AUTHORIZATION state, RFC 1939 §6: close; nothing to update."""
    session.write(replies.ok("bye"))
    session.close()


async def cmd_quit_transaction(session: Pop3Session, command: Command) -> None:
    """QUIT — TRANSACTION state, RFC 1939 §6: enter UPDATE, remove the messages
    marked deleted, then close.

    ``-ERR [SYS/TEMP]`` if the store could not remove them; then nothing the
    client marked is lost or half-removed: the UIDs it marked are flagged
    ``\\Deleted`` at most, and the next session lists them again.
    """
    session.state = State.UPDATE
    maildrop = session.maildrop
    assert maildrop is not None
    try:
        removed = await maildrop.commit()
    except StoreError:
        log.exception("pop3 UPDATE failed user=%s", session.user)
        session.write(replies.err("some deleted messages not removed", replies.SYS_TEMP))
    else:
        session.write(replies.ok(f"bye ({removed} messages deleted)"))
    session.close()


TABLES: dict[State, dict[str, Handler]] = {
    State.AUTHORIZATION: {
        "CAPA": cmd_capa,
        "STLS": auth.cmd_stls,
        "USER": auth.cmd_user,
        "PASS": auth.cmd_pass,
        "AUTH": auth.cmd_auth,
        "QUIT": cmd_quit_authorization,
    },
    State.TRANSACTION: {
        "CAPA": cmd_capa,
        "STAT": transaction.cmd_stat,
        "LIST": transaction.cmd_list,
        "RETR": transaction.cmd_retr,
        "DELE": transaction.cmd_dele,
        "NOOP": transaction.cmd_noop,
        "RSET": transaction.cmd_rset,
        "TOP": transaction.cmd_top,
        "UIDL": transaction.cmd_uidl,
        "QUIT": cmd_quit_transaction,
    },
    State.UPDATE: {},
}
