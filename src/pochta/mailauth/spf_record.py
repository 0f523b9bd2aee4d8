"""SPF records (RFC 7208 §4.5, §4.6, §5, §6): recognise one, parse it whole.

Design note
-----------
:func:`parse_record` turns the text of a ``v=spf1`` record into a
:class:`Record` -- the mechanisms in order plus the ``redirect=`` and
``exp=`` modifiers -- or raises :class:`SPFSyntaxError`. The whole record is
checked before evaluation starts, because RFC 7208 §4.6 makes a syntax error
anywhere a permerror, even after an ``all`` that would have ended
evaluation. Parsing is pure and cheap; evaluation (DNS) lives in
:mod:`pochta.mailauth.spf`.

Choices where the grammar of Appendix A leaves room:

* A term is a modifier when it starts with ``name "="`` (§4.6.1: the "="
  comes right after the name, before any ":" or "/"); ``redirect`` and
  ``exp`` with a bad domain-spec are errors, not unknown modifiers (the
  openspf suite's reading, "unknown-modifier should not be greedy").
* The optional CIDR suffix of ``a`` and ``mx`` is taken from the end, so a
  "/" inside the domain-spec (``a:foo:bar/baz.example.com``) stays there.
* CIDR lengths have no leading zeros and stay within 32 / 128 (§5.6).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Address, IPv6Network
from typing import Literal

from pochta.mailauth.spf_macro import (
    MacroString,
    MacroSyntaxError,
    parse_domain_spec,
    parse_macro_string,
)

__all__ = [
    "DNS_MECHANISMS",
    "Mechanism",
    "Record",
    "SPFSyntaxError",
    "is_spf_record",
    "parse_record",
]

Qualifier = Literal["+", "-", "~", "?"]
Kind = Literal["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"]

#: Mechanisms that cost a DNS query and count against the limit of §4.6.4.
DNS_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})

_VERSION = b"v=spf1"
#: name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ) followed by "=" (§4.6.1, §6).
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9_.\-]*)=(.*)", re.DOTALL)
#: ip4-network: four qnums without leading zeros (Appendix A).
_QNUM = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IP4 = re.compile(rf"{_QNUM}\.{_QNUM}\.{_QNUM}\.{_QNUM}")
_CIDR = re.compile(r"0|[1-9][0-9]{0,2}")


class SPFSyntaxError(ValueError):
    """The record is not valid ``v=spf1`` syntax; evaluation gives permerror."""


@dataclass(frozen=True, slots=True)
class Mechanism:
    """One directive: qualifier and mechanism with its arguments (§4.6.2, §5)."""

    qualifier: Qualifier
    kind: Kind
    text: str
    """The term as published, for reasons and logs."""
    domain: MacroString | None = None
    """The domain-spec of include/a/mx/ptr/exists; ``None`` means <domain>."""
    network: IPv4Network | IPv6Network | None = None
    """ip4/ip6: the network to match."""
    cidr4: int = 32
    """a/mx: prefix length applied to A records."""
    cidr6: int = 128
    """a/mx: prefix length applied to AAAA records."""


@dataclass(frozen=True, slots=True)
class Record:
    """A parsed SPF record."""

    text: str
    mechanisms: tuple[Mechanism, ...]
    redirect: MacroString | None = None
    """``redirect=`` (§6.1)."""
    exp: MacroString | None = None
    """``exp=`` (§6.2)."""


def is_spf_record(data: bytes) -> bool:
    """True if a TXT record is an SPF version 1 record (§4.5).

    It starts with "v=spf1" in any case, followed by a space or nothing;
    "v=spf10" and "v=spf1mx" (two strings glued, §3.3) are other records.
    """
    return data[:6].lower() == _VERSION and (len(data) == 6 or data[6:7] == b" ")


def parse_record(text: str) -> Record:
    """Parse ``record = version terms *SP`` (§4.6.1) or raise :class:`SPFSyntaxError`."""
    for ch in text:
        # §3.1/Appendix A: a record is SP-separated printable ASCII; tabs, CR,
        # LF, NUL and non-ASCII anywhere make it unusable.
        if not 0x20 <= ord(ch) <= 0x7E:
            raise SPFSyntaxError(f"character U+{ord(ch):04X} not allowed in an SPF record")
    if not is_spf_record(text.encode("ascii")):
        raise SPFSyntaxError("not a v=spf1 record")
    mechanisms: list[Mechanism] = []
    redirect: MacroString | None = None
    exp: MacroString | None = None
    for term in text[6:].split(" "):
        if not term:
            continue  # terms = *( 1*SP ( directive / modifier ) ), trailing SP allowed
        modifier = _MODIFIER.fullmatch(term)
        try:
            if modifier is None:
                mechanisms.append(_mechanism(term))
                continue
            name = modifier.group(1).lower()
            value = modifier.group(2)
            if name in ("redirect", "exp"):
                # §6: "These two modifiers MUST NOT appear in a record more than once each."
                if (redirect if name == "redirect" else exp) is not None:
                    raise SPFSyntaxError(f"{name}= appears more than once")
                spec = parse_domain_spec(value)
                if name == "redirect":
                    redirect = spec
                else:
                    exp = spec
            else:
                # Unknown modifiers are ignored (§6), but their value must still
                # be a valid macro-string (Appendix A: name "=" macro-string).
                parse_macro_string(value)
        except MacroSyntaxError as exc:
            raise SPFSyntaxError(f"term {term!r}: {exc}") from None
    return Record(text, tuple(mechanisms), redirect, exp)


def _mechanism(term: str) -> Mechanism:
    qualifier: Qualifier = "+"
    body = term
    if body[:1] in ("+", "-", "~", "?"):
        qualifier = _qualifier(body[0])
        body = body[1:]
    cut = len(body)
    for sep in (":", "/"):
        pos = body.find(sep)
        if 0 <= pos < cut:
            cut = pos
    # §4.6.1: mechanism names are case-insensitive.
    name = body[:cut].lower()
    rest = body[cut:]
    if name == "all":
        if rest:
            raise SPFSyntaxError(f"'all' takes no arguments: {term!r}")
        return Mechanism(qualifier, "all", term)
    if name in ("include", "exists"):
        if not rest.startswith(":"):
            raise SPFSyntaxError(f"{name} needs ':' and a domain-spec: {term!r}")
        kind: Kind = "include" if name == "include" else "exists"
        return Mechanism(qualifier, kind, term, domain=parse_domain_spec(rest[1:]))
    if name == "ptr":
        domain = None
        if rest:
            if not rest.startswith(":"):
                raise SPFSyntaxError(f"ptr takes no CIDR length: {term!r}")
            domain = parse_domain_spec(rest[1:])
        return Mechanism(qualifier, "ptr", term, domain=domain)
    if name in ("a", "mx"):
        head, c4, c6 = _split_dual_cidr(rest)
        domain = None
        if head:
            if not head.startswith(":"):
                raise SPFSyntaxError(f"bad arguments in {term!r}")
            domain = parse_domain_spec(head[1:])
        cidr4 = _cidr(c4, 32, term) if c4 is not None else 32
        cidr6 = _cidr(c6, 128, term) if c6 is not None else 128
        kind = "a" if name == "a" else "mx"
        return Mechanism(qualifier, kind, term, domain=domain, cidr4=cidr4, cidr6=cidr6)
    if name in ("ip4", "ip6"):
        if not rest.startswith(":"):
            raise SPFSyntaxError(f"{name} needs ':' and an address: {term!r}")
        address, slash, length = rest[1:].partition("/")
        if name == "ip4":
            if not _IP4.fullmatch(address):
                raise SPFSyntaxError(f"bad IPv4 address in {term!r}")
            prefix = _cidr(length, 32, term) if slash else 32
            network4 = IPv4Network(f"{address}/{prefix}", strict=False)
            return Mechanism(qualifier, "ip4", term, network=network4)
        try:
            # A zone index ("%eth0") is no part of ip6-network (RFC 4291 §2.2).
            if "%" in address:
                raise ValueError(address)
            parsed = IPv6Address(address)
        except ValueError:
            raise SPFSyntaxError(f"bad IPv6 address in {term!r}") from None
        prefix = _cidr(length, 128, term) if slash else 128
        network6 = IPv6Network(f"{parsed}/{prefix}", strict=False)
        return Mechanism(qualifier, "ip6", term, network=network6)
    raise SPFSyntaxError(f"unknown mechanism {term!r}")


def _trailing_length(text: str) -> tuple[str, str | None]:
    """Split "<head>/<digits>" into (head, digits); (text, None) without one."""
    slash = text.rfind("/")
    digits = text[slash + 1 :]
    if slash < 0 or not digits or not (digits.isascii() and digits.isdigit()):
        return text, None
    return text[:slash], digits


def _split_dual_cidr(rest: str) -> tuple[str, str | None, str | None]:
    """``[ ":" domain-spec ] [ ip4-cidr-length ] [ "/" ip6-cidr-length ]`` (§5.3).

    Taken from the end, so "/" inside the domain-spec stays there; returns
    (head, ip4 digits, ip6 digits).
    """
    head, digits = _trailing_length(rest)
    if digits is not None and head.endswith("/"):
        head, c4 = _trailing_length(head[:-1])
        return head, c4, digits
    return head, digits, None


def _qualifier(ch: str) -> Qualifier:
    if ch == "-":
        return "-"
    if ch == "~":
        return "~"
    if ch == "?":
        return "?"
    return "+"


def _cidr(text: str, maximum: int, term: str) -> int:
    """ip4-cidr-length / ip6-cidr-length: no leading zero, at most 32 / 128 (§5.6)."""
    if not _CIDR.fullmatch(text) or int(text) > maximum:
        raise SPFSyntaxError(f"bad CIDR length /{text} in {term!r}")
    return int(text)
