"""Operator actions that span accounts and another part: the CLI and the web
admin both call these, so the two can never disagree on what "add a user" is.

* A domain comes with its DKIM keys: if the keys cannot be made, the domain
  is removed again (no local domain whose mail cannot be signed).
* A user comes with its Maildir and default mailboxes: if the store cannot
  make them, the account is removed again (no user without a mailbox).
* Deleting a user removes the account first (no more logins or mail), then
  the store's index rows; the Maildir files stay for backup.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from pochta.accounts.address import parse_domain
from pochta.accounts.registry import Accounts, User

if TYPE_CHECKING:  # the CLI imports this module; these are heavy to load
    from pochta.mailauth.keys import DKIMKey, DKIMKeyStore
    from pochta.store.interface import Store


def add_domain(accounts: Accounts, keys: DKIMKeyStore, name: str) -> tuple[str, list[DKIMKey]]:
    """Add local domain ``name`` with new DKIM keys; (canonical name, the keys)."""
    added = accounts.add_domain(name)
    try:
        created = keys.create(added)
    except BaseException:
        accounts.del_domain(added)
        raise
    return added, created


def del_domain(accounts: Accounts, keys: DKIMKeyStore, name: str) -> str:
    """Remove domain ``name`` (it must have no users or aliases) and its keys."""
    accounts.del_domain(name)
    keys.delete_domain(name)
    return parse_domain(name)


async def add_user(accounts: Accounts, store: Store, address: str, password: str) -> User:
    """Create the account and its mailboxes, or neither."""
    # argon2 hashing takes ~50 ms: off the event loop of a running server.
    created = await asyncio.to_thread(accounts.add_user, address, password)
    try:
        await store.create_user(created.address)
    except BaseException:
        accounts.del_user(created.address)
        raise
    return created


async def del_user(accounts: Accounts, store: Store, address: str) -> User:
    """Delete the account (and aliases to it), then its index rows; files stay."""
    removed = accounts.del_user(address)
    await store.delete_user(removed.address)
    return removed
