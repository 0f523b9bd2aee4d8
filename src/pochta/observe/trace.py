"""Message trace: each hop, lookup and verdict of a message, for ``pochta trace``.

Design note
-----------
The server appends one JSON object per event to
``data_dir/trace/YYYY-MM-DD.jsonl`` (the UTC day of the event). An event
names the queue id under which the server handled the message (the id of
our ``250`` replies and ``Received`` fields) and, where it is known, the
message's Message-ID; an event that hands the message on under another
queue id (a forwarded copy, a DSN about it) lists that id in ``links``.
``pochta trace ID`` takes a Message-ID or a queue id, reads the last
``KEEP_DAYS`` days, follows the links and prints the events in time order.

Why append-only files, not SQLite: events are recorded on the event loop,
several per message; an ``O_APPEND`` write of one line is a single
``write(2)`` that needs no lock, and other processes on the same data
directory may append to the same file (Linux keeps ``O_APPEND`` writes of
a local file whole). No fsync: a trace explains what happened, it holds
no mail; the last events before a power cut may be missing.

What is recorded: addresses, hosts, replies and verdicts -- never
credentials or message content besides its Message-ID. Files older than
``KEEP_DAYS`` days are removed when the server starts and when a new day's
file is opened.

Failure behaviour: recording never raises; while the trace directory
cannot be written, events are dropped (mail flow goes on), with a warning
and another try a minute later.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import mmap
import os
import re
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("pochta.trace")

#: Days of trace kept on disk.
KEEP_DAYS = 30

_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.jsonl$")
# The field may be folded before its value (RFC 5322 §2.2.3).
_MESSAGE_ID = re.compile(
    rb"^message-id:[ \t]*(?:\r?\n[ \t]+)?(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE
)
#: Where the header block is looked for when it has no end (a message of
#: headers only): Message-ID is near the top, and this runs on the loop.
_HEAD_LIMIT = 64 * 1024
#: Seconds without tracing after a failed write, before trying again.
RETRY_AFTER = 60.0
#: Characters of other people's text (HELO, Message-ID, replies) that
#: ``describe`` shows escaped: C0/C1 controls, DEL, and the Unicode format,
#: line and paragraph separators a terminal may act on.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: Longest Message-ID kept; longer ones are cut (RFC 5322 has no limit,
#: but a header line is at most 998 octets).
_MAX_ID = 998


def message_id(message: bytes) -> str | None:
    """The Message-ID of ``message`` (with its angle brackets), or None."""
    end = message.find(b"\r\n\r\n", 0, _HEAD_LIMIT)
    match = _MESSAGE_ID.search(message, 0, end if end >= 0 else _HEAD_LIMIT)
    if match is None:
        return None
    return match.group(1)[:_MAX_ID].decode("utf-8", "replace")


def normalize_id(text: str) -> str:
    """A Message-ID as the trace stores it: ``<...>``, outer spaces removed."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        return text
    return f"<{text}>"


class StoredCopy(Protocol):
    """Where a copy landed (``pochta.store.Delivered`` is one)."""

    @property
    def user(self) -> str: ...
    @property
    def mailbox(self) -> str: ...
    @property
    def uid(self) -> int: ...


