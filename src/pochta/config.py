"""Pochta's settings: one TOML file, read once at start, validated, frozen.

Design note
-----------
Purpose
    Every knob an operator can turn lives in one TOML file (DESIGN.md,
    "Contracts").  :func:`load_settings` finds it (``--config FILE``, else
    ``$POCHTA_CONFIG``, else ``./pochta.toml``), parses it with :mod:`tomllib`,
    checks every key and returns a :class:`Settings` tree of frozen, slotted
    dataclasses that the rest of Pochta passes around.  The dataclasses below
    are the schema: each field's docstring documents the key of the same name.

Invariants of a returned :class:`Settings`
    * Every path is absolute.  A relative path in the file is resolved against
      the file's own directory, never the working directory; a leading ``~``
      is expanded.
    * ``data_dir`` exists and was writable when the file was loaded.
    * If ``tls`` is set, both files existed, were readable and loaded together
      as a certificate chain and its private key.
    * Every listener address is a parsed :class:`HostPort`; no ``addr:port``
      (other than port 0) appears twice across all listeners, and
      implicit-TLS listeners exist only when ``[tls]`` does.
    * Integers are real integers (never booleans) within the documented range.
    * The tree is immutable; to reload, call :func:`load_settings` again.

Failure behaviour
    Anything wrong with the file -- missing, unreadable, not UTF-8, a TOML
    syntax error, an unknown key or section, a wrong type, a value out of
    range, a missing TLS file, an unwritable ``data_dir`` -- raises
    :class:`ConfigError`, a :class:`~pochta.errors.UserFacingError` whose
    ``str()`` is exactly one line naming the file, the key (``[section].key``,
    or the bare key at the top level) and the problem::

        /etc/pochta/pochta.toml: [listen].smtp: "127.0.0.1" is not addr:port (no port given)

    Checking stops at the first problem.  All checks that need only the text
    run before any that touch the filesystem, so a typo never creates a
    directory.  The only side effects are creating ``data_dir`` and a probe
    file inside it, removed at once.
"""

import dataclasses
import difflib
import ipaddress
import json
import os
import re
import ssl
import stat
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import NoReturn

from pochta.errors import UserFacingError

__all__ = [
    "IMPLICIT_TLS_LISTENERS",
    "LISTENER_KINDS",
    "AntispamSettings",
    "AuthSettings",
    "ConfigError",
    "DNSSettings",
    "DeliverySettings",
    "HostPort",
    "LimitsSettings",
    "ListenSettings",
    "MailAuthSettings",
    "Settings",
    "SpamPolicy",
    "TLSSettings",
    "find_settings_path",
    "load_settings",
    "parse_hostport",
    "parse_settings",
]

ENV_VAR = "POCHTA_CONFIG"
"""The environment variable naming the settings file when ``--config`` is not given."""

DEFAULT_FILE_NAME = "pochta.toml"
"""The settings file looked for in the working directory as a last resort."""


# --------------------------------------------------------------------------- errors

# Every character that str.splitlines() treats as a line break, plus the other
# C0/C1 control characters (a terminal must not interpret text from the file).
_UNPRINTABLE = [*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029]
_ONE_LINE = str.maketrans(
    {cp: chr(cp).encode("unicode_escape").decode("ascii") for cp in _UNPRINTABLE}
)


def _one_line(text: str) -> str:
    """``text`` with line breaks and control characters escaped (tab is kept)."""
    return text.translate(_ONE_LINE)


class ConfigError(UserFacingError):
    """The settings file is missing or wrong; ``str()`` is one line naming file and key.

    ``source`` and ``key`` are kept as attributes for callers that want them;
    ``key`` is already rendered (``"[listen].smtp"``, ``"hostname"``) or None.
    """

    source: Path | None
    key: str | None

    def __init__(self, message: str, *, source: Path | str | None = None, key: str | None = None):
        parts = [str(part) for part in (source, key) if part is not None]
        super().__init__(_one_line(": ".join([*parts, message])))
        self.source = Path(source) if source is not None else None
        self.key = key


# ------------------------------------------------------------------ host and port

