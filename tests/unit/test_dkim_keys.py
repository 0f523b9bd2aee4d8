"""DKIM key store (pochta.mailauth.keys) and ``pochta domain dkim`` / quickstart keys."""

from __future__ import annotations

import base64
import calendar
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import pochta.accounts.registry
import pochta.mailauth.keys
from pochta.accounts import Accounts, AddressError
from pochta.cli import _register, cli
from pochta.mailauth.keys import DKIMKey, DKIMKeyStore, KeysError

#: 2026-11-28 10:00 UTC, and the same day later, and the next day.
DAY1 = float(calendar.timegm((2026, 11, 28, 10, 0, 0)))
DAY1_LATER = DAY1 + 3600
DAY2 = DAY1 + 86400


@pytest.fixture
def keys(tmp_path: Path) -> DKIMKeyStore:
    return DKIMKeyStore(tmp_path / "data")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def p_value(key: DKIMKey) -> bytes:
    match = re.search(r"p=([A-Za-z0-9+/=]+)$", key.public_txt)
    assert match is not None, key.public_txt
    return base64.b64decode(match.group(1))


# --- the store ---------------------------------------------------------------------


def test_create_makes_an_rsa_and_an_ed25519_key(keys: DKIMKeyStore, tmp_path: Path) -> None:
    made = keys.create("Example.TEST", now=DAY1)
    assert [(k.selector, k.algorithm, k.active) for k in made] == [
        ("20261128r", "rsa-sha256", True),
        ("20261128e", "ed25519-sha256", True),
    ]
    assert all(k.domain == "example.test" and k.created == DAY1 for k in made)
    rsa_key, ed_key = made
    assert rsa_key.public_txt.startswith("v=DKIM1; k=rsa; p=MIIB")
    assert ed_key.public_txt.startswith("v=DKIM1; k=ed25519; p=")
    assert rsa_key.record_name == "20261128r._domainkey.example.test"
    # The private halves match the published public keys.
    private = serialization.load_pem_private_key(rsa_key.private_key, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048 and private.public_key().public_numbers().e == 65537
    spki = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert p_value(rsa_key) == spki
    seed = base64.b64decode(ed_key.private_key)
    assert len(seed) == 32
    public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert p_value(ed_key) == raw  # RFC 8463 §4: the bare 32 octets
    # A second create changes nothing.
    assert keys.create("example.test", now=DAY2) == made
    assert keys.published("example.test") == made == keys.active("EXAMPLE.test")
    assert "private_key" not in repr(rsa_key)


def test_files_are_private(keys: DKIMKeyStore, tmp_path: Path) -> None:
    old = os.umask(0)  # a permissive umask must not leak into the key files
    try:
        keys.create("example.test", now=DAY1)
    finally:
        os.umask(old)
    directory = tmp_path / "data" / "dkim" / "example.test"
    assert mode(tmp_path / "data" / "dkim") == 0o700
    assert mode(directory) == 0o700
    for name in ("20261128r.pem", "20261128e.pem", "keys.json"):
        assert mode(directory / name) == 0o600, name
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    state = json.loads((directory / "keys.json").read_text())
    assert [k["selector"] for k in state["keys"]] == ["20261128r", "20261128e"]
    assert "PRIVATE" not in (directory / "keys.json").read_text()
    assert (directory / "20261128e.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")


def test_rotate_retires_and_numbers_selectors(keys: DKIMKeyStore) -> None:
    first = keys.create("example.test", now=DAY1)
    second = keys.rotate("example.test", now=DAY1_LATER)
    assert [k.selector for k in second] == ["20261128r2", "20261128e2"]
    third = keys.rotate("example.test", now=DAY1_LATER + 60)
    assert [k.selector for k in third] == ["20261128r3", "20261128e3"]
    fourth = keys.rotate("example.test", now=DAY2)
    assert [k.selector for k in fourth] == ["20261129r", "20261129e"]
    assert keys.active("example.test") == fourth
    published = keys.published("example.test")
    assert [k.selector for k in published] == [
        "20261129r",
        "20261129e",
        "20261128r3",
        "20261128e3",
        "20261128r2",
        "20261128e2",
        "20261128r",
        "20261128e",
    ]
    assert [k.active for k in published] == [True, True] + [False] * 6
    # Retired keys keep their key material and record.
    assert {k.public_txt for k in first} <= {k.public_txt for k in published}


def test_rotate_without_keys_creates_them(keys: DKIMKeyStore) -> None:
    made = keys.rotate("example.test", now=DAY1)
    assert [k.selector for k in made] == ["20261128r", "20261128e"]


def test_remove(keys: DKIMKeyStore, tmp_path: Path) -> None:
    keys.create("example.test", now=DAY1)
    with pytest.raises(KeysError, match="is active; run `pochta domain dkim rotate"):
        keys.remove("example.test", "20261128r")
    keys.rotate("example.test", now=DAY1_LATER)
    keys.remove("example.test", "20261128r")
    directory = tmp_path / "data" / "dkim" / "example.test"
    assert not (directory / "20261128r.pem").exists()
    assert [k.selector for k in keys.published("example.test")] == [
        "20261128r2",
        "20261128e2",
        "20261128e",
    ]
    with pytest.raises(KeysError, match="no DKIM key with selector '20261128r'"):
        keys.remove("example.test", "20261128r")
    with pytest.raises(KeysError, match="no DKIM key"):
        keys.remove("other.test", "20261128r")
    assert not (tmp_path / "data" / "dkim" / "other.test").exists()
    # A removed selector is never handed out again (resolvers may cache it).
    keys.remove("example.test", "20261128e")
    keys.rotate("example.test", now=DAY1_LATER + 1)
    assert [k.selector for k in keys.active("example.test")] == ["20261128r3", "20261128e3"]


def test_reload_after_another_process_rotates(tmp_path: Path) -> None:
    server = DKIMKeyStore(tmp_path / "data")
    cli_store = DKIMKeyStore(tmp_path / "data")
    assert server.active("example.test") == []
    cli_store.create("example.test", now=DAY1)
    before = server.active("example.test")
    assert [k.selector for k in before] == ["20261128r", "20261128e"]
    # Unchanged state: the cached objects come back, nothing is re-read.
    assert server.active("example.test")[0] is before[0]
    cli_store.rotate("example.test", now=DAY1_LATER)
    assert [k.selector for k in server.active("example.test")] == ["20261128r2", "20261128e2"]
    cli_store.delete_domain("example.test")
    assert server.active("example.test") == []


def test_delete_domain(keys: DKIMKeyStore, tmp_path: Path) -> None:
    keys.create("example.test", now=DAY1)
    keys.create("other.test", now=DAY1)
    keys.delete_domain("example.test")
    assert not (tmp_path / "data" / "dkim" / "example.test").exists()
    assert keys.published("example.test") == []
    assert len(keys.published("other.test")) == 2
    keys.delete_domain("never.test")  # nothing to do


def test_reading_creates_nothing(keys: DKIMKeyStore, tmp_path: Path) -> None:
    assert keys.published("example.test") == [] and keys.active("example.test") == []
    assert not (tmp_path / "data" / "dkim").exists()


def test_idn_and_invalid_domains(keys: DKIMKeyStore) -> None:
    made = keys.create("bücher.example", now=DAY1)
    assert made[0].domain == "xn--bcher-kva.example"
    assert keys.active("xn--bcher-kva.example") == made
    for bad in ("../etc", "a..b", ""):
        with pytest.raises(AddressError):
            keys.create(bad)


def test_damaged_state_is_one_line_error(keys: DKIMKeyStore, tmp_path: Path) -> None:
    keys.create("example.test", now=DAY1)
    state = tmp_path / "data" / "dkim" / "example.test" / "keys.json"
    state.write_text("{not json")
    with pytest.raises(KeysError, match=r"keys\.json is damaged"):
        keys.active("example.test")
    state.write_text(json.dumps({"version": 1, "keys": [{"selector": "x"}]}))
    with pytest.raises(KeysError, match="damaged"):
        keys.rotate("example.test")


def test_missing_private_key_file(keys: DKIMKeyStore, tmp_path: Path) -> None:
    keys.create("example.test", now=DAY1)
    (tmp_path / "data" / "dkim" / "example.test" / "20261128e.pem").unlink()
    with pytest.raises(KeysError, match="cannot read DKIM private key"):
        DKIMKeyStore(tmp_path / "data").active("example.test")


# --- the commands ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        pochta.accounts.registry,
        "default_hasher",
        lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pochta.toml"
    path.write_text('hostname = "mail.example.test"\ndata_dir = "data"\n')
    return path


@pytest.fixture
def run(config: Path) -> Iterator[Callable[..., Result]]:
    _register()
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, ["--config", str(config), *args])

    yield invoke


