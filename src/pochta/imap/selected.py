"""Selected state: SELECT/EXAMINE, FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE,
CLOSE, UNSELECT, CHECK, and IDLE (RFC 9051 §6.3.2-§6.3.3, §6.3.13, §6.4).

Design note
-----------
:class:`Selected` is the session's own view of the selected mailbox: the
ascending UID list (message number ``n`` is ``uids[n-1]``), each message's
index row, and the HIGHESTMODSEQ up to which the view is current. Other
sessions and SMTP delivery change the store at any time; the view changes
only in :meth:`Selected.sync`, which asks the store for ``changes`` since
the view's MODSEQ and reports them:

* new messages: ``* n EXISTS`` (always allowed);
* flag changes by others: ``* n FETCH (UID u FLAGS (...))``;
* expunged messages: ``* n EXPUNGE``, but only when RFC 9051 §7.5.1 allows it
  (not after FETCH, STORE or SEARCH): until then they stay in the view as
  *pending* and their numbers stay valid; a FETCH of one gets no data.

``sync`` runs after every command in selected state (``ImapSession.ok``) and
whenever the change feed wakes an IDLE session. IDLE subscribes to the feed
only while idling (one ``Watch`` per idling session, nothing else), so an
idle session costs a few KiB; pushes leave within milliseconds of the
store's notice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from pochta.imap import encode
from pochta.imap import fetch as fetchmod
from pochta.imap.connection import Closed
from pochta.imap.mailbox import trycreate
from pochta.imap.parser import is_idle_done
from pochta.imap.search import Need, SearchContext, SearchMessage, search
from pochta.imap.session import Abort, ImapSession, State
from pochta.imap.types import (
    BinarySection,
    BinarySize,
    BodySection,
    Check,
    Close,
    Copy,
    Examine,
    Expunge,
    Fetch,
    FetchAttr,
    FetchItem,
    Idle,
    Move,
    ParseError,
    QResync,
    Search,
    SearchAll,
    SearchAnd,
    SearchFlag,
    SearchKey,
    SearchModSeq,
    SearchNot,
    SearchOr,
    SearchReturn,
    Select,
    SequenceSet,
    Store,
    Unselect,
)
from pochta.store import names
from pochta.store.interface import (
    JUNK,
    SEEN,
    SYSTEM_FLAGS,
    TRASH,
    Changes,
    InvalidMailboxName,
    MailboxNotFound,
    MessageInfo,
    MessageNotFound,
    StoreMode,
)

if TYPE_CHECKING:
    from pochta.antispam.bayes import JunkTrainer

Handler = Callable[[ImapSession, str, Any], Awaitable[None]]

#: Seconds after which ``Selected.sync`` asks the store even if no change
#: notice came (changes made by another process do not notify).
RESYNC_EVERY = 1.0

#: Seconds an IDLE session waits for a change notice before it asks the
#: store anyway: notices from other processes are best effort
#: (``pochta.store.bus``), and a process that could not join them at all
#: still gets its IDLE clients their mail this late at worst.
IDLE_RECHECK = 60.0

#: Messages whose meta and bytes are loaded together per FETCH batch.
FETCH_BATCH = 100
#: Messages per response chunk of a FETCH answered from the index rows alone.
ROWS_BATCH = 1000
_SYSTEM = sorted(SYSTEM_FLAGS)


class Selected:
    """The session's view of its selected mailbox; see the module note."""

    def __init__(self, name: str, readonly: bool, uidvalidity: int, modseq: int) -> None:
        self.name = name
        self.readonly = readonly
        self.uidvalidity = uidvalidity
        self.highestmodseq = modseq
        self.uids: list[int] = []
        self.info: dict[int, MessageInfo] = {}
        #: UIDs expunged in the store, not yet reported (RFC 9051 §7.5.1).
        self.pending: set[int] = set()
        #: The SEARCHRES saved result (RFC 5182), as UIDs.
        self.saved: frozenset[int] = frozenset()
        self.keywords: set[str] = set()
        #: SEARCH's view of each row, by UID (see ``search_messages``).
        self._searchable: dict[int, tuple[MessageInfo, SearchMessage]] = {}
        #: The store's change stamp when the view was last synced, and when.
        self.stamp = -1
        self.synced_at = 0.0
        #: UIDNEXT as of the view's last read of the store: every UID below it
        #: not in ``uids`` (nor pending) is gone; above it the view knows nothing.
        self.uidnext = 1

    def search_messages(self) -> list[SearchMessage]:
        """The index rows as SEARCH sees them, numbered; kept between SEARCHes.

        A row is rebuilt only when its ``MessageInfo`` object was replaced
        (a flag change) or its number moved (an expunge before it).
        """
        cache = self._searchable
        out: list[SearchMessage] = []
        info = self.info
        for seq, uid in enumerate(self.uids, 1):
            row = info[uid]
            known = cache.get(uid)
            meta = None
            if known is not None:
                # The same row loaded again (a new SELECT of this mailbox) is
                # equal by value: the view holds, with its loaded meta; an
                # expunge before it only renumbers it.
                if known[0] is row or known[0] == row:
                    view = known[1]
                    if view.seq != seq:
                        view.seq = seq
                    if known[0] is not row:
                        cache[uid] = (row, view)
                    out.append(view)
                    continue
                # A flag change: the message itself, and so its meta, is the same.
                meta = known[1].meta
            message = SearchMessage.from_info(seq, row, meta)
            cache[uid] = (row, message)
            out.append(message)
        if len(cache) > len(out):
            live = set(self.uids)
            for uid in [u for u in cache if u not in live]:
                del cache[uid]
        return out

    def inherit(self, previous: Selected) -> None:
        """Take over ``previous``'s SEARCH views when it showed the same mailbox
        (a client that SELECTs its mailbox again keeps the metas it loaded)."""
        if previous.name == self.name and previous.uidvalidity == self.uidvalidity:
            self._searchable = previous._searchable

    def remember(self, loaded: Sequence[SearchMessage]) -> None:
        """Keep the metas a SEARCH loaded, so the next one needs no store trip
        (message octets are not kept: they would pin the whole mailbox)."""
        cache = self._searchable
        for message in loaded:
            if message.meta is None:
                continue
            known = cache.get(message.uid)
            if known is not None and known[1].seq == message.seq:
                if message.data is not None:
                    message = dataclasses.replace(message, data=None)
                cache[message.uid] = (known[0], message)

    def seq(self, uid: int) -> int:
        """Message number of ``uid`` (which must be in the view)."""
        return bisect_left(self.uids, uid) + 1

    def resolve(self, sequence_set: SequenceSet, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending (RFC 9051 §9 ``sequence-set``)."""
        if sequence_set.saved:
            return [u for u in self.uids if u in self.saved]
        if uid:
            return sequence_set.select(self.uids)
        count = len(self.uids)
        if sequence_set.max_number() > count:
            raise Abort("Invalid message sequence number", status="BAD")
        return [self.uids[n - 1] for n in sequence_set.expand(count)]

    def flags_line(self) -> bytes:
        return b"FLAGS " + encode.flag_list([*_SYSTEM, *sorted(self.keywords)])

    async def sync(self, s: ImapSession, *, expunges: bool) -> None:
        """Report what changed in the store since the view (see the module note).

        Asking the store costs a trip to its reader threads after every
        command; when the user's change stamp has not moved since the last
        look, nothing changed in this process, so the trip is skipped --
        but at least every ``RESYNC_EVERY`` seconds the store is asked anyway,
        for changes made by other processes (the CLI, a restore).
        """
        stamp = s.store.stamp()
        now = time.monotonic()
        if stamp == self.stamp and now - self.synced_at < RESYNC_EVERY:
            if not (expunges and self.pending):
                return
            changes = Changes(self.highestmodseq, (), ())
        else:
            changes = await s.store.changes(self.name, self.highestmodseq)
            self.stamp, self.synced_at = stamp, now
            if not changes.complete:
                # The view is older than the tombstones kept: what of it is
                # gone is what no longer exists (rare: a session idle across
                # tens of thousands of expunges). A second read, so a row
                # changed in the first but gone by the second is dropped
                # (else a just-expunged highest UID would come back as new);
                # one that arrived in between comes with the next sync.
                existing = {i.uid for i in await s.store.messages(self.name)}
                gone = tuple(u for u in self.uids if u not in existing)
                kept = tuple(i for i in changes.changed if i.uid in existing)
                changes = dataclasses.replace(changes, changed=kept, vanished=gone, complete=True)
        self.highestmodseq = max(self.highestmodseq, changes.highestmodseq)
        self.uidnext = max(self.uidnext, changes.uidnext)
        for uid in changes.vanished:
            if uid in self.info:
                self.pending.add(uid)
        if expunges and self.pending:
            if s.qresync:  # RFC 7162 §3.2.10: VANISHED replaces EXPUNGE
                s.untagged(f"VANISHED {SequenceSet.from_numbers(self.pending)}")
            for uid in sorted(self.pending, reverse=True):
                seq = self.seq(uid)
                if not s.qresync:
                    s.untagged(b"%d EXPUNGE" % seq)
                del self.uids[seq - 1]
                del self.info[uid]
            self.pending.clear()
        top = self.uids[-1] if self.uids else 0
        new = 0
        new_keywords = False
        for info in changes.changed:
            if info.uid in self.pending:
                continue
            for flag in info.flags - SYSTEM_FLAGS:
                if flag not in self.keywords:
                    self.keywords.add(flag)
                    new_keywords = True
            old = self.info.get(info.uid)
            if old is None:
                if info.uid > top:
                    self.uids.append(info.uid)
                    self.info[info.uid] = info
                    top = info.uid
                    new += 1
                continue
            self.info[info.uid] = info
            if old.flags != info.flags:
                s.untagged(flags_fetch(s, self.seq(info.uid), info, uid=True))
        if new_keywords:
            s.untagged(self.flags_line())
        if new:
            s.untagged(b"%d EXISTS" % len(self.uids))


def flags_fetch(s: ImapSession, seq: int, info: MessageInfo, *, uid: bool) -> bytes:
    """``n FETCH ([UID u ]FLAGS (...)[ MODSEQ (m)])``: MODSEQ once CONDSTORE is on
    (RFC 7162 §3.1.4: every later FETCH with FLAGS carries it)."""
    out = b"%d FETCH (" % seq
    if uid:
        out += b"UID %d " % info.uid
    out += b"FLAGS " + encode.flag_list(info.flags)
    if s.condstore:
        out += b" MODSEQ (%d)" % info.modseq
    return out + b")"


def uses_modseq(key: SearchKey) -> bool:
    """Whether a SEARCH program has a MODSEQ key (RFC 7162 §3.1.5)."""
    if isinstance(key, SearchModSeq):
        return True
    if isinstance(key, SearchNot):
        return uses_modseq(key.key)
    if isinstance(key, SearchOr):
        return uses_modseq(key.left) or uses_modseq(key.right)
    if isinstance(key, SearchAnd):
        return any(uses_modseq(k) for k in key.keys)
    return False


def enable_condstore(s: ImapSession) -> None:
    """A CONDSTORE-enabling command (RFC 7162 §3.1): report HIGHESTMODSEQ once."""
    if s.condstore:
        return
    s.enabled.add("CONDSTORE")
    if s.selected is not None:
        s.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % s.selected.highestmodseq)


# --- SELECT / EXAMINE -------------------------------------------------------------------


async def select(s: ImapSession, tag: str, cmd: Select | Examine) -> None:
    """Authenticated or selected. RFC 9051 §6.3.2 SELECT, §6.3.3 EXAMINE."""
    previous = s.selected
    if previous is not None:
        s.selected = None
        s.state = State.AUTHENTICATED
        s.untagged("OK [CLOSED] Previous mailbox closed")
    if cmd.qresync is not None and not s.qresync:
        raise Abort("ENABLE QRESYNC first", status="BAD")  # RFC 7162 §3.2.5
    if cmd.condstore:
        s.enabled.add("CONDSTORE")
    # The store's change stamp before the read: a change published after it
    # moves the stamp, so the next sync asks the store (see Selected.sync).
    stamp = s.store.stamp()
    reopened = await _reopen(s, previous, cmd) if previous is not None else None
    if reopened is not None:
        view, uidnext = reopened
    else:
        box = await s.store.status(cmd.mailbox)
        infos = await s.store.messages(cmd.mailbox)
        view = Selected(box.name, cmd.readonly, box.uidvalidity, box.highestmodseq)
        uidnext = box.uidnext
        if previous is not None:
            view.inherit(previous)
        for info in infos:
            view.uids.append(info.uid)
            view.info[info.uid] = info
            view.keywords.update(info.flags - SYSTEM_FLAGS)
    view.stamp, view.synced_at = stamp, time.monotonic()
    view.uidnext = uidnext
    s.untagged(view.flags_line())
    s.untagged(b"%d EXISTS" % len(view.uids))
    if not s.rev2:
        s.untagged(b"0 RECENT")
        unseen = next((i for i, u in enumerate(view.uids, 1) if SEEN not in view.info[u].flags), 0)
        if unseen:
            s.untagged(b"OK [UNSEEN %d] First unseen" % unseen)
    permanent = "()" if cmd.readonly else "(" + " ".join([*_SYSTEM, "\\*"]) + ")"
    s.untagged(f"OK [PERMANENTFLAGS {permanent}] Flags permitted")
    s.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % view.uidvalidity)
    s.untagged(b"OK [UIDNEXT %d] Predicted next UID" % uidnext)
    if s.condstore:
        s.untagged(b"OK [HIGHESTMODSEQ %d] Highest" % view.highestmodseq)
    s.selected = view
    s.state = State.SELECTED
    if cmd.qresync is not None and cmd.qresync.uidvalidity == view.uidvalidity:
        await _resync(s, view, cmd.qresync)
    mode = "READ-ONLY" if cmd.readonly else "READ-WRITE"
    s.tagged(tag, "OK", f"{cmd.name} completed", mode)


async def _reopen(
    s: ImapSession, previous: Selected, cmd: Select | Examine
) -> tuple[Selected, int] | None:
    """A SELECT of the mailbox already selected: the previous view plus what
    changed since its MODSEQ, from one small store read instead of every
    row (clients re-SELECT their INBOX to poll). Returns the view and
    UIDNEXT, or None when the full read is needed (another mailbox, or this
    one deleted and created again since: a new UIDVALIDITY)."""
    try:
        if names.normalize(cmd.mailbox) != previous.name:
            return None
    except InvalidMailboxName:
        return None
    changes = await s.store.changes(previous.name, previous.highestmodseq)
    if changes.uidvalidity != previous.uidvalidity or not changes.complete:
        return None  # (incomplete: older than the tombstones kept; read it all)
    view = Selected(
        previous.name,
        cmd.readonly,
        previous.uidvalidity,
        max(previous.highestmodseq, changes.highestmodseq),
    )
    view.inherit(previous)
    # The previous view is dropped: take over its rows. Pending expunges and
    # the ones since are gone from the new view (a new SELECT starts clean).
    info, uids = previous.info, previous.uids
    gone = previous.pending.union(changes.vanished)
    if gone:
        for uid in gone:
            info.pop(uid, None)
        uids = [u for u in uids if u in info]
    keywords = previous.keywords
    unordered = False
    for row in changes.changed:
        if row.uid in gone:
            continue
        if row.uid not in info:
            unordered = unordered or bool(uids and row.uid < uids[-1])
            uids.append(row.uid)
        info[row.uid] = row
        keywords.update(row.flags - SYSTEM_FLAGS)
    if unordered:
        uids.sort()
    view.uids, view.info, view.keywords = uids, info, keywords
    return view, changes.uidnext


async def _resync(s: ImapSession, view: Selected, qr: QResync) -> None:
    """RFC 7162 §3.2.5.1: what the client missed since ``qr.modseq``: VANISHED
    (EARLIER) for expunged UIDs, FETCH for changed messages (limited to the
    known UIDs when given; the seq-match data only narrows what we already
    know exactly from the tombstones, so it is not needed)."""
    changes = await s.store.changes(view.name, qr.modseq)
    known = qr.known_uids
    top = max([*changes.vanished, *view.uids, 1])

    def wanted(uid: int) -> bool:
        return known is None or known.contains(uid, top)

    if changes.complete:
        gone = [u for u in changes.vanished if wanted(u) and u not in view.info]
        if gone:
            s.untagged(f"VANISHED (EARLIER) {SequenceSet.from_numbers(gone)}")
    else:
        _vanished_below_floor(s, view, changes, known)
    for info in changes.changed:
        current = view.info.get(info.uid)
        if current is not None and wanted(info.uid):
            s.untagged(flags_fetch(s, view.seq(info.uid), current, uid=True))


def _absent(present: Sequence[int], within: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ranges of numbers inside ``within`` (sorted, disjoint, inclusive)
    that are not in ``present`` (ascending): without listing them one by one,
    for a range may span millions of long-gone UIDs."""
    out: list[tuple[int, int]] = []
    i, n = 0, len(present)
    for lo, hi in within:
        i = bisect_left(present, lo, i)
        cur = lo
        while i < n and present[i] <= hi:
            if present[i] > cur:
                out.append((cur, present[i] - 1))
            cur = present[i] + 1
            i += 1
        if cur <= hi:
            out.append((cur, hi))
    return out


#: Ranges per VANISHED (EARLIER) line when listing gone UIDs by range: lines
#: stay under ~20 KB (RFC 2683 §3.2.1.5 asks clients to take 8,000 octets;
#: many take far more, none need one line).
VANISHED_RANGES_PER_LINE = 1_000


def _vanished_below_floor(
    s: ImapSession, view: Selected, changes: Changes, wanted: SequenceSet | None
) -> None:
    """``VANISHED (EARLIER)`` when the tombstones since the client's MODSEQ were
    pruned (``changes.complete`` False): every UID of ``wanted`` (all when
    None) that is gone, as RFC 7162 §3.2.5.2 allows a server without expunge
    history to answer. Below the view's UIDNEXT, what the view lacks is gone;
    above it (mail that came since the view's last read, never announced to
    the client) only the tombstones kept tell.
    """
    known_top = view.uidnext - 1
    top = max([known_top, *changes.vanished])
    within = wanted.bounds(known_top) if wanted is not None else [(1, known_top)]
    present = [u for u in view.uids if u not in view.pending]
    ranges = _absent(present, within)
    ranges += [
        (u, u)
        for u in changes.vanished
        if u > known_top and (wanted is None or wanted.contains(u, top))
    ]
    step = VANISHED_RANGES_PER_LINE
    for first in range(0, len(ranges), step):
        s.untagged(f"VANISHED (EARLIER) {SequenceSet(tuple(ranges[first : first + step]))}")


# --- selected-state commands ------------------------------------------------------------


def _view(s: ImapSession) -> Selected:
    assert s.selected is not None
    return s.selected


def _writable(view: Selected) -> None:
    if view.readonly:
        raise Abort("Mailbox is read-only", "READ-ONLY")


def _fetch_item(item: FetchItem) -> fetchmod.FetchItem:
    """The parser's FETCH item as fetch.py's request value."""
    if isinstance(item, FetchAttr):
        return fetchmod.Item(item.value)
    if isinstance(item, BodySection):
        sec = item.section
        partial = (item.partial.start, item.partial.length) if item.partial else None
        return fetchmod.BodySection(
            sec.part, sec.text.value if sec.text else "", sec.fields, item.peek, partial
        )
    if isinstance(item, BinarySection):
        partial = (item.partial.start, item.partial.length) if item.partial else None
        return fetchmod.BodySection(item.part, "", (), item.peek, partial, binary=True)
    assert isinstance(item, BinarySize)
    return fetchmod.BinarySize(item.part)


async def fetch(s: ImapSession, tag: str, cmd: Fetch) -> None:
    """Selected. RFC 9051 §6.4.5 FETCH, §6.4.9 UID FETCH (\\Seen set by non-PEEK BODY[])."""
    view = _view(s)
    uids = [u for u in view.resolve(cmd.sequence_set, cmd.uid) if u not in view.pending]
    items = [_fetch_item(i) for i in cmd.items]
    if cmd.uid and fetchmod.Item.UID not in items:
        items.insert(0, fetchmod.Item.UID)
    if cmd.changed_since is not None or fetchmod.Item.MODSEQ in items:
        enable_condstore(s)
    if cmd.changed_since is not None:
        # RFC 7162 §3.1.4.1: only messages changed since, MODSEQ in each.
        since = cmd.changed_since
        uids = [u for u in uids if view.info[u].modseq > since]
        if cmd.vanished:  # RFC 7162 §3.2.6: UIDs expunged since, within the set
            changes = await s.store.changes(view.name, since)
            top = max([*changes.vanished, *view.uids, 1])
            if changes.complete:
                gone = [u for u in changes.vanished if cmd.sequence_set.contains(u, top)]
                gone = [u for u in gone if u not in view.info or u in view.pending]
                if gone:
                    s.untagged(f"VANISHED (EARLIER) {SequenceSet.from_numbers(gone)}")
            else:
                _vanished_below_floor(s, view, changes, cmd.sequence_set)
        if fetchmod.Item.MODSEQ not in items:
            items.append(fetchmod.Item.MODSEQ)
    request = fetchmod.Fetch(items, utf8=s.utf8, rev2=s.rev2)
    if request.sets_seen and not view.readonly:
        unseen = [u for u in uids if SEEN not in view.info[u].flags]
        if unseen:
            result = await s.store.store(view.name, unseen, [SEEN], StoreMode.ADD)
            for info in result.updated:
                if info.uid in view.info:
                    view.info[info.uid] = info
            request = request.with_flags()
            if s.condstore and fetchmod.Item.MODSEQ not in request.items:
                request = fetchmod.Fetch(
                    (*request.items, fetchmod.Item.MODSEQ), utf8=s.utf8, rev2=s.rev2
                )
    if request.row_only:
        rows, seq = view.info, view.seq
        for start in range(0, len(uids), ROWS_BATCH):
            batch = uids[start : start + ROWS_BATCH]
            s.out.raw(request.rows([(seq(uid), rows[uid]) for uid in batch]))
            await s.conn.drain()
        await s.ok(tag, cmd, "FETCH completed")
        return
    try:
        for start in range(0, len(uids), FETCH_BATCH):
            batch = uids[start : start + FETCH_BATCH]
            metas = await s.store.meta(view.name, batch) if request.needs_meta else {}
            for uid in batch:
                meta = metas.get(uid)
                if request.needs_meta and meta is None:
                    continue
                data = None
                if request.needs_body(meta):
                    try:
                        data = await s.store.read(view.name, uid)
                    except MessageNotFound:
                        continue
                chunks = request.chunks(view.seq(uid), view.info[uid], meta, data)
                if data is None:
                    s.out.raw(b"".join(chunks))  # one small response: one queue entry
                    continue
                for chunk in chunks:
                    s.out.raw(chunk)
                # Bodies go out as they are read: at most one message and the
                # writer's 256 KiB wait in memory while the client is slow.
                await s.conn.drain()
            await s.conn.drain()
    except fetchmod.UnknownCTE:
        raise Abort("Unknown Content-Transfer-Encoding", "UNKNOWN-CTE") from None
    await s.ok(tag, cmd, "FETCH completed")


async def store(s: ImapSession, tag: str, cmd: Store) -> None:
    """Selected. RFC 9051 §6.4.6 STORE, RFC 7162 §3.1.3 UNCHANGEDSINCE → [MODIFIED]."""
    view = _view(s)
    _writable(view)
    uids = [u for u in view.resolve(cmd.sequence_set, cmd.uid) if u not in view.pending]
    flags = [f for f in cmd.flags if f != "\\Recent"]
    if cmd.unchanged_since is not None:
        enable_condstore(s)
    result = await s.store.store(view.name, uids, flags, cmd.mode, cmd.unchanged_since)
    added = False
    for info in result.updated:
        if info.uid not in view.info:
            continue
        view.info[info.uid] = info
        for flag in info.flags - SYSTEM_FLAGS:
            if flag not in view.keywords:
                view.keywords.add(flag)
                added = True
    if added:
        s.untagged(view.flags_line())
    for info in result.updated:
        if info.uid in view.info and (not cmd.silent or cmd.unchanged_since is not None):
            # RFC 7162 §3.1.3: with UNCHANGEDSINCE, FETCH even when .SILENT
            s.untagged(flags_fetch(s, view.seq(info.uid), info, uid=cmd.uid))
    code = None
    if result.modified:
        numbers = result.modified if cmd.uid else [view.seq(u) for u in result.modified]
        code = f"MODIFIED {SequenceSet.from_numbers(numbers)}"
    await s.ok(tag, cmd, "STORE completed", code)


async def _load(
    s: ImapSession, name: str, msgs: Sequence[SearchMessage], need: Need
) -> list[SearchMessage]:
    """search.py's loader: meta and bytes for one batch, reads issued together."""
    uids = [m.uid for m in msgs]
    metas = await s.store.meta(name, uids) if need & (Need.META | Need.DATA) else {}
    datas: list[bytes | BaseException | None] = [None] * len(msgs)
    if need & Need.DATA:
        datas = list(
            await asyncio.gather(*(s.store.read(name, u) for u in uids), return_exceptions=True)
        )
    out: list[SearchMessage] = []
    for m, data in zip(msgs, datas, strict=True):
        if isinstance(data, MessageNotFound):
            out.append(m)
            continue
        if isinstance(data, BaseException):
            raise data
        out.append(
            SearchMessage(
                m.seq, m.uid, m.flags, m.modseq, m.size, m.internal_date, metas.get(m.uid), data
            )
        )
    return out


async def search_(s: ImapSession, tag: str, cmd: Search) -> None:
    """Selected. RFC 9051 §6.4.4 SEARCH/UID SEARCH, RFC 4731 ESEARCH, RFC 5182 SEARCHRES."""
    view = _view(s)
    modseq_key = uses_modseq(cmd.key)
    if modseq_key:
        enable_condstore(s)
    key = cmd.key
    if isinstance(key, SearchAll) or (isinstance(key, SearchFlag) and key.flag.startswith("\\")):
        # The most common SEARCHes (clients listing UIDs, or the unseen
        # ones): answered from the view's rows, no per-message search view.
        pending = view.pending
        if isinstance(key, SearchFlag):
            info, flag, present = view.info, key.flag, key.present
            live = [
                (seq, uid)
                for seq, uid in enumerate(view.uids, 1)
                if uid not in pending and (flag in info[uid].flags) is present
            ]
        else:
            live = [(seq, uid) for seq, uid in enumerate(view.uids, 1) if uid not in pending]
        matched = [uid for _, uid in live]
        numbers = matched if cmd.uid else [seq for seq, _ in live]
        found: list[SearchMessage] = []
    else:
        messages = view.search_messages()
        ctx = SearchContext(len(view.uids), view.uids[-1] if view.uids else 0, view.saved)

        async def load(msgs: Sequence[SearchMessage], need: Need) -> list[SearchMessage]:
            loaded = await _load(s, view.name, msgs, need)
            view.remember(loaded)
            return loaded

        found = await search(cmd.key, messages, ctx, load)
        found = [m for m in found if m.uid not in view.pending]
        matched = [m.uid for m in found]
        numbers = [m.uid if cmd.uid else m.seq for m in found]
    # RFC 7162 §3.1.5: the highest MODSEQ of the matches when MODSEQ was searched
    top = max((m.modseq for m in found), default=0) if modseq_key else 0
    returns = cmd.returns
    if returns is None and s.rev2:
        returns = frozenset({SearchReturn.ALL})
    if returns is None:
        modseq = [f"(MODSEQ {top})"] if top else []
        s.untagged(" ".join(["SEARCH", *map(str, numbers), *modseq]))
    else:
        if SearchReturn.SAVE in returns:
            view.saved = frozenset(matched)
        parts = [f'ESEARCH (TAG "{tag}")']
        if cmd.uid:
            parts.append("UID")
        if numbers and SearchReturn.MIN in returns:
            parts.append(f"MIN {numbers[0]}")
        if numbers and SearchReturn.MAX in returns:
            parts.append(f"MAX {numbers[-1]}")
        if SearchReturn.COUNT in returns:
            parts.append(f"COUNT {len(numbers)}")
        if numbers and SearchReturn.ALL in returns:
            parts.append(f"ALL {SequenceSet.from_numbers(numbers)}")
        if top:
            parts.append(f"MODSEQ {top}")
        if returns != {SearchReturn.SAVE}:
            s.untagged(" ".join(parts))
    await s.ok(tag, cmd, "SEARCH completed")


async def copy(s: ImapSession, tag: str, cmd: Copy) -> None:
    """Selected. RFC 9051 §6.4.7 COPY, RFC 4315 §3 COPYUID."""
    view = _view(s)
    uids = [u for u in view.resolve(cmd.sequence_set, cmd.uid) if u not in view.pending]
    if not uids:
        await s.ok(tag, cmd, "COPY completed (nothing to copy)")
        return
    try:
        result = await s.store.copy(view.name, uids, cmd.mailbox)
    except MailboxNotFound as exc:
        raise trycreate(exc) from None
    code = (
        f"COPYUID {result.uidvalidity} {SequenceSet.from_numbers(result.source_uids)} "
        f"{SequenceSet.from_numbers(result.dest_uids)}"
    )
    _learn(s, view.name, cmd.mailbox, result.dest_uids)
    await s.ok(tag, cmd, "COPY completed", code if result.source_uids else None)


#: Training tasks in flight (a reference keeps them from being collected).
_training: set[asyncio.Task[None]] = set()
log = logging.getLogger("pochta.imap")


def _learn(s: ImapSession, source: str, dest: str, dest_uids: Sequence[int]) -> None:
    """Teach the user's spam filter from a move or copy into or out of Junk.

    The user's own judgement is the best training signal there is: into
    the ``\\Junk`` mailbox (RFC 6154 §2) means spam, out of it (except into
    ``\\Trash``) means not spam. Training runs after the reply, off the
    command's path.
    """
    trainer = s.service.junk_trainer
    if trainer is None or not dest_uids or s.user is None:
        return
    task = asyncio.get_running_loop().create_task(
        _train(s, s.user, trainer, source, dest, list(dest_uids))
    )
    _training.add(task)
    task.add_done_callback(_training.discard)


async def _train(
    s: ImapSession, user: str, trainer: JunkTrainer, source: str, dest: str, uids: list[int]
) -> None:
    try:
        src = await s.store.status(source)
        dst = await s.store.status(dest)
        into = JUNK in dst.special_use and JUNK not in src.special_use
        out = (
            JUNK in src.special_use and JUNK not in dst.special_use and TRASH not in dst.special_use
        )
        if not (into or out):
            return
        messages = await s.store.read_many(dst.name, uids)
        await trainer.moved(user, list(messages.values()), into_junk=into)
    except Exception:
        log.exception("junk training failed user=%s", user)


def _copyuid(source: Sequence[int], dest: Sequence[int], uidvalidity: int) -> str:
    # COPYUID pairs the sets in order (RFC 4315 §3), so list them explicitly.
    return f"COPYUID {uidvalidity} {','.join(map(str, source))} {','.join(map(str, dest))}"


async def move(s: ImapSession, tag: str, cmd: Move) -> None:
    """Selected. RFC 6851 §3 MOVE / UID MOVE: COPYUID untagged, then EXPUNGEs."""
    view = _view(s)
    _writable(view)
    uids = [u for u in view.resolve(cmd.sequence_set, cmd.uid) if u not in view.pending]
    if not uids:
        await s.ok(tag, cmd, "MOVE completed (nothing to move)")
        return
    try:
        result = await s.store.move(view.name, uids, cmd.mailbox)
    except MailboxNotFound as exc:
        raise trycreate(exc) from None
    s.untagged(
        "OK [" + _copyuid(result.source_uids, result.dest_uids, result.uidvalidity) + "] Moved"
    )
    view.pending.update(u for u in result.source_uids if u in view.info)
    _learn(s, view.name, cmd.mailbox, result.dest_uids)
    await s.ok(tag, cmd, "MOVE completed")


async def expunge(s: ImapSession, tag: str, cmd: Expunge) -> None:
    """Selected. RFC 9051 §6.4.3 EXPUNGE, RFC 4315 §2.1 UID EXPUNGE."""
    view = _view(s)
    _writable(view)
    only = None
    if cmd.sequence_set is not None:
        only = view.resolve(cmd.sequence_set, True)
    gone = await s.store.expunge(view.name, only, scope=len(view.uids))
    view.pending.update(u for u in gone if u in view.info)
    await s.ok(tag, cmd, "EXPUNGE completed")


async def close(s: ImapSession, tag: str, cmd: Close) -> None:
    """Selected. RFC 9051 §6.4.1 CLOSE: silent expunge unless read-only."""
    view = _view(s)
    s.selected = None
    s.state = State.AUTHENTICATED
    if not view.readonly:
        await s.store.expunge(view.name, scope=len(view.uids))
    s.tagged(tag, "OK", "CLOSE completed")


async def unselect(s: ImapSession, tag: str, cmd: Unselect) -> None:
    """Selected. RFC 9051 §6.4.2 UNSELECT (RFC 3691): no expunge."""
    s.selected = None
    s.state = State.AUTHENTICATED
    s.tagged(tag, "OK", "UNSELECT completed")


async def check(s: ImapSession, tag: str, cmd: Check) -> None:
    """Selected. RFC 3501 §6.4.1 CHECK: a NOOP here (the store is always durable)."""
    await s.ok(tag, cmd, "CHECK completed")


async def idle(s: ImapSession, tag: str, cmd: Idle) -> None:
    """Authenticated or selected. RFC 9051 §6.3.13 IDLE (RFC 2177): push until DONE."""
    watch = s.store.watch()
    s.watch = watch
    try:
        if s.selected is not None:
            await s.selected.sync(s, expunges=True)
        s.out.continuation("idling")
        line_task = asyncio.ensure_future(s.read_line())
        try:
            while True:
                notice_task = asyncio.ensure_future(watch.wait(IDLE_RECHECK))
                done, _ = await asyncio.wait(
                    {line_task, notice_task}, return_when=asyncio.FIRST_COMPLETED
                )
                if line_task in done:
                    notice_task.cancel()
                    break
                view = s.selected
                notices = notice_task.result()
                if view is not None and (
                    not notices  # a quiet while: look anyway (see IDLE_RECHECK)
                    or any(
                        n.mailbox is None
                        or (n.mailbox == view.name and n.modseq > view.highestmodseq)
                        for n in notices
                    )
                ):  # only a change to this mailbox (or the list) costs a query
                    await view.sync(s, expunges=True)
                    s.out.flush()
        finally:
            if not line_task.done():
                line_task.cancel()
        try:
            line = line_task.result()
        except ParseError:
            raise Abort("Expected DONE", status="BAD") from None
    finally:
        watch.close()
        s.watch = None
    if not is_idle_done(line):
        raise Abort("Expected DONE", status="BAD")
    await s.ok(tag, cmd, "IDLE terminated")


SELECT_HANDLERS: dict[str, Handler] = {
    "SELECT": select,
    "EXAMINE": select,
    "IDLE": idle,
}

HANDLERS: dict[str, Handler] = {
    "FETCH": fetch,
    "STORE": store,
    "SEARCH": search_,
    "COPY": copy,
    "MOVE": move,
    "EXPUNGE": expunge,
    "CLOSE": close,
    "UNSELECT": unselect,
    "CHECK": check,
}

__all__ = ["HANDLERS", "SELECT_HANDLERS", "Closed", "Selected"]
