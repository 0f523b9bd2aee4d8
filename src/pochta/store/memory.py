"""In-memory implementation of the store contract, for tests and embedding.

Design note
-----------
Everything lives in dicts owned by the event loop thread. Every operation
runs to completion without an ``await`` in between, so each is atomic with
respect to every other session, exactly what the Maildir backend gets from
its single writer; no locks are needed. "Durable" here means "in this
process's memory": a restart loses everything.

Semantics follow the Maildir backend one for one (the conformance suite in
``tests/store`` runs against both): same name rules (``names``), same flag
rules (``flags``), same UIDVALIDITY rule (``common``); one new MODSEQ per
operation and mailbox; tombstones are kept forever; a delivery to a mailbox
that does not exist lands in INBOX.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pochta.mime import MessageMeta, analyze
from pochta.store import common, names
from pochta.store import flags as flagset
from pochta.store.feed import Feed
from pochta.store.interface import (
    DEFAULT_MAILBOXES,
    DELETED,
    INBOX,
    SEEN,
    AppendResult,
    Changes,
    CopyResult,
    Delivered,
    InvalidMailboxName,
    Mailboxes,
    MailboxExists,
    MailboxInfo,
    MailboxNotEmpty,
    MailboxNotFound,
    MessageInfo,
    MessageNotFound,
    Notice,
    Recipient,
    Store,
    StoreError,
    StoreMode,
    StoreResult,
    UserNotFound,
    Watch,
)

LIST_CHANGED = Notice(None, 0)


@dataclass(slots=True)
class _Message:
    uid: int
    data: bytes
    flags: frozenset[str]
    modseq: int
    internal_date: dt.datetime
    meta: MessageMeta

    def info(self) -> MessageInfo:
        return MessageInfo(self.uid, self.flags, self.modseq, len(self.data), self.internal_date)


@dataclass(slots=True)
class _Mailbox:
    name: str
    uidvalidity: int
    special_use: frozenset[str] = frozenset()
    subscribed: bool = False
    uidnext: int = 1
    highestmodseq: int = 1
    messages: dict[int, _Message] = field(default_factory=dict)  # ascending UID
    vanished: dict[int, int] = field(default_factory=dict)  # uid → modseq

    def bump(self) -> int:
        self.highestmodseq += 1
        return self.highestmodseq

    def add(self, msg: _Message) -> int:
        uid = self.uidnext
        self.uidnext += 1
        msg.uid = uid
        self.messages[uid] = msg
        return uid

    def info(self, *, counters: bool = True) -> MailboxInfo:
        msgs = list(self.messages.values()) if counters else []
        return MailboxInfo(
            name=self.name,
            uidvalidity=self.uidvalidity,
            uidnext=self.uidnext,
            highestmodseq=self.highestmodseq,
            special_use=self.special_use,
            subscribed=self.subscribed,
            messages=len(msgs),
            unseen=sum(1 for m in msgs if SEEN not in m.flags),
            deleted=sum(1 for m in msgs if DELETED in m.flags),
            size=sum(len(m.data) for m in msgs),
        )


class MemoryStore:
    """``pochta.store.interface.Store`` kept in process memory."""

    def __init__(self) -> None:
        self._users: dict[str, dict[str, _Mailbox]] = {}
        self._last_uidvalidity = 0
        self.feed = Feed()

    async def open(self) -> None:
        """Nothing to open; present for the contract."""

    async def close(self) -> None:
        """Wake and detach every watcher."""
        self.feed.close_all()

    def mailboxes(self, user: str) -> MemoryMailboxes:
        return MemoryMailboxes(self, user)

    async def create_user(self, user: str) -> None:
        common.user_parts(user)  # the same names as the Maildir backend accepts
        if user in self._users:
            return
        boxes: dict[str, _Mailbox] = {}
        for name, use in DEFAULT_MAILBOXES:
            uses = frozenset() if use is None else frozenset({use})
            boxes[name] = _Mailbox(name, self._uidvalidity(), uses, subscribed=True)
        self._users[user] = boxes

    async def delete_user(self, user: str) -> None:
        if self._users.pop(user, None) is not None:
            self.feed.publish(user, (LIST_CHANGED,))

    async def deliver(self, data: bytes, recipients: Sequence[Recipient]) -> list[Delivered]:
        targets = common.plan_delivery(recipients)
        for user, _, _ in targets:
            if user not in self._users:
                raise UserNotFound(f"no such user {user}")
        meta = analyze(data)
        when = common.internal_date(None)
        delivered: list[Delivered] = []
        seen: set[tuple[str, str]] = set()
        for user, name, flags in targets:
            boxes = self._users[user]
            box = boxes.get(name) or boxes[INBOX]
            if (user, box.name) in seen:
                continue
            seen.add((user, box.name))
            uid = box.add(_Message(0, data, flags, box.bump(), when, meta))
            delivered.append(Delivered(user, box.name, box.uidvalidity, uid))
            self.feed.publish(user, (Notice(box.name, box.highestmodseq),))
        return delivered

    async def reindex(self, user: str) -> int:
        """Nothing to rebuild in memory; returns the user's message count."""
        return sum(len(box.messages) for box in self._boxes(user).values())

    # helpers for MemoryMailboxes

    def _uidvalidity(self) -> int:
        self._last_uidvalidity = common.next_uidvalidity(self._last_uidvalidity)
        return self._last_uidvalidity

    def _boxes(self, user: str) -> dict[str, _Mailbox]:
        try:
            return self._users[user]
        except KeyError:
            raise UserNotFound(f"no such user {user}") from None


