"""Mailbox names: validation, hierarchy, and their Maildir++ folder names.

Design note
-----------
Clients name mailboxes with Unicode strings and ``/`` as the hierarchy
delimiter. ``normalize`` turns a client-supplied name into the one canonical
form both backends key on, or raises ``InvalidMailboxName`` (``[CANNOT]``):

* INBOX is case-insensitive, also as the first level (``inbox/x`` is
  ``INBOX/x``), RFC 9051 §5.1;
* empty levels (``""``, ``a//b``, ``/a``), ``.`` and ``..`` levels, C0
  controls and DEL (NUL, CR, LF...), lone surrogates and the LIST wildcards
  ``*`` and ``%`` (RFC 9051 §5.1: they cannot be listed unambiguously) are
  refused.

On disk a name becomes one Maildir++ folder directory directly under the
user's Maildir: ``a/b.c`` → ``.a.b%2ec``. Each level is encoded in IMAP
modified UTF-7 (RFC 3501 §5.1.3, what Dovecot writes), then ``%`` and ``.``
are escaped as ``%25`` / ``%2e`` so a literal dot round-trips, and levels are
joined with ``.``. The result never contains ``/`` and is never ``.`` or
``..``, so no mailbox name can reach outside the user's directory; this
module is the only place that builds such paths.
"""

from __future__ import annotations

import base64
import binascii

from pochta.store.interface import DELIMITER, INBOX, InvalidMailboxName

#: Longest directory name most filesystems accept (ext4, XFS, btrfs: 255 bytes).
MAX_DIR_NAME = 255

_FORBIDDEN = frozenset("*%") | {chr(c) for c in range(0x20)} | {"\x7f"}


def normalize(name: str, *, for_create: bool = False) -> str:
    """Return the canonical form of ``name`` or raise ``InvalidMailboxName``.

    ``for_create`` accepts one trailing delimiter, which CREATE allows as a
    hint that children will follow (RFC 9051 §6.3.4).
    """
    if for_create and name.endswith(DELIMITER):
        name = name[:-1]
    if not name:
        raise InvalidMailboxName("empty mailbox name")
    if not _FORBIDDEN.isdisjoint(name):
        raise InvalidMailboxName("mailbox name contains a forbidden character")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMailboxName("mailbox name is not valid Unicode") from None
    parts = name.split(DELIMITER)
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidMailboxName(f"mailbox name has an invalid level {part!r}")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    canonical = DELIMITER.join(parts)
    if canonical != INBOX and len(folder_dir(canonical).encode()) > MAX_DIR_NAME:
        raise InvalidMailboxName("mailbox name too long")
    return canonical


def parents(name: str) -> list[str]:
    """Superior names of a canonical name, outermost first: a/b/c → [a, a/b]."""
    parts = name.split(DELIMITER)
    return [DELIMITER.join(parts[:i]) for i in range(1, len(parts))]


def is_inferior(name: str, of: str) -> bool:
    """True when ``name`` lies below ``of`` in the hierarchy (not equal)."""
    return name.startswith(of + DELIMITER)


# Modified UTF-7, RFC 3501 §5.1.3 --------------------------------------------


def mutf7_encode(text: str) -> str:
    """Encode ``text`` in IMAP modified UTF-7."""
    out: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            b64 = base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")
            out.append(f"&{b64}-")
            pending.clear()

    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def mutf7_decode(text: str) -> str:
    """Decode IMAP modified UTF-7; ``ValueError`` when malformed."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "&":
            if not 0x20 <= ord(ch) <= 0x7E:
                raise ValueError("non-ASCII character in modified UTF-7")
            out.append(ch)
            i += 1
            continue
        end = text.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 shift")
        chunk = text[i + 1 : end]
        if not chunk:
            out.append("&")
        else:
            padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
            try:
                out.append(base64.b64decode(padded, validate=True).decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"bad modified UTF-7 shift {chunk!r}") from exc
        i = end + 1
    return "".join(out)


# Maildir++ folder directory names -------------------------------------------


def _escape(level: str) -> str:
    return mutf7_encode(level).replace("%", "%25").replace(".", "%2e")


def _unescape(level: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(level):
        if level[i] == "%" and len(level) >= i + 3:
            try:
                out.append(chr(int(level[i + 1 : i + 3], 16)))
                i += 3
                continue
            except ValueError:
                pass
        out.append(level[i])
        i += 1
    return mutf7_decode("".join(out))


def folder_dir(name: str) -> str:
    """The Maildir++ directory name for a canonical, non-INBOX mailbox name."""
    return "." + ".".join(_escape(level) for level in name.split(DELIMITER))


def name_from_dir(dirname: str) -> str | None:
    """The mailbox name of a Maildir++ folder directory, None if it is not one."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        return None
    try:
        name = DELIMITER.join(_unescape(level) for level in dirname[1:].split("."))
        return normalize(name)
    except (ValueError, InvalidMailboxName):
        return None
