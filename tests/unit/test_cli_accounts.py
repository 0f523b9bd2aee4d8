"""``pochta domain|user|alias``: round trips through the real command line."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result

import pochta.accounts.registry
from pochta.accounts import (
    Accounts,
    AccountsError,
    AddressError,
    AliasNotFound,
    DomainNotEmpty,
    UserExists,
    UserNotFound,
)
from pochta.cli import CliContext, _register, cli

PASSWORD_LINE = re.compile(r"^password for (\S+): (\S{20,})$")


class FakeStore:
    """Records the user calls the commands make on the store."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = False

    async def create_user(self, user: str) -> None:
        if self.fail:
            raise OSError("disk full")
        self.calls.append(("create_user", user))

    async def delete_user(self, user: str) -> None:
        self.calls.append(("delete_user", user))


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()

    def with_store(self: CliContext, fn: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
        return asyncio.run(fn(fake))

    monkeypatch.setattr(CliContext, "with_store", with_store)
    return fake


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands use the production hasher; make it cheap for unit tests."""
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
def run(config: Path, store: FakeStore) -> Iterator[Callable[..., Result]]:
    _register()
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, ["--config", str(config), *args], input=input)

    yield invoke


def ok(result: Result) -> list[str]:
    assert result.exception is None, result.output
    assert result.exit_code == 0
    return result.stdout.splitlines()


def accounts_of(config: Path) -> Accounts:
    return Accounts.open(config.parent / "data" / "accounts.sqlite")


def test_domain_round_trip(run: Callable[..., Result]) -> None:
    assert ok(run("domain", "add", "Example.TEST")) == ["domain example.test added"]
    assert ok(run("domain", "add", "bücher.example")) == ["domain xn--bcher-kva.example added"]
    assert ok(run("domain", "list")) == ["example.test", "xn--bcher-kva.example"]
    assert ok(run("domain", "del", "BÜCHER.example")) == ["domain xn--bcher-kva.example deleted"]
    assert ok(run("domain", "list")) == ["example.test"]


def test_user_add_prints_a_generated_password(
    run: Callable[..., Result], config: Path, store: FakeStore
) -> None:
    ok(run("domain", "add", "example.test"))
    lines = ok(run("user", "add", "Demo@Example.test"))
    assert len(lines) == 1
    match = PASSWORD_LINE.match(lines[0])
    assert match is not None, lines
    assert match.group(1) == "demo@example.test"
    assert store.calls == [("create_user", "demo@example.test")]
    with accounts_of(config) as accounts:
        assert accounts.authenticate("demo@example.test", match.group(2)) is not None


def test_user_add_password_stdin(run: Callable[..., Result], config: Path) -> None:
    ok(run("domain", "add", "example.test"))
    lines = ok(run("user", "add", "bob@example.test", "--password-stdin", input="s3cret pw\n"))
    assert lines == ["user bob@example.test added"]
    ok(run("user", "add", "amy@example.test", "--password-stdin", input="crlf\r\n"))
    with accounts_of(config) as accounts:
        assert accounts.authenticate("bob@example.test", "s3cret pw") is not None
        assert accounts.authenticate("amy@example.test", "crlf") is not None


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_user_add_refuses_an_empty_password(run: Callable[..., Result], stdin: str) -> None:
    ok(run("domain", "add", "example.test"))
    result = run("user", "add", "bob@example.test", "--password-stdin", input=stdin)
    assert isinstance(result.exception, AccountsError)
    assert result.exit_code == 1
    assert ok(run("user", "list")) == []


def test_user_add_rolls_back_when_the_store_fails(
    run: Callable[..., Result], store: FakeStore
) -> None:
    ok(run("domain", "add", "example.test"))
    store.fail = True
    result = run("user", "add", "bob@example.test")
    assert isinstance(result.exception, OSError)
    assert ok(run("user", "list")) == []


def test_user_list_del_passwd(run: Callable[..., Result], config: Path, store: FakeStore) -> None:
    ok(run("domain", "add", "example.test"))
    ok(run("domain", "add", "other.test"))
    for address in ("zed@example.test", "amy@example.test", "bob@other.test"):
        ok(run("user", "add", address, "--password-stdin", input="pw\n"))
    assert ok(run("user", "list")) == ["amy@example.test", "zed@example.test", "bob@other.test"]
    assert ok(run("user", "list", "other.test")) == ["bob@other.test"]

    lines = ok(run("user", "passwd", "ZED@example.test"))
    match = PASSWORD_LINE.match(lines[0])
    assert match is not None and match.group(1) == "zed@example.test"
    assert ok(run("user", "passwd", "amy@example.test", "--password-stdin", input="new\n")) == [
        "password for amy@example.test changed"
    ]
    with accounts_of(config) as accounts:
        assert accounts.authenticate("zed@example.test", match.group(2)) is not None
        assert accounts.authenticate("zed@example.test", "pw") is None
        assert accounts.authenticate("amy@example.test", "new") is not None

    store.calls.clear()
    assert ok(run("user", "del", "Zed@example.test")) == [
        "user zed@example.test deleted (mail kept in mail/example.test/zed)"
    ]
    assert store.calls == [("delete_user", "zed@example.test")]
    assert ok(run("user", "list", "example.test")) == ["amy@example.test"]


def test_alias_round_trip(run: Callable[..., Result], config: Path) -> None:
    ok(run("domain", "add", "example.test"))
    ok(run("user", "add", "bob@example.test", "--password-stdin", input="pw\n"))
    ok(run("user", "add", "amy@example.test", "--password-stdin", input="pw\n"))
    assert ok(run("alias", "add", "Info@example.test", "bob@example.test")) == [
        "alias info@example.test -> bob@example.test added"
    ]
    ok(run("alias", "add", "info@example.test", "amy@example.test"))
    ok(run("alias", "add", "@example.test", "bob@example.test"))
    assert ok(run("alias", "list")) == [
        "@example.test -> bob@example.test",
        "info@example.test -> amy@example.test",
        "info@example.test -> bob@example.test",
    ]
    with accounts_of(config) as accounts:
        assert accounts.resolve("info@example.test").users == (
            "amy@example.test",
            "bob@example.test",
        )
    assert ok(run("alias", "del", "info@example.test", "amy@example.test")) == [
        "1 alias row deleted"
    ]
    ok(run("alias", "add", "info@example.test", "amy@example.test"))
    assert ok(run("alias", "del", "info@example.test")) == ["2 alias rows deleted"]
    assert ok(run("alias", "list")) == ["@example.test -> bob@example.test"]


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        (("domain", "add", "bad..name"), AddressError, "invalid domain 'bad..name'"),
        (("domain", "add", "example.test"), AccountsError, "domain example.test already exists"),
        (("domain", "del", "example.test"), DomainNotEmpty, "still has 1 user"),
        (("user", "add", "bob@example.test"), UserExists, "user bob@example.test already exists"),
        (("user", "add", "x@nowhere.test"), AccountsError, "no such domain nowhere.test"),
        (("user", "add", "x+y@example.test"), AddressError, "subaddress separator"),
        (("user", "del", "nobody@example.test"), UserNotFound, "no such user nobody@"),
        (("user", "passwd", "nobody@example.test"), UserNotFound, "no such user nobody@"),
        (("user", "list", "nowhere.test"), AccountsError, "no such domain nowhere.test"),
        (("alias", "add", "a@remote.test", "bob@example.test"), AccountsError, "no such domain"),
        (("alias", "del", "a@example.test"), AliasNotFound, "no such alias a@example.test"),
    ],
)
def test_errors_escape_for_main_to_print(
    run: Callable[..., Result], args: tuple[str, ...], error: type[Exception], message: str
) -> None:
    ok(run("domain", "add", "example.test"))
    ok(run("user", "add", "bob@example.test", "--password-stdin", input="pw\n"))
    result = run(*args)
    assert isinstance(result.exception, error), result.exception
    assert message in str(result.exception)
    assert result.exit_code == 1


def test_main_prints_one_line_and_exits_1(config: Path) -> None:
    """The real console script: no traceback, one ``pochta: ...`` line on stderr."""
    pochta = Path(sys.executable).parent / "pochta"
    proc = subprocess.run(
        [str(pochta), "--config", str(config), "domain", "add", "bad..name"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pochta: invalid domain 'bad..name'")


def test_user_add_and_del_with_the_real_store(config: Path) -> None:
    """``user add`` makes the Maildir (DESIGN.md: data_dir/mail/<domain>/<local>/)."""
    _register()
    runner = CliRunner()
    base = ["--config", str(config)]
    ok(runner.invoke(cli, [*base, "domain", "add", "example.test"]))
    ok(runner.invoke(cli, [*base, "user", "add", "bob@example.test"]))
    maildir = config.parent / "data" / "mail" / "example.test" / "bob"
    assert all((maildir / sub).is_dir() for sub in ("cur", "new", "tmp"))
    ok(runner.invoke(cli, [*base, "user", "del", "bob@example.test"]))
    assert maildir.is_dir()  # mail files are kept


# --- running as root -------------------------------------------------------------


class _Identity:
    """Records the privilege calls ``act_as_data_owner`` makes (none really made)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, euid: int) -> None:
        self.calls: list[tuple[str, object]] = []
        monkeypatch.setattr("os.geteuid", lambda: euid)
        for name in ("setgroups", "setgid", "setuid"):
            monkeypatch.setattr(f"os.{name}", lambda arg, name=name: self.calls.append((name, arg)))


