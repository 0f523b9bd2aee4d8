"""Per-user Bayesian spam filter, trained by moving mail into and out of Junk.

Design note
-----------
**Tokens** (:func:`tokens`). A message becomes a *set* of strings (presence,
not frequency, is what is counted):

* from the header: the words of Subject (``subject:word``), the display-name
  words, address and domain of From (``from:...``), the domains of Reply-To
  and Message-ID, the words of X-Mailer / User-Agent. RFC 2047 encoded-words
  are decoded. Trace and result fields (Received, Authentication-Results,
  our X-Spam-*) are ignored on purpose: we add them ourselves after the
  SMTP DATA phase, so a message scored at DATA and the same message trained
  from the mailbox must give the same tokens;
* the MIME structure: each part's type (``mime:application/zip``), the
  charsets of text parts, the extensions of attached file names;
* the text of text/plain and text/html parts (tags, comments, scripts and
  styles stripped from HTML; entities decoded), after undoing base64 or
  quoted-printable (RFC 2045 §6) and the declared charset: lower-cased words
  of 3 to 40 characters that are not all digits;
* the host names of URLs (``url:www.example.com``, ``url:example.com``),
  including those only found in HTML attributes.

Work is bounded: the MIME structure of at most :data:`MAX_MESSAGE` octets
is parsed (a linear scan, part count capped by :mod:`pochta.mime`), then only
the first :data:`MAX_PART` octets of each text part and :data:`MAX_TEXT`
characters of text in all are decoded, and at most :data:`MAX_TOKENS`
tokens kept. Nothing
raises on any input: the MIME parser is total and every decoder here falls
back to something readable.

**Scoring** (Robinson's method as used by SpamBayes). For each token with
``s`` spam and ``h`` ham occurrences out of ``S`` spam and ``H`` ham
messages, ``p = (s/S) / (s/S + h/H)``; Robinson's smoothing pulls rare
tokens towards 0.5: ``f = (STRENGTH * 0.5 + n * p) / (STRENGTH + n)`` with
``n = s + h``. Only the :data:`MAX_CLUES` tokens farthest from 0.5 (and at
least :data:`MIN_DISTANCE` away) count. Fisher's method combines them: with
``H' = C⁻¹(-2 Σ ln f, 2k)`` and ``S' = C⁻¹(-2 Σ ln(1 - f), 2k)`` (the
chi-square survival function with 2k degrees of freedom),
``P = (1 + H' - S') / 2``: near 1 for spam, near 0 for ham, 0.5 when the
evidence is absent or contradictory.

**Training.** Every trained message is remembered per user by its SHA-256
with its class, so training the same message twice does nothing, and
training it as the other class first undoes the old training (a message
moved back out of Junk is untrained as spam and trained as ham).
:meth:`Bayes.probability` is None until a user has trained at least
``min_spam`` spam, ``min_ham`` ham and ``min_total`` messages (defaults 1, 1
and 5: a user's first few Junk moves start to count at once; with fewer
examples of either class the ratios above are undefined).

**Storage.** One SQLite file for all users (WAL), used only from one worker
thread (see :class:`~pochta.antispam.greylist.SQLiteThread`), so the event
loop never waits for the disk or the tokenizer.
"""

from __future__ import annotations

import binascii
import codecs
import functools
import hashlib
import html
import logging
import math
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from pochta.antispam.greylist import SQLiteThread, transaction
from pochta.mime import Part, analyze, header_fields, parse_address_list, unfold

__all__ = [
    "MAX_CLUES",
    "MAX_MESSAGE",
    "MAX_TEXT",
    "MAX_TOKENS",
    "Bayes",
    "JunkTrainer",
    "combine",
    "decode_header",
    "tokens",
]

log = logging.getLogger("pochta.antispam.bayes")

#: Octets of a message analysed; the rest is ignored. The structure parse is
#: linear and fast (tens of milliseconds for this much), and the text read
#: is bounded separately, so this only guards against absurd sizes while
#: still finding a text part that follows a large attachment.
MAX_MESSAGE = 32 << 20
#: Encoded octets read from one part.
MAX_PART = 256 * 1024
#: Decoded characters of text tokenized per message.
MAX_TEXT = 100_000
#: Tokens kept per message.
MAX_TOKENS = 5000
#: Characters of one header field value looked at.
MAX_FIELD = 2000

