"""Mail addresses: parsing, one canonical spelling, and lookup keys.

Design note
-----------
Every address Pochta stores or looks up goes through ``parse_address``: a pure
function, ``str`` in, ``Address`` out, which raises ``AddressError`` and nothing
else for any input. It accepts the RFC 5321 §4.1.2 ``Mailbox`` grammar:

- local part: a ``Dot-string`` or a ``Quoted-string``, at most 64 octets
  (RFC 5321 §4.5.3.1.1); with ``allow_utf8`` also UTF-8 (RFC 6531 §3.3);
- ``@``;
- domain: LDH labels of at most 63 octets, at most 255 octets in all
  (RFC 5321 §4.5.3.1.2), each label an ASCII name, an A-label or a U-label.
  Address literals (``[192.0.2.1]``) are refused: they name no local domain.

Invariants:

- ``Address.domain`` is lower case and every internationalized label is in
  A-label (punycode) form, so one domain has exactly one spelling.
- ``Address.local`` is the local part as written, quotes and quoted-pairs
  removed; ``str(address)`` re-quotes it only when it is not a dot-atom, and
  ``parse_address(str(a)) == a`` for every parsed ``a``.
- ``Address.key`` folds the case of the local part too: RFC 5321 §2.4 lets
  the receiving host decide, and every mainstream server matches local parts
  case-insensitively. Keys are what the accounts database stores.

IDNA: labels are converted with the standard library (NFC, lower case,
punycode, RFC 3492) and checked with a conservative subset of the IDNA2008
rules (RFC 5891 §4.2.3, RFC 5892): letters, marks and digits only, no leading
combining mark, no hyphen at either end or in positions 3-4. The full IDNA2008
code point tables and Bidi rule are not applied; every name accepted here is
still a valid DNS name, and its A-label form round-trips.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass

from pochta.errors import UserFacingError

__all__ = [
    "MAX_DOMAIN_OCTETS",
    "MAX_LABEL_OCTETS",
    "MAX_LOCAL_OCTETS",
    "MAX_MAILBOX_OCTETS",
    "Address",
    "AddressError",
    "parse_address",
    "parse_domain",
    "split_subaddress",
]

#: RFC 5321 §4.5.3.1.1: the maximum length of a local part.
MAX_LOCAL_OCTETS = 64
#: RFC 5321 §4.5.3.1.2: the maximum length of a domain.
MAX_DOMAIN_OCTETS = 255
#: RFC 1035 §2.3.4: the maximum length of one label.
MAX_LABEL_OCTETS = 63
#: RFC 5321 §4.5.3.1.3: a path is at most 256 octets including "<" and ">".
MAX_MAILBOX_OCTETS = 254

# RFC 5322 §3.2.3 atext, the characters of an unquoted atom.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset(string.ascii_lowercase + string.digits + "-")
# Non-ASCII characters refused everywhere: controls, surrogates and spaces.
_BAD_UNICODE = frozenset({"Cc", "Cs", "Zs", "Zl", "Zp"})
# Characters allowed in a U-label (a subset of IDNA2008 PVALID, RFC 5892).
_ULABEL_CATEGORIES = frozenset({"Ll", "Lo", "Lm", "Mn", "Mc", "Nd"})
# UTS #46 §2.3: ideographic and full-width full stops separate labels too.
_DOTS = {0x3002: ".", 0xFF0E: ".", 0xFF61: "."}


class AddressError(UserFacingError, ValueError):
    """An address or domain that cannot be used; the message says why."""


class _Invalid(Exception):
    """Internal: a reason, turned into an ``AddressError`` naming the input."""


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed mailbox ``local@domain`` (RFC 5321 §4.1.2)."""

    local: str
    domain: str

    def __str__(self) -> str:
        return f"{_quote_local(self.local)}@{self.domain}"

    @property
    def key(self) -> str:
        """The canonical lookup key: local part NFC-normalized and lower-cased.

        It is itself a valid address (re-quoted when needed, like ``str``).
        """
        local = unicodedata.normalize("NFC", self.local).lower()
        return f"{_quote_local(local)}@{self.domain}"


def parse_address(text: str, *, allow_utf8: bool = True) -> Address:
    """Parse an RFC 5321 §4.1.2 ``Mailbox``; raise ``AddressError`` otherwise.

    ``allow_utf8`` admits RFC 6531 §3.3 UTF-8 local parts and U-label domains;
    without it (an SMTP session without SMTPUTF8) the address must be ASCII.
    """
    try:
        return _parse_address(text, allow_utf8)
    except _Invalid as exc:
        raise AddressError(f"invalid address {_show(text)}: {exc}") from None


