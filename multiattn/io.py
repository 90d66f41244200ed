"""Small I/O helpers: atomic writes and one-line user-facing errors."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "UserError",
    "atomic_path",
    "atomic_open",
    "to_jsonable",
    "write_json",
    "staging_folder",
    "swap_folders",
]


class UserError(Exception):
    """An error caused by the user's input (a bad file, a bad flag).

    The CLI prints ``str(error)`` as one line and exits with status 2, without a traceback.
    The message should name the file and the problem.
    """


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Nothing already at ``path`` is lost or half-written if the block raises or the process dies.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp"
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; a finished file should follow the umask like open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """``open`` for writing through :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def to_jsonable(value: Any) -> Any:
    """Tensors (any dtype, any device) and numpy values -> Python numbers / lists, recursively;
    paths -> strings."""
    if hasattr(value, "detach"):  # a tensor
        value = value.detach().cpu()
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, obj: Any, **kwargs: Any) -> None:
    """Write ``obj`` as JSON atomically."""
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, **kwargs)


_LOCK = ".lock"


@contextlib.contextmanager
def staging_folder(target: str | os.PathLike, tag: str) -> Iterator[Path]:
    """Yield a new hidden folder beside ``target`` (``.<name>.<tag>-*``); remove it on exit.

    Whatever is still in it on exit is removed (move the finished result out first, e.g. with
    :func:`swap_folders`). Staging folders of ``target`` left by killed runs are removed on entry:
    each is guarded by a lock file held while its process lives, so a live run's folder is never
    touched (``filelock``: an ``fcntl`` lock the kernel releases when the process dies).

    Raises:
        UserError: the folder cannot be created there (one line naming ``target``).
    """
    from filelock import FileLock, Timeout

    target = Path(target)
    prefix = f".{target.name}.{tag}-"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(folder, 0o777 & ~umask)  # mkdtemp makes 0700; a finished folder follows the umask
    except OSError as err:
        raise UserError(f"{target}: cannot write here ({err.strerror or err})") from None
    lock_path = Path(str(folder) + _LOCK)
    try:
        with FileLock(str(lock_path)):
            for stale in target.parent.glob(f"{prefix}*"):
                if stale == folder or stale.name.endswith(_LOCK) or not stale.is_dir():
                    continue
                try:
                    with FileLock(str(stale) + _LOCK).acquire(timeout=0):
                        shutil.rmtree(stale, ignore_errors=True)
                except Timeout:
                    continue  # another live process is using it
                with contextlib.suppress(OSError):
                    Path(str(stale) + _LOCK).unlink()
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            lock_path.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically exchange two paths (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` if unsupported.

    Written by hand with ctypes: neither the standard library nor a maintained package exposes it.
    """
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def swap_folders(new: str | os.PathLike, target: str | os.PathLike) -> Path | None:
    """Put the folder ``new`` at ``target``; returns where the previous ``target`` went (or ``None``).

    Where the system allows, the two are exchanged in one atomic step, so ``target`` always holds
    either the old folder or the new one; elsewhere the old one is renamed aside first (for an
    instant ``target`` is missing, never mixed). The previous folder ends up at the path ``new``
    had: the caller removes it (a :func:`staging_folder` does on exit).
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.rename(new, target)
        return None
    if _exchange(new, target):
        return new
    aside = Path(str(new) + ".old")
    os.rename(target, aside)
    os.rename(new, target)
    os.rename(aside, new)
    return new
