"""The accounts database: domains, users, aliases, passwords, resolution."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Literal

import pytest
from argon2 import PasswordHasher

from pochta.accounts import (
    MAX_ALIAS_DEPTH,
    Accounts,
    AccountsError,
    AddressError,
    Alias,
    AliasExists,
    AliasLoop,
    AliasNotFound,
    DomainExists,
    DomainNotEmpty,
    DomainNotFound,
    Resolution,
    User,
    UserExists,
    UserNotFound,
    generate_password,
)
from pochta.accounts.passwords import PASSWORD_ALPHABET
from pochta.errors import UserFacingError

D = "example.test"


def exact(message: str) -> str:
    """A ``match=`` pattern for exactly this message."""
    return f"^{re.escape(message)}$"


def cheap_hasher(memory_cost: int = 1024) -> PasswordHasher:
    """argon2id with test-only parameters: fast, not safe."""
    return PasswordHasher(time_cost=1, memory_cost=memory_cost, parallelism=1)


class CountingHasher(PasswordHasher):
    """A cheap hasher that counts verifications (to see the dummy hash used)."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "accounts.sqlite"


@pytest.fixture
def accounts(db_path: Path) -> Iterator[Accounts]:
    with Accounts.open(db_path, hasher=cheap_hasher()) as acc:
        acc.add_domain(D)
        yield acc


def raw_hash(db_path: Path, address: str) -> str:
    with sqlite3.connect(db_path) as db:
        row = db.execute("SELECT password_hash FROM users WHERE address = ?", (address,)).fetchone()
    assert row is not None
    return str(row[0])


# --- opening ------------------------------------------------------------------


def test_open_creates_parent_dir_schema_and_wal(db_path: Path) -> None:
    Accounts.open(db_path, hasher=cheap_hasher()).close()
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(2,)]


def test_reopen_keeps_data(db_path: Path) -> None:
    with Accounts.open(db_path, hasher=cheap_hasher()) as acc:
        acc.add_domain(D)
        acc.add_user(f"bob@{D}", "pw")
    with Accounts.open(db_path, hasher=cheap_hasher()) as acc:
        assert acc.list_domains() == [D]
        assert acc.authenticate(f"bob@{D}", "pw") is not None


def test_newer_schema_is_refused(db_path: Path) -> None:
    Accounts.open(db_path, hasher=cheap_hasher()).close()
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(AccountsError, match="schema version 99"):
        Accounts.open(db_path)


def test_not_a_database_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "accounts.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(AccountsError, match="cannot open accounts database"):
        Accounts.open(path)


def test_a_second_connection_sees_writes(db_path: Path, accounts: Accounts) -> None:
    with Accounts.open(db_path, hasher=cheap_hasher()) as reader:
        assert reader.resolve(f"bob@{D}") == Resolution(True, ())
        accounts.add_user(f"bob@{D}", "pw")
        assert reader.resolve(f"bob@{D}") == Resolution(True, (f"bob@{D}",))


# --- domains --------------------------------------------------------------------


def test_domains(accounts: Accounts) -> None:
    assert accounts.add_domain("Bücher.Example") == "xn--bcher-kva.example"
    assert accounts.list_domains() == [D, "xn--bcher-kva.example"]
    assert accounts.is_local_domain("EXAMPLE.test")
    assert accounts.is_local_domain("bücher.example")
    assert not accounts.is_local_domain("other.test")
    assert not accounts.is_local_domain("bad..name")
    accounts.del_domain("BÜCHER.example")
    assert accounts.list_domains() == [D]


def test_domain_errors(accounts: Accounts) -> None:
    with pytest.raises(DomainExists, match=exact(f"domain {D} already exists")):
        accounts.add_domain(D.upper())
    with pytest.raises(AddressError, match="invalid domain"):
        accounts.add_domain("bad..name")
    with pytest.raises(DomainNotFound, match=exact("no such domain other.test")):
        accounts.del_domain("other.test")


