"""Delivery to our own domains: straight into the store, no network.

Mail the queue holds for a local domain (an alias expanding to a local user,
a DSN to a local sender, submission to a colleague) is resolved through the
accounts like RCPT on port 25 and stored with its Return-Path (RFC 5321 §4.4:
the final delivery adds it).
"""

from __future__ import annotations

from collections.abc import Sequence

from pochta.accounts import Accounts
from pochta.queue.outcome import Outcome
from pochta.smtp.policy import return_path_header
from pochta.store.deliver import deliver_to_users
from pochta.store.interface import Store


class LocalDeliverer:
    def __init__(self, accounts: Accounts, store: Store) -> None:
        self.accounts = accounts
        self.store = store

    async def deliver(
        self, domain: str, mail_from: str, rcpts: Sequence[str], data: bytes
    ) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        users: dict[str, None] = {}
        accepted: list[str] = []
        for rcpt in rcpts:
            resolution = self.accounts.resolve(rcpt)
            if not resolution.users:
                outcomes[rcpt] = Outcome(550, "5.1.1", "No such user here")
                continue
            accepted.append(rcpt)
            for user in resolution.users:
                users[user] = None
        if users:
            message = return_path_header(mail_from) + data
            try:
                await deliver_to_users(self.store, message, users)
                result = Outcome(250, "2.0.0", "Delivered to local mailbox")
            except Exception as exc:
                result = Outcome(451, "4.3.0", f"Local store unavailable: {type(exc).__name__}")
            for rcpt in accepted:
                outcomes[rcpt] = result
        return outcomes
