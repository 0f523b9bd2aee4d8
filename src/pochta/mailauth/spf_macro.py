"""SPF macros (RFC 7208 §7): parse a macro-string once, expand it per check.

Design note
-----------
Parsing and expanding are separate so that a record is fully syntax-checked
before anything is looked up (RFC 7208 §4.6: a syntax error anywhere in the
record is a permerror, even in a term that would never be reached). A parsed
:class:`MacroString` is a tuple of tokens: literal text, the three escapes
``%%`` ``%_`` ``%-``, and :class:`Macro` (``%{...}``). Expansion is plain,
synchronous string work over a :class:`MacroValues`; the one letter that needs
DNS, ``p`` (the validated name of the client, §7.3), is computed by the caller
beforehand when :attr:`MacroString.letters` contains it.

Three grammars share the tokenizer (§7.1, Appendix A):

* ``domain-spec`` (targets of mechanisms, ``redirect=``, ``exp=``) must end
  in a macro or in ``"." toplabel ["."]``, and may not use ``c``, ``r`` or
  ``t``, which are for explanation text only (§7.3);
* an unknown modifier's value is any ``macro-string``;
* an ``explain-string`` (the TXT record ``exp=`` points at) may also contain
  spaces and all letters.

Nothing here raises anything but :class:`MacroSyntaxError` for bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import quote

__all__ = [
    "DOMAIN_LETTERS",
    "EXPLAIN_LETTERS",
    "MAX_DOMAIN_LENGTH",
    "Escape",
    "Macro",
    "MacroString",
    "MacroSyntaxError",
    "MacroValues",
    "expand_domain",
    "ip_macro",
    "is_toplabel",
    "parse_domain_spec",
    "parse_explain_string",
    "parse_macro_string",
]

#: Letters allowed in terms (§7.3 "The following macro letters are expanded in term
#: arguments"); ``v`` is listed in §7.2's ABNF.
DOMAIN_LETTERS = frozenset("slodiphv")
#: Letters allowed in explanation text: the term letters plus c, r, t (§7.3).
EXPLAIN_LETTERS = DOMAIN_LETTERS | frozenset("crt")
#: The delimiter characters of §7.1.
DELIMITERS = frozenset(".-+,/_=")
#: A domain name of more than 253 characters is truncated from the left (§7.3).
MAX_DOMAIN_LENGTH = 253

_DIGITS = re.compile(r"[0-9]*")


class MacroSyntaxError(ValueError):
    """The text is not a valid macro-string / domain-spec / explain-string."""


@dataclass(frozen=True, slots=True)
class Macro:
    """``%{letter digits r delimiters}`` (§7.1)."""

    letter: str
    """Lower case; the original was upper case iff ``escape``."""
    digits: int | None
    """Keep this many right-hand parts; ``None`` keeps all."""
    reverse: bool
    delimiters: str
    """Characters to split on; empty means the default ".", see §7.3."""
    escape: bool
    """An upper-case letter: URL-escape the expansion (§7.3)."""

    def transform(self, value: str) -> str:
        """Split, reverse, keep right-hand parts, rejoin with "." (§7.3)."""
        if self.digits is None and not self.reverse and not self.delimiters:
            parts_text = value
        else:
            delimiters = self.delimiters or "."
            parts = re.split("[" + re.escape(delimiters) + "]", value)
            if self.reverse:
                parts.reverse()
            if self.digits is not None and self.digits < len(parts):
                parts = parts[len(parts) - self.digits :]
            parts_text = ".".join(parts)
        if self.escape:
            # §7.3: upper-case macros are URL-escaped: every character outside
            # the RFC 3986 "unreserved" set becomes %XX of its UTF-8 octets.
            return quote(parts_text, safe="")
        return parts_text


@dataclass(frozen=True, slots=True)
class Escape:
    """``%%``, ``%_`` or ``%-``: a literal "%", a space, "%20" (§7.1)."""

    value: str


Token = str | Escape | Macro


@dataclass(frozen=True, slots=True)
class MacroString:
    """A parsed macro-string; ``text`` is what was parsed."""

    text: str
    tokens: tuple[Token, ...]

    @property
    def letters(self) -> frozenset[str]:
        """The (lower-case) macro letters used."""
        return frozenset(t.letter for t in self.tokens if isinstance(t, Macro))

    def expand(self, values: MacroValues) -> str:
        """The text with every macro replaced (no domain-name post-processing)."""
        out: list[str] = []
        for token in self.tokens:
            if isinstance(token, str):
                out.append(token)
            elif isinstance(token, Escape):
                out.append(token.value)
            else:
                out.append(token.transform(values.value(token.letter)))
        return "".join(out)


@dataclass(frozen=True, slots=True)
class MacroValues:
    """What the letters stand for during one evaluation (§7.3)."""

    sender: str
    """s: <sender>; l and o are its local-part and domain."""
    domain: str
    """d: the current <domain>."""
    ip: IPv4Address | IPv6Address
    """i, c, v: the client address (an IPv4-mapped IPv6 address already unmapped)."""
    helo: str = ""
    """h: the HELO/EHLO domain."""
    validated: str = "unknown"
    """p: the validated domain name of <ip>; "unknown" when there is none (§7.3)."""
    receiver: str = "unknown"
    """r: the receiving host; "unknown" when it has no name (§7.3)."""
    timestamp: int = 0
    """t: seconds since the epoch."""

    def value(self, letter: str) -> str:
        if letter == "s":
            return self.sender
        if letter == "l":
            local, _, _ = self.sender.rpartition("@")
            return local
        if letter == "o":
            return self.sender.rpartition("@")[2]
        if letter == "d":
            return self.domain
        if letter == "i":
            return ip_macro(self.ip)
        if letter == "p":
            return self.validated
        if letter == "v":
            return "in-addr" if self.ip.version == 4 else "ip6"
        if letter == "h":
            return self.helo
        if letter == "c":
            # §7.3: c is the address in its conventional form (RFC 5952 for IPv6).
            return str(self.ip)
        if letter == "r":
            return self.receiver
        if letter == "t":
            return str(self.timestamp)
        raise MacroSyntaxError(f"unknown macro letter {letter!r}")


def ip_macro(ip: IPv4Address | IPv6Address) -> str:
    """The ``i`` macro: dotted quad, or dotted nibbles for IPv6 (§7.3).

    The nibbles are upper case as in RFC 4408 §8.1 and the openspf test suite
    (RFC 7208 §7.4 prints them in lower case; DNS names compare without case,
    RFC 4343, so only explanation text can tell the difference).
    """
    if isinstance(ip, IPv4Address):
        return str(ip)
    return ".".join(ip.exploded.replace(":", "").upper())


def _parse(text: str, *, letters: frozenset[str], spaces: bool) -> tuple[Token, ...]:
    tokens: list[Token] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "%":
            code = ord(ch)
            # macro-literal = %x21-24 / %x26-7E; explain-string adds SP (§7.1).
            if not (0x21 <= code <= 0x7E or (spaces and code == 0x20)):
                raise MacroSyntaxError(f"character {ch!r} not allowed in {text!r}")
            literal.append(ch)
            i += 1
            continue
        nxt = text[i + 1] if i + 1 < n else ""
        if nxt in ("%", "_", "-"):
            if literal:
                tokens.append("".join(literal))
                literal = []
            tokens.append(Escape({"%": "%", "_": " ", "-": "%20"}[nxt]))
            i += 2
            continue
        if nxt != "{":
            # §7.1: "A '%' character not followed by a '{', '%', '-', or '_'
            # character is a syntax error."
            raise MacroSyntaxError(f"'%' not followed by '{{', '%', '_' or '-' in {text!r}")
        end = text.find("}", i + 2)
        if end < 0:
            raise MacroSyntaxError(f"unterminated macro in {text!r}")
        macro = _parse_macro(text[i + 2 : end], letters, text)
        if literal:
            tokens.append("".join(literal))
            literal = []
        tokens.append(macro)
        i = end + 1
    if literal:
        tokens.append("".join(literal))
    return tuple(tokens)


def _parse_macro(body: str, letters: frozenset[str], text: str) -> Macro:
    """``macro-letter transformers *delimiter`` (§7.1), the text between the braces."""
    if not body:
        raise MacroSyntaxError(f"empty macro in {text!r}")
    letter = body[0]
    # ABNF strings are case-insensitive (RFC 5234 §2.3); upper case means escape.
    if letter.lower() not in letters or not letter.isascii():
        raise MacroSyntaxError(f"macro letter {letter!r} not allowed here in {text!r}")
    rest = body[1:]
    match = _DIGITS.match(rest)
    digit_text = match.group() if match else ""
    rest = rest[len(digit_text) :]
    digits: int | None = None
    if digit_text:
        significant = digit_text.lstrip("0")
        if not significant:
            # §7.3: "If a DIGIT is specified, the value MUST be nonzero."
            raise MacroSyntaxError(f"macro transformer 0 in {text!r}")
        # Huge numbers keep all parts; avoid int() on thousands of digits.
        digits = int(significant) if len(significant) <= 6 else 1_000_000
    reverse = False
    if rest[:1] in ("r", "R"):
        reverse = True
        rest = rest[1:]
    if any(ch not in DELIMITERS for ch in rest):
        raise MacroSyntaxError(f"bad macro delimiters {rest!r} in {text!r}")
    return Macro(letter.lower(), digits, reverse, rest, letter.isupper())


def is_toplabel(label: str) -> bool:
    """toplabel of §7.1: alphanumerics with at least one letter, or LDH with a
    dash inside and an alphanumeric at each end (so "123" and "-com" are not
    top labels, "xn--zckzah" is).

    Checked by hand: the ABNF as a regular expression backtracks
    quadratically, and records come from whoever owns the domain.
    """
    if not label or not label.isascii():
        return False
    if not all(ch.isalnum() or ch == "-" for ch in label):
        return False
    if "-" in label:
        return label[0].isalnum() and label[-1].isalnum()
    return any(ch.isalpha() for ch in label)


def parse_macro_string(text: str) -> MacroString:
    """An unknown modifier's value: ``macro-string`` with any macro letter (§7.1)."""
    return MacroString(text, _parse(text, letters=EXPLAIN_LETTERS, spaces=False))


