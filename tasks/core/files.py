"""Write files and folders so that readers see the old one or the whole new one, never a half.

The one home of "build in a temp place beside the destination, then rename": a rename within
one folder is atomic, so a reader (or a process killed half-way) never sees a partial result.
Replacing a folder swaps the new one in with a single ``renameat2(RENAME_EXCHANGE)`` (Linux),
so there is no moment without a whole folder at the target; the old one is removed once it is
out of sight. A file is fsynced before it is renamed, and its folder after, so a power cut
cannot publish a name whose bytes never reached the disk.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def staging_dir(target: Path, prefix: str | None = None) -> Path:
    """A fresh empty folder beside ``target`` (same file system, so a rename is atomic).

    Its name carries this process's id, so that leftovers of a killed process (``kill -9``
    skips every clean-up) are recognised and removed the next time one is made here.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = prefix or f".{target.name}-"
    sweep_stale(target.parent, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=target.parent))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_stale(folder: Path, prefix: str) -> list[Path]:
    """Remove the staging folders under ``folder`` whose process is gone.

    Args:
        folder: Where staging folders of ``prefix`` are made.
        prefix: Their name prefix (see :func:`staging_dir`).

    Returns:
        The folders removed.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)-[A-Za-z0-9_]{8}")
    removed = []
    for entry in folder.glob(f"{glob.escape(prefix)}*"):
        match = pattern.fullmatch(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            log.info("removed %s, left by a process that was killed", entry)
            removed.append(entry)
    return removed


def publish(
    staged: Path, target: Path, *, replace: bool = False, complete: str | None = None
) -> bool:
    """Rename the finished folder ``staged`` to ``target``.

    Args:
        staged: The complete folder (beside ``target``).
        target: Its final name.
        replace: Remove an existing ``target`` first.
        complete: A file whose presence in an existing ``target`` shows that another process
            published the same content first; then ``staged`` is left for the caller to remove.

    Returns:
        True if ``staged`` became ``target``, False if another process's copy is kept.

    Raises:
        OSError: If the rename fails and no complete copy is there.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    if replace and target.exists():
        _replace_dir(staged, target)
        _fsync_dir(target.parent)
        return True
    try:
        os.rename(staged, target)
    except OSError:
        if complete is None or not (target / complete).exists():
            raise
        log.info("%s was published concurrently; keeping that copy", target)
        return False
    _fsync_dir(target.parent)
    return True


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2``); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not glibc 2.28+, not Linux
        return False
    done = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a file system without it
        return False
    raise OSError(code, os.strerror(code), str(second))


def _replace_dir(staged: Path, target: Path) -> None:
    """Put the folder ``staged`` at ``target`` in place of the folder there; remove the old one.

    Readers of ``target`` see the old folder or the new one, never a missing or half-deleted
    one: the two are swapped in one step, and the old one is removed under its temp name.
    Without ``renameat2`` the old folder is renamed aside first (a moment without ``target``,
    but never a half-deleted one).
    """
    if not _exchange(staged, target):
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}-{os.getpid()}-", dir=target.parent))
        os.rename(target, aside)  # onto the empty temp folder: allowed, and atomic
        os.rename(staged, target)
        shutil.rmtree(aside, ignore_errors=True)
        return
    shutil.rmtree(staged, ignore_errors=True)  # it holds the old folder now


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename stands
    finally:
        os.close(handle)


@contextmanager
def build_dir(
    target: Path, *, replace: bool = False, complete: str | None = None
) -> Iterator[Path]:
    """Yield a temp folder beside ``target`` to fill; on success it becomes ``target``.

    On an error (or a kill) the temp folder is removed and ``target`` is left as it was. See
    :func:`publish` for ``replace`` and ``complete``.
    """
    staged = staging_dir(target)
    try:
        yield staged
        publish(staged, target, replace=replace, complete=complete)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


@contextmanager
def build_file(target: Path) -> Iterator[Path]:
    """Yield a temp path beside ``target`` to write; on success it replaces ``target``."""
    staged = staging_dir(target)
    try:
        path = staged / target.name
        yield path
        with path.open("rb") as written:  # its bytes on disk before its name is
            os.fsync(written.fileno())
        os.replace(path, target)
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder, then rename.

    Args:
        path: Destination file; its folder is created if needed.
        data: File contents (text is written as UTF-8).

    Returns:
        ``path``.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with build_file(path) as tmp:
        tmp.write_bytes(payload)
        os.chmod(tmp, 0o644)  # these files are meant to be shared
    return path


@contextmanager
def run_folder_lock(folder: Path, holder: str = "another training") -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs: one training per run folder at a time.

    Two runs of the same dataset and recipe (a schedule and a user, say) key the same run
    folder. The second waits here until the first is done, then finds its finished training
    and reuses it. The lock is an ``flock`` on ``<folder>.lock``, so a killed holder
    (even ``kill -9``) releases it at once and no stale lock is left to clean.

    Args:
        folder: What the lock guards (the lock file sits beside it).
        holder: Who else may hold it, for the log line of a wait.
    """
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f"{folder.name}.lock").open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s is in use by %s; waiting for it to finish", folder, holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sha256_of(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
