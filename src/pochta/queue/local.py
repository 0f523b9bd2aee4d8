"""Delivery to our own domains: straight into the store, no network.

Mail the queue holds for a local domain (an alias expanding to a local user,
a DSN to a local sender, submission to a colleague) is resolved through the
accounts like RCPT on port 25 and stored with its Return-Path (RFC 5321 §4.4:
the final delivery adds it).

An alias may also name remote addresses (``pochta.smtp.forward``). Their
copy goes back into the queue as a new message for those addresses, with
the original reverse-path, so that a colleague's mail to a forwarding alias
reaches the outside address just as mail from the Internet does. The
alias's outcome here is then delivered (250, "Forwarded as <queue id>"),
and a later failure bounces from the new queue entry. The copy is not
ARC-sealed: mail submitted here carries our own DKIM signature, which
forwarding does not break. A message that has been through too many hops
is refused as a routing loop (RFC 5321 §6.3) instead of going round again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from pochta.accounts import Accounts
from pochta.observe.trace import NO_TRACE, Trace
from pochta.queue.outcome import Outcome
from pochta.smtp.forward import ROUTING_LOOP, looping
from pochta.smtp.policy import return_path_header
from pochta.store.deliver import deliver_to_users
from pochta.store.interface import Store

log = logging.getLogger("pochta.queue.local")

#: Puts a new message in the queue: (mail_from, rcpts, data) -> queue id.
Enqueue = Callable[[str, list[str], bytes], Awaitable[str]]


class LocalDeliverer:
    def __init__(
        self,
        accounts: Accounts,
        store: Store,
        forward: Enqueue | None = None,
        trace: Trace = NO_TRACE,
    ) -> None:
        self.accounts = accounts
        self.store = store
        #: Where each stored copy is recorded (``pochta trace``).
        self.trace = trace
        #: Where copies for remote alias targets go; None: they are unknown users.
        self.forward = forward

    async def deliver(
        self, domain: str, mail_from: str, rcpts: Sequence[str], data: bytes, *, qid: str = ""
    ) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        users: dict[str, None] = {}
        accepted: list[str] = []
        # Remote alias targets (each once), and the recipients that reach them.
        remote: dict[str, None] = {}
        forwarding: list[str] = []
        for rcpt in rcpts:
            resolution = self.accounts.resolve(rcpt)
            targets = resolution.remote if self.forward is not None else ()
            if not resolution.users and not targets:
                outcomes[rcpt] = Outcome(550, "5.1.1", "No such user here")
                continue
            if resolution.users:
                accepted.append(rcpt)
            for user in resolution.users:
                users[user] = None
            if targets:
                forwarding.append(rcpt)
            remote.update(dict.fromkeys(targets))
        if users:
            message = return_path_header(mail_from) + data
            try:
                self.trace.stored(qid, await deliver_to_users(self.store, message, users))
                result = Outcome(250, "2.0.0", "Delivered to local mailbox")
            except Exception as exc:
                result = Outcome(451, "4.3.0", f"Local store unavailable: {type(exc).__name__}")
            for rcpt in accepted:
                outcomes[rcpt] = result
        if remote:
            forwarded = await self._forward(mail_from, list(remote), data, qid)
            for rcpt in forwarding:
                # A recipient with local users too gets the worse of the two
                # outcomes: a retry then redoes both (a duplicate, never a loss).
                if rcpt not in outcomes or forwarded.code > outcomes[rcpt].code:
                    outcomes[rcpt] = forwarded
        return outcomes

    async def _forward(self, mail_from: str, targets: list[str], data: bytes, qid: str) -> Outcome:
        """Queue one copy of ``data`` for every remote target; the outcome for their aliases."""
        assert self.forward is not None
        if looping(data):
            return Outcome(ROUTING_LOOP.code, ROUTING_LOOP.enhanced, ROUTING_LOOP.text)
        try:
            copy = await self.forward(mail_from, targets, data)
        except Exception as exc:
            log.exception("could not queue the forwarded copy for %s", ",".join(targets))
            return Outcome(451, "4.3.0", f"Queue unavailable: {type(exc).__name__}")
        log.info(
            "from=<%s> forwarded to=%s as=%s",
            mail_from,
            ",".join(f"<{t}>" for t in targets),
            copy,
        )
        self.trace.record("forwarded", qid, links=[copy], to=targets)
        return Outcome(250, "2.0.0", f"Forwarded as {copy}")
