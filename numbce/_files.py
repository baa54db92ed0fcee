"""Files written so that a crash or a signal never leaves a damaged one behind."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from typing import IO


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[bytes]], None]
) -> None:
    """Call ``write`` on a new file beside ``path``, flush it to disk, then rename it to
    ``path`` (``os.replace``: atomic on POSIX and Windows).

    ``path`` holds its old content or the new one, never a part: an interrupted write
    (an exception, SIGINT) removes its temporary file, and after SIGKILL or a power loss
    only a ``.<name>.<random>.tmp`` file beside it can remain. The new file gets the
    permissions ``open(path, "wb")`` would give it (0o666 less the umask).
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(
        temporary,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
        0o666,
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(folder)


def _sync_folder(folder: str) -> None:
    """Flush the rename in ``folder`` to disk (POSIX; folders cannot be opened on
    Windows, where the rename is durable already)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