def test_del_domain_refuses_when_not_empty(accounts: Accounts) -> None:
    accounts.add_user(f"bob@{D}", "pw")
    with pytest.raises(DomainNotEmpty, match="1 user and 0 aliases"):
        accounts.del_domain(D)
    accounts.add_alias(f"info@{D}", f"bob@{D}")
    accounts.del_user(f"bob@{D}")  # also drops info@ (its only target)
    accounts.add_domain("other.test")
    accounts.add_user("carol@other.test", "pw")
    accounts.add_alias(f"@{D}", "carol@other.test")
    with pytest.raises(DomainNotEmpty, match="0 users and 1 alias;"):
        accounts.del_domain(D)
    accounts.del_alias(f"@{D}")
    accounts.del_domain(D)
    assert accounts.list_domains() == ["other.test"]


# --- users ----------------------------------------------------------------------


def test_add_and_get_user(accounts: Accounts) -> None:
    user = accounts.add_user(f"Bob@{D.upper()}", "secret")
    assert user == User(f"bob@{D}", "bob", D)
    assert user.maildir == PurePosixPath("mail", D, "bob")
    assert accounts.get_user(f"BOB@{D}") == user
    assert accounts.get_user(f"nobody@{D}") is None
    assert accounts.get_user("not an address") is None


def test_user_errors(accounts: Accounts) -> None:
    accounts.add_user(f"bob@{D}", "pw")
    with pytest.raises(UserExists, match=exact(f"user bob@{D} already exists")):
        accounts.add_user(f"BOB@{D}", "pw")
    with pytest.raises(DomainNotFound, match=re.escape("no such domain other.test")):
        accounts.add_user("bob@other.test", "pw")
    with pytest.raises(AccountsError, match="must not be empty"):
        accounts.add_user(f"carol@{D}", "")
    with pytest.raises(AccountsError, match="NUL"):
        accounts.add_user(f"carol@{D}", "a\0b")
    with pytest.raises(UserNotFound, match=exact(f"no such user carol@{D}")):
        accounts.del_user(f"carol@{D}")
    with pytest.raises(UserNotFound):
        accounts.set_password(f"carol@{D}", "pw")
    assert accounts.get_user(f"carol@{D}") is None


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        (f"bob+tag@{D}", "subaddress separator"),
        (f".bob@{D}", "invalid address"),
        (f'".bob"@{D}', "leading"),
        (f'"bo..b"@{D}', "'..'"),
        (f"-bob@{D}", "leading"),
        (f"b/ob@{D}", "only a-z"),
        (f'"b/ob"@{D}', "only a-z"),
        (f'"../x"@{D}', "only a-z"),
        (f'"b ob"@{D}', "only a-z"),
        (f"bö@{D}", "only a-z"),
        (f"b!ob@{D}", "only a-z"),
    ],
)
def test_user_names_must_be_safe_directory_names(
    accounts: Accounts, address: str, fragment: str
) -> None:
    with pytest.raises(AddressError, match="invalid") as info:
        accounts.add_user(address, "pw")
    assert fragment in str(info.value)


def test_user_name_characters_allowed(accounts: Accounts) -> None:
    user = accounts.add_user(f"First.Last-2_x=y@{D}", "pw")
    assert user.local == "first.last-2_x=y"


def test_list_users(accounts: Accounts) -> None:
    accounts.add_domain("a.test")
    for address in (f"zed@{D}", f"amy@{D}", "bob@a.test"):
        accounts.add_user(address, "pw")
    assert [u.address for u in accounts.list_users()] == ["bob@a.test", f"amy@{D}", f"zed@{D}"]
    assert [u.address for u in accounts.list_users(D.upper())] == [f"amy@{D}", f"zed@{D}"]
    with pytest.raises(DomainNotFound):
        accounts.list_users("other.test")


def test_del_user_removes_aliases_that_target_it(accounts: Accounts) -> None:
    accounts.add_user(f"bob@{D}", "pw")
    accounts.add_user(f"amy@{D}", "pw")
    accounts.add_alias(f"team@{D}", f"bob@{D}")
    accounts.add_alias(f"team@{D}", f"amy@{D}")
    assert accounts.del_user(f"BOB@{D}") == User(f"bob@{D}", "bob", D)
    assert accounts.list_aliases() == [Alias(f"team@{D}", f"amy@{D}")]
    assert accounts.resolve(f"bob@{D}") == Resolution(True, ())