def parse_domain(text: str) -> str:
    """Validate a domain and return it lower-case, in A-label form.

    RFC 5321 §4.1.2 ``Domain``; labels per RFC 5890 §2.3.2.1 (A-label or
    U-label). Raises ``AddressError`` for anything else.
    """
    try:
        return _parse_domain(text, allow_utf8=True)
    except _Invalid as exc:
        raise AddressError(f"invalid domain {_show(text)}: {exc}") from None


def split_subaddress(local: str, sep: str = "+") -> tuple[str, str | None]:
    """Split ``user+tag`` into ``("user", "tag")``.

    Without a separator, or with nothing before it (``+x``), the local part is
    returned whole with tag ``None``. ``user+`` gives an empty tag.
    """
    base, found, tag = local.partition(sep)
    if not found or not base:
        return local, None
    return base, tag


# --- parsing -----------------------------------------------------------------


def _parse_address(text: str, allow_utf8: bool) -> Address:
    if not isinstance(text, str):
        raise _Invalid("not a string")
    if not text:
        raise _Invalid("empty")
    if text.startswith('"'):
        local, end = _parse_quoted(text, allow_utf8)
        if end >= len(text) or text[end] != "@":
            raise _Invalid("expected '@' after the quoted local part")
        domain_text = text[end + 1 :]
    else:
        at = text.find("@")
        if at < 0:
            raise _Invalid("missing '@'")
        local = text[:at]
        _check_dot_string(local, allow_utf8)
        domain_text = text[at + 1 :]
    if not local:
        raise _Invalid("empty local part")
    if "@" in domain_text:
        raise _Invalid("more than one '@' outside quotes")
    domain = _parse_domain(domain_text, allow_utf8)
    address = Address(local, domain)
    local_octets = len(_quote_local(local).encode("utf-8"))
    if local_octets > MAX_LOCAL_OCTETS:
        raise _Invalid(
            f"local part is {local_octets} octets, more than {MAX_LOCAL_OCTETS} "
            "(RFC 5321 §4.5.3.1.1)"
        )
    total = len(str(address).encode("utf-8"))
    if total > MAX_MAILBOX_OCTETS:
        raise _Invalid(
            f"address is {total} octets, more than {MAX_MAILBOX_OCTETS} (RFC 5321 §4.5.3.1.3)"
        )
    return address


def _check_dot_string(local: str, allow_utf8: bool) -> None:
    """RFC 5321 §4.1.2 ``Dot-string = Atom *("." Atom)``."""
    if not local:
        raise _Invalid("empty local part")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        raise _Invalid("local part has a leading, trailing or doubled '.' (quote it)")
    for ch in local:
        if ch != "." and not _is_atext(ch, allow_utf8):
            raise _Invalid(_bad_local_char(ch, allow_utf8, "an unquoted"))


def _parse_quoted(text: str, allow_utf8: bool) -> tuple[str, int]:
    """RFC 5321 §4.1.2 ``Quoted-string``; returns (content, index after it).

    ``qtextSMTP`` is printable ASCII but ``"`` and ``\\``; ``quoted-pairSMTP``
    is ``\\`` followed by printable ASCII or space. RFC 6531 §3.3 adds UTF-8.
    """
    out: list[str] = []
    i = 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= n:
                break
            nxt = text[i + 1]
            if not 32 <= ord(nxt) <= 126:
                raise _Invalid(f"character {_show_char(nxt)} cannot be quoted with '\\'")
            out.append(nxt)
            i += 2
            continue
        if 32 <= ord(ch) <= 126 or _is_utf8_ok(ch, allow_utf8):
            out.append(ch)
            i += 1
            continue
        raise _Invalid(_bad_local_char(ch, allow_utf8, "a quoted"))
    raise _Invalid("unterminated quoted local part")


def _parse_domain(text: str, allow_utf8: bool) -> str:
    if not text:
        raise _Invalid("empty domain")
    if text.startswith("["):
        raise _Invalid("address literals are not accepted for local accounts")
    if not text.isascii():
        if not allow_utf8:
            raise _Invalid("non-ASCII domain without SMTPUTF8 (RFC 6531 §3.2)")
        text = text.translate(_DOTS)
    labels = text.split(".")
    if any(not label for label in labels):
        raise _Invalid("empty label in domain (leading, trailing or doubled '.')")
    domain = ".".join(_parse_label(label) for label in labels)
    if domain.rsplit(".", 1)[-1].isdigit():
        raise _Invalid("the top-level label is all digits (RFC 3696 §2)")
    if len(domain) > MAX_DOMAIN_OCTETS:
        raise _Invalid(
            f"domain is {len(domain)} octets, more than {MAX_DOMAIN_OCTETS} (RFC 5321 §4.5.3.1.2)"
        )
    return domain


