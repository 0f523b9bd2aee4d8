"""The accounts database: local domains, users, aliases, password hashes.

Design note
-----------
One SQLite file (``data_dir/accounts.sqlite``) in WAL mode, so the ``pochta``
command can write while a server process reads. One connection per
``Accounts``, guarded by a ``threading.Lock`` and opened with
``check_same_thread=False``: ``authenticate`` runs argon2 in worker threads
while ``resolve`` runs on the event loop. Writes take ``BEGIN IMMEDIATE`` (no
lock upgrade deadlocks between processes); multi-query reads run in one read
transaction, so they see one snapshot. ``busy_timeout`` absorbs short waits
for another process's write.

Every name is stored in its canonical form (``Address.key``: local part
lower-cased, domain lower-case A-label). Users' local parts name a Maildir
directory, ``data_dir/mail/<domain>/<local>/``, so they are restricted to
lower-case ASCII letters, digits and ``.-_=`` (no ``+``: it is the subaddress
separator; no leading ``.`` or ``-``, no ``..``).

An alias row maps an address, or ``@domain`` (catch-all), at a local domain to
one target: a local user, another alias, or a *remote* address (any address
at a domain that is not ours: mail for it is forwarded, see
``pochta.smtp.forward``). Several targets are several rows, so one alias can
fan out to local users and remote addresses at once. An address is never both
a user and an alias. ``add_alias`` refuses loops; ``resolve`` still tolerates
them (and dangling targets) in case rows were written by hand.

Whether a target is remote is not stored: it is decided when the alias is
resolved, by whether the target's domain is local *then*. The schema needed
no change for forwarding (the ``aliases`` table has no constraint on the
target's domain), so databases of schema version 2 work as they are. The
consequence is deliberate and matches how an MTA routes: a target whose
domain is later added with ``pochta domain add`` becomes a local target
(delivered if such a user or alias exists, ignored if not), and a dangling
target left behind when its local domain is deleted becomes a remote one.

Failures: every refusal is an ``AccountsError`` or ``AddressError`` with a
one-line message; SQLite errors (a locked or corrupt file) are wrapped in an
``AccountsError`` naming the file. A failed write changes nothing.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pochta.accounts.address import (
    Address,
    AddressError,
    parse_address,
    parse_domain,
    split_subaddress,
)
from pochta.accounts.errors import (
    AccountsError,
    AliasExists,
    AliasLoop,
    AliasNotFound,
    DomainExists,
    DomainNotEmpty,
    DomainNotFound,
    UserExists,
    UserNotFound,
)
from pochta.accounts.passwords import check_password_text, default_hasher
from pochta.sasl import ScramCredentials, scram_credentials

__all__ = ["MAX_ALIAS_DEPTH", "SCHEMA_VERSION", "Accounts", "Alias", "Resolution", "User"]

SCHEMA_VERSION = 2
#: How many alias hops ``resolve`` follows before it stops expanding.
MAX_ALIAS_DEPTH = 8
#: Milliseconds a statement waits for another connection's write lock.
BUSY_TIMEOUT_MS = 5000

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE domains (
        name TEXT PRIMARY KEY,
        created INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE users (
        address TEXT PRIMARY KEY,
        local TEXT NOT NULL,
        domain TEXT NOT NULL REFERENCES domains(name),
        password_hash TEXT NOT NULL,
        created INTEGER NOT NULL,
        scram TEXT,
        UNIQUE (domain, local)
    ) WITHOUT ROWID""",
    """CREATE TABLE aliases (
        alias TEXT NOT NULL,
        target TEXT NOT NULL,
        domain TEXT NOT NULL REFERENCES domains(name),
        created INTEGER NOT NULL,
        PRIMARY KEY (alias, target)
    ) WITHOUT ROWID""",
    "CREATE INDEX aliases_target ON aliases(target)",
    "CREATE INDEX aliases_domain ON aliases(domain)",
)

_USER_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_=")


@dataclass(frozen=True, slots=True)
class User:
    """A local user; ``address`` is the canonical key ``local@domain``."""

    address: str
    local: str
    domain: str

    @property
    def maildir(self) -> PurePosixPath:
        """The user's Maildir++ directory, relative to ``data_dir``."""
        return PurePosixPath("mail", self.domain, self.local)


@dataclass(frozen=True, slots=True)
class Alias:
    """One alias row: ``alias`` (an address or ``@domain``) delivers to ``target``.

    ``remote``: the target's domain is not local, so mail is forwarded there.
    """

    alias: str
    target: str
    remote: bool = False


@dataclass(frozen=True, slots=True)
class Resolution:
    """Where mail for one address goes.

    ``local_domain`` false: not ours (relay decisions belong to the caller).
    ``users``: local users (canonical keys), sorted, each once.
    ``remote``: remote alias targets to forward to, each once, in the order
    the alias expansion reaches them (an alias's own targets in the order
    they were added).
    ``local_domain`` true and both empty: unknown user (RFC 3463 5.1.1).
    """

    local_domain: bool
    users: tuple[str, ...]
    remote: tuple[str, ...] = ()

    @property
    def deliverable(self) -> bool:
        """Someone receives this mail: a local user or a remote target."""
        return bool(self.users or self.remote)


#: Cached RCPT resolutions kept before the cache starts over.
RESOLVE_CACHE_SIZE = 4096


class Accounts:
    """Domains, users and aliases in one SQLite file; safe across threads."""

    def __init__(self, db: sqlite3.Connection, path: Path, hasher: PasswordHasher) -> None:
        """Use ``Accounts.open``; this wraps an already prepared connection."""
        self._db = db
        self._path = path
        self._hasher = hasher
        self._lock = threading.Lock()
        self._dummy_hash: str | None = None
        # resolve() runs for every RCPT; its answers are cached until the
        # database changes: PRAGMA data_version moves when another connection
        # (the CLI) commits, and our own writes clear the cache in _write.
        self._resolved: dict[str, Resolution] = {}
        self._resolved_version = -1
        self._generation = 0  # bumped by our own writes

    # --- life cycle -----------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, hasher: PasswordHasher | None = None) -> Accounts:
        """Open (creating file, parent directory and schema if needed).

        ``hasher`` defaults to argon2-cffi's recommended parameters; tests pass
        a cheap one.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise AccountsError(f"cannot open accounts database {path}: {exc}") from exc
        try:
            _prepare(db, path)
        except BaseException:
            db.close()
            raise
        return cls(db, path, hasher if hasher is not None else default_hasher())

    def close(self) -> None:
        """Close the connection; the object must not be used afterwards."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Accounts:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- domains --------------------------------------------------------------

    def add_domain(self, name: str) -> str:
        """Make a domain local; returns its normalized (A-label) name."""
        domain = parse_domain(name)
        with self._write() as db:
            if _domain_exists(db, domain):
                raise DomainExists(f"domain {domain} already exists")
            db.execute("INSERT INTO domains (name, created) VALUES (?, ?)", (domain, _now()))
        return domain

    def del_domain(self, name: str) -> None:
        """Remove a domain that has no users and no aliases left."""
        domain = parse_domain(name)
        with self._write() as db:
            if not _domain_exists(db, domain):
                raise DomainNotFound(f"no such domain {domain}")
            users = _count(db, "SELECT count(*) FROM users WHERE domain = ?", domain)
            aliases = _count(db, "SELECT count(*) FROM aliases WHERE domain = ?", domain)
            if users or aliases:
                raise DomainNotEmpty(
                    f"domain {domain} still has {_plural(users, 'user')} and "
                    f"{_plural(aliases, 'alias')}; delete them first"
                )
            db.execute("DELETE FROM domains WHERE name = ?", (domain,))

    def list_domains(self) -> list[str]:
        """All local domains, sorted."""
        with self._read() as db:
            return [row[0] for row in db.execute("SELECT name FROM domains ORDER BY name")]

    def is_local_domain(self, name: str) -> bool:
        """Whether ``name`` (any spelling) is one of our domains; one indexed query."""
        try:
            domain = parse_domain(name)
        except AddressError:
            return False
        with self._read() as db:
            return _domain_exists(db, domain)

    # --- users ----------------------------------------------------------------

    def add_user(self, address: str, password: str) -> User:
        """Create a user at an existing local domain with a non-empty password."""
        user = _user_from_address(parse_address(address))
        check_password_text(password)
        password_hash = self._hasher.hash(password)  # slow: outside the lock
        scram = scram_credentials(password).dump()
        with self._write() as db:
            if not _domain_exists(db, user.domain):
                raise DomainNotFound(f"no such domain {user.domain}")
            if _user_exists(db, user.address):
                raise UserExists(f"user {user.address} already exists")
            if _alias_exists(db, user.address):
                raise AliasExists(f"{user.address} is already an alias; delete the alias first")
            db.execute(
                "INSERT INTO users (address, local, domain, password_hash, created, scram)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user.address, user.local, user.domain, password_hash, _now(), scram),
            )
        return user

    def get_user(self, address: str) -> User | None:
        """The user with this address (any case), or None (also if unparsable)."""
        try:
            key = parse_address(address).key
        except AddressError:
            return None
        with self._read() as db:
            return _load_user(db, key)

    def del_user(self, address: str) -> User:
        """Remove a user and every alias row that targets it (Maildir files stay)."""
        key = parse_address(address).key
        with self._write() as db:
            user = _load_user(db, key)
            if user is None:
                raise UserNotFound(f"no such user {key}")
            db.execute("DELETE FROM aliases WHERE target = ?", (key,))
            db.execute("DELETE FROM users WHERE address = ?", (key,))
        return user

    def list_users(self, domain: str | None = None) -> list[User]:
        """All users, or those of one domain, sorted by domain then local part."""
        with self._read() as db:
            if domain is None:
                rows = db.execute("SELECT address, local, domain FROM users ORDER BY domain, local")
            else:
                name = parse_domain(domain)
                if not _domain_exists(db, name):
                    raise DomainNotFound(f"no such domain {name}")
                rows = db.execute(
                    "SELECT address, local, domain FROM users WHERE domain = ? ORDER BY local",
                    (name,),
                )
            return [User(*row) for row in rows]

    def set_password(self, address: str, password: str) -> None:
        """Replace a user's password hash."""
        key = parse_address(address).key
        check_password_text(password)
        password_hash = self._hasher.hash(password)
        scram = scram_credentials(password).dump()
        with self._write() as db:
            cursor = db.execute(
                "UPDATE users SET password_hash = ?, scram = ? WHERE address = ?",
                (password_hash, scram, key),
            )
            if cursor.rowcount == 0:
                raise UserNotFound(f"no such user {key}")

    def scram_credentials(self, address: str) -> ScramCredentials | None:
        """The user's SCRAM-SHA-256 keys (RFC 5802 §3), None if unknown or not yet made."""
        try:
            key = parse_address(address).key
        except AddressError:
            return None
        with self._read() as db:
            row = db.execute("SELECT scram FROM users WHERE address = ?", (key,)).fetchone()
        if row is None or not row[0]:
            return None
        return ScramCredentials.load(row[0])

    def credential_stamp(self, address: str) -> str | None:
        """An opaque value that changes whenever the user's password hash changes.

        None for an unknown or unparsable address. One indexed query and a
        BLAKE2 digest, no argon2: cheap enough for the event loop. Login
        caches (``pochta.accounts.login``) compare it to decide whether a
        remembered verification still holds; the hash itself never leaves
        this module.
        """
        try:
            key = parse_address(address).key
        except AddressError:
            return None
        with self._read() as db:
            stored = _password_hash(db, key)
        if stored is None:
            return None
        return hashlib.blake2b(stored.encode(), digest_size=16).hexdigest()

    def authenticate(self, address: str, password: str) -> User | None:
        """The user if ``password`` is right, else None. Blocking: run in a thread.

        An unknown or unparsable address still costs one argon2 verification
        against a dummy hash, so timing does not reveal which users exist. A
        hash made with other parameters than the current ones is replaced.
        """
        user: User | None = None
        stored: str | None = None
        try:
            key = parse_address(address).key
        except AddressError:
            key = None
        if key is not None:
            with self._read() as db:
                user = _load_user(db, key)
                if user is not None:
                    stored = _password_hash(db, key)
        if user is None or stored is None:
            self._verify_dummy(password)
            return None
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if self._hasher.check_needs_rehash(stored):
            fresh = self._hasher.hash(password)
            with self._write() as db:  # only if nobody changed the password meanwhile
                db.execute(
                    "UPDATE users SET password_hash = ? WHERE address = ? AND password_hash = ?",
                    (fresh, user.address, stored),
                )
        return user

    def _verify_dummy(self, password: str) -> None:
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        try:
            self._hasher.verify(self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            pass

    # --- aliases --------------------------------------------------------------

    def add_alias(self, alias: str, target: str) -> Alias:
        """Add one row: ``alias`` (address or ``@domain``) delivers to ``target``.

        The alias must be at a local domain and must not be a user's address.
        A target at a local domain must be an existing user or alias; a
        target at any other domain is a remote address that mail is
        forwarded to (only its syntax is checked, RFC 5321 §4.1.2: whether
        the mailbox exists is for its own MX to say, at delivery).
        """
        alias_key, alias_domain = _alias_key(alias)
        target_key = parse_address(target).key
        target_domain = target_key.rsplit("@", 1)[1]
        if target_key == alias_key:
            raise AliasLoop(f"alias {alias_key} -> {target_key} would make a loop")
        with self._write() as db:
            if not _domain_exists(db, alias_domain):
                raise DomainNotFound(f"no such domain {alias_domain}")
            if _user_exists(db, alias_key):
                raise UserExists(f"{alias_key} is a user; an alias cannot have the same address")
            remote = not _domain_exists(db, target_domain)
            if not remote:
                if not _user_exists(db, target_key) and not _alias_exists(db, target_key):
                    raise UserNotFound(f"no such user or alias {target_key}")
                if alias_key in _reachable_aliases(db, target_key):
                    raise AliasLoop(f"alias {alias_key} -> {target_key} would make a loop")
            # A remote target cannot lead back here through our tables; a loop
            # through another server is caught by counting Received fields
            # when forwarding (RFC 5321 §6.3, pochta.smtp.forward).
            if db.execute(
                "SELECT 1 FROM aliases WHERE alias = ? AND target = ?", (alias_key, target_key)
            ).fetchone():
                raise AliasExists(f"alias {alias_key} -> {target_key} already exists")
            db.execute(
                "INSERT INTO aliases (alias, target, domain, created) VALUES (?, ?, ?, ?)",
                (alias_key, target_key, alias_domain, _now()),
            )
        return Alias(alias_key, target_key, remote)

    def del_alias(self, alias: str, target: str | None = None) -> int:
        """Remove the alias's rows (or only the one to ``target``); returns how many."""
        alias_key, _ = _alias_key(alias)
        with self._write() as db:
            if target is None:
                cursor = db.execute("DELETE FROM aliases WHERE alias = ?", (alias_key,))
                missing = f"no such alias {alias_key}"
            else:
                target_key = parse_address(target).key
                cursor = db.execute(
                    "DELETE FROM aliases WHERE alias = ? AND target = ?", (alias_key, target_key)
                )
                missing = f"no such alias {alias_key} -> {target_key}"
            if cursor.rowcount == 0:
                raise AliasNotFound(missing)
            return cursor.rowcount

    def list_aliases(self) -> list[Alias]:
        """Every alias row, sorted by alias then target; ``remote`` marks forwarding."""
        with self._read() as db:
            local = {row[0] for row in db.execute("SELECT name FROM domains")}
            rows = db.execute("SELECT alias, target FROM aliases ORDER BY alias, target")
            # The domain follows the last "@": a quoted local part may hold one.
            return [Alias(a, t, t.rpartition("@")[2] not in local) for a, t in rows]

    # --- delivery -------------------------------------------------------------

    def sender_allowed(self, user: str, address: str) -> bool:
        """May ``user`` send as ``address`` (submission, RFC 6409 §6.1)?

        Yes for the user's own address, its subaddresses (``user+tag@``), and
        every explicit alias (or alias chain) that delivers to the user —
        also one with several targets. Not through a catch-all ``@domain``:
        that would let its owner send as anybody at the domain.
        """
        try:
            parsed = parse_address(address)
        except AddressError:
            return False
        base, tag = split_subaddress(parsed.local)
        keys = [parsed.key]
        if tag is not None:
            keys.append(Address(base, parsed.domain).key)
        with self._read() as db:
            for key in keys:
                if key == user:
                    return True
                found = _expand(db, key)
                if found is not None and user in found.users:
                    return True
        return False

    def resolve(self, address: str) -> Resolution:
        """Who receives mail for ``address`` (an SMTP RCPT): local users, remote targets.

        Order:

        1. parse it (RFC 5321 §4.1.2); unparsable -> ``(False, ())``;
        2. domain not local -> ``(False, ())``;
        3. a user with exactly this address -> that user;
        4. an alias with exactly this address -> its targets, expanded through
           aliases (at most ``MAX_ALIAS_DEPTH`` hops, cycles and dangling
           targets ignored, users and remote targets deduplicated); a target
           at a domain that is not local is a remote target (forwarding);
        5. a local part ``base+tag`` -> steps 3-4 for ``base``;
        6. the catch-all alias ``@domain`` -> its expansion;
        7. ``postmaster`` (RFC 5321 §4.5.1) -> the domain's first user;
        8. otherwise ``(True, ())``: unknown user.

        Local parts match case-insensitively (RFC 5321 §2.4). A few indexed
        queries, no hashing: cheap enough for the event loop.
        """
        with self._lock:
            try:
                row = self._db.execute("PRAGMA data_version").fetchone()
            except sqlite3.Error as exc:
                raise self._wrap(exc) from exc
            if row[0] != self._resolved_version:
                self._resolved.clear()
                self._resolved_version = row[0]
            cached = self._resolved.get(address)
            generation = self._generation
        if cached is not None:
            return cached
        result = self._resolve(address)
        with self._lock:
            if generation != self._generation:
                return result  # a write raced with us: do not cache
            if len(self._resolved) >= RESOLVE_CACHE_SIZE:
                self._resolved.clear()
            self._resolved[address] = result
        return result

    def _resolve(self, address: str) -> Resolution:
        try:
            parsed = parse_address(address)
        except AddressError:
            return Resolution(False, ())
        with self._read() as db:
            if not _domain_exists(db, parsed.domain):
                return Resolution(False, ())
            found = _expand(db, parsed.key)
            if found is None:
                base, tag = split_subaddress(parsed.local)
                if tag is not None:
                    found = _expand(db, Address(base, parsed.domain).key)
            if found is None:
                found = _expand(db, "@" + parsed.domain)
            if (found is None or not found.deliverable) and parsed.local.lower() == "postmaster":
                # RFC 5321 §4.5.1: every domain MUST accept postmaster. Without
                # a user or alias of that name it reaches the domain's first user.
                row = db.execute(
                    "SELECT address FROM users WHERE domain = ? ORDER BY created, address LIMIT 1",
                    (parsed.domain,),
                ).fetchone()
                found = _Expansion({row[0]}, []) if row else None
        if found is None:
            return Resolution(True, ())
        return Resolution(True, tuple(sorted(found.users)), tuple(found.remote))

    # --- transactions ---------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._resolved.clear()
            self._generation += 1
            with self._transaction("BEGIN IMMEDIATE") as db:
                yield db

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._transaction("BEGIN") as db:
            yield db

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        db = self._db
        try:
            db.execute(begin)
        except sqlite3.Error as exc:
            raise self._wrap(exc) from exc
        try:
            yield db
        except BaseException as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise self._wrap(exc) from exc
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise self._wrap(exc) from exc

    def _wrap(self, exc: sqlite3.Error) -> AccountsError:
        return AccountsError(f"accounts database {self._path}: {exc}")


# --- helpers (called with the lock held, inside a transaction) -----------------


def _prepare(db: sqlite3.Connection, path: Path) -> None:
    """Set pragmas and create or check the schema."""
    try:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            exists = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not exists:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                version = SCHEMA_VERSION
            else:
                row = db.execute("SELECT max(version) FROM schema_version").fetchone()
                version = row[0] if row and row[0] is not None else 0
                if version == 1:
                    # 2: SCRAM-SHA-256 keys (RFC 5802 §3), made at the next
                    # password change; until then SCRAM fails for that user.
                    db.execute("ALTER TABLE users ADD COLUMN scram TEXT")
                    db.execute("UPDATE schema_version SET version = 2")
                    version = 2
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise AccountsError(f"cannot open accounts database {path}: {exc}") from exc
    if version != SCHEMA_VERSION:
        raise AccountsError(
            f"accounts database {path} has schema version {version}; "
            f"this Pochta knows version {SCHEMA_VERSION}"
        )


def _now() -> int:
    return int(time.time())


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"1 {word}"
    return f"{n} {word}es" if word.endswith("s") else f"{n} {word}s"


def _count(db: sqlite3.Connection, sql: str, arg: str) -> int:
    row = db.execute(sql, (arg,)).fetchone()
    return int(row[0]) if row else 0


def _domain_exists(db: sqlite3.Connection, domain: str) -> bool:
    return db.execute("SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is not None


def _user_exists(db: sqlite3.Connection, key: str) -> bool:
    return db.execute("SELECT 1 FROM users WHERE address = ?", (key,)).fetchone() is not None


def _alias_exists(db: sqlite3.Connection, key: str) -> bool:
    row = db.execute("SELECT 1 FROM aliases WHERE alias = ? LIMIT 1", (key,)).fetchone()
    return row is not None


def _load_user(db: sqlite3.Connection, key: str) -> User | None:
    sql = "SELECT address, local, domain FROM users WHERE address = ?"
    row = db.execute(sql, (key,)).fetchone()
    return User(*row) if row else None


def _password_hash(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT password_hash FROM users WHERE address = ?", (key,)).fetchone()
    return str(row[0]) if row else None


def _user_from_address(address: Address) -> User:
    """Check that a user's local part is a safe directory name; canonicalize it."""
    local = address.local.lower()
    shown = f"{address.local}@{address.domain}"
    if not local.isascii() or not set(local) <= _USER_LOCAL_CHARS:
        bad = sorted(set(local) - _USER_LOCAL_CHARS)
        why = "'+' is the subaddress separator" if bad == ["+"] else "only a-z, 0-9 and .-_="
        raise AddressError(f"invalid user name {shown!r}: {why}")
    if local.startswith((".", "-")) or local.endswith(".") or ".." in local:
        raise AddressError(
            f"invalid user name {shown!r}: no leading '.' or '-', trailing '.' or '..'"
        )
    return User(f"{local}@{address.domain}", local, address.domain)


def _alias_key(alias: str) -> tuple[str, str]:
    """(key, domain) of an alias address or a catch-all ``@domain``."""
    if alias.startswith("@"):
        domain = parse_domain(alias[1:])
        return "@" + domain, domain
    parsed = parse_address(alias)
    return parsed.key, parsed.domain


def _targets(db: sqlite3.Connection, aliases: Iterable[str]) -> dict[str, list[str]]:
    """Each alias's targets, in the order they were added (ties by address)."""
    names = list(aliases)
    found: dict[str, list[str]] = {}
    if not names:
        return found
    marks = ",".join("?" * len(names))
    for alias, target in db.execute(
        f"SELECT alias, target FROM aliases WHERE alias IN ({marks}) ORDER BY created, target",
        names,
    ):
        found.setdefault(alias, []).append(target)
    return found


def _users_among(db: sqlite3.Connection, keys: Iterable[str]) -> set[str]:
    names = list(keys)
    if not names:
        return set()
    marks = ",".join("?" * len(names))
    rows = db.execute(f"SELECT address FROM users WHERE address IN ({marks})", names)
    return {row[0] for row in rows}


def _remote_among(db: sqlite3.Connection, keys: list[str]) -> list[str]:
    """Those of ``keys`` (addresses) whose domain is not local, in order."""
    domains = {key.rpartition("@")[2] for key in keys}
    if not domains:
        return []
    marks = ",".join("?" * len(domains))
    rows = db.execute(f"SELECT name FROM domains WHERE name IN ({marks})", sorted(domains))
    local = {row[0] for row in rows}
    return [key for key in keys if key.rpartition("@")[2] not in local]


@dataclass(slots=True)
class _Expansion:
    """What an address expands to: local users and remote targets (in order)."""

    users: set[str]
    remote: list[str]

    @property
    def deliverable(self) -> bool:
        return bool(self.users or self.remote)


def _expand(db: sqlite3.Connection, key: str) -> _Expansion | None:
    """Users and remote targets reached from ``key``; None when it is neither
    a user nor an alias.

    Breadth first, a few indexed queries per hop, at most ``MAX_ALIAS_DEPTH``
    hops; a name seen twice is not expanded again. A target that is neither
    a user nor an alias is remote if its domain is not local, else dangling
    (ignored). Lists, not sets, carry each hop so that remote targets keep a
    stable order.
    """
    if _user_exists(db, key):
        return _Expansion({key}, [])
    first = _targets(db, [key]).get(key)
    if not first:
        return None
    result = _Expansion(set(), [])
    seen = {key}
    frontier = first
    for _ in range(MAX_ALIAS_DEPTH):
        frontier = [name for name in dict.fromkeys(frontier) if name not in seen]
        if not frontier:
            break
        seen.update(frontier)
        found = _users_among(db, frontier)
        result.users |= found
        rest = [name for name in frontier if name not in found]
        targets = _targets(db, rest)
        result.remote.extend(_remote_among(db, [name for name in rest if name not in targets]))
        frontier = [target for name in rest for target in targets.get(name, ())]
    return result


def _reachable_aliases(db: sqlite3.Connection, key: str) -> set[str]:
    """Every alias name reachable from ``key`` (for loop checks on insert)."""
    seen: set[str] = set()
    frontier = {key}
    while frontier:
        seen |= frontier
        following: set[str] = set()
        for targets in _targets(db, frontier).values():
            following.update(targets)
        frontier = following - seen
    return seen
