"""Maildir++ on disk: where a user's folders live, file names, durable writes.

Design note
-----------
Layout (DESIGN.md, "Contracts"): ``<data_dir>/mail/<domain>/<localpart>/`` is
the user's Maildir and holds INBOX (``cur/ new/ tmp/``); every other mailbox
is a Maildir++ folder ``.Name/`` beside them (``names.folder_dir``) with its
own ``cur/ new/ tmp/`` and an empty ``maildirfolder`` marker.

File names are Dovecot's: ``<sec>.M<usec>P<pid>Q<n>.<host>,S=<size>``, plus
``:2,<letters>`` once the file is in ``cur/`` (letters from ``flags``). The
part before ``:`` (the *base*) never changes for the life of a file, so a file
renamed by us, by mutt or by Dovecot is still found by its base
(``find_by_base``); the index keeps the last path we wrote.

Functions that touch the disk block and run on the store's worker threads
only; ``Layout``'s path arithmetic and ``new_base`` are pure.
``write_durable`` leaves either a complete, fsynced file in ``tmp/`` or none;
directory fsyncs are the caller's business so a batch can share them.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shutil
import socket
import time

from pochta.store import common, names
from pochta.store.interface import INBOX

SUBDIRS = ("cur", "new", "tmp")
#: Maildir++ marks a subfolder with this empty file (Courier, Dovecot).
FOLDER_MARKER = "maildirfolder"
#: Prefix of a deleted folder awaiting removal; not a dot-name, so no Maildir++ reader lists it.
TRASH_PREFIX = "pochta-deleted."
#: In the user's Maildir: the highest UIDVALIDITY ever issued to the user, so
#: an index rebuilt from scratch can never reuse one (RFC 9051 §2.3.1.1).
UIDVALIDITY_FILE = "pochta-uidvalidity"
#: tmp/ files older than this are crash leftovers (the Maildir spec's 36 hours).
TMP_MAX_AGE = 36 * 3600

_sequence = itertools.count(1)  # next() on a count is atomic under the GIL


def _host() -> str:
    # The Maildir spec: "/" and ":" in the host name must be escaped; "," too,
    # because ",S=" starts Dovecot's fields.
    host = socket.gethostname() or "localhost"
    return host.replace("/", "\\057").replace(":", "\\072").replace(",", "\\054")


HOST = _host()


class Layout:
    """Paths of users and folders under ``<data_dir>/mail``."""

    def __init__(self, mail_root: str) -> None:
        self.root = mail_root

    def user_dir(self, user: str) -> str:
        domain, local = common.user_parts(user)
        return os.path.join(self.root, domain, local)

    def folder(self, user: str, mailbox: str) -> str:
        base = self.user_dir(user)
        return base if mailbox == INBOX else os.path.join(base, names.folder_dir(mailbox))

    def users(self) -> list[str]:
        """Users that have a Maildir on disk (``domain/localpart/cur`` exists)."""
        found: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            for domain in sorted(os.listdir(self.root)):
                domain_dir = os.path.join(self.root, domain)
                if not os.path.isdir(domain_dir):
                    continue
                for local in sorted(os.listdir(domain_dir)):
                    if os.path.isdir(os.path.join(domain_dir, local, "cur")):
                        found.append(f"{local}@{domain}")
        return found


# File names ------------------------------------------------------------------


def new_base(size: int) -> str:
    """A fresh unique base name: ``<sec>.M<usec>P<pid>Q<n>.<host>,S=<size>``."""
    now = time.time()
    sec = int(now)
    usec = int((now - sec) * 1_000_000)
    return f"{sec}.M{usec}P{os.getpid()}Q{next(_sequence)}.{HOST},S={size}"


_ORDER = re.compile(r"^(\d+)\.M(\d+)P\d+Q(\d+)\.")


def delivery_order(base: str) -> tuple[int, int, int, str]:
    """Sort key putting our own file names in the order they were made.

    ``<sec>.M<usec>...Q<n>`` compared as text puts ``M100000`` before
    ``M95000``; compared as numbers it is the order of delivery. Names made
    by other software sort after ours of the same second, by name.
    """
    match = _ORDER.match(base)
    if match is None:
        sec = base.partition(".")[0]
        return (int(sec) if sec.isdigit() else 0, 1 << 62, 0, base)
    return (int(match[1]), int(match[2]), int(match[3]), base)


def rel_path(base: str, letters: str | None) -> str:
    """Path relative to the folder: ``new/<base>``, or ``cur/<base>:2,<letters>``."""
    if letters is None:
        return f"new/{base}"
    return f"cur/{base}:2,{letters}"


def split_name(filename: str) -> tuple[str, str | None]:
    """(base, info letters or None) of a Maildir file name."""
    base, sep, info = filename.partition(":")
    if sep and info.startswith("2,"):
        return base, info[2:]
    return base, None


def find_by_base(folder: str, base: str) -> str | None:
    """Current relative path of the file whose base is ``base``, or None.

    The slow path: used only when the indexed name is gone (renamed by
    another program, or by a flag change committed a moment later).
    """
    for sub in ("cur", "new"):
        try:
            with os.scandir(os.path.join(folder, sub)) as entries:
                for entry in entries:
                    if entry.name == base or entry.name.startswith(base + ":"):
                        return f"{sub}/{entry.name}"
        except FileNotFoundError:
            continue
    return None


def resolve(folder: str, rel: str) -> str | None:
    """``rel`` if that file exists, else where its base went, else None."""
    if os.path.exists(os.path.join(folder, rel)):
        return rel
    return find_by_base(folder, split_name(rel.rpartition("/")[2])[0])


# Durable writes ----------------------------------------------------------------


def make_maildir(path: str, *, folder: bool) -> bool:
    """Create ``cur/ new/ tmp/`` (and the folder marker); True if ``path`` was new."""
    created = not os.path.isdir(path)
    for sub in SUBDIRS:
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    if folder:
        marker = os.path.join(path, FOLDER_MARKER)
        if not os.path.exists(marker):
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    return created


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(tmp_dir: str, data: bytes, mtime: float | None = None) -> str:
    """Write ``data`` to a new file in ``tmp_dir``, fsync it; return its path.

    On any failure the partial file is removed and the error re-raised;
    a missing ``tmp_dir`` is not created here (``FileNotFoundError``), so
    nothing is written for a user that does not exist.
    """
    path = os.path.join(tmp_dir, new_base(len(data)))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if mtime is not None:
            os.utime(fd, (mtime, mtime))
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    os.close(fd)
    return path


def place(src: str, dst: str, *, keep_source: bool, tmp_dir: str) -> None:
    """Give the complete file ``src`` the name ``dst`` (atomic, never overwrites).

    ``keep_source`` links (a second name for the same inode); otherwise the
    file is renamed. Where hard links are impossible (another filesystem, a
    filesystem without them, too many links) the bytes are copied through
    ``tmp_dir`` and fsynced first, so ``dst`` is never seen half-written.
    """
    if not keep_source:
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "file exists", dst)
        try:
            os.rename(src, dst)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
        _copy_via_tmp(src, dst, tmp_dir)
        os.unlink(src)
        return
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
            raise
        _copy_via_tmp(src, dst, tmp_dir)


def _copy_via_tmp(src: str, dst: str, tmp_dir: str) -> None:
    with open(src, "rb") as f:
        data = f.read()
    tmp = write_durable(tmp_dir, data, os.stat(src).st_mtime)
    try:
        os.link(tmp, dst)  # link, not rename: fails instead of overwriting
    finally:
        unlink_quietly(tmp)


def read_uidvalidity_floor(user_dir: str) -> int:
    """The last UIDVALIDITY recorded in the user's Maildir (0 when none)."""
    try:
        with open(os.path.join(user_dir, UIDVALIDITY_FILE), "rb") as f:
            return int(f.read().strip() or b"0")
    except (FileNotFoundError, ValueError):
        return 0


def write_uidvalidity_floor(user_dir: str, value: int) -> None:
    """Durably record ``value`` (write, fsync, rename; the caller fsyncs the directory)."""
    path = os.path.join(user_dir, UIDVALIDITY_FILE)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, b"%d\n" % value)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_tree_quietly(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def clean_tmp(folder: str, now: float | None = None) -> int:
    """Remove crash leftovers older than ``TMP_MAX_AGE`` from ``folder/tmp``."""
    limit = (time.time() if now is None else now) - TMP_MAX_AGE
    removed = 0
    with contextlib.suppress(FileNotFoundError), os.scandir(os.path.join(folder, "tmp")) as it:
        for entry in it:
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < limit:
                    os.unlink(entry.path)
                    removed += 1
    return removed