#: Robinson's s: how strongly the 0.5 prior holds a rarely seen token.
STRENGTH = 0.45
#: Tokens whose f is closer than this to 0.5 are not evidence.
MIN_DISTANCE = 0.1
#: At most this many tokens, the most extreme, are combined.
MAX_CLUES = 150
#: Messages trained per transaction in :meth:`Bayes.train_messages`.
BATCH = 50

_WORD = re.compile(r"[\w$'’-]+")
_WORD_EDGES = "'’-"
_URL = re.compile(r"(?:https?|ftp)://([^\s/?#<>\"'\\]{1,300})|\bwww\.([a-z0-9.-]{1,253})", re.I)
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*")
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
# HTML pieces; a tag stops at the next "<" so an unterminated one costs
# only the distance to that "<" (linear in total).
_HTML = re.compile(r"<!--|<(/?)([a-zA-Z][a-zA-Z0-9]{0,20})\b[^<>]*>?|[^<]+|<")
_HTML_TAGS_OF_NOTE = frozenset({"a", "img", "form", "iframe", "script", "table", "font", "map"})
_ENCODED_WORD = re.compile(rb"=\?([^?\s]{1,64})\?([bBqQ])\?([^?\s]*)\?=")
_BLANKS = re.compile(rb"[ \t\r\n]*")
_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
# Codecs a message may name that are not charsets or are costly on hostile input.
_REFUSED_CODECS = frozenset({"punycode", "idna", "unicode_escape", "raw_unicode_escape", "mbcs"})

_HEADER_WORDS = {b"subject": "subject", b"x-mailer": "x-mailer", b"user-agent": "x-mailer"}


# --- decoding ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _codec(charset: str) -> str:
    """The Python codec of a MIME charset name; UTF-8 for anything unusable."""
    try:
        info = codecs.lookup(charset.strip().strip('"'))
    except (LookupError, ValueError, TypeError):
        return "utf-8"
    # Only text codecs: bytes.decode refuses the others, but say so here.
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return "utf-8"
    # 8-bit text labelled us-ascii (the RFC 2045 §5.2 default) is mostly UTF-8.
    return "utf-8" if info.name == "ascii" else info.name


def _decode(raw: bytes, charset: str | None) -> str:
    codec = _codec(charset[:64]) if charset else "utf-8"
    try:
        return raw.decode(codec, "replace")
    except Exception:  # a codec that fails even with "replace"
        return raw.decode("utf-8", "replace")


def _base64(raw: bytes) -> bytes:
    """Lenient base64 (RFC 2045 §6.8): junk ignored, missing padding tolerated."""
    data = _BASE64_JUNK.sub(b"", raw)
    rest = len(data) % 4
    if rest == 1:
        data = data[:-1]
    elif rest:
        data += b"=" * (4 - rest)
    try:
        return binascii.a2b_base64(data)
    except binascii.Error:
        return b""


def _quoted_printable(raw: bytes, *, header: bool = False) -> bytes:
    try:
        return binascii.a2b_qp(raw, header=header)
    except (binascii.Error, ValueError):
        return raw


def decode_header(raw: bytes) -> str:
    """A raw field value as text: unfolded, RFC 2047 encoded-words decoded.

    Blanks between adjacent encoded-words are dropped and adjacent words in
    one charset decoded together (RFC 2047 §6.2), so a multi-byte character
    split over two words survives. Other octets are read as UTF-8 (RFC 6532).
    """
    raw = unfold(raw[: MAX_FIELD * 4])
    out: list[str] = []
    pending: list[bytes] = []
    charset = ""
    pos = 0
    for m in _ENCODED_WORD.finditer(raw):
        between = raw[pos : m.start()]
        if not (pending and _BLANKS.fullmatch(between)):
            out.append(_decode(b"".join(pending), charset))
            pending.clear()
            out.append(between.decode("utf-8", "replace"))
        word_charset = m[1].decode("ascii", "replace").partition("*")[0]  # RFC 2231 §5 language
        if word_charset.lower() != charset.lower():
            out.append(_decode(b"".join(pending), charset))
            pending.clear()
            charset = word_charset
        if m[2] in b"bB":
            pending.append(_base64(m[3]))
        else:
            pending.append(_quoted_printable(m[3], header=True))
        pos = m.end()
    out.append(_decode(b"".join(pending), charset))
    out.append(raw[pos:].decode("utf-8", "replace"))
    return "".join(out)[:MAX_FIELD]