# --- passwords --------------------------------------------------------------------


def test_authenticate(accounts: Accounts) -> None:
    user = accounts.add_user(f"bob@{D}", "correct horse")
    assert accounts.authenticate(f"bob@{D}", "correct horse") == user
    assert accounts.authenticate(f"BOB@{D.upper()}", "correct horse") == user
    assert accounts.authenticate(f"bob@{D}", "Correct horse") is None
    assert accounts.authenticate(f"bob@{D}", "") is None
    assert accounts.authenticate(f"nobody@{D}", "correct horse") is None
    assert accounts.authenticate("garbage", "correct horse") is None


def test_passwords_are_stored_as_argon2id(accounts: Accounts, db_path: Path) -> None:
    accounts.add_user(f"bob@{D}", "correct horse")
    stored = raw_hash(db_path, f"bob@{D}")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored


def test_set_password(accounts: Accounts) -> None:
    accounts.add_user(f"bob@{D}", "old")
    accounts.set_password(f"Bob@{D}", "new")
    assert accounts.authenticate(f"bob@{D}", "old") is None
    assert accounts.authenticate(f"bob@{D}", "new") is not None
    with pytest.raises(AccountsError, match="empty"):
        accounts.set_password(f"bob@{D}", "")


def test_unknown_user_still_costs_one_verification(db_path: Path) -> None:
    hasher = CountingHasher()
    with Accounts.open(db_path, hasher=hasher) as acc:
        acc.add_domain(D)
        acc.add_user(f"bob@{D}", "pw")
        assert acc.authenticate(f"nobody@{D}", "pw") is None
        assert acc.authenticate("not an address", "pw") is None
        assert acc.authenticate(f"bob@{D}", "wrong") is None
        assert hasher.verified == 3


def test_hash_with_old_parameters_is_replaced_on_login(db_path: Path) -> None:
    with Accounts.open(db_path, hasher=cheap_hasher()) as acc:
        acc.add_domain(D)
        acc.add_user(f"bob@{D}", "pw")
    old = raw_hash(db_path, f"bob@{D}")
    stronger = cheap_hasher(memory_cost=2048)
    with Accounts.open(db_path, hasher=stronger) as acc:
        assert acc.authenticate(f"bob@{D}", "wrong") is None
        assert raw_hash(db_path, f"bob@{D}") == old
        assert acc.authenticate(f"bob@{D}", "pw") is not None
    new = raw_hash(db_path, f"bob@{D}")
    assert new != old and "m=2048" in new
    assert not stronger.check_needs_rehash(new)


def test_corrupt_hash_fails_closed(accounts: Accounts, db_path: Path) -> None:
    accounts.add_user(f"bob@{D}", "pw")
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE users SET password_hash = 'nonsense'")
    assert accounts.authenticate(f"bob@{D}", "pw") is None


def test_authenticate_from_worker_threads(accounts: Accounts) -> None:
    accounts.add_user(f"bob@{D}", "pw")
    with ThreadPoolExecutor(4) as pool:
        logins = list(pool.map(lambda pw: accounts.authenticate(f"bob@{D}", pw), ["pw", "x"] * 8))
        resolved = list(pool.map(accounts.resolve, [f"bob@{D}"] * 16))
    assert [u is not None for u in logins] == [True, False] * 8
    assert set(resolved) == {Resolution(True, (f"bob@{D}",))}


def test_generate_password() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) >= 20
        assert set(password) <= set(PASSWORD_ALPHABET)
    assert not set("0O1lI") & set(PASSWORD_ALPHABET)


# --- aliases --------------------------------------------------------------------


@pytest.fixture
def team(accounts: Accounts) -> Accounts:
    """bob, amy and carol at example.test."""
    for name in ("bob", "amy", "carol"):
        accounts.add_user(f"{name}@{D}", "pw")
    return accounts