_ADDRESS_CHARS_RE = re.compile(r"[A-Za-z0-9.:\[\]%_-]+", re.ASCII)
_PORT_RE = re.compile(r"[0-9]{1,5}", re.ASCII)
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", re.ASCII)
_ZONE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}", re.ASCII)


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to listen on or connect to.

    Values made by :func:`parse_hostport` are canonical: IP addresses in their
    :mod:`ipaddress` form, host names in lower case; so equal addresses
    compare equal and ``parse_hostport(str(hp)) == hp``.
    """

    host: str
    """IPv4 address, IPv6 address (without brackets, optionally ``%zone``) or a host name."""
    port: int
    """0..65535; 0 asks the operating system for any free port (tests, embedding)."""

    def __post_init__(self) -> None:
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError(f"port must be an int, not {type(self.port).__name__}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range 0-65535")

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _canonical_ip(text: str) -> str | None:
    """The canonical form of the IP address ``text``, or None if it is not one."""
    _, percent, zone = text.partition("%")
    if percent and not _ZONE_RE.fullmatch(zone):
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _is_host_name(text: str) -> bool:
    """True for a DNS host name: LDH labels of 1..63 characters, 1..253 in all (RFC 1123 §2.1).

    The last label may not be all digits, so that ``1.2.3.999`` is neither an
    address nor a name.  No trailing dot.
    """
    if not 1 <= len(text) <= 253:
        return False
    labels = text.split(".")
    if not all(_LABEL_RE.fullmatch(label) for label in labels):
        return False
    return not labels[-1].isdigit()


def _parse_port(text: str) -> int:
    if not text:
        raise ValueError('no port after ":"')
    if not _PORT_RE.fullmatch(text):
        raise ValueError(f"port {json.dumps(text[:20])} is not a number 0-65535")
    port = int(text)
    if port > 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return port


def _canonical_host(text: str) -> str:
    if not text:
        raise ValueError("no host before the port")
    ip = _canonical_ip(text)
    if ip is not None:
        return ip
    if _is_host_name(text):
        return text.lower()
    raise ValueError("the host is neither an IP address nor a valid host name")


def parse_hostport(text: str, default_port: int | None = None) -> HostPort:
    """Parse ``"host:port"``, ``"[ipv6]:port"``, or (with ``default_port``) a bare host.

    A bare IPv6 address (``"::1"``) is accepted only with ``default_port``;
    with a port it must be bracketed, as in URLs (RFC 3986 §3.2.2).  Raises
    :class:`ValueError` whose message is the reason, and nothing else.
    """
    if default_port is not None and (
        isinstance(default_port, bool)
        or not isinstance(default_port, int)
        or not 0 <= default_port <= 65535
    ):
        raise ValueError(f"default port {default_port!r} is out of range 0-65535")
    if not isinstance(text, str):
        raise ValueError(f"expected a string, not {type(text).__name__}")
    if not text:
        raise ValueError("empty")
    if not _ADDRESS_CHARS_RE.fullmatch(text):
        raise ValueError("contains a character not allowed in an address")

    def bare_host_port() -> int:
        if default_port is None:
            raise ValueError("no port given")
        return default_port

    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError('"[" without a closing "]"')
        ip = _canonical_ip(text[1:end])
        if ip is None or ":" not in ip:
            raise ValueError("only an IPv6 address may be written in brackets")
        rest = text[end + 1 :]
        if not rest:
            return HostPort(ip, bare_host_port())
        if not rest.startswith(":"):
            raise ValueError('expected ":port" after "]"')
        return HostPort(ip, _parse_port(rest[1:]))

    colons = text.count(":")
    if colons == 0:
        return HostPort(_canonical_host(text), bare_host_port())
    if colons == 1:
        host, _, port = text.partition(":")
        return HostPort(_canonical_host(host), _parse_port(port))
    ip = _canonical_ip(text)
    if ip is not None and default_port is not None:
        return HostPort(ip, default_port)
    raise ValueError('an IPv6 address with a port must be in brackets, e.g. "[::1]:25"')


# ------------------------------------------------------------------------- schema

LISTENER_KINDS = (
    "smtp",
    "submission",
    "submissions",
    "imap",
    "imaps",
    "pop3",
    "pop3s",
    "http",
    "https",
    "lmtp",
)
"""The keys of ``[listen]``, in the order the file documents them."""

IMPLICIT_TLS_LISTENERS = frozenset({"submissions", "imaps", "pop3s", "https"})
"""Listeners that start TLS before the first byte, and so need ``[tls]``."""


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """``[listen]``: where each server accepts connections.

    Each key is a list of ``"addr:port"`` strings (``"[::1]:25"`` for IPv6);
    an absent key or an empty list turns that server off.
    """

    smtp: tuple[HostPort, ...] = ()
    """MX inbound SMTP (RFC 5321); port 25 in production."""
    submission: tuple[HostPort, ...] = ()
    """Message submission with STARTTLS and AUTH required (RFC 6409); port 587."""
    submissions: tuple[HostPort, ...] = ()
    """Submission over implicit TLS (RFC 8314 §3.3); port 465.  Needs ``[tls]``."""
    imap: tuple[HostPort, ...] = ()
    """IMAP with STARTTLS (RFC 9051); port 143."""
    imaps: tuple[HostPort, ...] = ()
    """IMAP over implicit TLS (RFC 8314 §3.2); port 993.  Needs ``[tls]``."""
    pop3: tuple[HostPort, ...] = ()
    """POP3 with STLS (RFC 1939, RFC 2595); port 110."""
    pop3s: tuple[HostPort, ...] = ()
    """POP3 over implicit TLS (RFC 8314 §3.2); port 995.  Needs ``[tls]``."""
    http: tuple[HostPort, ...] = ()
    """HTTP: autoconfig, autodiscover, MTA-STS policy, admin; port 80."""
    https: tuple[HostPort, ...] = ()
    """The same over TLS; port 443.  Needs ``[tls]``."""
    lmtp: tuple[HostPort, ...] = ()
    """LMTP (RFC 2033) for local delivery from another MTA; keep it on loopback."""


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """``[tls]``: the server certificate used by STARTTLS and implicit-TLS listeners.

    Both keys are required when the section is present.
    """

    cert: Path
    """PEM certificate chain, leaf first.  Absolute; a relative path in the file is
    relative to the file's directory."""
    key: Path
    """PEM private key of ``cert``, unencrypted.  Absolute, resolved like ``cert``."""


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """``[auth]``: login policy."""

    allow_plaintext_without_tls: bool = False
    """Offer AUTH/LOGIN on connections without TLS.  Only for local tests: it sends
    passwords in the clear (RFC 8314 §4 asks that it be off)."""