def _owned_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uid: int) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    real_stat = Path.stat

    def stat(self: Path, **kwargs: Any) -> Any:
        result = real_stat(self, **kwargs)
        if self == data:  # as if chown'ed to uid (the test runs as root or not)
            fields = list(result)
            fields[4], fields[5] = uid, uid + 1
            return os.stat_result(fields)
        return result

    monkeypatch.setattr(Path, "stat", stat)
    return data


def test_root_acts_as_the_data_directorys_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sudo pochta user add` must not leave root-owned Maildirs that the server
    (running as the data directory's owner) cannot write."""
    from pochta.cli import act_as_data_owner

    data = _owned_data_dir(tmp_path, monkeypatch, uid=1234)
    ids = _Identity(monkeypatch, euid=0)
    act_as_data_owner(data)
    assert ids.calls == [("setgroups", []), ("setgid", 1235), ("setuid", 1234)]
    # Root's own data directory, a missing one, or a non-root caller: no change.
    ids.calls.clear()
    act_as_data_owner(tmp_path / "missing")
    user = _Identity(monkeypatch, euid=1000)
    act_as_data_owner(data)
    assert ids.calls == [] and user.calls == []


def test_settings_drop_privileges_except_for_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _owned_data_dir(tmp_path, monkeypatch, uid=1234)
    config = tmp_path / "pochta.toml"
    config.write_text(f'hostname = "mail.example.test"\ndata_dir = "{data}"\n')
    ids = _Identity(monkeypatch, euid=0)
    CliContext(config).settings()
    assert ("setuid", 1234) in ids.calls
    ids.calls.clear()
    CliContext(config, keep_privileges=True).settings()
    assert ids.calls == []