def test_add_alias_and_list(team: Accounts) -> None:
    assert team.add_alias(f"Info@{D}", f"BOB@{D}") == Alias(f"info@{D}", f"bob@{D}")
    team.add_alias(f"@{D.upper()}", f"amy@{D}")
    assert team.list_aliases() == [Alias(f"@{D}", f"amy@{D}"), Alias(f"info@{D}", f"bob@{D}")]


def test_alias_errors(team: Accounts) -> None:
    team.add_alias(f"info@{D}", f"bob@{D}")
    with pytest.raises(AliasExists, match=exact(f"alias info@{D} -> bob@{D} already exists")):
        team.add_alias(f"INFO@{D}", f"bob@{D}")
    with pytest.raises(DomainNotFound, match=re.escape("no such domain other.test")):
        team.add_alias("info@other.test", f"bob@{D}")
    with pytest.raises(AddressError):
        team.add_alias(f"ext@{D}", "someone@[192.0.2.1]")  # no address literals, remote or not
    with pytest.raises(AddressError):
        team.add_alias(f"ext@{D}", "no at sign")
    with pytest.raises(UserNotFound, match=re.escape(f"no such user or alias nobody@{D}")):
        team.add_alias(f"ext@{D}", f"nobody@{D}")
    with pytest.raises(UserExists, match="is a user"):
        team.add_alias(f"amy@{D}", f"bob@{D}")
    with pytest.raises(AliasExists, match="already an alias"):
        team.add_user(f"info@{D}", "pw")
    with pytest.raises(AddressError):
        team.add_alias(f"ext@{D}", f"@{D}")  # a catch-all is not a target
    with pytest.raises(AddressError):
        team.add_alias("@bad..domain", f"bob@{D}")


# --- forwarding: remote alias targets ---------------------------------------------


def test_remote_targets_are_added_and_listed(team: Accounts) -> None:
    added = team.add_alias(f"Fwd@{D}", "Bob@Two.TEST")
    # Stored canonical, like every key (Address.key): case folded, domain an A-label.
    assert added == Alias(f"fwd@{D}", "bob@two.test", remote=True)
    team.add_alias(f"fwd@{D}", f"amy@{D}")
    team.add_alias(f"fwd@{D}", "zed@bücher.example")  # IDN domains are stored as A-labels
    team.add_alias(f"odd@{D}", f'"x@{D}"@two.test')  # the domain is after the last "@"
    assert team.list_aliases() == [
        Alias(f"fwd@{D}", f"amy@{D}"),
        Alias(f"fwd@{D}", "bob@two.test", remote=True),
        Alias(f"fwd@{D}", "zed@xn--bcher-kva.example", remote=True),
        Alias(f"odd@{D}", f'"x@{D}"@two.test', remote=True),
    ]
    assert team.resolve(f"odd@{D}").remote == (f'"x@{D}"@two.test',)
    with pytest.raises(AliasExists, match=exact(f"alias fwd@{D} -> bob@two.test already exists")):
        team.add_alias(f"fwd@{D}", "BOB@two.test")
    with pytest.raises(DomainNotFound, match=re.escape("no such domain two.test")):
        team.add_alias("x@two.test", "bob@three.test")  # the alias itself must be local
    with pytest.raises(UserExists, match="is a user"):
        team.add_alias(f"bob@{D}", "bob@two.test")


def test_resolve_remote_only_alias(team: Accounts) -> None:
    team.add_alias(f"fwd@{D}", "bob@two.test")
    assert team.resolve(f"fwd@{D}") == Resolution(True, (), ("bob@two.test",))
    assert team.resolve(f"FWD+tag@{D}") == Resolution(True, (), ("bob@two.test",))
    assert team.resolve(f"fwd@{D}").deliverable
    assert not team.resolve(f"nobody@{D}").deliverable