def _parse_label(label: str) -> str:
    """One label, returned lower-case and in A-label form (RFC 5890 §2.3.2.1)."""
    if not label.isascii():
        folded = _fold(label)
        if folded.isascii():  # e.g. KELVIN SIGN folds to "k"
            return _parse_label(folded)
        if _fold(folded) != folded:
            raise _Invalid(f"label {_show(label)} has no stable normalized form")
        _check_ulabel(folded)
        alabel = "xn--" + folded.encode("punycode").decode("ascii")
        _check_length(alabel)
        return alabel
    label = label.lower()
    _check_ldh(label)
    if label[2:4] == "--":
        if not label.startswith("xn--"):
            raise _Invalid(
                f"label {_show(label)} has '--' in positions 3-4 but is not an A-label "
                "(RFC 5891 §4.2.3.1)"
            )
        _check_alabel(label)
    return label


def _check_ldh(label: str) -> None:
    """RFC 5321 §4.1.2 ``sub-domain = Let-dig [Ldh-str]``."""
    for ch in label:
        if ch not in _LDH:
            raise _Invalid(f"character {_show_char(ch)} not allowed in a domain")
    if label.startswith("-") or label.endswith("-"):
        raise _Invalid(f"label {_show(label)} starts or ends with '-'")
    _check_length(label)


def _check_length(label: str) -> None:
    if len(label) > MAX_LABEL_OCTETS:
        raise _Invalid(
            f"label is {len(label)} octets, more than {MAX_LABEL_OCTETS} (RFC 1035 §2.3.4)"
        )


def _check_alabel(label: str) -> None:
    """An ``xn--`` label must decode to a valid U-label that encodes back to it."""
    try:
        ulabel = label[4:].encode("ascii").decode("punycode")
    except (UnicodeError, ValueError, IndexError, OverflowError):
        raise _Invalid(f"label {_show(label)} is not valid punycode (RFC 3492)") from None
    if ulabel.isascii() or _fold(ulabel) != ulabel:
        raise _Invalid(f"label {_show(label)} is not a valid A-label (RFC 5890 §2.3.2.1)")
    _check_ulabel(ulabel)
    if "xn--" + ulabel.encode("punycode").decode("ascii") != label:
        raise _Invalid(f"label {_show(label)} is not a valid A-label (RFC 5890 §2.3.2.1)")


def _check_ulabel(ulabel: str) -> None:
    """A conservative subset of RFC 5891 §4.2.3 and RFC 5892 for U-labels."""
    if ulabel.startswith("-") or ulabel.endswith("-") or ulabel[2:4] == "--":
        raise _Invalid(f"label {_show(ulabel)} has a hyphen where IDNA forbids it")
    if unicodedata.category(ulabel[0]).startswith("M"):
        raise _Invalid(f"label {_show(ulabel)} starts with a combining mark (RFC 5891 §4.2.3.2)")
    for ch in ulabel:
        if ch.isascii():
            if ch not in _LDH:
                raise _Invalid(f"character {_show_char(ch)} not allowed in a domain")
        elif unicodedata.category(ch) not in _ULABEL_CATEGORIES:
            raise _Invalid(f"character {_show_char(ch)} not allowed in a domain (RFC 5892)")


def _fold(label: str) -> str:
    """Case-fold and normalize a label the way UTS #46 maps it (approximately)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", label).lower())


def _is_atext(ch: str, allow_utf8: bool) -> bool:
    return ch in _ATEXT or _is_utf8_ok(ch, allow_utf8)


def _is_utf8_ok(ch: str, allow_utf8: bool) -> bool:
    """RFC 6531 §3.3 ``UTF8-non-ascii``, minus controls, surrogates and spaces."""
    return allow_utf8 and ord(ch) > 127 and unicodedata.category(ch) not in _BAD_UNICODE


def _is_dot_atom(local: str) -> bool:
    if not local or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return all(ch == "." or _is_atext(ch, True) for ch in local)


def _quote_local(local: str) -> str:
    """The local part as a dot-atom, or as a Quoted-string when it must be."""
    if _is_dot_atom(local):
        return local
    escaped = local.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- messages ----------------------------------------------------------------


def _show(text: str, limit: int = 80) -> str:
    """A one-line, escaped, bounded rendering of untrusted text for messages."""
    if len(text) > limit:
        return repr(text[:limit]) + "..."
    return repr(text)


def _bad_local_char(ch: str, allow_utf8: bool, where: str) -> str:
    if ord(ch) > 127 and not allow_utf8:
        return f"non-ASCII character {_show_char(ch)} without SMTPUTF8 (RFC 6531 §3.2)"
    return f"character {_show_char(ch)} not allowed in {where} local part"


def _show_char(ch: str) -> str:
    if ch.isprintable() and ch != " ":
        return repr(ch)
    return f"U+{ord(ch):04X}"