def ok(result: Result) -> list[str]:
    assert result.exception is None, (result.output, result.exception)
    assert result.exit_code == 0
    return result.stdout.splitlines()


def test_domain_add_makes_keys_and_del_removes_them(
    run: Callable[..., Result], config: Path
) -> None:
    result = run("domain", "add", "example.test")
    assert ok(result) == ["domain example.test added"]
    store = DKIMKeyStore(config.parent / "data")
    made = store.active("example.test")
    assert [k.algorithm for k in made] == ["rsa-sha256", "ed25519-sha256"]
    for key in made:
        assert key.selector in result.stderr
    assert "pochta dns records example.test" in result.stderr
    assert ok(run("domain", "del", "example.test")) == ["domain example.test deleted"]
    assert store.published("example.test") == []
    assert not (config.parent / "data" / "dkim" / "example.test").exists()


def test_domain_dkim_rotate_list_remove(run: Callable[..., Result], config: Path) -> None:
    ok(run("domain", "add", "example.test"))
    store = DKIMKeyStore(config.parent / "data")
    old = store.active("example.test")
    lines = ok(run("domain", "dkim", "rotate", "example.test"))
    new = store.active("example.test")
    assert {k.selector for k in new}.isdisjoint({k.selector for k in old})
    assert all(k.selector in lines[0] for k in new)
    assert "pochta dns records example.test" in lines[1]
    for key in old:
        assert any(
            f"pochta domain dkim remove example.test {key.selector}" in line for line in lines
        )
        assert any(f"{key.selector} is retired but stays published" in line for line in lines)

    listing = ok(run("domain", "dkim", "list", "example.test"))
    assert len(listing) == 4
    rows = [line.split() for line in listing]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (new[0].selector, "rsa-sha256", "active"),
        (new[1].selector, "ed25519-sha256", "active"),
        (old[0].selector, "rsa-sha256", "retired"),
        (old[1].selector, "ed25519-sha256", "retired"),
    ]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", r[3]) for r in rows)

    removed = ok(run("domain", "dkim", "remove", "example.test", old[0].selector))
    assert removed[0] == (
        f"DKIM key {old[0].selector} of example.test removed; delete its DNS record"
    )
    assert len(ok(run("domain", "dkim", "list", "example.test"))) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("domain", "dkim", "rotate", "nowhere.test"), "no such domain nowhere.test"),
        (("domain", "dkim", "list", "nowhere.test"), "nowhere.test has no DKIM keys"),
        (("domain", "dkim", "remove", "example.test", "nope"), "no DKIM key with selector"),
        (("domain", "dkim", "rotate", "bad..name"), "invalid domain"),
    ],
)
def test_domain_dkim_errors(
    run: Callable[..., Result], args: tuple[str, ...], message: str
) -> None:
    ok(run("domain", "add", "example.test"))
    result = run(*args)
    assert result.exit_code == 1
    assert message in str(result.exception)