@dataclass(frozen=True, slots=True)
class DNSSettings:
    """``[dns]``: how Pochta resolves names."""

    nameservers: tuple[HostPort, ...] = ()
    """Resolvers to ask, as IP addresses: ``"127.0.0.1:5353"``, ``"[::1]:53"`` or a bare
    address for port 53 (RFC 1035 §4.2).  Empty: the system's resolvers."""


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """``[delivery]``: outbound delivery to other domains' MX hosts."""

    smtp_port: int = 25
    """Port of the remote MX (RFC 5321 §4.5.4.2: 25); 1..65535.  Tests point it at a
    local fake."""
    retry_intervals: tuple[int, ...] = (60, 300, 900, 3600, 7200)
    """Seconds to wait after the 1st, 2nd, ... temporary failure; the last
    one repeats.  RFC 5321 §4.5.4.1 asks for at least 30 minutes between
    retries in general but lets the first ones come sooner."""
    max_age: int = 5 * 86400
    """Seconds after which a message still undelivered is bounced (RFC 5321
    §4.5.4.1: "at least 4-5 days")."""
    delay_notice: int = 4 * 3600
    """Seconds after which the sender is told once that delivery is delayed
    (an RFC 3464 "delayed" DSN); 0 turns delay notices off."""
    concurrency: int = 50
    """Deliveries in progress at once, overall."""
    per_domain: int = 20
    """Deliveries in progress at once to one destination domain (Postfix's
    default_destination_concurrency_limit is also 20)."""


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """``[limits]``: resource limits; each a positive integer."""

    message_size: int = 26_214_400
    """Largest message accepted, in bytes (25 MiB), announced as SIZE in EHLO
    (RFC 1870).  RFC 5321 §4.5.3.1.7 asks for at least 64 KiB."""
    recipients: int = 100
    """RCPT commands accepted per transaction; RFC 5321 §4.5.3.1.8 requires
    at least 100 to be accepted, so lower it only for tests."""
    smtp_connections: int = 200
    """Concurrent SMTP sessions per listener kind; more are refused with 421."""
    smtp_connections_per_ip: int = 20
    """Concurrent SMTP sessions from one client address."""
    messages_per_hour: int = 1000
    """Messages one user may submit per hour (a stolen password's blast radius)."""
    recipients_per_hour: int = 5000
    """Recipients one user may submit to per hour."""


