"""Delivery to users whose mailboxes may not exist yet.

An account can exist without its mailboxes (the CLI stopped between the two
steps, or the accounts database was restored alone). Whoever delivers —
the MX, LMTP, the queue — uses this so such mail still lands in INBOX.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pochta.store.interface import (
    INBOX,
    Delivered,
    MailboxNotFound,
    Recipient,
    Store,
    UserNotFound,
)


async def deliver_to_users(store: Store, data: bytes, users: Iterable[str]) -> list[Delivered]:
    """Store ``data`` in the INBOX of each user."""
    return await deliver_to(store, data, [Recipient(user) for user in users])


async def deliver_to(store: Store, data: bytes, recipients: Sequence[Recipient]) -> list[Delivered]:
    """Store ``data`` in each recipient's mailbox (INBOX, or Junk for spam).

    A user who deleted that mailbox gets the copy in INBOX instead: the
    message must land somewhere the user will see it.
    """
    try:
        return await _deliver(store, data, recipients)
    except MailboxNotFound:
        inbox = [Recipient(r.user, INBOX, r.flags) for r in recipients]
        return await _deliver(store, data, inbox)


async def _deliver(store: Store, data: bytes, recipients: Sequence[Recipient]) -> list[Delivered]:
    try:
        return await store.deliver(data, recipients)
    except UserNotFound:
        for recipient in recipients:
            await store.create_user(recipient.user)
        return await store.deliver(data, recipients)