def test_resolve_mixed_local_and_remote(team: Accounts) -> None:
    team.add_alias(f"list@{D}", "zed@far.test")
    team.add_alias(f"list@{D}", f"bob@{D}")
    team.add_alias(f"list@{D}", "amy@near.test")
    team.add_alias(f"sales@{D}", f"amy@{D}")
    team.add_alias(f"sales@{D}", "amy@near.test")
    team.add_alias(f"sales@{D}", "zed@far.test")
    team.add_alias(f"all@{D}", f"list@{D}")
    team.add_alias(f"all@{D}", f"sales@{D}")
    team.add_alias(f"all@{D}", "boss@hq.test")
    # Users sorted and once; remote targets once each, in the order the
    # expansion reaches them: boss@ at hop 1 before those at hop 2.
    found = team.resolve(f"all@{D}")
    assert found.users == (f"amy@{D}", f"bob@{D}")
    assert found.remote[0] == "boss@hq.test"
    assert sorted(found.remote) == ["amy@near.test", "boss@hq.test", "zed@far.test"]
    assert team.resolve(f"all@{D}") == found  # cached, same answer
    assert team.sender_allowed(f"amy@{D}", f"all@{D}")  # through the local part only


def test_remote_targets_keep_the_order_they_were_added(db_path: Path, team: Accounts) -> None:
    with sqlite3.connect(db_path) as db:
        db.executemany(
            "INSERT INTO aliases (alias, target, domain, created) VALUES (?, ?, ?, ?)",
            [
                (f"fwd@{D}", "zed@far.test", D, 1),
                (f"fwd@{D}", "amy@near.test", D, 2),
                (f"fwd@{D}", "bob@mid.test", D, 3),
            ],
        )
    assert team.resolve(f"fwd@{D}").remote == ("zed@far.test", "amy@near.test", "bob@mid.test")


def test_remote_catch_all_and_postmaster(team: Accounts) -> None:
    team.add_alias(f"@{D}", "everything@backup.test")
    assert team.resolve(f"whoever@{D}") == Resolution(True, (), ("everything@backup.test",))
    # postmaster reaches the catch-all's remote target, not the first user.
    assert team.resolve(f"postmaster@{D}") == Resolution(True, (), ("everything@backup.test",))
    assert team.resolve(f"bob@{D}") == Resolution(True, (f"bob@{D}",))


def test_remote_is_decided_by_the_domains_at_resolve_time(team: Accounts) -> None:
    """A target's remoteness is not stored (no schema change): adding its
    domain makes it local, as an MTA would route it."""
    team.add_alias(f"fwd@{D}", "bob@two.test")
    team.add_domain("two.test")
    assert team.resolve(f"fwd@{D}") == Resolution(True, ())  # now a dangling local target
    assert team.list_aliases() == [Alias(f"fwd@{D}", "bob@two.test")]
    team.add_user("bob@two.test", "pw")
    assert team.resolve(f"fwd@{D}") == Resolution(True, ("bob@two.test",))


def test_remote_targets_respect_the_depth_limit(team: Accounts) -> None:
    team.add_alias(f"a9@{D}", "far@remote.test")
    for k in range(8, -1, -1):
        team.add_alias(f"a{k}@{D}", f"a{k + 1}@{D}")
    hops_ok = 10 - MAX_ALIAS_DEPTH
    assert team.resolve(f"a{hops_ok}@{D}").remote == ("far@remote.test",)
    assert team.resolve(f"a{hops_ok - 1}@{D}") == Resolution(True, ())


def test_schema_2_database_takes_remote_targets_unchanged(db_path: Path) -> None:
    """The aliases table of schema 2 has no constraint on targets: no migration."""
    with Accounts.open(db_path, hasher=cheap_hasher()) as acc:
        acc.add_domain(D)
        acc.add_user(f"bob@{D}", "pw")
        acc.add_alias(f"old@{D}", f"bob@{D}")
    with Accounts.open(db_path, hasher=cheap_hasher()) as acc:
        acc.add_alias(f"old@{D}", "bob@two.test")
        assert acc.resolve(f"old@{D}") == Resolution(True, (f"bob@{D}",), ("bob@two.test",))
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(2,)]