@dataclass(frozen=True, slots=True)
class MailAuthSettings:
    """``[mailauth]``: sender authentication of mail we send and receive."""

    verify: bool = True
    """Check SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617)
    of mail arriving on the ``smtp`` listener and record the verdicts in an
    ``Authentication-Results`` header (RFC 8601).  LMTP mail comes from a
    trusted MTA and is not checked."""
    sign: bool = True
    """DKIM-sign mail submitted on ``submission``/``submissions`` with the sending
    domain's keys (``pochta domain add`` makes them)."""
    dmarc_reports: str = ""
    """Address for aggregate DMARC reports (``rua=``) in the record ``pochta dns
    records`` prints; empty means ``postmaster@<domain>``."""
    srs: bool = True
    """Rewrite the envelope sender of mail forwarded to another domain with
    SRS (``pochta.smtp.srs``), so SPF passes at the next hop and bounces
    come back through us; off keeps the original sender."""


@dataclass(frozen=True, slots=True)
class SpamPolicy:
    """Anti-spam knobs of one domain: ``[antispam]`` or ``[antispam.domains."DOMAIN"]``."""

    dnsbl: tuple[str, ...] = ()
    """DNS block lists asked about the connecting address (RFC 5782), e.g.
    ``["zen.spamhaus.org"]``.  None by default: lists have usage terms."""
    dnsbl_reject: bool = True
    """Refuse a listed client at once (554 5.7.1) instead of only scoring the hit."""
    greylisting: bool = False
    """Answer 451 4.7.1 to the first attempt of an unknown (client /24, sender,
    recipient) triplet; accept a retry after ``greylist_delay`` seconds."""
    greylist_delay: int = 300
    """Seconds a new triplet must wait before its retry is accepted."""
    greylist_expire: int = 35 * 86400
    """Seconds after which an allowed triplet (or client) not seen again is forgotten."""
    junk_score: float = 5.0
    """A message scoring at least this much is delivered to the Junk mailbox."""
    reject_score: float = 15.0
    """A message scoring at least this much is refused with 550 5.7.1."""
    bayes: bool = True
    """Score with each recipient's Bayesian filter, trained by moving mail into
    and out of Junk over IMAP."""


@dataclass(frozen=True, slots=True)
class AntispamSettings:
    """``[antispam]``: the default :class:`SpamPolicy` plus per-domain overrides."""

    default: SpamPolicy = SpamPolicy()
    """The policy of every domain without its own table."""
    domains: tuple[tuple[str, SpamPolicy], ...] = ()
    """``[antispam.domains."example.org"]`` tables: a key not given there takes
    the value of ``[antispam]``."""

    def for_domain(self, domain: str) -> SpamPolicy:
        """The policy of ``domain`` (lower-case A-label)."""
        domain = domain.lower().rstrip(".")
        for name, policy in self.domains:
            if name == domain:
                return policy
        return self.default


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """``[admin]``: the web admin at ``/admin/`` on the HTTP(S) listeners."""

    users: tuple[str, ...] = ()
    """Mail users who may sign in to the web admin with their mail password
    (lower-case addresses).  Empty (the default): the web admin is off."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole settings file, validated.  See the module docstring for invariants."""

    source: Path
    """Absolute path of the settings file this was read from."""
    hostname: str
    """Required.  This server's DNS host name, used in banners, HELO/EHLO and Received
    (RFC 5321 §4.1.1.1): letters, digits, hyphens and dots, 1..253 characters."""
    data_dir: Path
    """Where everything Pochta writes lives (mail, index, queue, keys).  Default
    ``"data"`` next to the file; created if missing; must be writable."""
    listen: ListenSettings
    """``[listen]``; see :class:`ListenSettings`."""
    tls: TLSSettings | None
    """``[tls]``, or None when the file has no ``[tls]`` section."""
    auth: AuthSettings
    """``[auth]``; see :class:`AuthSettings`."""
    dns: DNSSettings
    """``[dns]``; see :class:`DNSSettings`."""
    delivery: DeliverySettings
    """``[delivery]``; see :class:`DeliverySettings`."""
    limits: LimitsSettings
    """``[limits]``; see :class:`LimitsSettings`."""
    mailauth: MailAuthSettings = MailAuthSettings()
    """``[mailauth]``; see :class:`MailAuthSettings`."""
    antispam: AntispamSettings = AntispamSettings()
    """``[antispam]``; see :class:`AntispamSettings`."""
    admin: AdminSettings = AdminSettings()
    """``[admin]``; see :class:`AdminSettings`."""

    def tls_context(self) -> ssl.SSLContext:
        """A fresh server-side context: TLS 1.2 minimum, the certificate chain loaded.

        Raises :class:`ConfigError` if there is no ``[tls]`` section or the
        files no longer load.
        """
        if self.tls is None:
            raise ConfigError(
                "missing; TLS needs a [tls] section with cert and key",
                source=self.source,
                key="[tls]",
            )
        return _tls_context_or_error(self.source, self.tls)


