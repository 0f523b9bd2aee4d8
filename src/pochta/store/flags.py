"""Message flags: canonical forms, the STORE arithmetic, Maildir info letters.

Design note
-----------
System flags are case-insensitive (RFC 9051 §2.3.2) and are kept in their
canonical spelling (``\\Seen``); ``\\Recent`` cannot be stored (RFC 9051
removed it) and is dropped; any other backslash name, or a keyword that is
not an IMAP atom, raises ``StoreError``. Keywords keep the client's spelling.

On disk the system flags are Maildir "info" letters after ``:2,``, sorted
ASCII as the Maildir spec asks: D (\\Draft), F (\\Flagged), R (\\Answered),
S (\\Seen), T (\\Deleted). Keywords have no letter; they live in the index.
The index stores system flags as a bit mask so STATUS can count unseen and
deleted messages with integer arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable

from pochta.store.interface import (
    ANSWERED,
    DELETED,
    DRAFT,
    FLAGGED,
    SEEN,
    SYSTEM_FLAGS,
    StoreError,
    StoreMode,
)

_CANONICAL = {flag.lower(): flag for flag in SYSTEM_FLAGS}
_RECENT = "\\recent"
# atom-specials of RFC 9051 §9 besides CTL and SP, which are checked apart.
_ATOM_SPECIALS = frozenset('(){%*"\\]')

#: System flag → Maildir info letter (cr.yp.to/proto/maildir.html), sorted by letter.
LETTERS: tuple[tuple[str, str], ...] = (
    (DRAFT, "D"),
    (FLAGGED, "F"),
    (ANSWERED, "R"),
    (SEEN, "S"),
    (DELETED, "T"),
)
_LETTER_TO_FLAG = {letter: flag for flag, letter in LETTERS}

#: Bit of each system flag in the index's ``flags`` column.
BITS: dict[str, int] = {SEEN: 1, ANSWERED: 2, FLAGGED: 4, DELETED: 8, DRAFT: 16}
SEEN_BIT = BITS[SEEN]
DELETED_BIT = BITS[DELETED]
_ALL_BITS = sum(BITS.values())
# from_bits runs once per row of every FETCH; share the 32 possible sets.
_SETS_BY_BITS = tuple(
    frozenset(flag for flag, bit in BITS.items() if mask & bit) for mask in range(_ALL_BITS + 1)
)


def normalize(flags: Iterable[str]) -> frozenset[str]:
    """Canonical flag set; raises ``StoreError`` for names that cannot be stored."""
    out: set[str] = set()
    for flag in flags:
        if flag.startswith("\\"):
            lower = flag.lower()
            if lower == _RECENT:
                continue
            canonical = _CANONICAL.get(lower)
            if canonical is None:
                raise StoreError(f"cannot store flag {flag!r}")
            out.add(canonical)
        else:
            if not flag or any(
                ord(c) <= 0x20 or ord(c) >= 0x7F or c in _ATOM_SPECIALS for c in flag
            ):
                raise StoreError(f"invalid keyword {flag!r}")
            out.add(flag)
    return frozenset(out)


def apply(current: frozenset[str], flags: frozenset[str], mode: StoreMode) -> frozenset[str]:
    """The flag set after STORE ``mode`` ``flags`` (RFC 9051 §6.4.6)."""
    if mode is StoreMode.ADD:
        return current | flags
    if mode is StoreMode.REMOVE:
        return current - flags
    return flags


def to_letters(flags: Iterable[str]) -> str:
    """Maildir info letters for the system flags in ``flags``, sorted."""
    present = set(flags)
    return "".join(letter for flag, letter in LETTERS if flag in present)


def from_letters(letters: str) -> frozenset[str]:
    """System flags named by Maildir info letters; unknown letters are ignored."""
    return frozenset(_LETTER_TO_FLAG[c] for c in letters if c in _LETTER_TO_FLAG)


def to_bits(flags: Iterable[str]) -> int:
    """Bit mask of the system flags in ``flags``."""
    return sum(BITS.get(flag, 0) for flag in set(flags))


def from_bits(bits: int, keywords: str = "") -> frozenset[str]:
    """Flag set from a bit mask plus the index's space-separated keywords."""
    base = _SETS_BY_BITS[bits & _ALL_BITS]
    return base | frozenset(keywords.split()) if keywords else base


def split(flags: Iterable[str]) -> tuple[int, str]:
    """(bit mask, space-separated sorted keywords) for the index columns."""
    flags = set(flags)
    keywords = sorted(f for f in flags if f not in BITS)
    return to_bits(flags), " ".join(keywords)
