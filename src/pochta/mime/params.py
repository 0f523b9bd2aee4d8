"""MIME field values: Content-Type, Content-Disposition and friends.

Design note
-----------
Values come in as ``str`` (raw octets decoded with ``surrogateescape``, see
:func:`pochta.mime.headers.text`) and go out as ``str``. The parsers are
lenient and never raise; on a value they cannot read they return ``None`` and
the caller applies the RFC default.

* ``type "/" subtype *(";" parameter)`` (RFC 2045 §5.1): type and subtype are
  lower-cased; parameter names are lower-cased, values unquoted (quoted-pairs
  resolved) but otherwise raw; order is kept, a repeated name keeps its first
  value. Unquoted values with blanks (common breakage) keep their inner blanks.
* Comments ``( ... )`` (RFC 2045 §5.1 allows them in structured fields) are
  removed outside quoted strings.
* RFC 2231 §3 continuations ``name*0``, ``name*1`` ... are joined into one
  ``name`` parameter at the place of the first segment. When a segment is
  extended (RFC 2231 §4, ``name*0*=utf-8''%E2%82%AC``) the joined parameter is
  ``name*`` and keeps the extended ``charset'language'percent-encoded`` form,
  which is what IMAP servers send in BODYSTRUCTURE; plain segments are
  percent-encoded into it. A single ``name*=`` stays as it is.
"""

from __future__ import annotations

import re

Params = tuple[tuple[str, str], ...]

# RFC 2045 §5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>;
# octets above 127 are let in so that 8-bit junk still yields a token.
_TOKEN = r'[^\x00-\x20\x7f()<>@,;:\\"/\[\]?=]+'
_TYPE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*")
_DISPOSITION = re.compile(rf"[ \t]*({_TOKEN})[ \t]*")
# The quoted alternative always matches (an unterminated quoted string runs to
# the end), so no failed attempt is ever rescanned: linear on any input.
_PARAM = re.compile(rf';[ \t]*({_TOKEN})[ \t]*=[ \t]*("(?:[^"\\]|\\.)*(?:"|\\?\Z)|[^;]*)', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_SECTION = re.compile(r"([^*]+)\*([0-9]{1,3})(\*?)")

# RFC 2231 §7 attribute-char: token characters except "*", "'" and "%".
_ATTRIBUTE_CHARS = frozenset(
    "!#$&+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz{}"
)


def strip_comments(value: str) -> str:
    """Remove RFC 5322 §3.2.2 comments outside quoted strings (nesting ok)."""
    if "(" not in value:
        return value
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if depth:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    out.append(" ")
            continue
        if ch == '"':
            quoted = not quoted
        elif ch == "(" and not quoted:
            depth = 1
            continue
        out.append(ch)
    return "".join(out)


def parse_content_type(value: str) -> tuple[str, str, Params] | None:
    """``(type, subtype, params)`` of a Content-Type value, or None if invalid."""
    value = strip_comments(value)
    m = _TYPE.match(value)
    if m is None:
        return None
    return m.group(1).lower(), m.group(2).lower(), parse_params(value, m.end())


def parse_disposition(value: str) -> tuple[str, Params] | None:
    """``(disposition, params)`` of Content-Disposition (RFC 2183 §2), or None."""
    value = strip_comments(value)
    m = _DISPOSITION.match(value)
    if m is None:
        return None
    return m.group(1).lower(), parse_params(value, m.end())


def parse_params(value: str, pos: int = 0) -> Params:
    """The ``;``-separated parameters in ``value[pos:]`` (comments already removed)."""
    raw: list[tuple[str, str]] = []
    for m in _PARAM.finditer(value, pos):
        v = m.group(2)
        if v.startswith('"'):
            v = v[1:-1] if len(v) > 1 and v.endswith('"') else v[1:]
            if "\\" in v:
                v = _QUOTED_PAIR.sub(r"\1", v)
        else:
            v = v.rstrip(" \t")
        raw.append((m.group(1).lower(), v))
    if any("*" in name for name, _ in raw):
        raw = _join_continuations(raw)
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for name, v in raw:
        if name not in seen:
            seen.add(name)
            out.append((name, v))
    return tuple(out)


def _percent(segment: str) -> str:
    """Percent-encode a plain RFC 2231 segment so it can join an extended value."""
    if all(ch in _ATTRIBUTE_CHARS for ch in segment):
        return segment
    return "".join(
        ch
        if ch in _ATTRIBUTE_CHARS
        else "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
        for ch in segment
    )


def _join_continuations(raw: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """RFC 2231 §3/§4.1: join ``name*N[*]`` segments (see the module note)."""
    groups: dict[str, list[tuple[int, bool, str]]] = {}
    order: list[tuple[str, str] | str] = []
    for name, v in raw:
        m = _SECTION.fullmatch(name)
        if m is None:
            order.append((name, v))
            continue
        base = m.group(1)
        if base not in groups:
            groups[base] = []
            order.append(base)
        groups[base].append((int(m.group(2)), m.group(3) == "*", v))
    out: list[tuple[str, str]] = []
    for item in order:
        if isinstance(item, tuple):
            out.append(item)
            continue
        segments = sorted(groups[item], key=lambda s: s[0])
        unique: dict[int, tuple[bool, str]] = {}
        for number, extended, v in segments:
            unique.setdefault(number, (extended, v))
        parts = list(unique.values())
        if not any(extended for extended, _ in parts):
            out.append((item, "".join(v for _, v in parts)))
            continue
        first_extended, first = parts[0]
        # The charset'language' prefix rides on the first segment only.
        joined = [first if first_extended else "''" + _percent(first)]
        joined.extend(v if extended else _percent(v) for extended, v in parts[1:])
        out.append((item + "*", "".join(joined)))
    return out


def parse_encoding(value: str) -> str | None:
    """The Content-Transfer-Encoding token upper-cased (RFC 2045 §6.1), or None."""
    m = _DISPOSITION.match(strip_comments(value))
    return m.group(1).upper() if m is not None else None


def parse_language(value: str) -> tuple[str, ...] | None:
    """Content-Language tags (RFC 3282 §2) in order, or None if there are none."""
    tags = tuple(t for t in (s.strip(" \t") for s in strip_comments(value).split(",")) if t)
    return tags or None