_SECTIONS: dict[str, type] = {
    "listen": ListenSettings,
    "tls": TLSSettings,
    "auth": AuthSettings,
    "dns": DNSSettings,
    "delivery": DeliverySettings,
    "limits": LimitsSettings,
    "mailauth": MailAuthSettings,
    "antispam": AntispamSettings,
    "admin": AdminSettings,
}
_TOP_LEVEL_KEYS = ("hostname", "data_dir", *_SECTIONS)

_LIMIT_RANGES: dict[str, tuple[int, int]] = {
    "message_size": (1, 1 << 40),
    "recipients": (1, 1_000_000),
    "smtp_connections": (1, 1_000_000),
    "smtp_connections_per_ip": (1, 1_000_000),
    "messages_per_hour": (1, 100_000_000),
    "recipients_per_hour": (1, 100_000_000),
}


# ---------------------------------------------------------------------- reading


def _type_name(value: object) -> str:
    """The TOML name of ``value``'s type, with an article."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime):
        return "a date-time"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, time):
        return "a time"
    return f"a {type(value).__name__}"


def _quote(value: str, limit: int = 80) -> str:
    """``value`` as a double-quoted string for a message, shortened if long."""
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return json.dumps(value, ensure_ascii=False)


_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)


def _toml_key(name: str) -> str:
    """``name`` as TOML would write it: bare when it can be, quoted otherwise."""
    return name if _BARE_KEY_RE.fullmatch(name) else _quote(name)


class _Table:
    """One table of the file (the top level or a section), for reading keys with errors."""

    def __init__(self, source: Path, section: str | None, table: Mapping[str, object]):
        self.source = source
        self.section = section
        self.table = table

    def name(self, key: str) -> str:
        if self.section is None:
            return _toml_key(key)
        return f"[{_toml_key(self.section)}].{_toml_key(key)}"

    def fail(self, key: str | None, message: str) -> NoReturn:
        raise ConfigError(message, source=self.source, key=None if key is None else self.name(key))

    def check_keys(self, known: Iterable[str]) -> None:
        known = list(known)
        for key, value in self.table.items():
            if key in known:
                continue
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            if self.section is None and isinstance(value, dict):
                self.fail(None, f"unknown section [{_toml_key(key)}]{suggestion}")
            self.fail(None, f"unknown key {self.name(key)}{suggestion}")

    def section_table(self, key: str) -> "_Table | None":
        """The sub-table ``key`` of the top level, or None when absent."""
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(
                f"must be a table, not {_type_name(value)}",
                source=self.source,
                key=f"[{key}]",
            )
        return _Table(self.source, key, value)

    def string(self, key: str, default: str | None = None) -> str:
        value = self.table.get(key, default)
        if value is None:
            self.fail(key, "missing (required)")
        if not isinstance(value, str):
            self.fail(key, f"must be a string, not {_type_name(value)}")
        return value

    def path(self, key: str, default: str | None = None) -> Path:
        text = self.string(key, default)
        if not text:
            self.fail(key, "must not be empty")
        if "\0" in text:
            self.fail(key, "must not contain a NUL character")
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.source.parent / path

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self.fail(key, f"must be true or false, not {_type_name(value)}")
        return value

    def integer(self, key: str, default: int, low: int, high: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"must be an integer, not {_type_name(value)}")
        if not low <= value <= high:
            self.fail(key, f"{value} is out of range {low}..{high}")
        return value

    def number(self, key: str, default: float, low: float, high: float) -> float:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(key, f"must be a number, not {_type_name(value)}")
        if not low <= value <= high:
            self.fail(key, f"{value} is out of range {low}..{high}")
        return float(value)

    def strings(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list):
            self.fail(key, f"must be a list of strings, not {_type_name(value)}")
        for item in value:
            if not isinstance(item, str) or not item:
                self.fail(key, "must be a list of non-empty strings")
        return tuple(value)

    def sub_table(self, key: str) -> "_Table | None":
        """The table ``key`` inside this one, or None when absent."""
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.fail(key, f"must be a table, not {_type_name(value)}")
        return _Table(self.source, f"{self.section}.{key}" if self.section else key, value)

    def integers(self, key: str, default: tuple[int, ...], low: int, high: int) -> tuple[int, ...]:
        value = self.table.get(key, list(default))
        if not isinstance(value, list) or not value:
            self.fail(key, f"must be a non-empty list of integers, not {_type_name(value)}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                self.fail(key, f"must be a list of integers; one item is {_type_name(item)}")
            if not low <= item <= high:
                self.fail(key, f"{item} is out of range {low}..{high}")
        return tuple(value)

    def hostports(
        self, key: str, *, default_port: int | None, ip_only: bool = False
    ) -> tuple[HostPort, ...]:
        expected = 'must be a list of "addr:port" strings'
        value = self.table.get(key, [])
        if not isinstance(value, list):
            self.fail(key, f"{expected}, not {_type_name(value)}")
        result: list[HostPort] = []
        for item in value:
            if not isinstance(item, str):
                self.fail(key, f"{expected}; one item is {_type_name(item)}")
            try:
                hostport = parse_hostport(item, default_port)
            except ValueError as exc:
                self.fail(key, f"{_quote(item)} is not addr:port ({exc})")
            if ip_only and _canonical_ip(hostport.host) is None:
                self.fail(key, f"{_quote(item)} is not an IP address (a name server needs one)")
            if ip_only and hostport.port == 0:
                self.fail(key, f"{_quote(item)}: port 0 is not a name server port")
            result.append(hostport)
        return tuple(result)


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _parse_listen(top: _Table) -> ListenSettings:
    table = top.section_table("listen")
    if table is None:
        return ListenSettings()
    table.check_keys(LISTENER_KINDS)
    values = {kind: table.hostports(kind, default_port=None) for kind in LISTENER_KINDS}
    seen: dict[HostPort, str] = {}
    for kind, addresses in values.items():
        for address in addresses:
            if address.port == 0:
                continue
            if address in seen:
                other = seen[address]
                where = "appears twice" if other == kind else f"is also in [listen].{other}"
                table.fail(kind, f"{address} {where}")
            seen[address] = kind
    return ListenSettings(**values)


def _parse_tls(top: _Table) -> TLSSettings | None:
    table = top.section_table("tls")
    if table is None:
        return None
    table.check_keys(_field_names(TLSSettings))
    return TLSSettings(cert=table.path("cert"), key=table.path("key"))


def _parse_dns(top: _Table) -> DNSSettings:
    table = top.section_table("dns")
    if table is None:
        return DNSSettings()
    table.check_keys(_field_names(DNSSettings))
    return DNSSettings(nameservers=table.hostports("nameservers", default_port=53, ip_only=True))


def _parse_auth(top: _Table) -> AuthSettings:
    table = top.section_table("auth")
    if table is None:
        return AuthSettings()
    table.check_keys(_field_names(AuthSettings))
    default = AuthSettings().allow_plaintext_without_tls
    return AuthSettings(
        allow_plaintext_without_tls=table.boolean("allow_plaintext_without_tls", default)
    )


def _parse_delivery(top: _Table) -> DeliverySettings:
    table = top.section_table("delivery")
    if table is None:
        return DeliverySettings()
    table.check_keys(_field_names(DeliverySettings))
    defaults = DeliverySettings()
    day = 86400
    return DeliverySettings(
        smtp_port=table.integer("smtp_port", defaults.smtp_port, 1, 65535),
        retry_intervals=table.integers("retry_intervals", defaults.retry_intervals, 1, 30 * day),
        max_age=table.integer("max_age", defaults.max_age, 1, 60 * day),
        delay_notice=table.integer("delay_notice", defaults.delay_notice, 0, 60 * day),
        concurrency=table.integer("concurrency", defaults.concurrency, 1, 10_000),
        per_domain=table.integer("per_domain", defaults.per_domain, 1, 1_000),
    )


def _parse_limits(top: _Table) -> LimitsSettings:
    table = top.section_table("limits")
    if table is None:
        return LimitsSettings()
    names = _field_names(LimitsSettings)
    table.check_keys(names)
    defaults = LimitsSettings()
    values = {
        name: table.integer(name, getattr(defaults, name), *_LIMIT_RANGES[name]) for name in names
    }
    return LimitsSettings(**values)


def _parse_mailauth(top: _Table) -> MailAuthSettings:
    table = top.section_table("mailauth")
    if table is None:
        return MailAuthSettings()
    table.check_keys(_field_names(MailAuthSettings))
    defaults = MailAuthSettings()
    reports = table.string("dmarc_reports", defaults.dmarc_reports)
    if reports and (reports.count("@") != 1 or any(c in reports for c in ' ,;!<>"')):
        table.fail("dmarc_reports", f"{_quote(reports)} is not a mail address")
    return MailAuthSettings(
        verify=table.boolean("verify", defaults.verify),
        sign=table.boolean("sign", defaults.sign),
        dmarc_reports=reports,
        srs=table.boolean("srs", defaults.srs),
    )


def _parse_admin(top: _Table) -> AdminSettings:
    table = top.section_table("admin")
    if table is None:
        return AdminSettings()
    table.check_keys(_field_names(AdminSettings))
    users = table.strings("users", ())
    for user in users:
        local, at, domain = user.rpartition("@")
        if not at or not local or not _is_host_name(domain) or any(c.isspace() for c in user):
            table.fail("users", f"{_quote(user)} is not a mail address")
    return AdminSettings(users=tuple(dict.fromkeys(u.lower() for u in users)))


def _parse_spam_policy(table: _Table, base: SpamPolicy) -> SpamPolicy:
    day = 86400
    for zone in table.strings("dnsbl", base.dnsbl):
        if not _is_host_name(zone):
            table.fail("dnsbl", f"{_quote(zone)} is not a DNS zone name")
    policy = SpamPolicy(
        dnsbl=tuple(z.lower().rstrip(".") for z in table.strings("dnsbl", base.dnsbl)),
        dnsbl_reject=table.boolean("dnsbl_reject", base.dnsbl_reject),
        greylisting=table.boolean("greylisting", base.greylisting),
        greylist_delay=table.integer("greylist_delay", base.greylist_delay, 1, day),
        greylist_expire=table.integer("greylist_expire", base.greylist_expire, 3600, 365 * day),
        junk_score=table.number("junk_score", base.junk_score, -1000.0, 1000.0),
        reject_score=table.number("reject_score", base.reject_score, -1000.0, 1000.0),
        bayes=table.boolean("bayes", base.bayes),
    )
    if policy.reject_score < policy.junk_score:
        table.fail("reject_score", "must not be below junk_score")
    return policy


def _parse_antispam(top: _Table) -> AntispamSettings:
    table = top.section_table("antispam")
    if table is None:
        return AntispamSettings()
    keys = [*_field_names(SpamPolicy), "domains"]
    table.check_keys(keys)
    default = _parse_spam_policy(table, SpamPolicy())
    domains: list[tuple[str, SpamPolicy]] = []
    per_domain = table.sub_table("domains")
    if per_domain is not None:
        for name in per_domain.table:
            sub = per_domain.sub_table(name)
            assert sub is not None
            sub.check_keys(_field_names(SpamPolicy))
            domain = name.lower().rstrip(".")
            if not _is_host_name(domain):
                per_domain.fail(name, f"{_quote(name)} is not a domain name")
            domains.append((domain, _parse_spam_policy(sub, default)))
    return AntispamSettings(default=default, domains=tuple(domains))


def _parse_hostname(top: _Table) -> str:
    hostname = top.string("hostname")
    if _canonical_ip(hostname) is not None:
        top.fail("hostname", f"{_quote(hostname)} is an IP address; a host name is needed here")
    if not _is_host_name(hostname):
        top.fail(
            "hostname",
            f"{_quote(hostname)} is not a valid host name "
            "(letters, digits, hyphens and dots; labels of 1-63 characters)",
        )
    return hostname


# ------------------------------------------------------------------- filesystem


class _EncryptedKeyError(Exception):
    """The private key asked for a passphrase."""


def _no_passphrase() -> NoReturn:
    raise _EncryptedKeyError


def _tls_context(tls: TLSSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key, password=_no_passphrase)
    return context


def _tls_context_or_error(source: Path, tls: TLSSettings) -> ssl.SSLContext:
    try:
        return _tls_context(tls)
    except _EncryptedKeyError:
        raise ConfigError(
            f"{tls.key} is encrypted with a passphrase; Pochta needs an unencrypted key",
            source=source,
            key="[tls].key",
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{tls.cert} and {tls.key} do not load as a certificate chain and its key: {exc}",
            source=source,
            key="[tls].cert",
        ) from None


def _check_readable_file(source: Path, key: str, path: Path) -> None:
    def fail(problem: str) -> NoReturn:
        raise ConfigError(f"{path}: {problem}", source=source, key=key)

    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        fail("no such file")
    except OSError as exc:
        fail(f"cannot be read: {exc.strerror or exc}")
    if stat.S_ISDIR(mode):
        fail("is a directory, not a file")
    if not stat.S_ISREG(mode):
        fail("is not a regular file")
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        fail("is not readable (permission denied)")
    except OSError as exc:
        fail(f"cannot be read: {exc.strerror or exc}")


def _check_tls_files(source: Path, tls: TLSSettings) -> None:
    _check_readable_file(source, "[tls].cert", tls.cert)
    _check_readable_file(source, "[tls].key", tls.key)
    _tls_context_or_error(source, tls)


def _prepare_data_dir(source: Path, path: Path) -> None:
    """Create ``path`` if missing and prove it writable with a probe file."""

    def fail(problem: str) -> NoReturn:
        raise ConfigError(f"{path} {problem}", source=source, key="data_dir")

    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        fail("is not a directory")
    except NotADirectoryError:
        fail("cannot be created: part of it is not a directory")
    except PermissionError:
        fail("cannot be created (permission denied)")
    except OSError as exc:
        fail(f"cannot be created: {exc.strerror or exc}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".pochta-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except PermissionError:
        fail("is not writable")
    except OSError as exc:
        fail(f"is not writable: {exc.strerror or exc}")


# ------------------------------------------------------------------------ public


def parse_settings(text: str, source: Path) -> Settings:
    """Validate the TOML ``text`` of the file at ``source`` and return its settings.

    Relative paths resolve against ``source``'s directory.  Creates
    ``data_dir`` if missing.  Raises :class:`ConfigError` on any problem.
    """
    source = Path(source).absolute()
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    except RecursionError:
        raise ConfigError("invalid TOML: nested too deeply", source=source) from None

    top = _Table(source, None, document)
    top.check_keys(_TOP_LEVEL_KEYS)
    hostname = _parse_hostname(top)
    data_dir = top.path("data_dir", "data")
    listen = _parse_listen(top)
    tls = _parse_tls(top)
    if tls is None:
        for kind in LISTENER_KINDS:
            if kind in IMPLICIT_TLS_LISTENERS and getattr(listen, kind):
                raise ConfigError(
                    "an implicit-TLS listener needs [tls] with cert and key",
                    source=source,
                    key=f"[listen].{kind}",
                )
    settings = Settings(
        source=source,
        hostname=hostname,
        data_dir=data_dir,
        listen=listen,
        tls=tls,
        auth=_parse_auth(top),
        dns=_parse_dns(top),
        delivery=_parse_delivery(top),
        limits=_parse_limits(top),
        mailauth=_parse_mailauth(top),
        antispam=_parse_antispam(top),
        admin=_parse_admin(top),
    )
    # Everything above looked only at the text; now the filesystem.
    if tls is not None:
        _check_tls_files(source, tls)
    _prepare_data_dir(source, data_dir)
    return settings


def find_settings_path(
    path: Path | str | None = None, environ: Mapping[str, str] = os.environ
) -> Path:
    """The settings file to use: ``path`` (``--config``), else ``$POCHTA_CONFIG``,
    else ``./pochta.toml``; absolute, with ``~`` expanded.  An empty value counts
    as not given."""
    chosen: Path | str = path or environ.get(ENV_VAR) or DEFAULT_FILE_NAME
    return Path(chosen).expanduser().absolute()


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] = os.environ
) -> Settings:
    """Find (see :func:`find_settings_path`), read and validate the settings file.

    Raises :class:`ConfigError` on any problem, including a missing file.
    """
    source = find_settings_path(path, environ)

    def fail(problem: str) -> NoReturn:
        raise ConfigError(problem, source=source)

    try:
        data = source.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        hint = "" if path or environ.get(ENV_VAR) else f"; pass --config FILE or set ${ENV_VAR}"
        fail(f"no such file{hint}")
    except IsADirectoryError:
        fail("is a directory, not a settings file")
    except PermissionError:
        fail("is not readable (permission denied)")
    except OSError as exc:
        fail(f"cannot be read: {exc.strerror or exc}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        fail(f"is not UTF-8 text (bad byte at offset {exc.start}); TOML files must be UTF-8")
    return parse_settings(text, source)