def _part_text(data: bytes, part: Part) -> str:
    """The decoded text of a leaf part, from at most MAX_PART encoded octets."""
    raw = data[part.body_start : min(part.end, part.body_start + MAX_PART)]
    if part.encoding == "BASE64":
        raw = _base64(raw)
    elif part.encoding == "QUOTED-PRINTABLE":
        raw = _quoted_printable(raw)
    return _decode(raw, part.param("charset"))


def _html_text(markup: str, found: set[str]) -> str:
    """The visible text of HTML; names of notable tags go into ``found``."""
    out: list[str] = []
    skip_until = ""  # "script" or "style" while inside one
    pos = 0
    end = len(markup)
    while pos < end:
        m = _HTML.match(markup, pos)
        if m is None:  # cannot happen: "<" and "[^<]+" cover every position
            break
        piece = m.group(0)
        pos = m.end()
        if piece == "<!--":
            close = markup.find("-->", pos)
            pos = end if close < 0 else close + 3
            continue
        name = (m.group(2) or "").lower()
        if name:
            if name in _HTML_TAGS_OF_NOTE:
                found.add(name)
            if skip_until:
                if m.group(1) and name == skip_until:
                    skip_until = ""
            elif not m.group(1) and name in ("script", "style"):
                skip_until = name
            out.append(" ")
        elif not skip_until:
            out.append(piece)
    return html.unescape("".join(out))


# --- tokens --------------------------------------------------------------------------------


class _Tokens:
    """An insertion-ordered token set with a size limit."""

    def __init__(self) -> None:
        self.items: dict[str, None] = {}

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_TOKENS

    def add(self, token: str) -> None:
        if len(self.items) < MAX_TOKENS:
            self.items[token] = None

    def words(self, text: str, prefix: str = "") -> None:
        for m in _WORD.finditer(text):
            if self.full:
                return
            word = m.group(0).strip(_WORD_EDGES).lower()
            if 3 <= len(word) <= 40 and not word.isdigit():
                self.add(prefix + word)

    def host(self, host: str, prefix: str) -> None:
        """A host name and its parent domains of two labels or more."""
        host = host.lower().rstrip(".")
        if _IPV4.fullmatch(host) or host.startswith("["):
            # URLs to bare addresses are a classic spam sign; the address
            # itself changes too often to be worth a token.
            self.add(prefix + "ip-address")
            return
        if not _HOST.fullmatch(host) or len(host) > 253:
            return
        labels = host.split(".")
        for i in range(max(0, len(labels) - 5), max(1, len(labels) - 1)):
            self.add(prefix + ".".join(labels[i:]))

    def urls(self, text: str) -> None:
        for m in _URL.finditer(text):
            if self.full:
                return
            if m.group(1) is not None:
                authority = m.group(1).rpartition("@")[2]  # user info is a disguise
                if authority.startswith("["):
                    host = authority
                else:
                    # "(see http://example.com)": punctuation after the host is prose.
                    host = authority.partition(":")[0].rstrip(").,;!*'")
            else:
                host = "www." + m.group(2)
            self.host(host, "url:")


def _address_tokens(out: _Tokens, prefix: str, raw: bytes, *, words: bool) -> None:
    # Parse first, then decode the display names: an encoded-word may hide
    # commas or quotes that are not address syntax (RFC 2047 §5).
    value = unfold(raw[: MAX_FIELD * 4]).decode("utf-8", "surrogateescape")
    for address in parse_address_list(value)[:10]:
        if words and address.name:
            out.words(decode_header(address.name.encode("utf-8", "surrogateescape")), prefix)
        if address.host:
            out.host(address.host, prefix)
            if address.mailbox and words:
                out.add(f"{prefix}{address.mailbox}@{address.host}".lower()[:80])