def test_removing_an_active_key_is_refused(run: Callable[..., Result], config: Path) -> None:
    ok(run("domain", "add", "example.test"))
    active = DKIMKeyStore(config.parent / "data").active("example.test")
    result = run("domain", "dkim", "remove", "example.test", active[0].selector)
    assert isinstance(result.exception, KeysError) and result.exit_code == 1
    assert "is active" in str(result.exception)


def test_domain_del_keeps_keys_of_a_domain_still_in_use(
    run: Callable[..., Result], config: Path
) -> None:
    ok(run("domain", "add", "example.test"))
    accounts = Accounts.open(config.parent / "data" / "accounts.sqlite")
    try:
        accounts.add_user("bob@example.test", "pw")
    finally:
        accounts.close()
    assert run("domain", "del", "example.test").exit_code == 1
    assert len(DKIMKeyStore(config.parent / "data").active("example.test")) == 2


def test_quickstart_creates_keys_and_prints_their_records(tmp_path: Path) -> None:
    _register()
    target = tmp_path / "srv"
    result = CliRunner().invoke(cli, ["quickstart", "--dir", str(target), "demo@example.test"])
    assert result.exception is None, (result.output, result.exception)
    made = DKIMKeyStore(target / "data").active("example.test")
    assert [k.algorithm for k in made] == ["rsa-sha256", "ed25519-sha256"]
    for key in made:
        assert f"{key.selector}._domainkey" in result.stdout


def test_reload_racing_a_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader that read keys.json just before `remove` replaced it tries again."""
    server = DKIMKeyStore(tmp_path / "data")
    other = DKIMKeyStore(tmp_path / "data")
    other.create("example.test", now=DAY1)
    other.rotate("example.test", now=DAY1_LATER)
    original = pochta.mailauth.keys._with_private
    raced: list[str] = []

    def racing(domain: str, directory: Path, entry: object) -> DKIMKey:
        if not raced:
            raced.append("once")
            other.remove("example.test", "20261128r")  # new keys.json, then unlink
        return original(domain, directory, entry)  # type: ignore[arg-type]

    monkeypatch.setattr(pochta.mailauth.keys, "_with_private", racing)
    published = server.published("example.test")
    assert raced and [k.selector for k in published] == ["20261128r2", "20261128e2", "20261128e"]
