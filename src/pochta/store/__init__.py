"""Mailbox storage: the contract (``interface``) and its backends.

``open_store(data_dir)`` gives the embedded default, ``MaildirStore``
(Maildir++ bodies under ``data_dir/mail``, SQLite index at
``data_dir/index.sqlite``); ``MemoryStore`` keeps everything in memory for
tests and embedding. Both pass the conformance suite in ``tests/store``.
Call ``await store.open()`` before use and ``await store.close()`` after.
"""

from __future__ import annotations

from pathlib import Path

from pochta.store.interface import (
    ALL,
    ANSWERED,
    ARCHIVE,
    DEFAULT_MAILBOXES,
    DELETED,
    DELIMITER,
    DRAFT,
    DRAFTS,
    FLAGGED,
    FLAGGED_USE,
    INBOX,
    JUNK,
    SEEN,
    SENT,
    SPECIAL_USES,
    SYSTEM_FLAGS,
    TRASH,
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
from pochta.store.maildir import MaildirStore
from pochta.store.memory import MemoryStore


def open_store(data_dir: Path) -> Store:
    """The store the server and the CLI use: Maildir++ and SQLite under ``data_dir``.

    Nothing is touched until ``await store.open()``.
    """
    return MaildirStore(data_dir)


__all__ = [
    "ALL",
    "ANSWERED",
    "ARCHIVE",
    "DEFAULT_MAILBOXES",
    "DELETED",
    "DELIMITER",
    "DRAFT",
    "DRAFTS",
    "FLAGGED",
    "FLAGGED_USE",
    "INBOX",
    "JUNK",
    "SEEN",
    "SENT",
    "SPECIAL_USES",
    "SYSTEM_FLAGS",
    "TRASH",
    "AppendResult",
    "Changes",
    "CopyResult",
    "Delivered",
    "InvalidMailboxName",
    "MailboxExists",
    "MailboxInfo",
    "MailboxNotEmpty",
    "MailboxNotFound",
    "Mailboxes",
    "MaildirStore",
    "MemoryStore",
    "MessageInfo",
    "MessageNotFound",
    "Notice",
    "Recipient",
    "Store",
    "StoreError",
    "StoreMode",
    "StoreResult",
    "UserNotFound",
    "Watch",
    "open_store",
]
