"""The Sender Rewriting Scheme: forwarded mail leaves with a sender of ours.

Design note
-----------
A message forwarded to another domain keeps its author's MAIL FROM unless
rewritten; the next hop then checks SPF for the author's domain against
*our* address and fails it (RFC 7208 Appendix D), and bounces go straight
to the author, past us. SRS (the scheme of libsrs2 and postsrsd, no RFC)
rewrites the sender into an address at the forwarding domain that only
we can mint and that leads back to the original:

``SRS0=HHHHHHHH=TT=example.org=alice@forwarder.test``

* ``TT``: the day, two base32 letters (days since 1970 modulo 1024);
* ``HHHHHHHH``: 8 base32 letters (40 bits) of HMAC-SHA256(key, the fields
  joined by ``=``, which no domain contains, lower-cased). libsrs2 uses 4
  base64 characters of HMAC-SHA1 compared without regard to case, about
  20 bits: an SMTP client pipelining 18,000 RCPTs a second finds one in
  a minute and has an open relay for 21 days. Base32 survives servers
  that lower-case local parts on the way back. Other forwarders never check
  our hashes, so the longer one costs no interoperability;
* an address of another forwarder's SRS0 is not wrapped again but turned
  into ``SRS1=HHHHHHHH=first.test==HHHHHHHH=TT=example.org=alice@forwarder.test``
  (the hash then covers ``first.test`` and the rest), so the address stays
  short however many times the mail is forwarded; its bounce goes back to
  the first forwarder.

A bounce to an SRS address of one of our domains is checked (hash, and a
timestamp at most ``MAX_AGE_DAYS`` old) and forwarded to the original
address; anything else that looks like SRS is an unknown user, so the
scheme can never make us an open relay. The null sender ``<>`` is never
rewritten (RFC 5321 §4.5.5), nor a sender at one of our own domains, nor
one whose local part needs quoting or whose domain is not ASCII (neither
could come back unchanged).
Addresses longer than RFC 5321's 64-octet local part are made and
accepted back: bulk senders' addresses often need it, and the common
servers take them.

The key is 32 random bytes in ``<data_dir>/srs.key`` (0600), made on
first use (written whole under another name, then linked into place, so
two processes starting at once agree on one key); keep it in backups, or
bounces to mail forwarded before a restore are refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["MAX_AGE_DAYS", "SRS", "is_srs"]

#: How old (days) an SRS address may be when its bounce comes back.
MAX_AGE_DAYS = 21
#: Hash length in base32 letters (5 bits each).
HASH_LENGTH = 8
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_DAY = 86400
#: A local part that can stand unquoted inside ours (RFC 5321 dot-string
#: characters, and the UTF-8 of RFC 6531).
_EMBEDDABLE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.\-\u0080-\U0010ffff]+")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")

log = logging.getLogger("pochta.smtp.srs")


def is_srs(local: str) -> bool:
    """Whether a local part is in SRS form (SRS0= or SRS1=, any case)."""
    head = local[:5].upper()
    return head in ("SRS0=", "SRS1=") or head in ("SRS0-", "SRS1-", "SRS0+", "SRS1+")


class SRS:
    """Rewrites senders for forwarding and reverses the addresses it made."""

    def __init__(
        self,
        key: bytes,
        *,
        max_age_days: int = MAX_AGE_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = key
        self.max_age_days = max_age_days
        self.clock = clock

    @classmethod
    def load(cls, data_dir: Path) -> SRS:
        """The SRS of a data directory, its key made on first use."""
        path = Path(data_dir) / "srs.key"
        if not path.exists():
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".srs-", suffix=".key")
            try:
                os.write(fd, secrets.token_bytes(32))
                os.fsync(fd)
                os.close(fd)
                fd = -1
                os.link(temporary, path)  # fails if another process was first
            except FileExistsError:
                pass  # theirs wins; it is complete (linked only once written)
            finally:
                if fd >= 0:
                    os.close(fd)
                os.unlink(temporary)
        key = path.read_bytes()
        if len(key) < 16:
            raise ValueError(f"{path} is too short to be an SRS key; remove it to make a new one")
        if path.stat().st_mode & 0o077:
            log.warning("%s can be read by others: chmod 600 it", path)
        return cls(key)

    # --- rewriting ---------------------------------------------------------------

    def forward(self, sender: str, domain: str) -> str:
        """``sender`` as it leaves ``domain`` when forwarded ("" stays "")."""
        if not sender or "@" not in sender:
            return sender
        local, _, sender_domain = sender.rpartition("@")
        if not _EMBEDDABLE.fullmatch(local) or not _DOMAIN.fullmatch(sender_domain):
            return sender  # a quoted local part, an IDN domain: see the module note
        if local[:5].upper() in ("SRS0=", "SRS0-", "SRS0+"):
            # Another forwarder's SRS0: SRS1 naming that forwarder.
            rest = "=" + local[5:]  # "=HHHH=TT=domain=local"
            return f"SRS1={self._hash(sender_domain, rest)}={sender_domain}={rest}@{domain}"
        if local[:5].upper() in ("SRS1=", "SRS1-", "SRS1+"):
            # Already SRS1: keep the first forwarder and the rest, sign again.
            parts = local[5:].split("=", 2)
            if len(parts) == 3 and parts[2].startswith("="):
                first, rest = parts[1], parts[2]
                return f"SRS1={self._hash(first, rest)}={first}={rest}@{domain}"
        stamp = self._stamp(self.clock())
        hashed = self._hash(stamp, sender_domain, local)
        return f"SRS0={hashed}={stamp}={sender_domain}={local}@{domain}"

    def reverse(self, address: str) -> str | None:
        """The address an SRS ``address`` of ours stands for; None if it is
        not one we made (bad hash), too old, or malformed."""
        local, at, _domain = address.rpartition("@")
        if not at:
            return None
        kind, sep = local[:4].upper(), local[4:5]
        if sep not in ("=", "-", "+"):
            return None
        if kind == "SRS0":
            parts = local[5:].split("=", 3)
            if len(parts) != 4:
                return None
            hashed, stamp, domain, original = parts
            if not (_DOMAIN.fullmatch(domain) and original and self._fresh(stamp)):
                return None
            if not self._valid(hashed, stamp, domain, original):
                return None
            return f"{original}@{domain}"
        if kind == "SRS1":
            parts = local[5:].split("=", 2)
            if len(parts) != 3 or not parts[2].startswith("="):
                return None
            hashed, first, rest = parts
            if not first or not self._valid(hashed, first, rest):
                return None
            return f"SRS0{rest}@{first}"
        return None

    # --- the parts ------------------------------------------------------------------

    def _hash(self, *fields: str) -> str:
        # "=" between the fields: no moving characters from one to the next.
        text = "=".join(fields).lower().encode("utf-8", "surrogateescape")
        digest = hmac.new(self._key, text, hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii")[:HASH_LENGTH]

    def _valid(self, hashed: str, *fields: str) -> bool:
        return len(hashed) == HASH_LENGTH and hmac.compare_digest(
            hashed.upper().encode(), self._hash(*fields).encode()
        )

    @staticmethod
    def _stamp(now: float) -> str:
        day = int(now // _DAY) % 1024
        return _BASE32[day >> 5] + _BASE32[day & 31]

    def _fresh(self, stamp: str) -> bool:
        stamp = stamp.upper()
        if len(stamp) != 2 or any(c not in _BASE32 for c in stamp):
            return False
        then = (_BASE32.index(stamp[0]) << 5) | _BASE32.index(stamp[1])
        today = int(self.clock() // _DAY) % 1024
        return (today - then) % 1024 <= self.max_age_days