def parse_explain_string(text: str) -> MacroString:
    """The explanation TXT text: ``explain-string`` (§6.2, §7.1)."""
    return MacroString(text, _parse(text, letters=EXPLAIN_LETTERS, spaces=True))


def parse_domain_spec(text: str) -> MacroString:
    """A term's target: ``domain-spec = macro-string domain-end`` (§7.1).

    ``domain-end`` is a macro at the very end, or a literal ``"." toplabel``
    with an optional final dot; so ``a:museum``, ``a:abc.123`` and an empty
    domain-spec are syntax errors, ``a:%{d}`` and ``a:x.xn--zckzah.`` are not.
    """
    tokens = _parse(text, letters=DOMAIN_LETTERS, spaces=False)
    if not tokens:
        raise MacroSyntaxError("empty domain-spec")
    last = tokens[-1]
    if not isinstance(last, str):
        return MacroString(text, tokens)
    tail = last[:-1] if last.endswith(".") else last
    dot = tail.rfind(".")
    if dot < 0 or not is_toplabel(tail[dot + 1 :]):
        raise MacroSyntaxError(f"domain-spec {text!r} does not end in a macro or top label")
    return MacroString(text, tokens)


def expand_domain(spec: MacroString, values: MacroValues) -> str:
    """Expand a domain-spec into the name to look up.

    The final dot is dropped (a trailing dot "is ignored for domains", as the
    openspf suite puts §7.3's rules), and a name longer than 253 characters
    loses labels from the left until it fits (§7.3, last paragraph).
    """
    name = spec.expand(values)
    if name.endswith("."):
        name = name[:-1]
    if len(name) > MAX_DOMAIN_LENGTH:
        # The leftmost dot whose remainder fits; one cut instead of one per label.
        dot = name.find(".", len(name) - MAX_DOMAIN_LENGTH - 1)
        if dot >= 0:
            name = name[dot + 1 :]
    return name
