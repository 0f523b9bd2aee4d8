"""Forwarding mail for alias targets at other domains: ARC-seal, then spool.

Design note
-----------
An alias may name remote addresses (``pochta alias add fwd@one.test
bob@two.test``). The MX (``inbound.py``) accepts RCPT for such an alias like
any local address and, at DATA, hands the message to :class:`Forwarder`,
which puts one copy per alias domain into the outbound queue's durable spool
(``QueueRunner.enqueue_many``: all copies in one transaction, committed and
fsynced before it returns), so that the 250 the client then gets is as safe
as a local delivery. The queue
delivers to the remote MX, retries and bounces as for submitted mail.

What is forwarded is the message as received with our trace fields on top:
``Received`` (RFC 5321 §4.4) and, when the sender checks ran, our
``Authentication-Results`` (RFC 8601) and ``Received-SPF`` (RFC 7208 §9.1).
No ``Return-Path`` (only the final delivery adds it, RFC 5321 §4.4) and no
``X-Spam-*`` fields (those are per local user). Headers and body are not
changed, so the author's DKIM signatures still verify at the next hop.

Envelope sender. With ``[mailauth] srs`` (the default) a sender at another
domain is rewritten by SRS (``pochta.smtp.srs``) into an address at the
alias's domain: SPF at the next hop then checks the forwarding domain,
whose SPF record names us, and a bounce comes back to us, which sends it on
to the original sender. The null reverse-path ``<>`` of a bounce stays
``<>`` (RFC 5321 §4.5.5), and a sender at one of our own domains is kept.
Without SRS the original MAIL FROM is kept, and SPF at the next hop fails
or softfails (RFC 7208 Appendix D); the next hop can still trust our
verdicts through ARC.

ARC (RFC 8617 §5.1). When the sender checks ran, each copy is sealed with
the RSA key of the *alias's* domain -- the domain that forwards -- as
ARC-Seal, ARC-Message-Signature and ARC-Authentication-Results with
``i=N+1``, above our Authentication-Results (which the seal copies and
which carries ``arc=`` of the chain we received, §5.1.1). The copy is
forwarded unsealed, with a log line, when the domain has no keys
(``pochta domain dkim rotate`` makes them), when ``[mailauth].sign`` is
off, when the checks did not run (``[mailauth].verify`` off: there are no
verdicts to seal), or when sealing is impossible (a chain already at its
50-set limit, §4.2.1): losing the mail over a missing seal would be worse.

Loops. A remote target may forward back to us. RFC 5321 §6.3: a message
with at least :data:`MAX_RECEIVED` Received fields is refused (554 5.4.6,
RFC 3463 §3.5 "routing loop detected") instead of being forwarded again.

What is not forwarded: anything the checks refused (DMARC reject, spam
reject, temporary errors: the client gets that reply and nothing is
stored or queued). A message our checks would put in a local user's Junk
is still forwarded, with our verdicts in Authentication-Results for the
next hop to judge; per-target spam decisions are not made.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from pochta.errors import UserFacingError
from pochta.mailauth.arc import SealError, seal_arc
from pochta.smtp import codes

if TYPE_CHECKING:
    from pochta.mailauth.keys import DKIMKeyStore
    from pochta.queue.runner import QueueRunner
    from pochta.smtp.srs import SRS

__all__ = ["MAX_RECEIVED", "ROUTING_LOOP", "Forwarder", "looping", "received_count"]

log = logging.getLogger("pochta.smtp.forward")

#: RFC 5321 §6.3: loop detection by counting Received fields "SHOULD use a
#: large rejection threshold, normally at least 100".
MAX_RECEIVED = 100

#: RFC 3463 §3.5 X.4.6: routing loop detected.
ROUTING_LOOP = codes.Reply(554, "5.4.6", "Routing loop detected: too many Received fields")

_RECEIVED = re.compile(rb"^Received[ \t]*:", re.IGNORECASE | re.MULTILINE)


def received_count(message: bytes) -> int:
    """How many Received fields the header section of ``message`` has."""
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    return len(_RECEIVED.findall(head))


def looping(message: bytes) -> bool:
    """``message`` (without our Received) has been through too many hops to
    be forwarded once more: the copy we would send would carry MAX_RECEIVED."""
    return received_count(message) + 1 >= MAX_RECEIVED


class Forwarder:
    """Seals and spools the copies of a message for remote alias targets."""

    def __init__(
        self,
        *,
        hostname: str,
        queue: QueueRunner,
        dkim: DKIMKeyStore | None = None,
        srs: SRS | None = None,
        is_local_domain: Callable[[str], bool] = lambda _domain: False,
    ) -> None:
        #: Our authserv-id (RFC 8601 §2.5): the hostname the checks write.
        self.hostname = hostname
        self.queue = queue
        #: Keys to seal with; None when ``[mailauth].sign`` is off.
        self.dkim = dkim
        #: Rewrites senders of other domains (None: ``[mailauth] srs`` off).
        self.srs = srs
        self.is_local_domain = is_local_domain
        #: Domains already logged as having no keys (logged once each).
        self._keyless: set[str] = set()

    async def forward(
        self,
        *,
        queue_id: str,
        mail_from: str,
        targets: Mapping[str, Sequence[str]],
        message: bytes,
        sealable: bool,
    ) -> list[str]:
        """Spool ``message`` for each alias domain's remote targets; returns queue ids.

        ``targets`` maps an alias domain to the remote addresses its aliases
        reached; ``mail_from`` is the original reverse-path ("" for ``<>``).
        ``sealable``: ``message`` starts with our Authentication-Results.
        Returns only once every copy is durable. The copies go into the spool
        in one transaction: a failure queues none of them and raises (the
        caller answers 451 and the client's retry queues them once).
        """
        seals = [
            await self._seal(domain, message, queue_id) if sealable else b"" for domain in targets
        ]
        senders = [self.sender(mail_from, domain) for domain in targets]
        copies = [
            (sender, list(rcpts), seal + message)
            for sender, rcpts, seal in zip(senders, targets.values(), seals, strict=True)
        ]
        qids = await self.queue.enqueue_many(copies)
        for (domain, rcpts), seal, qid, sender in zip(
            targets.items(), seals, qids, senders, strict=True
        ):
            log.info(
                "queue_id=%s forwarded from=<%s> to=%s via=%s as=%s arc=%s",
                queue_id,
                sender,
                ",".join(f"<{r}>" for r in rcpts),
                domain,
                qid,
                "sealed" if seal else "unsealed",
            )
        return qids

    def sender(self, mail_from: str, domain: str) -> str:
        """The envelope sender of the copy forwarded through ``domain``."""
        if self.srs is None or not mail_from:
            return mail_from
        if self.is_local_domain(mail_from.rpartition("@")[2]):
            return mail_from  # our own SPF covers it
        return self.srs.forward(mail_from, domain)

    async def _seal(self, domain: str, message: bytes, queue_id: str) -> bytes:
        """ARC set for ``message`` by ``domain``'s RSA key, or b"" (logged) if none can be made."""
        if self.dkim is None:
            return b""
        try:
            keys = self.dkim.active(domain)
        except UserFacingError as exc:
            log.warning("queue_id=%s DKIM keys of %s unreadable: %s", queue_id, domain, exc)
            return b""
        if not keys:
            if domain not in self._keyless:
                self._keyless.add(domain)
                log.info(
                    "domain %s has no DKIM keys; mail it forwards is not ARC-sealed "
                    "(pochta domain dkim rotate %s makes them)",
                    domain,
                    domain,
                )
            return b""
        try:
            return await seal_arc(message, keys, authserv_id=self.hostname)
        except SealError as exc:
            log.warning("queue_id=%s forwarded unsealed: %s", queue_id, exc)
        except Exception:
            # dkimpy can fail on input it did not expect; the mail must still go.
            log.exception("queue_id=%s ARC sealing failed; forwarded unsealed", queue_id)
        return b""
