"""The queue runner: who gets delivered when, and what happens after.

Design note
-----------
Accepted mail enters the spool (``Spool.enqueue``, durable before 250).
The runner wakes when mail is enqueued, when the earliest retry comes due,
and at least every ``POLL`` seconds (so ``pochta queue flush`` from another
process takes effect). Each wake it takes the due recipients grouped by
(message, destination domain) and starts one delivery task per group, within
``[delivery].concurrency`` overall and ``[delivery].per_domain`` per domain;
a group already in flight is not started twice.

A delivery task hands the group to a ``Deliverer``: our own domains go
straight into the store (``LocalDeliverer``), the others to the MX
deliverer. Each recipient's ``Outcome`` is recorded in one commit:

* 2yz: done;
* 4yz: tried again after ``retry_intervals[attempts-1]`` (the last interval
  repeats) until ``max_age`` has passed since arrival, then failed;
* 5yz: failed at once.

Failed recipients of a message produce one DSN (RFC 3464) to its sender,
enqueued like any mail from the null reverse-path; a message whose sender is
the null path (a bounce itself) never produces one (RFC 5321 §4.5.5).
A message still queued ``delay_notice`` seconds after arrival produces one
"delayed" DSN. A restart resumes from the spool; see ``spool.py`` for what
a crash can and cannot do.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from pochta.config import DeliverySettings
from pochta.observe.trace import NO_TRACE, Trace
from pochta.queue.dsn import RecipientStatus, build_dsn
from pochta.queue.outcome import Outcome
from pochta.queue.spool import Spool, Work
from pochta.smtp.policy import new_queue_id

log = logging.getLogger("pochta.queue")

T = TypeVar("T")

#: Longest sleep between looks at the spool, seconds.
POLL = 5.0
#: Seconds between looks for messages that need a delay notice.
DELAY_CHECK = 60.0


class Deliverer(Protocol):
    async def deliver(
        self, domain: str, mail_from: str, rcpts: Sequence[str], data: bytes, *, qid: str = ""
    ) -> dict[str, Outcome]:
        """Try to deliver ``data`` to ``rcpts`` (all at ``domain``); one outcome each.

        ``qid``: the queue id, under which the deliverer records its lookups
        and connections in the message trace.
        """
        ...


class QueueRunner:
    def __init__(
        self,
        spool: Spool,
        *,
        hostname: str,
        settings: DeliverySettings,
        route: Callable[[str], Deliverer],
        clock: Callable[[], float] = time.time,
        trace: Trace = NO_TRACE,
    ) -> None:
        self.spool = spool
        #: Where each attempt's outcome is recorded (``pochta trace``).
        self.trace = trace
        self.hostname = hostname
        self.settings = settings
        self.route = route
        self.clock = clock
        #: Where a DSN about a message goes, given its sender: the sender
        #: itself, unless it is an SRS address of ours (``smtp.srs``), which
        #: stands for the original sender of a message we forwarded.
        self.dsn_recipient: Callable[[str], str] = lambda sender: sender
        self._wake = asyncio.Event()
        self._inflight: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._per_domain: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_delay_check = 0.0
        self._executor = ThreadPoolExecutor(16, thread_name_prefix="pochta-queue")

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking spool work on the queue's own threads.

        Not the loop's default executor: that one also runs argon2 for
        logins, and a burst of logins must not hold up mail that is already
        accepted.
        """
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- life cycle ----------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="queue-runner")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop starting deliveries; let running ones finish for ``grace`` s."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        running = list(self._inflight.values())
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()  # not recorded: retried after restart
            await asyncio.gather(*pending, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def wake(self) -> None:
        """New mail or an operator's flush: look at the spool now."""
        self._wake.set()

    async def enqueue(self, mail_from: str, rcpts: Sequence[str], data: bytes) -> str:
        """Spool a message durably and schedule it; returns its queue id."""
        (qid,) = await self.enqueue_many([(mail_from, rcpts, data)])
        return qid

    async def enqueue_many(self, copies: Sequence[tuple[str, Sequence[str], bytes]]) -> list[str]:
        """Spool several messages ``(mail_from, rcpts, data)`` durably, all or
        none; their queue ids."""
        qids = [new_queue_id() for _ in copies]
        rows = [(qid, *copy) for qid, copy in zip(qids, copies, strict=True)]
        await self._io(self.spool.enqueue_many, rows, self.clock())
        self.wake()
        return qids

    async def run_once(self) -> None:
        """One pass without the loop: start what is due, wait for it to finish.

        For tests (with a fake clock) and for ``pochta queue flush`` when no
        server runs.
        """
        await self._tick()
        while self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)
            await asyncio.sleep(0)  # let the done-callbacks run

    # -- the loop --------------------------------------------------------------
    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._tick()
            except Exception:
                log.exception("queue runner pass failed; retrying")
            # Sleep until the next retry falls due. A due time already past
            # belongs to work in flight or held back by a concurrency limit;
            # its completion wakes us (``_done``), so it must not make this a
            # busy loop.
            timeout = POLL
            next_due = await self._io(self.spool.next_due)
            if next_due is not None and next_due > self.clock():
                timeout = min(POLL, next_due - self.clock())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _tick(self) -> None:
        now = self.clock()
        work = await self._io(self.spool.due, now, tuple(self._inflight))
        for item in work:
            if len(self._inflight) >= self.settings.concurrency:
                break
            if self._per_domain[item.domain] >= self.settings.per_domain:
                continue
            key = (item.qid, item.domain)
            self._per_domain[item.domain] += 1
            task = asyncio.create_task(self._deliver(item), name=f"deliver-{item.qid}")
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        if self.settings.delay_notice and now >= self._next_delay_check:
            # Delay notices are hours late by nature; look for them once a
            # minute, not on every wake-up.
            self._next_delay_check = now + DELAY_CHECK
            await self._delay_notices(now)

    def _done(self, key: tuple[str, str], _task: asyncio.Task[None]) -> None:
        self._inflight.pop(key, None)
        self._per_domain[key[1]] -= 1
        if self._per_domain[key[1]] <= 0:
            del self._per_domain[key[1]]
        self._wake.set()  # a slot is free

    async def _deliver(self, item: Work) -> None:
        try:
            data = await self._io(self.spool.read, item.qid)
        except FileNotFoundError:
            log.warning("queue_id=%s message file missing; dropping", item.qid)
            self.trace.record("dropped", item.qid, reason="message file missing")
            await self._io(self.spool.delete, item.qid)
            return
        deliverer = self.route(item.domain)
        try:
            outcomes = await deliverer.deliver(
                item.domain, item.mail_from, item.rcpts, data, qid=item.qid
            )
        except Exception:
            log.exception("queue_id=%s delivery to %s raised", item.qid, item.domain)
            outcomes = {}
        for rcpt in item.rcpts:  # a deliverer that forgot someone: try again later
            outcomes.setdefault(rcpt, Outcome(451, "4.3.0", "Delivery attempt did not complete"))
        failed, _finished = await self._io(
            self.spool.record,
            item.qid,
            outcomes,
            self.clock(),
            self.settings.retry_intervals,
            self.settings.max_age,
        )
        # A temporary failure past [delivery].max_age is final too: the spool
        # says which recipients failed for good.
        given_up = {rcpt for rcpt, _ in failed}
        for rcpt, outcome in outcomes.items():
            if outcome.delivered:
                result = "sent"
            else:
                result = "failed" if rcpt in given_up or outcome.permanent else "deferred"
            log.info(
                "queue_id=%s to=<%s> relay=%s attempt=%d result=%s reply=%r",
                item.qid,
                rcpt,
                outcome.remote_mta or "local",
                item.attempts + 1,
                result,
                outcome.reply(),
            )
            extra: dict[str, Any] = (
                {"expired": True} if outcome.temporary and rcpt in given_up else {}
            )
            self.trace.record(
                result,
                item.qid,
                to=rcpt,
                relay=outcome.remote_mta or "local",
                attempt=item.attempts + 1,
                reply=outcome.reply(),
                **extra,
            )
        if failed and item.mail_from:
            await self._bounce(item, data, [RecipientStatus(r, o) for r, o in failed], None)

    async def _bounce(
        self,
        item: Work,
        data: bytes,
        statuses: list[RecipientStatus],
        delayed_until: float | None,
    ) -> None:
        to = self.dsn_recipient(item.mail_from)
        dsn = build_dsn(
            reporting_mta=self.hostname,
            sender=to,
            original=data,
            arrival=item.created,
            recipients=statuses,
            delayed_until=delayed_until,
            now=self.clock(),
        )
        qid = await self.enqueue("", [to], dsn)
        self.trace.record(
            "dsn",
            item.qid,
            links=[qid],
            kind="delayed" if delayed_until else "failed",
            to=to,
        )
        log.info(
            "queue_id=%s dsn=%s for=%s to=<%s>",
            item.qid,
            qid,
            "delayed" if delayed_until else "failed",
            to,
        )

    async def _delay_notices(self, now: float) -> None:
        late = await self._io(self.spool.delayed, now - self.settings.delay_notice)
        for message in late:
            pending = [r for r in message.recipients if r.state == "queued"]
            if not pending:
                continue
            try:
                data = await self._io(self.spool.read, message.qid)
            except FileNotFoundError:
                continue
            statuses = [
                RecipientStatus(
                    r.rcpt,
                    _outcome_from_reply(r.last_reply, r.remote_mta),
                )
                for r in pending
            ]
            item = Work(message.qid, message.mail_from, message.created, "", (), 0)
            await self._io(self.spool.mark_delay_notified, message.qid)
            await self._bounce(item, data, statuses, message.created + self.settings.max_age)


def _outcome_from_reply(reply: str | None, remote_mta: str | None) -> Outcome:
    """Rebuild an Outcome from the stored reply line for a delay notice."""
    if not reply:
        return Outcome(451, "4.4.7", "Not yet attempted", remote_mta)
    parts = reply.split(" ", 2)
    try:
        code = int(parts[0])
    except ValueError:
        return Outcome(451, "4.4.7", reply, remote_mta)
    enhanced = parts[1] if len(parts) > 1 else "4.0.0"
    text = parts[2] if len(parts) > 2 else ""
    return Outcome(code, enhanced, text, remote_mta)