def test_alias_cli_adds_and_lists_remote_targets(tmp_path: Path) -> None:
    """``pochta alias add|list`` with a remote target (the CLI's own file tests the rest)."""
    from click.testing import CliRunner

    from pochta.cli import _register, cli

    config = tmp_path / "pochta.toml"
    config.write_text('hostname = "mail.example.test"\ndata_dir = "data"\n')
    with Accounts.open(tmp_path / "data" / "accounts.sqlite", hasher=cheap_hasher()) as acc:
        acc.add_domain(D)
        acc.add_user(f"bob@{D}", "pw")
    _register()
    runner = CliRunner()

    def run(*args: str) -> list[str]:
        result = runner.invoke(cli, ["--config", str(config), *args])
        assert result.exception is None, result.output
        return result.stdout.splitlines()

    assert run("alias", "add", f"fwd@{D}", "Bob@Two.test") == [
        f"alias fwd@{D} -> bob@two.test added"
    ]
    run("alias", "add", f"fwd@{D}", f"bob@{D}")
    assert run("alias", "list") == [
        f"fwd@{D} -> bob@{D}",
        f"fwd@{D} -> bob@two.test (remote)",
    ]


def test_alias_loops_are_refused(team: Accounts) -> None:
    with pytest.raises(AliasLoop, match="loop"):
        team.add_alias(f"a@{D}", f"a@{D}")  # a target must exist, but self is checked first
    team.add_alias(f"a@{D}", f"bob@{D}")
    with pytest.raises(AliasLoop):
        team.add_alias(f"a@{D}", f"A@{D}")
    team.add_alias(f"b@{D}", f"a@{D}")
    team.add_alias(f"c@{D}", f"b@{D}")
    with pytest.raises(AliasLoop, match=exact(f"alias a@{D} -> c@{D} would make a loop")):
        team.add_alias(f"a@{D}", f"c@{D}")


def test_del_alias(team: Accounts) -> None:
    team.add_alias(f"team@{D}", f"bob@{D}")
    team.add_alias(f"team@{D}", f"amy@{D}")
    team.add_alias(f"team@{D}", f"carol@{D}")
    assert team.del_alias(f"TEAM@{D}", f"Bob@{D}") == 1
    with pytest.raises(AliasNotFound, match=exact(f"no such alias team@{D} -> bob@{D}")):
        team.del_alias(f"team@{D}", f"bob@{D}")
    assert team.del_alias(f"team@{D}") == 2
    with pytest.raises(AliasNotFound, match=exact(f"no such alias team@{D}")):
        team.del_alias(f"team@{D}")
    team.add_alias(f"@{D}", f"bob@{D}")
    assert team.del_alias(f"@{D}") == 1
    assert team.list_aliases() == []


# --- resolve --------------------------------------------------------------------


def test_resolve_user_and_unknown(team: Accounts) -> None:
    assert team.resolve(f"Bob@{D.upper()}") == Resolution(True, (f"bob@{D}",))
    assert team.resolve(f"nobody@{D}") == Resolution(True, ())
    assert team.resolve("bob@elsewhere.test") == Resolution(False, ())
    assert team.resolve("not an address") == Resolution(False, ())
    assert team.resolve("bob@[192.0.2.1]") == Resolution(False, ())


def test_resolve_multi_target_alias(team: Accounts) -> None:
    for name in ("carol", "bob", "amy"):
        team.add_alias(f"team@{D}", f"{name}@{D}")
    assert team.resolve(f"team@{D}") == Resolution(True, (f"amy@{D}", f"bob@{D}", f"carol@{D}"))


def test_resolve_alias_chain_and_duplicates(team: Accounts) -> None:
    team.add_alias(f"sales@{D}", f"bob@{D}")
    team.add_alias(f"support@{D}", f"bob@{D}")
    team.add_alias(f"support@{D}", f"amy@{D}")
    team.add_alias(f"info@{D}", f"sales@{D}")
    team.add_alias(f"info@{D}", f"support@{D}")
    team.add_alias(f"info@{D}", f"bob@{D}")
    # bob is reached three ways and delivered to once.
    assert team.resolve(f"info@{D}") == Resolution(True, (f"amy@{D}", f"bob@{D}"))


