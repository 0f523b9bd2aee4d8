"""Small rules both backends share, so they cannot drift apart.

Design note
-----------
Everything here is pure: no I/O, no locks. UIDVALIDITY comes from the clock
at mailbox creation but is forced above the last value the store ever issued
(``next_uidvalidity``), so a mailbox deleted and re-created within the same
second still gets a new one (RFC 9051 §2.3.1.1) and values stay unique per
user (they are unique per store).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence

from pochta.store import flags as flagset
from pochta.store import names
from pochta.store.interface import (
    DEFAULT_MAILBOXES,
    INBOX,
    SPECIAL_USES,
    Recipient,
    StoreError,
)

#: Largest nz-number of RFC 9051 §9; UIDs and UIDVALIDITY must fit.
MAX_UINT32 = 2**32 - 1

#: The special-use attribute a default mailbox name gets when the index is rebuilt.
DEFAULT_SPECIAL_USE: dict[str, str] = {
    name: use for name, use in DEFAULT_MAILBOXES if use is not None
}


class BadUser(StoreError):
    """A user name that cannot be one (no "@"; "/" or NUL; "." or ".." as a part).

    The Maildir backend makes ``<domain>/<localpart>`` directories of the
    parts, so this is also what keeps a user name inside ``data_dir/mail``.
    """


def user_parts(user: str) -> tuple[str, str]:
    """(domain, localpart) of ``user``, checked so they are safe path levels."""
    local, at, domain = user.rpartition("@")
    for part in (local, domain):
        if not at or part in ("", ".", "..") or "/" in part or "\0" in part:
            raise BadUser(f"invalid user name {user!r}")
    return domain, local


def next_uidvalidity(last_issued: int, now: float | None = None) -> int:
    """A UIDVALIDITY from the clock, strictly above ``last_issued``."""
    value = max(int(time.time() if now is None else now), last_issued + 1)
    if value > MAX_UINT32:
        raise StoreError("UIDVALIDITY space exhausted", code="LIMIT")
    return value


def internal_date(value: dt.datetime | None) -> dt.datetime:
    """INTERNALDATE to store: timezone-aware, whole seconds (RFC 9051 §2.3.3).

    A naive value is taken as UTC; None means now (UTC).
    """
    if value is None:
        value = dt.datetime.now(dt.UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.replace(microsecond=0)


def special_use(uses: Iterable[str]) -> frozenset[str]:
    """Validate CREATE's USE list (RFC 6154 §3: unknown → ``[USEATTR]``)."""
    result = frozenset(uses)
    unknown = result - SPECIAL_USES
    if unknown:
        raise StoreError(f"unsupported special-use {sorted(unknown)}", code="USEATTR")
    return result


def plan_delivery(
    recipients: Sequence[Recipient],
) -> list[tuple[str, str, frozenset[str]]]:
    """Distinct (user, mailbox, flags) targets in first-seen order.

    Mailbox names are normalized (``InvalidMailboxName`` before anything is
    written); flags of duplicate recipients are merged.
    """
    merged: dict[tuple[str, str], frozenset[str]] = {}
    for rcpt in recipients:
        key = (rcpt.user, names.normalize(rcpt.mailbox))
        merged[key] = merged.get(key, frozenset()) | flagset.normalize(rcpt.flags)
    return [(user, mailbox, flags) for (user, mailbox), flags in merged.items()]


def sort_mailboxes(items: list[str]) -> list[str]:
    """INBOX first, then by name (the order ``Mailboxes.list`` promises)."""
    return sorted(items, key=lambda name: (name != INBOX, name))
