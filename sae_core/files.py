"""Atomic file writes: a temp file beside the target, fsync of the file and its directory, rename.

Every durable write of the project goes through `atomic_path` (or its byte/text wrappers), so a
reader (or a rerun after a crash or power loss) sees the old content or the new, never a torn
file, and a failed write leaves no temp file behind. Temp files are named `.<name>.tmp<pid>...`
(`is_temp_name`), so the owner of a directory can sweep up what a killed process left.
Storage failures (full, read-only, quota, permission) become one-line `StorageError`s naming the
path. Torch-free, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path
from typing import Iterator

from sae_core.errors import StorageError

# errno values that are the storage's fault, not the program's: reported as StorageError.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG,
                            errno.EIO})
_TEMP = re.compile(r"^\..+\.tmp\d+(\.[0-9a-f]+)?(\.[A-Za-z0-9]+)?$")


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of our temp files (`.<name>.tmp<pid>[.<rand>][.<ext>]`)."""
    return bool(_TEMP.match(name))


def storage_error(path: str | os.PathLike[str], exc: OSError) -> StorageError:
    """The one-line StorageError for an OSError raised while writing `path`."""
    return StorageError(f"cannot write {path}: {exc.strerror or exc}")


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a storage OSError (ENOSPC, EROFS, EACCES, ...) raised in the block into a StorageError."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        if exc.errno in STORAGE_ERRNOS:
            raise storage_error(path, exc) from None
        raise


def fsync_dir(path: Path) -> None:
    """fsync a directory, so a rename inside it survives a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> Path:
    """mkdir -p, with storage failures as StorageError."""
    with storage_errors(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "", sync_dir: bool = True) -> Iterator[Path]:
    """Yield a temp path beside `target`; when the block succeeds, fsync it and rename it over `target`.

    The block writes the temp path in any way (pyarrow, torch.save, np.save). On any failure or
    interruption the temp file is removed and the target is untouched. `suffix` keeps an extension
    a writer insists on (np.save adds `.npy`). `sync_dir=False` lets a batch fsync the directory once.
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}.{secrets.token_hex(3)}{suffix}")
    try:
        with storage_errors(target):
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, target)
            if sync_dir:
                fsync_dir(target.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so readers see the old or the new content, never a torn file."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """atomic_write_bytes for text (UTF-8)."""
    atomic_write_bytes(path, text.encode())


def remove_temp_files(directory: Path) -> list[Path]:
    """Delete our temp files directly inside `directory` (left by killed processes); returns them.

    Call only while owning the directory (e.g. holding the results lock with no writer running).
    """
    if not directory.is_dir():
        return []
    removed = []
    for entry in os.scandir(directory):
        if is_temp_name(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed
