"""DKIM signing keys of our domains: generate, rotate, retire, publish.

Design note
-----------
Each local domain signs with a pair of keys (RFC 6376 §3.3, RFC 8463 §3):
RSA-2048 (``rsa-sha256``, which every verifier understands; RFC 8301 §3.2
asks for at least 1024 bits and 2048 is the common floor) and Ed25519
(``ed25519-sha256``, small and fast, for verifiers that know it). A message
carries both signatures; one that verifies is enough (RFC 6376 §4, multiple
signatures), so a verifier that does not know Ed25519 still passes the RSA
one -- RFC 8463's own example (Appendix A) signs with both.

Selectors are dated, ``20261128r`` / ``20261128e``, with a counter when a
domain is rotated more than once a day (``20261128r2``). A selector is never
reused, not even after its key was removed: a resolver may still cache the
old key record under that name (RFC 6376 §3.1 makes selectors the tool for
rotation precisely so that old and new keys can coexist).

Rotation keeps the old pair *published* but *retired*: mail signed just
before the rotation may still be in transit or queued for days, and its
signature must keep verifying until it is delivered. The operator removes a
retired key later (``pochta domain dkim remove``); ``pochta dns records``
prints every published key so the zone keeps them until then.

On disk, under ``data_dir/dkim/<domain>/`` (directory mode 0700)::

    keys.json            state: selector, algorithm, active, created, TXT value
    20261128r.pem        RSA private key, PKCS#1 PEM, mode 0600
    20261128e.pem        Ed25519 private key, PKCS#8 PEM, mode 0600

Every file is written to a temporary name, fsynced and renamed into place
(then the directory is fsynced), so a crash leaves the old or the new state,
never a torn one; ``keys.json`` is written after the key files it names and
before the key files it no longer names are unlinked. Changes take an
exclusive ``flock`` on ``.lock`` so two ``pochta`` commands cannot interleave.

The server reads keys for every submitted message, so a store instance
caches them and only re-reads ``keys.json`` when its inode, mtime or size
changed -- a ``pochta domain dkim rotate`` run while the server is up takes
effect with the next message, at the cost of one ``stat`` per lookup.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from pochta.accounts.address import parse_domain
from pochta.errors import UserFacingError

__all__ = ["ALGORITHMS", "DKIMKey", "DKIMKeyStore", "KeysError"]

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]

#: The algorithms of one key pair, in the order a pair is created and signs.
ALGORITHMS: tuple[Algorithm, ...] = ("rsa-sha256", "ed25519-sha256")

#: The letter that ends a selector of each algorithm.
_SUFFIX: dict[Algorithm, str] = {"rsa-sha256": "r", "ed25519-sha256": "e"}

#: RSA modulus size and public exponent (RFC 8301 §3.2; RFC 6376 §3.3.1 e=65537).
RSA_BITS = 2048
RSA_EXPONENT = 65537

STATE_FILE = "keys.json"
LOCK_FILE = ".lock"
STATE_VERSION = 1


class KeysError(UserFacingError):
    """A key operation that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class DKIMKey:
    """One signing key of one domain, with the TXT record that publishes it."""

    domain: str
    """Lower-case A-label; the ``d=`` of signatures made with this key."""
    selector: str
    """The ``s=`` of signatures; the key record lives at ``<selector>._domainkey.<domain>``."""
    algorithm: Algorithm
    """``a=`` of signatures made with this key."""
    private_key: bytes = field(repr=False)
    """What dkimpy's ``sign()`` takes: PEM for RSA, the base64 32-octet seed for Ed25519."""
    public_txt: str
    """The whole TXT value: ``v=DKIM1; k=rsa; p=...`` (RFC 6376 §3.6.1, RFC 8463 §4)."""
    active: bool
    """Signs new mail; a retired key (False) stays published until removed."""
    created: float
    """Unix time the key was made."""

    @property
    def record_name(self) -> str:
        """The owner name of the key record (RFC 6376 §3.6.2.1)."""
        return f"{self.selector}._domainkey.{self.domain}"


@dataclass(frozen=True, slots=True)
class _Entry:
    """One key as ``keys.json`` describes it (no private part)."""

    selector: str
    algorithm: Algorithm
    public_txt: str
    active: bool
    created: float


@dataclass(slots=True)
class _State:
    keys: list[_Entry]
    """Newest pair first."""
    removed: list[str]
    """Selectors whose keys were removed; never handed out again."""


class DKIMKeyStore:
    """The DKIM keys of every domain under ``data_dir/dkim/``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "dkim"
        self._lock = threading.Lock()
        # domain -> (identity of keys.json when read, keys newest first)
        self._cache: dict[str, tuple[tuple[int, int, int], tuple[DKIMKey, ...]]] = {}

    # --- reading -----------------------------------------------------------------

    def active(self, domain: str) -> list[DKIMKey]:
        """The keys that sign new mail for ``domain`` (empty if it has none)."""
        return [k for k in self._load(parse_domain(domain)) if k.active]

    def published(self, domain: str) -> list[DKIMKey]:
        """Active and retired keys of ``domain``, newest first: all belong in DNS."""
        return list(self._load(parse_domain(domain)))

    # --- changing ----------------------------------------------------------------

    def create(self, domain: str, *, now: float | None = None) -> list[DKIMKey]:
        """Make a new RSA + Ed25519 pair; if ``domain`` already has active keys, return those."""
        name = parse_domain(domain)
        with self._locked(name) as directory:
            state = self._read_state(name, directory)
            if any(e.active for e in state.keys):
                return [k for k in self._load(name) if k.active]
            self._add_pair(name, directory, state, now)
        return [k for k in self._load(name) if k.active]

    def rotate(self, domain: str, *, now: float | None = None) -> list[DKIMKey]:
        """Make a new active pair; the active keys so far become retired (still published)."""
        name = parse_domain(domain)
        with self._locked(name) as directory:
            state = self._read_state(name, directory)
            state.keys = [_retired(e) for e in state.keys]
            self._add_pair(name, directory, state, now)
        return [k for k in self._load(name) if k.active]

    def remove(self, domain: str, selector: str) -> None:
        """Drop a retired key; an active one is refused (rotate first)."""
        name = parse_domain(domain)
        if not (self.root / name / STATE_FILE).exists():
            raise KeysError(f"{name} has no DKIM key with selector {selector!r}")
        with self._locked(name) as directory:
            state = self._read_state(name, directory)
            entry = next((e for e in state.keys if e.selector == selector), None)
            if entry is None:
                raise KeysError(f"{name} has no DKIM key with selector {selector!r}")
            if entry.active:
                raise KeysError(
                    f"DKIM key {selector} of {name} is active; run `pochta domain dkim "
                    f"rotate {name}` first, and remove it once mail signed with it is delivered"
                )
            state.keys.remove(entry)
            state.removed.append(selector)
            self._write_state(directory, state)
            # After the state no longer names it: a crash in between leaves
            # only an orphan file, never a listed key without its private part.
            with contextlib.suppress(FileNotFoundError):
                (directory / _key_file(selector)).unlink()
            _fsync_dir(directory)
        with self._lock:
            self._cache.pop(name, None)

    def delete_domain(self, domain: str) -> None:
        """Forget every key of ``domain`` (its directory goes); nothing to do if it has none."""
        name = parse_domain(domain)
        directory = self.root / name
        if directory.is_dir():
            with self._locked(name):
                shutil.rmtree(directory)
            _fsync_dir(self.root)
        with self._lock:
            self._cache.pop(name, None)

    # --- internals -----------------------------------------------------------------

    def _add_pair(self, domain: str, directory: Path, state: _State, now: float | None) -> None:
        created = time.time() if now is None else now
        selectors = _next_selectors(created, state)
        pair: list[_Entry] = []
        for algorithm in ALGORITHMS:
            pem, public_txt = _generate(algorithm)
            selector = selectors[algorithm]
            _write_atomic(directory / _key_file(selector), pem, 0o600)
            pair.append(_Entry(selector, algorithm, public_txt, True, created))
        state.keys = pair + state.keys
        self._write_state(directory, state)
        with self._lock:
            self._cache.pop(domain, None)

    def _locked(self, domain: str) -> contextlib.AbstractContextManager[Path]:
        return _exclusive(self._directory(domain))

    def _directory(self, domain: str) -> Path:
        """``dkim/<domain>/``, created 0700 (and ``dkim/`` too)."""
        for path in (self.root, self.root / domain):
            try:
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                if path.stat().st_mode & 0o077:
                    path.chmod(0o700)
            except OSError as exc:
                raise KeysError(f"cannot create {path}: {exc.strerror}") from exc
        return self.root / domain

    def _read_state(self, domain: str, directory: Path) -> _State:
        path = directory / STATE_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return _State([], [])
        except OSError as exc:
            raise KeysError(f"cannot read {path}: {exc.strerror}") from exc
        return _parse_state(path, raw)

    def _write_state(self, directory: Path, state: _State) -> None:
        data = {
            "version": STATE_VERSION,
            "keys": [
                {
                    "selector": e.selector,
                    "algorithm": e.algorithm,
                    "active": e.active,
                    "created": e.created,
                    "public_txt": e.public_txt,
                }
                for e in state.keys
            ],
            "removed": state.removed,
        }
        text = json.dumps(data, indent=2) + "\n"
        _write_atomic(directory / STATE_FILE, text.encode(), 0o600)

    def _load(self, domain: str) -> tuple[DKIMKey, ...]:
        """The keys of ``domain`` newest first, from the cache while keys.json is unchanged."""
        path = self.root / domain / STATE_FILE
        for attempt in range(3):
            identity = _identity(path)
            if identity is None:
                with self._lock:
                    self._cache.pop(domain, None)
                return ()
            with self._lock:
                cached = self._cache.get(domain)
            if cached is not None and cached[0] == identity:
                return cached[1]
            try:
                with path.open("rb") as file:
                    st = os.fstat(file.fileno())
                    raw = file.read()
            except FileNotFoundError:
                continue  # replaced or deleted since the stat: look again
            except OSError as exc:
                raise KeysError(f"cannot read {path}: {exc.strerror}") from exc
            identity = (st.st_ino, st.st_mtime_ns, st.st_size)
            state = _parse_state(path, raw)
            try:
                keys = tuple(_with_private(domain, path.parent, e) for e in state.keys)
            except KeysError:
                # `remove` unlinks a key file right after replacing keys.json;
                # if that is what happened, the new state no longer names it.
                if attempt < 2 and _identity(path) != identity:
                    continue
                raise
            # Newest first; a pair shares one ``created`` and keeps its file order.
            ordered = tuple(sorted(keys, key=lambda k: k.created, reverse=True))
            with self._lock:
                self._cache[domain] = (identity, ordered)
            return ordered
        raise KeysError(f"{path} keeps changing while being read; try again")


def _identity(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of ``path`` from the next (rename gives a new inode)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeysError(f"cannot read {path}: {exc.strerror}") from exc
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _retired(entry: _Entry) -> _Entry:
    return _Entry(entry.selector, entry.algorithm, entry.public_txt, False, entry.created)


def _key_file(selector: str) -> str:
    return f"{selector}.pem"


def _next_selectors(created: float, state: _State) -> dict[Algorithm, str]:
    """Dated selectors not used before: ``YYYYMMDDr``/``e``, then ``...r2``/``e2``, ..."""
    day = time.strftime("%Y%m%d", time.gmtime(created))
    used = {e.selector for e in state.keys} | set(state.removed)
    counter = 1
    while True:
        tail = "" if counter == 1 else str(counter)
        names = {alg: f"{day}{_SUFFIX[alg]}{tail}" for alg in ALGORITHMS}
        if not used & set(names.values()):
            return names
        counter += 1


def _generate(algorithm: Algorithm) -> tuple[bytes, str]:
    """A new private key as PEM, and the TXT value publishing its public key."""
    if algorithm == "rsa-sha256":
        rsa_key = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=RSA_BITS)
        pem = rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        # p= is the base64 DER SubjectPublicKeyInfo, what every DKIM
        # implementation publishes (RFC 6376 §3.6.1, errata 3017).
        spki = rsa_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem, f"v=DKIM1; k=rsa; p={base64.b64encode(spki).decode()}"
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pem = ed_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # RFC 8463 §4: p= is the bare 32-octet public key, not a SubjectPublicKeyInfo.
    raw = ed_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return pem, f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def _with_private(domain: str, directory: Path, entry: _Entry) -> DKIMKey:
    path = directory / _key_file(entry.selector)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeysError(f"cannot read DKIM private key {path}: {exc.strerror}") from exc
    if entry.algorithm == "rsa-sha256":
        private = pem
    else:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except ValueError as exc:
            raise KeysError(f"{path} is not a readable PEM private key") from exc
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise KeysError(f"{path} is not an Ed25519 private key")
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        # dkimpy reads Ed25519 keys as PyNaCl SigningKey seeds in base64.
        private = base64.b64encode(seed)
    return DKIMKey(
        domain=domain,
        selector=entry.selector,
        algorithm=entry.algorithm,
        private_key=private,
        public_txt=entry.public_txt,
        active=entry.active,
        created=entry.created,
    )


def _parse_state(path: Path, raw: bytes) -> _State:
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("unknown format")
        keys = [_entry(cast(dict[str, Any], item)) for item in data["keys"]]
        removed = [str(s) for s in data.get("removed", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeysError(f"{path} is damaged ({exc}); restore it from a backup") from exc
    return _State(keys, removed)


def _entry(item: dict[str, Any]) -> _Entry:
    algorithm = item["algorithm"]
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    selector = item["selector"]
    if not isinstance(selector, str) or not selector or "/" in selector or selector[0] == ".":
        raise ValueError(f"bad selector {selector!r}")
    return _Entry(
        selector=selector,
        algorithm=cast(Algorithm, algorithm),
        public_txt=str(item["public_txt"]),
        active=bool(item["active"]),
        created=float(item["created"]),
    )


@contextlib.contextmanager
def _exclusive(directory: Path) -> Iterator[Path]:
    """Hold an exclusive flock on ``directory/.lock`` (between pochta processes)."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield directory
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` so that it is either the old or the new content, durably."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed or widened it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
