"""Organizational domains (RFC 7489 §3.2) and identifier alignment (§3.1).

Design note
-----------
DMARC asks two questions of domain names: which registrable domain does a
name belong to (its *Organizational Domain*), and do two names "align".
RFC 7489 §3.2 answers the first with the Public Suffix List: find the
longest public suffix of the name (the implicit ``*`` rule makes an unknown
top-level label a public suffix), then add one more label. We use the list
bundled with the ``publicsuffixlist`` package, ICANN and private sections
both (so ``a.blogspot.com`` and ``b.blogspot.com`` are different
organizations, which is what the private section is for); it is never
fetched from the network, and a new list arrives with a package upgrade.

Names are compared in one canonical spelling: no surrounding blanks, no
final dot, lower case, internationalized labels as A-labels (RFC 5890
§2.3.2.1), so ``Bücher.Example.`` and ``xn--bcher-kva.example`` are the same
name. Both functions are total: a name that is not a valid domain (an empty
label, a single label, the name of a public suffix itself) is its own
organizational domain, because there is no label to add to it.
"""

from __future__ import annotations

import functools
import unicodedata
from typing import Literal

from publicsuffixlist import PublicSuffixList

from pochta.accounts.address import AddressError, parse_domain

__all__ = ["aligned", "normalize_domain", "organizational_domain"]


@functools.cache
def _psl() -> PublicSuffixList:
    """The parsed list, built on first use: parsing takes tens of milliseconds
    and most processes (an IMAP-only server, the CLI) never need it."""
    return PublicSuffixList()


def normalize_domain(domain: str) -> str:
    """``domain`` stripped, without a final dot, lower case, with A-labels.

    Never raises: a name our strict domain parser refuses (an underscore
    label, an empty label) is only lower-cased, its non-ASCII labels
    punycoded, so it still compares equal to itself in any spelling.
    """
    # Until nothing changes: "a .", "a. ." end in space or dot again after one pass.
    name, previous = domain, None
    while name != previous:
        previous, name = name, name.strip().rstrip(".")
    if not name:
        return ""
    try:
        return parse_domain(name)
    except AddressError:
        pass
    labels: list[str] = []
    for label in name.split("."):
        folded = unicodedata.normalize("NFC", label).lower()
        if not folded.isascii():
            try:
                folded = "xn--" + folded.encode("punycode").decode("ascii")
            except UnicodeError:
                pass  # lone surrogates: keep as is, the name is junk anyway
        labels.append(folded)
    return ".".join(labels)


@functools.lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """The Organizational Domain of ``domain`` (RFC 7489 §3.2), normalized.

    ``mail.example.co.uk`` -> ``example.co.uk``. A name that is itself a
    public suffix (``co.uk``), a single label (``localhost``) or not a
    usable domain name is returned as it is (normalized): §3.2 step 5 adds
    one label to the public suffix, and such a name has none to add.
    """
    name = normalize_domain(domain)
    if not name:
        return ""
    private = _psl().privatesuffix(name)
    return private if private else name


def aligned(a: str, b: str, mode: Literal["r", "s"]) -> bool:
    """Whether identifiers ``a`` and ``b`` are in alignment (RFC 7489 §3.1).

    Strict mode (``"s"``): the names are identical (§3.1.1, §3.1.2).
    Relaxed mode (``"r"``): their Organizational Domains are identical, so
    ``news.example.com`` aligns with ``example.com`` and with
    ``mail.example.com``. An empty name aligns with nothing.
    """
    left = normalize_domain(a)
    right = normalize_domain(b)
    if not left or not right:
        return False
    if mode == "s":
        return left == right
    return organizational_domain(left) == organizational_domain(right)
