"""Fixtures for the store suites: each backend, opened on a fresh directory.

``store`` is parametrized over both backends, so every test that uses it is
a conformance test: the in-memory store and the Maildir+SQLite store must
answer the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pochta.store import MaildirStore, MemoryStore, Store

ALICE = "alice@example.test"
BOB = "bob@example.test"


async def _opened(store: Store) -> Store:
    await store.open()
    await store.create_user(ALICE)
    await store.create_user(BOB)
    return store


@pytest.fixture(params=["memory", "maildir"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: Store = MemoryStore() if request.param == "memory" else MaildirStore(tmp_path / "data")
    await _opened(backend)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def maildir_store(tmp_path: Path) -> AsyncIterator[MaildirStore]:
    backend = MaildirStore(tmp_path / "data")
    await _opened(backend)
    try:
        yield backend
    finally:
        await backend.close()
