"""Delivery to users whose mailboxes may not exist yet.

An account can exist without its mailboxes (the CLI stopped between the two
steps, or the accounts database was restored alone). Whoever delivers —
the MX, LMTP, the queue — uses this so such mail still lands in INBOX.
"""

from __future__ import annotations

from collections.abc import Iterable

from pochta.store.interface import Delivered, Recipient, Store, UserNotFound


async def deliver_to_users(store: Store, data: bytes, users: Iterable[str]) -> list[Delivered]:
    recipients = [Recipient(user) for user in users]
    try:
        return await store.deliver(data, recipients)
    except UserNotFound:
        for recipient in recipients:
            await store.create_user(recipient.user)
        return await store.deliver(data, recipients)