def test_resolve_subaddress(team: Accounts) -> None:
    team.add_alias(f"sales@{D}", f"amy@{D}")
    team.add_alias(f"bob+vip@{D}", f"carol@{D}")
    assert team.resolve(f"bob+lists@{D}") == Resolution(True, (f"bob@{D}",))
    assert team.resolve(f"BOB+@{D}") == Resolution(True, (f"bob@{D}",))
    assert team.resolve(f"sales+x@{D}") == Resolution(True, (f"amy@{D}",))
    assert team.resolve(f"bob+vip@{D}") == Resolution(True, (f"carol@{D}",))  # exact wins
    assert team.resolve(f"nobody+x@{D}") == Resolution(True, ())
    assert team.resolve(f"+bob@{D}") == Resolution(True, ())


def test_resolve_catch_all(team: Accounts) -> None:
    team.add_alias(f"@{D}", f"carol@{D}")
    team.add_alias(f"sales@{D}", f"amy@{D}")
    assert team.resolve(f"anything@{D}") == Resolution(True, (f"carol@{D}",))
    assert team.resolve(f'"odd one"@{D}') == Resolution(True, (f"carol@{D}",))
    assert team.resolve(f"nobody+x@{D}") == Resolution(True, (f"carol@{D}",))
    assert team.resolve(f"bob@{D}") == Resolution(True, (f"bob@{D}",))
    assert team.resolve(f"sales@{D}") == Resolution(True, (f"amy@{D}",))
    assert team.resolve("anything@elsewhere.test") == Resolution(False, ())


def test_resolve_catch_all_through_alias(team: Accounts) -> None:
    team.add_alias(f"ops@{D}", f"bob@{D}")
    team.add_alias(f"ops@{D}", f"amy@{D}")
    team.add_alias(f"@{D}", f"ops@{D}")
    assert team.resolve(f"whoever@{D}") == Resolution(True, (f"amy@{D}", f"bob@{D}"))


def insert_alias_rows(db_path: Path, rows: list[tuple[str, str]]) -> None:
    """Write alias rows by hand, bypassing the checks of ``add_alias``."""
    with sqlite3.connect(db_path) as db:
        db.executemany(
            "INSERT INTO aliases (alias, target, domain, created) VALUES (?, ?, ?, 0)",
            [(a, t, D) for a, t in rows],
        )


def test_resolve_ignores_loops_and_dangling_targets(team: Accounts, db_path: Path) -> None:
    insert_alias_rows(
        db_path,
        [
            (f"a@{D}", f"b@{D}"),
            (f"b@{D}", f"a@{D}"),
            (f"b@{D}", f"bob@{D}"),
            (f"b@{D}", f"gone@{D}"),
            (f"self@{D}", f"self@{D}"),
        ],
    )
    assert team.resolve(f"a@{D}") == Resolution(True, (f"bob@{D}",))
    assert team.resolve(f"b@{D}") == Resolution(True, (f"bob@{D}",))
    assert team.resolve(f"self@{D}") == Resolution(True, ())


def test_resolve_stops_at_max_depth(team: Accounts) -> None:
    # a0 -> a1 -> ... -> a9 -> bob: from a_k, bob is 10 - k hops away.
    team.add_alias(f"a9@{D}", f"bob@{D}")
    for k in range(8, -1, -1):
        team.add_alias(f"a{k}@{D}", f"a{k + 1}@{D}")
    hops_ok = 10 - MAX_ALIAS_DEPTH
    assert team.resolve(f"a{hops_ok}@{D}") == Resolution(True, (f"bob@{D}",))
    assert team.resolve(f"a{hops_ok - 1}@{D}") == Resolution(True, ())


def test_errors_are_user_facing_one_liners(team: Accounts) -> None:
    for call in (
        lambda: team.add_domain(D),
        lambda: team.add_user(f"bob@{D}", "pw"),
        lambda: team.del_alias(f"x@{D}"),
        lambda: team.add_user("bad\naddress", "pw"),
    ):
        with pytest.raises(UserFacingError) as info:
            call()
        assert "\n" not in str(info.value)