def _header_tokens(out: _Tokens, data: bytes, end: int) -> None:
    seen: set[bytes] = set()
    for raw_name, raw_value in header_fields(data, 0, end):
        name = raw_name.lower()
        if name in seen:  # the first of a repeated field, as MUAs show it
            continue
        seen.add(name)
        if name in _HEADER_WORDS:
            out.words(decode_header(raw_value), _HEADER_WORDS[name] + ":")
        elif name == b"from":
            _address_tokens(out, "from:", raw_value, words=True)
        elif name == b"reply-to":
            _address_tokens(out, "reply-to:", raw_value, words=False)
        elif name == b"message-id":
            host = unfold(raw_value).decode("utf-8", "replace").strip(" <>").rpartition("@")[2]
            out.host(host, "message-id:")


def _body_tokens(out: _Tokens, data: bytes, root: Part) -> None:
    budget = MAX_TEXT
    stack = [root]
    while stack and budget > 0 and not out.full:
        part = stack.pop()
        if part.parts:
            stack.extend(reversed(part.parts))
            out.add(f"mime:{part.type}/{part.subtype}")
            continue
        if part.message is not None:
            stack.append(part.message)
            continue
        out.add(f"mime:{part.type}/{part.subtype}")
        filename = dict(part.disposition_params).get("filename") or part.param("name")
        if filename and "." in filename:
            extension = filename.rpartition(".")[2].strip(" \"'").lower()
            if 1 <= len(extension) <= 10:
                out.add("filename:" + extension)
        if part.type != "text" or (part.disposition or "").lower() == "attachment":
            continue
        charset = part.param("charset")
        if charset:
            out.add("charset:" + charset.lower()[:40])
        content = _part_text(data, part)[:budget]
        budget -= len(content)
        out.urls(content)
        if part.subtype == "html":
            tags: set[str] = set()
            content = _html_text(content, tags)
            for tag in sorted(tags):
                out.add("html:" + tag)
        out.words(content)


def _tokens(message: bytes) -> set[str]:
    data = message[:MAX_MESSAGE]
    root = analyze(data).body
    out = _Tokens()
    _header_tokens(out, data, root.body_start)
    _body_tokens(out, data, root)
    return set(out.items)


def tokens(message: bytes) -> set[str]:
    """The tokens of a message (see the module note); never raises."""
    try:
        return _tokens(message)
    except Exception:  # a tokenizer bug must cost a spam score, never a message
        log.exception("tokenizer failed on a %d-octet message", len(message))
        return set()


# --- combining -----------------------------------------------------------------------------