class Trace:
    """This process's writer of trace events (see the module note).

    ``directory`` None: a trace that records nothing (:data:`NO_TRACE`), the
    default of the handlers that record, so they never check for one.
    """

    def __init__(self, directory: Path | None, keep_days: int = KEEP_DAYS) -> None:
        self.directory = directory
        self.keep_days = keep_days
        self._fd = -1
        self._day = ""
        #: The current file's day ends at this time (UTC midnight).
        self._day_ends = 0.0
        #: No writing before this time (after a failure).
        self._paused_until = 0.0

    def record(
        self,
        event: str,
        qid: str,
        *,
        mid: str | None = None,
        links: Iterable[str] = (),
        **fields: Any,
    ) -> None:
        """Append one event; ``fields`` are JSON values (anything else is written as text).

        An event without a queue id is not written: nothing could find it.
        """
        if self.directory is None or not qid:
            return
        now = time.time()
        if now < self._paused_until:
            return
        entry: dict[str, Any] = {"t": round(now, 3), "ev": event, "qid": qid}
        if mid:
            entry["mid"] = mid
        linked = [link for link in links if link]
        if linked:
            entry["links"] = linked
        entry.update(fields)
        # default=str: a value that is not JSON (a Path, an enum) is written as
        # text rather than failing the mail flow that records it.
        try:
            line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)
        except (ValueError, RecursionError):  # a value that refers to itself
            log.warning(
                "trace: event %s of %s not recorded: its fields cannot be written", event, qid
            )
            return
        line_bytes = line.encode("utf-8", "replace") + b"\n"
        try:
            os.write(self._file(now), line_bytes)
        except OSError as exc:
            # Tracing must never stop the mail (a full disk, no more fds):
            # drop events for a while, then try again.
            self._paused_until = now + RETRY_AFTER
            self.close()
            log.warning(
                "trace: cannot write to %s: %s; no tracing for %.0f s",
                self.directory,
                exc,
                RETRY_AFTER,
            )

    def stored(self, qid: str, copies: Iterable[StoredCopy]) -> None:
        """A ``stored`` event for each copy a delivery put in a mailbox."""
        for copy in copies:
            self.record("stored", qid, user=copy.user, mailbox=copy.mailbox, uid=copy.uid)

    def _file(self, now: float) -> int:
        assert self.directory is not None
        if now >= self._day_ends or self._fd < 0:
            day = _day(now)
            self.close()
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(
                self.directory / f"{day}.jsonl",
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
            self._day = day
            midnight = dt.datetime.fromtimestamp(now, dt.UTC).replace(
                hour=0, minute=0, second=0, microsecond=0
            )
            self._day_ends = (midnight + dt.timedelta(days=1)).timestamp()
            self.prune(now)
        return self._fd

    def prune(self, now: float | None = None) -> int:
        """Remove the files older than ``keep_days`` days; how many went."""
        if self.directory is None:
            return 0
        now = time.time() if now is None else now
        oldest = _day(now - self.keep_days * 86400)
        removed = 0
        for day, path in _files(self.directory):
            if day < oldest:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed += 1
        return removed

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


#: The trace of servers and handlers built without one (tests, embedding).
NO_TRACE = Trace(None)


def _day(when: float) -> str:
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%d")


def _files(directory: Path) -> list[tuple[str, Path]]:
    """(day, path) of the trace files in ``directory``, oldest first."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = [(m.group(1), directory / name) for name in names if (m := _FILE.match(name))]
    return sorted(found)


def _matching_lines(
    directory: Path, days: int, now: float, wanted: list[bytes]
) -> Iterator[tuple[tuple[str, int], bytes]]:
    """((day, offset), line) of each line of the last ``days`` days' files
    that contains one of ``wanted``, undecoded; a line once only.

    The files are searched, not read line by line: ``mmap`` and
    ``bytes.find`` go through a day of a busy server in milliseconds.
    """
    oldest = _day(now - days * 86400)
    for day, path in _files(directory):
        if day < oldest:
            continue
        try:
            with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                starts: set[int] = set()
                for w in wanted:
                    at = data.find(w)
                    while at >= 0:
                        start = data.rfind(b"\n", 0, at) + 1
                        end = data.find(b"\n", at)
                        end = len(data) if end < 0 else end
                        starts.add(start)
                        at = data.find(w, end)
                for start in sorted(starts):
                    end = data.find(b"\n", start)
                    yield (day, start), data[start : len(data) if end < 0 else end]
        except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
            continue


def find(
    directory: Path, key: str, *, days: int = KEEP_DAYS, now: float | None = None
) -> list[dict[str, Any]]:
    """Every event of the message ``key`` names (a Message-ID or a queue id), in time order.

    Starts from the events with that Message-ID or queue id, then adds the
    events of every queue id they share or link to, until nothing new turns up.
    """
    now = time.time() if now is None else now
    key = key.strip()
    mids = {normalize_id(key)} if "@" in key or key.startswith("<") else set()
    qids = set() if mids else {key}
    # (time, position in the files) -> event: equal times keep their order
    # of writing; files only grow at their ends, so a position stays put.
    found: dict[tuple[float, tuple[str, int]], dict[str, Any]] = {}
    # Each pass searches the files for the ids that turned up in the pass
    # before (lines with older ids were seen already); only the lines that
    # hold one are decoded. A message's links are few levels deep.
    new = mids | qids
    for _ in range(8):
        wanted = [json.dumps(w, ensure_ascii=False)[1:-1].encode("utf-8", "replace") for w in new]
        before_mids, before_qids = set(mids), set(qids)
        for position, raw in _matching_lines(directory, days, now, wanted):
            try:
                event = json.loads(raw.decode("utf-8", "replace"))
            except ValueError:
                continue
            if not isinstance(event, dict) or not isinstance(event.get("qid"), str):
                continue
            links = event.get("links")
            linked = [x for x in links if isinstance(x, str)] if isinstance(links, list) else []
            mid = event.get("mid")
            mid = mid if isinstance(mid, str) else None
            if mid in mids or event["qid"] in qids or set(linked) & qids:
                qids.add(event["qid"])
                qids.update(linked)
                if mid is not None:
                    mids.add(mid)
                stamp = event.get("t")
                when = float(stamp) if isinstance(stamp, int | float) else 0.0
                found[(when, position)] = event
        new = (mids - before_mids) | (qids - before_qids)
        if not new:
            break
    return [found[k] for k in sorted(found)]


def describe(event: dict[str, Any]) -> str:
    """One event as a line for people: time, queue id, event, its fields."""
    stamp = event.get("t")
    when = (
        dt.datetime.fromtimestamp(float(stamp), dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        if isinstance(stamp, int | float)
        else "?"
    )
    rest = {k: v for k, v in event.items() if k not in ("t", "ev", "qid")}
    parts = []
    for name, value in rest.items():
        text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parts.append(f"{_printable(name)}={_printable(text)}")
    qid, ev = _printable(str(event.get("qid", "?"))), _printable(str(event.get("ev", "?")))
    return f"{when}Z  {qid:<20}  {ev:<10}  " + " ".join(parts)


def _printable(text: str) -> str:
    """``text`` with control characters shown as escapes: HELO names,
    Message-IDs and replies come from strangers, and this goes to a terminal."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