def test_resolve_cache_follows_writes_from_both_connections(
    db_path: Path, accounts: Accounts
) -> None:
    """The server caches RCPT answers; the CLI's writes (another connection)
    and the server's own must both be seen at once."""
    with Accounts.open(db_path, hasher=cheap_hasher()) as cli:
        assert accounts.resolve("new@example.test").users == ()
        cli.add_user("new@example.test", "pw")
        assert accounts.resolve("new@example.test").users == ("new@example.test",)
        cli.del_user("new@example.test")
        assert accounts.resolve("new@example.test").users == ()
    accounts.add_user("own@example.test", "pw")
    assert accounts.resolve("own+x@example.test").users == ("own@example.test",)
    accounts.add_alias("al@example.test", "own@example.test")
    assert accounts.resolve("al@example.test").users == ("own@example.test",)
    accounts.del_alias("al@example.test")
    assert accounts.resolve("al@example.test").users == ()


def test_postmaster_always_resolves(accounts: Accounts) -> None:
    """RFC 5321 §4.5.1: postmaster@ every local domain is deliverable."""
    assert accounts.resolve(f"postmaster@{D}").users == ()  # no user yet
    accounts.add_user(f"first@{D}", "pw")
    accounts.add_user(f"second@{D}", "pw")
    assert accounts.resolve(f"PostMaster@{D}").users == (f"first@{D}",)
    accounts.add_alias(f"postmaster@{D}", f"second@{D}")
    assert accounts.resolve(f"postmaster@{D}").users == (f"second@{D}",)


def test_sender_allowed(accounts: Accounts) -> None:
    """RFC 6409 §6.1: submission checks the sender against the user's addresses."""
    accounts.add_user(f"ann@{D}", "pw")
    accounts.add_user(f"ben@{D}", "pw")
    accounts.add_alias(f"sales@{D}", f"ann@{D}")
    accounts.add_alias(f"team@{D}", f"ann@{D}")
    accounts.add_alias(f"team@{D}", f"ben@{D}")
    accounts.add_alias(f"@{D}", f"ben@{D}")  # catch-all
    ann = f"ann@{D}"
    assert accounts.sender_allowed(ann, f"ann@{D}")
    assert accounts.sender_allowed(ann, f"Ann+news@{D.upper()}")
    assert accounts.sender_allowed(ann, f"sales@{D}")
    assert accounts.sender_allowed(ann, f"team@{D}")
    assert not accounts.sender_allowed(ann, f"ben@{D}")
    assert not accounts.sender_allowed(f"ben@{D}", f"random@{D}")  # not via catch-all
    assert not accounts.sender_allowed(ann, "ann@elsewhere.test")
    assert not accounts.sender_allowed(ann, "not an address")


def test_schema_1_is_migrated_and_scram_keys_follow_passwords(db_path: Path) -> None:
    from pochta.sasl import scram_credentials

    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute("CREATE TABLE domains (name TEXT PRIMARY KEY, created INTEGER NOT NULL)")
        db.execute(
            "CREATE TABLE users (address TEXT PRIMARY KEY, local TEXT NOT NULL, domain TEXT"
            " NOT NULL, password_hash TEXT NOT NULL, created INTEGER NOT NULL,"
            " UNIQUE (domain, local))"
        )
        db.execute(
            "CREATE TABLE aliases (alias TEXT NOT NULL, target TEXT NOT NULL, domain TEXT"
            " NOT NULL, created INTEGER NOT NULL, PRIMARY KEY (alias, target))"
        )
        db.execute("INSERT INTO domains VALUES ('example.test', 0)")
        db.execute("INSERT INTO users VALUES ('old@example.test', 'old', 'example.test', 'x', 0)")
    with Accounts.open(db_path, hasher=cheap_hasher()) as acc:
        assert acc.scram_credentials("old@example.test") is None
        acc.set_password("old@example.test", "new-pw")
        creds = acc.scram_credentials("OLD@example.test")
        assert creds is not None
        assert creds.stored_key == scram_credentials("new-pw", salt=creds.salt).stored_key
        acc.add_user("fresh@example.test", "pw")
        assert acc.scram_credentials("fresh@example.test") is not None
        assert acc.scram_credentials("nobody@example.test") is None
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