def _chi2_survival(chi2: float, freedom: int) -> float:
    """P(X >= chi2) for X chi-square distributed with an even ``freedom``.

    For 2k degrees of freedom the survival function is the Poisson sum
    exp(-m) Σ_{i<k} m^i / i! with m = chi2 / 2; summed in log space so
    neither exp(-m) nor m^i can underflow or overflow.
    """
    m = chi2 / 2.0
    if m <= 0.0:
        return 1.0
    log_m = math.log(m)
    logs = [i * log_m - math.lgamma(i + 1) - m for i in range(freedom // 2)]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(x - top) for x in logs))


def combine(probabilities: Sequence[float]) -> float:
    """Fisher/Robinson combination of token spam probabilities into one (0..1)."""
    if not probabilities:
        return 0.5
    clamped = [min(max(p, 1e-9), 1.0 - 1e-9) for p in probabilities]
    freedom = 2 * len(clamped)
    # H' is high when the tokens look hammy, S' when they look spammy.
    ham = _chi2_survival(-2.0 * math.fsum(math.log(p) for p in clamped), freedom)
    spam = _chi2_survival(-2.0 * math.fsum(math.log(1.0 - p) for p in clamped), freedom)
    return (1.0 + ham - spam) / 2.0


def _token_probability(spam: int, ham: int, total_spam: int, total_ham: int) -> float:
    spam_ratio = spam / total_spam
    ham_ratio = ham / total_ham
    p = spam_ratio / (spam_ratio + ham_ratio) if spam_ratio + ham_ratio else 0.5
    n = spam + ham
    return (STRENGTH * 0.5 + n * p) / (STRENGTH + n)


def _clues(values: Iterable[float]) -> list[float]:
    interesting = [f for f in values if abs(f - 0.5) >= MIN_DISTANCE]
    interesting.sort(key=lambda f: abs(f - 0.5), reverse=True)
    return interesting[:MAX_CLUES]


# --- storage -------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id    INTEGER PRIMARY KEY,
    name  TEXT NOT NULL UNIQUE,
    nspam INTEGER NOT NULL DEFAULT 0,
    nham  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tokens (
    user_id INTEGER NOT NULL,
    token   TEXT NOT NULL,
    spam    INTEGER NOT NULL DEFAULT 0,
    ham     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, token)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS trained (
    user_id INTEGER NOT NULL,
    digest  BLOB NOT NULL,
    spam    INTEGER NOT NULL,
    PRIMARY KEY (user_id, digest)
) WITHOUT ROWID;
"""

#: Host parameters per IN (...) query; SQLite's limit is far higher.
_CHUNK = 500


def _setup(conn: sqlite3.Connection) -> None:
    conn.executescript(_SCHEMA)


def _user_id(conn: sqlite3.Connection, user: str, *, create: bool) -> int | None:
    row = conn.execute("SELECT id FROM users WHERE name = ?", (user,)).fetchone()
    if row is not None:
        return int(row[0])
    if not create:
        return None
    return int(conn.execute("INSERT INTO users (name) VALUES (?)", (user,)).lastrowid or 0)


def _learn(conn: sqlite3.Connection, uid: int, toks: set[str], spam: bool) -> None:
    column = "spam" if spam else "ham"
    conn.executemany(
        f"INSERT INTO tokens (user_id, token, {column}) VALUES (?, ?, 1)"
        f" ON CONFLICT (user_id, token) DO UPDATE SET {column} = {column} + 1",
        ((uid, t) for t in toks),
    )
    total = "nspam" if spam else "nham"
    conn.execute(f"UPDATE users SET {total} = {total} + 1 WHERE id = ?", (uid,))


def _unlearn(conn: sqlite3.Connection, uid: int, toks: set[str], spam: bool) -> None:
    column = "spam" if spam else "ham"
    # MAX(..., 0): counts never go negative, even if the table was edited.
    conn.executemany(
        f"UPDATE tokens SET {column} = MAX({column} - 1, 0) WHERE user_id = ? AND token = ?",
        ((uid, t) for t in toks),
    )
    conn.executemany(
        "DELETE FROM tokens WHERE user_id = ? AND token = ? AND spam = 0 AND ham = 0",
        ((uid, t) for t in toks),
    )
    total = "nspam" if spam else "nham"
    conn.execute(f"UPDATE users SET {total} = MAX({total} - 1, 0) WHERE id = ?", (uid,))


def _digest(message: bytes) -> bytes:
    return hashlib.sha256(message).digest()


class Bayes:
    """The per-user token database; see the module note.

    ``path`` is the SQLite file (the server uses
    ``<data_dir>/antispam/bayes.sqlite``). Safe with concurrent tasks: all
    work is serialized on the database's worker thread.
    """

    def __init__(
        self, path: Path, *, min_spam: int = 1, min_ham: int = 1, min_total: int = 5
    ) -> None:
        self.path = path
        self.min_spam = max(1, min_spam)
        self.min_ham = max(1, min_ham)
        self.min_total = min_total
        self._db = SQLiteThread(path, _setup, name="pochta-bayes")

    async def train(self, user: str, message: bytes, *, spam: bool) -> None:
        """Learn ``message`` as spam or ham for ``user`` (idempotent; see the module note)."""
        await self.train_messages(user, [message], spam=spam)

    async def train_messages(self, user: str, messages: Sequence[bytes], *, spam: bool) -> None:
        """:meth:`train` for several messages, :data:`BATCH` per transaction."""
        for start in range(0, len(messages), BATCH):
            batch = list(messages[start : start + BATCH])
            await self._db.run(functools.partial(self._train, user=user, messages=batch, spam=spam))

    async def untrain(self, user: str, message: bytes, *, spam: bool) -> None:
        """Forget ``message`` if it was trained as that class; otherwise do nothing."""
        await self._db.run(lambda conn: self._untrain(conn, user, message, spam))

    async def probability(self, user: str, message: bytes) -> float | None:
        """The spam probability of ``message`` for ``user`` (0..1).

        None while the user has trained too little (see the module note), or
        when the database cannot be read (logged; scoring goes on without it).
        """
        try:
            return await self._db.run(lambda conn: self._probability(conn, user, message))
        except (sqlite3.Error, OSError) as exc:
            log.error("bayes %s unusable, scoring without it: %s", self.path, exc)
            return None

    async def counts(self, user: str) -> tuple[int, int]:
        """(spam, ham) messages trained by ``user``."""
        return await self._db.run(lambda conn: _counts(conn, user))

    async def close(self) -> None:
        """Wait for running work and close the file; the object is unusable after."""
        await self._db.close()

    # The rest runs on the worker thread.

    @staticmethod
    def _train(conn: sqlite3.Connection, user: str, messages: Sequence[bytes], spam: bool) -> None:
        # Tokenize before the write transaction, so the database is not
        # locked meanwhile (another process may share the file), and skip
        # the messages already trained this way.
        work = [(_digest(m), m) for m in messages]
        uid = _user_id(conn, user, create=False)
        before: dict[bytes, bool] = {}
        if uid is not None:
            for digest, _ in work:
                row = conn.execute(
                    "SELECT spam FROM trained WHERE user_id = ? AND digest = ?", (uid, digest)
                ).fetchone()
                if row is not None:
                    before[digest] = bool(row[0])
        toks = {d: tokens(m) for d, m in work if before.get(d) != spam}
        if not toks:
            return
        with transaction(conn):
            uid = _user_id(conn, user, create=True)
            assert uid is not None
            for digest, message in work:
                # Read again inside the transaction: this is what counts.
                row = conn.execute(
                    "SELECT spam FROM trained WHERE user_id = ? AND digest = ?", (uid, digest)
                ).fetchone()
                if row is not None and bool(row[0]) == spam:
                    continue  # already trained this way
                message_tokens = toks.get(digest)
                if message_tokens is None:
                    message_tokens = tokens(message)
                if row is not None:
                    _unlearn(conn, uid, message_tokens, not spam)
                _learn(conn, uid, message_tokens, spam)
                conn.execute(
                    "INSERT OR REPLACE INTO trained (user_id, digest, spam) VALUES (?, ?, ?)",
                    (uid, digest, int(spam)),
                )

    @staticmethod
    def _untrain(conn: sqlite3.Connection, user: str, message: bytes, spam: bool) -> None:
        digest = _digest(message)
        with transaction(conn):
            uid = _user_id(conn, user, create=False)
            if uid is None:
                return
            row = conn.execute(
                "SELECT spam FROM trained WHERE user_id = ? AND digest = ?", (uid, digest)
            ).fetchone()
            if row is None or bool(row[0]) != spam:
                return
            _unlearn(conn, uid, tokens(message), spam)
            conn.execute("DELETE FROM trained WHERE user_id = ? AND digest = ?", (uid, digest))

    def _probability(self, conn: sqlite3.Connection, user: str, message: bytes) -> float | None:
        row = conn.execute("SELECT id, nspam, nham FROM users WHERE name = ?", (user,)).fetchone()
        if row is None:
            return None
        uid, total_spam, total_ham = int(row[0]), int(row[1]), int(row[2])
        if (
            total_spam < self.min_spam
            or total_ham < self.min_ham
            or total_spam + total_ham < self.min_total
        ):
            return None
        wanted = sorted(tokens(message))
        values: list[float] = []
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for spam, ham in conn.execute(
                f"SELECT spam, ham FROM tokens WHERE user_id = ? AND token IN ({marks})",
                (uid, *chunk),
            ):
                values.append(_token_probability(spam, ham, total_spam, total_ham))
        return combine(_clues(values))


def _counts(conn: sqlite3.Connection, user: str) -> tuple[int, int]:
    row = conn.execute("SELECT nspam, nham FROM users WHERE name = ?", (user,)).fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


class JunkTrainer:
    """What the IMAP server calls when a user moves/copies messages into or out of
    the Junk mailbox."""

    def __init__(self, bayes: Bayes) -> None:
        self.bayes = bayes

    async def moved(self, user: str, messages: Sequence[bytes], *, into_junk: bool) -> None:
        """Train ``messages`` as spam (into Junk) or ham (out of Junk).

        A message trained the other way before is untrained first. The
        caller leaves out moves from Junk to Trash (deleting spam says
        nothing about it being ham). A database failure is logged, never
        raised: the user's MOVE must succeed whatever happens to training.
        """
        if not messages:
            return
        try:
            await self.bayes.train_messages(user, messages, spam=into_junk)
        except (sqlite3.Error, OSError, RuntimeError) as exc:
            log.error("bayes training for %s failed: %s", user, exc)