class MemoryMailboxes:
    """``pochta.store.interface.Mailboxes`` of one user of a ``MemoryStore``."""

    def __init__(self, store: MemoryStore, user: str) -> None:
        self._store = store
        self._user = user

    @property
    def user(self) -> str:
        return self._user

    def _boxes(self) -> dict[str, _Mailbox]:
        return self._store._boxes(self._user)

    def _box(self, name: str) -> _Mailbox:
        canonical = names.normalize(name)
        try:
            return self._boxes()[canonical]
        except KeyError:
            raise MailboxNotFound(f"no mailbox {name!r}") from None

    def _notify(self, *notices: Notice) -> None:
        self._store.feed.publish(self._user, notices)

    async def list(self) -> list[MailboxInfo]:
        boxes = self._boxes()
        return [boxes[n].info(counters=False) for n in common.sort_mailboxes(builtins.list(boxes))]

    async def status(self, name: str) -> MailboxInfo:
        return self._box(name).info()

    async def create(self, name: str, special_use: frozenset[str] = frozenset()) -> MailboxInfo:
        canonical = names.normalize(name, for_create=True)
        uses = common.special_use(special_use)
        boxes = self._boxes()
        if canonical in boxes:
            raise MailboxExists(f"mailbox {canonical!r} exists")
        for parent in names.parents(canonical):
            if parent not in boxes:
                boxes[parent] = _Mailbox(parent, self._store._uidvalidity())
        box = boxes[canonical] = _Mailbox(canonical, self._store._uidvalidity(), uses)
        self._notify(LIST_CHANGED)
        return box.info()

    async def delete(self, name: str) -> None:
        box = self._box(name)
        if box.name == INBOX:
            raise StoreError("INBOX cannot be deleted", code="CANNOT")
        boxes = self._boxes()
        if any(names.is_inferior(other, box.name) for other in boxes):
            raise MailboxNotEmpty(f"mailbox {box.name!r} has children")
        del boxes[box.name]
        self._notify(LIST_CHANGED)

    async def rename(self, old: str, new: str) -> None:
        source = self._box(old)
        target = names.normalize(new)
        boxes = self._boxes()
        if target in boxes:
            raise MailboxExists(f"mailbox {target!r} exists")
        if names.is_inferior(target, source.name):
            raise InvalidMailboxName("cannot rename a mailbox into itself")
        if source.name == INBOX:
            # RFC 9051 §6.3.6: INBOX stays; its messages move to the new name.
            await self.create(target)
            await self.move(INBOX, builtins.list(source.messages), target)
            return
        moving = [n for n in boxes if n == source.name or names.is_inferior(n, source.name)]
        renamed = {n: target + n[len(source.name) :] for n in moving}
        if any(new_name in boxes for new_name in renamed.values()):
            raise MailboxExists("a mailbox below the new name exists")
        for old_name, new_name in renamed.items():
            box = boxes.pop(old_name)
            box.name = new_name
            boxes[new_name] = box
        for parent in names.parents(target):
            if parent not in boxes:
                boxes[parent] = _Mailbox(parent, self._store._uidvalidity())
        self._notify(LIST_CHANGED)

    async def subscribe(self, name: str, subscribed: bool) -> None:
        self._box(name).subscribed = subscribed
        self._notify(LIST_CHANGED)

    async def append(
        self,
        name: str,
        data: bytes,
        flags: Iterable[str] = (),
        internal_date: dt.datetime | None = None,
    ) -> AppendResult:
        box = self._box(name)
        msg = _Message(
            0,
            bytes(data),
            flagset.normalize(flags),
            box.highestmodseq + 1,
            common.internal_date(internal_date),
            analyze(data),
        )
        box.bump()
        uid = box.add(msg)
        self._notify(Notice(box.name, box.highestmodseq))
        return AppendResult(box.uidvalidity, uid)

    async def messages(self, name: str) -> builtins.list[MessageInfo]:
        return [m.info() for m in self._box(name).messages.values()]

    async def changes(self, name: str, since: int) -> Changes:
        box = self._box(name)
        changed = tuple(m.info() for m in box.messages.values() if m.modseq > since)
        vanished = tuple(sorted(uid for uid, mod in box.vanished.items() if mod > since))
        return Changes(box.highestmodseq, changed, vanished, box.uidvalidity, box.uidnext)

    async def meta(self, name: str, uids: Sequence[int]) -> dict[int, MessageMeta]:
        msgs = self._box(name).messages
        return {uid: msgs[uid].meta for uid in uids if uid in msgs}

    async def read(self, name: str, uid: int) -> bytes:
        msg = self._box(name).messages.get(uid)
        if msg is None:
            raise MessageNotFound(f"no message with UID {uid}")
        return msg.data

    async def read_many(self, name: str, uids: Sequence[int]) -> dict[int, bytes]:
        messages = self._box(name).messages
        return {uid: messages[uid].data for uid in uids if uid in messages}

    async def store(
        self,
        name: str,
        uids: Sequence[int],
        flags: Iterable[str],
        mode: StoreMode,
        unchanged_since: int | None = None,
    ) -> StoreResult:
        box = self._box(name)
        wanted = flagset.normalize(flags)
        updated: builtins.list[MessageInfo] = []
        modified: builtins.list[int] = []
        modseq = 0
        for uid in sorted(set(uids)):
            msg = box.messages.get(uid)
            if msg is None:
                continue
            if unchanged_since is not None and msg.modseq > unchanged_since:
                modified.append(uid)
                continue
            new = flagset.apply(msg.flags, wanted, mode)
            if new != msg.flags:
                modseq = modseq or box.bump()
                msg.flags, msg.modseq = new, modseq
            updated.append(msg.info())
        if modseq:
            self._notify(Notice(box.name, modseq))
        return StoreResult(tuple(updated), tuple(modified))

    async def expunge(
        self, name: str, uids: Sequence[int] | None = None, *, scope: int | None = None
    ) -> builtins.list[int]:
        box = self._box(name)
        among = None if uids is None else set(uids)
        gone = [
            uid
            for uid, msg in box.messages.items()
            if DELETED in msg.flags and (among is None or uid in among)
        ]
        self._remove(box, gone)
        return gone

    async def remove(self, name: str, uids: Sequence[int]) -> builtins.list[int]:
        box = self._box(name)
        gone = sorted(uid for uid in set(uids) if uid in box.messages)
        self._remove(box, gone)
        return gone

    def _remove(self, box: _Mailbox, uids: builtins.list[int]) -> None:
        if not uids:
            return
        modseq = box.bump()
        for uid in uids:
            del box.messages[uid]
            box.vanished[uid] = modseq
        self._notify(Notice(box.name, modseq))

    async def copy(self, name: str, uids: Sequence[int], dest: str) -> CopyResult:
        source, target = self._box(name), self._box(dest)
        chosen = [source.messages[uid] for uid in sorted(set(uids)) if uid in source.messages]
        if not chosen:
            return CopyResult(target.uidvalidity, (), ())
        modseq = target.bump()
        new_uids = tuple(
            target.add(_Message(0, m.data, m.flags, modseq, m.internal_date, m.meta))
            for m in chosen
        )
        self._notify(Notice(target.name, modseq))
        return CopyResult(target.uidvalidity, tuple(m.uid for m in chosen), new_uids)

    async def move(self, name: str, uids: Sequence[int], dest: str) -> CopyResult:
        result = await self.copy(name, uids, dest)
        self._remove(self._box(name), builtins.list(result.source_uids))
        return result

    def watch(self) -> Watch:
        return self._store.feed.watch(self._user)

    def stamp(self) -> int:
        return self._store.feed.stamp(self._user)


if TYPE_CHECKING:  # mypy checks both classes against the contract
    _store: Store = MemoryStore()
    _mailboxes: Mailboxes = MemoryMailboxes(MemoryStore(), "")
