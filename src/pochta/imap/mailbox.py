"""Authenticated-state mailbox commands: LIST, LSUB, CREATE, DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, STATUS, APPEND (RFC 9051 §6.3).

Design note
-----------
Names arrive decoded by the parser (modified UTF-7 or UTF-8, RFC 9051 §5.1)
and go out through :func:`pochta.imap.encode.mailbox`; the store validates
every name against its rules (no ``..``, no empty levels, no wildcards), so a
name can never leave the user's Maildir. Store errors carry their response
code (``NONEXISTENT``, ``ALREADYEXISTS``, ``CANNOT``, ``INUSE``); APPEND,
COPY and MOVE into a missing mailbox answer ``[TRYCREATE]`` instead
(RFC 9051 §6.3.12).

LIST matching: ``*`` matches anything, ``%`` anything but the ``/``
delimiter (RFC 9051 §6.3.9); the reference is prefixed to the pattern;
``INBOX`` matches case-insensitively. Every mailbox gets ``\\HasChildren`` or
``\\HasNoChildren`` (RFC 3348, always sent, as RFC 9051 allows) and its
RFC 6154 special-use attribute.

MULTIAPPEND (RFC 3502 §6.3.11) is all or nothing: when one message fails,
those already appended are expunged again before the NO.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from pochta.imap import encode
from pochta.imap.session import Abort, ImapSession
from pochta.imap.types import (
    Append,
    Create,
    Delete,
    List,
    ListReturn,
    ListSelect,
    Lsub,
    Rename,
    Status,
    StatusItem,
    Subscribe,
    Unsubscribe,
)
from pochta.store.interface import (
    DELETED,
    DELIMITER,
    INBOX,
    SPECIAL_USES,
    MailboxInfo,
    MailboxNotFound,
    StoreMode,
)

Handler = Callable[[ImapSession, str, Any], Awaitable[None]]
_DELIM = encode.quoted_or_literal(DELIMITER, utf8=False)


def trycreate(exc: MailboxNotFound) -> Abort:
    """RFC 9051 §6.3.12: a missing target mailbox of APPEND/COPY/MOVE."""
    return Abort(str(exc) or "No such mailbox", "TRYCREATE")


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """The LIST wildcard pattern as a regular expression (RFC 9051 §6.3.9).

    A leading ``INBOX`` (any case) is the canonical ``INBOX`` (RFC 9051 §5.1).
    """
    full = reference + pattern
    if full[:5].upper() == INBOX and full[5:6] in ("", DELIMITER):
        full = INBOX + full[5:]
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.S)


def _children(names: set[str], name: str) -> bool:
    prefix = name + DELIMITER
    return any(n.startswith(prefix) for n in names)


def _childinfo(reasons: list[str]) -> bytes:
    """RFC 5258 §3.5 ``("CHILDINFO" ("SUBSCRIBED"))`` extended data, or nothing."""
    if not reasons:
        return b""
    return (' ("CHILDINFO" (' + " ".join(f'"{r}"' for r in reasons) + "))").encode()


async def list_(s: ImapSession, tag: str, cmd: List) -> None:
    """Authenticated. RFC 9051 §6.3.9 LIST, RFC 5258 LIST-EXTENDED, RFC 5819
    LIST-STATUS, RFC 6154 SPECIAL-USE, RFC 3348 CHILDREN."""
    if cmd.patterns == ("",):
        s.untagged(b"LIST (\\Noselect) " + _DELIM + b' ""')
        await s.ok(tag, cmd, "LIST completed")
        return
    boxes = await s.store.list()
    names = {b.name for b in boxes}
    regexes = [pattern_regex(cmd.reference, p) for p in cmd.patterns if p]
    subscribed_only = ListSelect.SUBSCRIBED in cmd.selection
    special_only = ListSelect.SPECIAL_USE in cmd.selection
    show_subscribed = subscribed_only or ListReturn.SUBSCRIBED in cmd.returns
    recursive = ListSelect.RECURSIVEMATCH in cmd.selection
    for box in boxes:
        if not any(r.fullmatch(box.name) for r in regexes):
            continue
        childinfo: list[str] = []
        if recursive:
            # RFC 5258 §3.5: a parent whose descendants match the selection
            kids = [b for b in boxes if b.name.startswith(box.name + DELIMITER)]
            if subscribed_only and any(k.subscribed for k in kids):
                childinfo.append("SUBSCRIBED")
            if special_only and any(k.special_use for k in kids):
                childinfo.append("SPECIAL-USE")
        selected_ok = (not subscribed_only or box.subscribed) and (
            not special_only or bool(box.special_use)
        )
        if not selected_ok and not childinfo:
            continue
        attrs = ["\\HasChildren" if _children(names, box.name) else "\\HasNoChildren"]
        if show_subscribed and box.subscribed:
            attrs.append("\\Subscribed")
        attrs += sorted(box.special_use)
        s.untagged(
            b"LIST ("
            + " ".join(attrs).encode()
            + b") "
            + _DELIM
            + b" "
            + encode.mailbox(box.name, utf8=s.utf8)
            + _childinfo(childinfo)
        )
        if ListReturn.STATUS in cmd.returns:
            _status_line(s, box, cmd.status)
    await s.ok(tag, cmd, "LIST completed")


async def lsub(s: ImapSession, tag: str, cmd: Lsub) -> None:
    """Authenticated. RFC 3501 §6.3.9 LSUB: subscribed mailboxes matching."""
    regex = pattern_regex(cmd.reference, cmd.pattern)
    for box in await s.store.list():
        if box.subscribed and regex.fullmatch(box.name):
            s.untagged(b"LSUB () " + _DELIM + b" " + encode.mailbox(box.name, utf8=s.utf8))
    await s.ok(tag, cmd, "LSUB completed")


async def create(s: ImapSession, tag: str, cmd: Create) -> None:
    """Authenticated. RFC 9051 §6.3.4 CREATE, RFC 6154 §3 CREATE-SPECIAL-USE."""
    name = cmd.mailbox.rstrip(DELIMITER)
    if not name:
        raise Abort("Invalid mailbox name", "CANNOT")
    if cmd.special_use - SPECIAL_USES:
        raise Abort("Unsupported special-use attribute", "USEATTR")
    await s.store.create(name, frozenset(cmd.special_use))
    await s.ok(tag, cmd, "CREATE completed")


async def delete(s: ImapSession, tag: str, cmd: Delete) -> None:
    """Authenticated. RFC 9051 §6.3.5 DELETE (INBOX cannot be deleted)."""
    if cmd.mailbox.upper() == INBOX:
        raise Abort("INBOX cannot be deleted", "CANNOT")
    if s.selected is not None and s.selected.name == cmd.mailbox:
        raise Abort("Mailbox is selected; UNSELECT it first", "INUSE")
    await s.store.delete(cmd.mailbox)
    await s.ok(tag, cmd, "DELETE completed")


async def rename(s: ImapSession, tag: str, cmd: Rename) -> None:
    """Authenticated. RFC 9051 §6.3.6 RENAME (children follow; INBOX moves its mail)."""
    await s.store.rename(cmd.old, cmd.new.rstrip(DELIMITER))
    await s.ok(tag, cmd, "RENAME completed")


async def subscribe(s: ImapSession, tag: str, cmd: Subscribe) -> None:
    """Authenticated. RFC 9051 §6.3.7 SUBSCRIBE."""
    await s.store.subscribe(cmd.mailbox, True)
    await s.ok(tag, cmd, "SUBSCRIBE completed")


async def unsubscribe(s: ImapSession, tag: str, cmd: Unsubscribe) -> None:
    """Authenticated. RFC 9051 §6.3.8 UNSUBSCRIBE."""
    await s.store.subscribe(cmd.mailbox, False)
    await s.ok(tag, cmd, "UNSUBSCRIBE completed")


def _status_line(s: ImapSession, box: MailboxInfo, items: tuple[StatusItem, ...]) -> None:
    values = {
        StatusItem.MESSAGES: box.messages,
        StatusItem.UIDNEXT: box.uidnext,
        StatusItem.UIDVALIDITY: box.uidvalidity,
        StatusItem.UNSEEN: box.unseen,
        StatusItem.DELETED: box.deleted,
        StatusItem.SIZE: box.size,
        StatusItem.RECENT: 0,
        StatusItem.HIGHESTMODSEQ: box.highestmodseq,
        StatusItem.APPENDLIMIT: s.service.limits.max_append,
    }
    pairs = " ".join(f"{item.value} {values[item]}" for item in items)
    s.untagged(b"STATUS " + encode.mailbox(box.name, utf8=s.utf8) + f" ({pairs})".encode())


async def status(s: ImapSession, tag: str, cmd: Status) -> None:
    """Authenticated. RFC 9051 §6.3.11 STATUS (+ RFC 8438 SIZE, RFC 7162 HIGHESTMODSEQ)."""
    box = await s.store.status(cmd.mailbox)
    _status_line(s, box, cmd.items)
    await s.ok(tag, cmd, "STATUS completed")


async def append(s: ImapSession, tag: str, cmd: Append) -> None:
    """Authenticated. RFC 9051 §6.3.12 APPEND, RFC 3502 MULTIAPPEND, RFC 4315 APPENDUID,
    RFC 3516 §4.4 literal8."""
    done: list[int] = []
    uidvalidity = 0
    try:
        for message in cmd.messages:
            if not message.data:
                raise Abort("Empty message", "CANNOT")
            flags = [f for f in message.flags if f != "\\Recent"]
            result = await s.store.append(cmd.mailbox, message.data, flags, message.internal_date)
            uidvalidity = result.uidvalidity
            done.append(result.uid)
    except MailboxNotFound as exc:
        raise trycreate(exc) from None
    except BaseException:
        if done:
            await s.store.store(cmd.mailbox, done, [DELETED], StoreMode.ADD)
            await s.store.expunge(cmd.mailbox, done)
        raise
    uids = ",".join(map(str, done))
    await s.ok(tag, cmd, "APPEND completed", f"APPENDUID {uidvalidity} {uids}")


HANDLERS: dict[str, Handler] = {
    "LIST": list_,
    "LSUB": lsub,
    "CREATE": create,
    "DELETE": delete,
    "RENAME": rename,
    "SUBSCRIBE": subscribe,
    "UNSUBSCRIBE": unsubscribe,
    "STATUS": status,
    "APPEND": append,
}
