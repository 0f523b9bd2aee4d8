"""RFC 5322 §3.4 address lists, parsed into IMAP address structures.

Design note
-----------
IMAP ENVELOPE (RFC 9051 §7.5.2) wants each address as
``(name, adl, mailbox, host)`` and RFC 5322 §3.4 group syntax flattened:
a group start is ``(None, None, group-name, None)`` and a group end is
``(None, None, None, None)``. This is a small tolerant parser of our own:
the stdlib's ``email.utils.getaddresses`` loses groups and source routes,
and ``email._header_value_parser`` is slow and private.

Values are kept raw, as IMAP sends them: the display name has its quotes and
quoted-pairs removed but encoded-words (RFC 2047) are *not* decoded; the
mailbox is the local part as written (a quoted local part keeps its quotes so
``mailbox@host`` stays a valid address); the host is as written. When an
address has no display name, the last comment is used, as in
``joe@example.org (Joe Bloggs)``. An address without ``@`` gets host ``""``
(never None, which would read as a group start); ``Name <>`` gives mailbox
and host ``""``, a bare ``<>`` is dropped. Junk never raises: it yields fewer
or odder addresses.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Address(NamedTuple):
    """One IMAP address structure (RFC 9051 §7.5.2, ``address``)."""

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


GROUP_END = Address(None, None, None, None)

# Token kinds.
_ATOM, _QUOTED, _LITERAL, _SPECIAL, _COMMENT = range(5)

_TOKEN = re.compile(
    r"""
      ([ \t\r\n]+)                              # 1 blanks
    | ("(?:[^"\\]|\\.)*(?:"|\\?\Z))             # 2 quoted string, maybe unterminated
    | (\[(?:[^\[\]\\]|\\.)*(?:\]|\\?\Z)?)         # 3 domain literal, maybe unterminated
    | ([<>@,;:.])                               # 4 specials that matter here
    | (\()                                      # 5 comment start (nests, see below)
    | ([^ \t\r\n"\[<>@,;:.(]+|["\[])            # 6 atom, or a stray quote or bracket
    """,
    re.X | re.S,
)
# Groups 2 and 3 match at every '"' and '[' (an unterminated one runs to the
# end or the next '['), so a failed attempt can never make tokenizing quadratic.
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)

# Fast path for the common shapes: ``local@domain``, ``Some Name <local@domain>``
# and ``"Quoted, Name" <local@domain>``, one per comma-separated item. Anything
# else (comments, groups, routes, stray specials) goes to the full parser,
# which gives the same result for these shapes.
_WORD = r'[^\s"<>,;:@()\[\]\\]+'
_SIMPLE = re.compile(
    rf'[ \t]*(?:(?:"((?:[^"\\]|\\.)*)"|({_WORD}(?:[ \t]+{_WORD})*))?[ \t]*'
    rf"<({_WORD})@({_WORD})>|({_WORD})@({_WORD}))[ \t]*",
    re.S,
)

# (kind, text, blank before). Text: atoms and specials as written; quoted
# strings with their quotes; comments without their parentheses.
_Token = tuple[int, str, bool]


def _comment_end(s: str, pos: int) -> int:
    """Index just past the comment opened at ``s[pos] == "("`` (or len(s))."""
    depth = 0
    i = pos
    n = len(s)
    while i < n:
        ch = s[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _tokenize(s: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    n = len(s)
    blank = False
    match = _TOKEN.match
    while pos < n:
        m = match(s, pos)
        if m is None:  # pragma: no cover - the pattern covers every character
            break
        kind = m.lastindex
        if kind == 1:
            blank = True
            pos = m.end()
            continue
        if kind == 5:
            end = _comment_end(s, pos)
            body = s[pos + 1 : end - 1 if s[end - 1 : end] == ")" else end]
            tokens.append((_COMMENT, body, blank))
            blank = True
            pos = end
            continue
        text = m.group(kind or 6)
        if kind == 2:
            tokens.append((_QUOTED, text, blank))
        elif kind == 3:
            tokens.append((_LITERAL, text, blank))
        elif kind == 4:
            tokens.append((_SPECIAL, text, blank))
        else:
            tokens.append((_ATOM, text, blank))
        blank = False
        pos = m.end()
    return tokens


def _unquote(text: str) -> str:
    inner = text[1:-1] if len(text) > 1 and text.endswith('"') else text[1:]
    return _QUOTED_PAIR.sub(r"\1", inner) if "\\" in inner else inner


def _phrase(tokens: list[_Token]) -> str | None:
    """A display name: words joined by one space where blanks separated them."""
    out: list[str] = []
    for kind, text, blank in tokens:
        if kind == _COMMENT:
            continue
        if blank and out:
            out.append(" ")
        out.append(_unquote(text) if kind == _QUOTED else text)
    name = "".join(out).strip()
    return name or None


def _raw(tokens: list[_Token], spaced: bool) -> str:
    """Local part or domain as written; blanks kept as one space if ``spaced``."""
    out: list[str] = []
    for kind, text, blank in tokens:
        if kind == _COMMENT:
            continue
        if spaced and blank and out and text != "." and out[-1] != ".":
            out.append(" ")
        out.append(text)
    return "".join(out)


def _last_comment(tokens: list[_Token]) -> str | None:
    for kind, text, _ in reversed(tokens):
        if kind == _COMMENT and text.strip():
            return text.strip()
    return None


def _addr_spec(tokens: list[_Token]) -> tuple[str, str]:
    """``(mailbox, host)`` from the tokens of an addr-spec, split at the last @."""
    at = -1
    for i in range(len(tokens) - 1, -1, -1):
        if tokens[i][0] == _SPECIAL and tokens[i][1] == "@":
            at = i
            break
    if at < 0:
        return _raw(tokens, True), ""
    return _raw(tokens[:at], True), _raw(tokens[at + 1 :], False)


def _mailbox(phrase: list[_Token], angle: list[_Token] | None) -> Address | None:
    """One mailbox from the tokens before ``<`` and inside ``<...>``."""
    if angle is None:
        words = [t for t in phrase if t[0] != _COMMENT]
        if not words:
            return None
        mailbox, host = _addr_spec(words)
        return Address(_last_comment(phrase), None, mailbox, host)
    name = _phrase(phrase) or _last_comment(phrase) or _last_comment(angle)
    adl: str | None = None
    spec = [t for t in angle if t[0] != _COMMENT]
    if spec and spec[0][0] == _SPECIAL and spec[0][1] == "@":
        # obs-route (RFC 5322 §4.4): "@a,@b:" before the addr-spec.
        for i, (kind, text, _) in enumerate(spec):
            if kind == _SPECIAL and text == ":":
                adl = _raw(spec[:i], False) or None
                spec = spec[i + 1 :]
                break
    if not spec:
        if name is None:
            return None
        return Address(name, adl, "", "")
    mailbox, host = _addr_spec(spec)
    return Address(name, adl, mailbox, host)


def _parse_simple(value: str) -> tuple[Address, ...] | None:
    """The fast path (see ``_SIMPLE``), or None when the value needs the parser."""
    out: list[Address] = []
    match = _SIMPLE.match
    pos = 0
    n = len(value)
    while True:
        m = match(value, pos)
        if m is None:
            return None
        pos = m.end()
        if pos < n and value[pos] != ",":
            return None
        pos += 1
        quoted, words, local, domain, bare_local, bare_domain = m.groups()
        if bare_local is not None:
            out.append(Address(None, None, bare_local, bare_domain))
        else:
            name: str | None = None
            if quoted is not None:
                if "\\" in quoted:
                    quoted = _QUOTED_PAIR.sub(r"\1", quoted)
                name = quoted.strip() or None
            elif words is not None:
                name = " ".join(words.split())
            out.append(Address(name, None, local, domain))
        if pos > n:
            return tuple(out)


def parse_address_list(value: str) -> tuple[Address, ...]:
    """Parse an address-list field value (From, To, Cc, ...) leniently.

    Groups (RFC 5322 §3.4) become a start marker, their members and
    :data:`GROUP_END`; an unterminated group is closed at the end.
    """
    simple = _parse_simple(value)
    if simple is not None:
        return simple
    return _parse_full(value)


def _parse_full(value: str) -> tuple[Address, ...]:
    """The complete tolerant parser (RFC 5322 §3.4, §4.4 obsolete forms)."""
    tokens = _tokenize(value)
    out: list[Address] = []
    phrase: list[_Token] = []
    angle: list[_Token] | None = None
    in_angle = False
    in_group = False

    def flush() -> None:
        nonlocal phrase, angle
        address = _mailbox(phrase, angle)
        if address is not None:
            out.append(address)
        phrase = []
        angle = None

    for token in tokens:
        kind, text, _ = token
        if in_angle:
            if kind == _SPECIAL and text == ">":
                in_angle = False
            elif kind != _SPECIAL or text != "<":
                assert angle is not None
                angle.append(token)
            continue
        if kind != _SPECIAL:
            if angle is None or kind == _COMMENT:
                phrase.append(token)
            continue
        if text == "<":
            if angle is None:
                angle = []
                in_angle = True
        elif text == ",":
            flush()
        elif text == ";":
            flush()
            if in_group:
                out.append(GROUP_END)
                in_group = False
        elif text == ":" and angle is None and not in_group:
            out.append(Address(None, None, _phrase(phrase) or "", None))
            phrase = []
            in_group = True
        elif text == ">":
            pass  # stray
        elif angle is None:
            phrase.append(token)  # "@", "." and a stray ":" inside a group
    flush()
    if in_group:
        out.append(GROUP_END)
    return tuple(out)
