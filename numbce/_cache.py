"""Numba's on-disk cache, with every file checked before it is used.

Numba's cache stores an index (``.nbi``: which signature is in which data file) and data
files (``.nbc``: pickled machine code), and trusts them: a truncated file raises
``UnpicklingError`` on every later call, in every process, and garbled machine code can
crash the process (SIGSEGV, SIGILL). numbce's cached functions (:func:`njit`, and the CPU
kernels through :func:`use_checked_cache`) store each file as the SHA-256 of its content
followed by the content, in files of their own name (``<numba's name>.sha256.nbi``); a file
whose digest does not match is deleted with one :class:`DamagedCacheWarning`, and the
function is compiled again and cached anew. A file Numba writes is complete when it
appears (written under a temporary name, then renamed), so a damaged file is damage, not
a write in progress. The digest detects damage, not forgery: a cache is code, as
trusted as the folder it lives in.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import warnings
from typing import Self

import numba
from numba.core import event as numba_event
from numba.core.caching import (
    CompileResultCacheImpl,
    FunctionCache,
    IndexDataCacheFile,
)
from numba.core.compiler_lock import global_compiler_lock

__all__ = [
    "CheckedFunctionCache",
    "CompileNotice",
    "DamagedCacheWarning",
    "load_compiled",
    "njit",
    "use_checked_cache",
]

_DIGEST = hashlib.sha256().digest_size


class DamagedCacheWarning(RuntimeWarning):
    """A file of Numba's cache was damaged: it was deleted and its function compiled
    again."""


class _CheckedFile(IndexDataCacheFile):
    """Index and data files laid out as ``sha256(content) + content``; Numba's own
    content (the index: the pickled Numba version, then the pickled source stamp and
    signature table; a data file: the pickled compile result)."""

    def _save_index(self, overloads):
        content = pickle.dumps(self._version, protocol=-1) + self._dump(
            (self._source_stamp, overloads)
        )
        self._write(self._index_path, content)

    def _load_index(self):
        content = self._read(self._index_path)
        if content is None:
            return {}
        stream = io.BytesIO(content)
        if pickle.load(stream) != self._version:
            return {}  # another Numba's: its signatures may not unpickle here
        stamp, overloads = pickle.loads(stream.read())
        return overloads if stamp == self._source_stamp else {}

    def _save_data(self, name, data):
        self._write(self._data_path(name), self._dump(data))

    def _load_data(self, name):
        content = self._read(self._data_path(name))
        return None if content is None else pickle.loads(content)

    def _write(self, path: str, content: bytes) -> None:
        with self._open_for_write(path) as file:
            file.write(hashlib.sha256(content).digest() + content)

    def _read(self, path: str) -> bytes | None:
        """The checked content of ``path``; None where there is no file, or where it is
        damaged (then deleted, with a warning)."""
        try:
            with open(path, "rb") as file:
                stored = file.read()
        except FileNotFoundError:
            return None
        digest, content = stored[:_DIGEST], stored[_DIGEST:]
        if hashlib.sha256(content).digest() == digest:
            return content
        with contextlib.suppress(OSError):
            os.unlink(path)
        warnings.warn(
            f"numbce: deleted a damaged Numba cache file, {path}; its function is "
            "compiled again",
            DamagedCacheWarning,
            stacklevel=2,
        )
        return None


class _CheckedImpl(CompileResultCacheImpl):
    """Numba's compile-result cache, under file names of its own (``.sha256`` before
    the extension), so that it never reads a file of Numba's unchecked layout."""

    def get_filename_base(self, fullname, abiflags):
        return super().get_filename_base(fullname, abiflags) + ".sha256"


class CheckedFunctionCache(FunctionCache):
    """Numba's per-function cache, its files checked (:class:`_CheckedFile`)."""

    _impl_class = _CheckedImpl

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _CheckedFile(
            cache_path=self._cache_path,
            filename_base=self._impl.filename_base,
            source_stamp=self._impl.locator.get_source_stamp(),
        )


def use_checked_cache(dispatcher):
    """Cache ``dispatcher``'s compiles in checked files (instead of its
    ``enable_caching``); returns it. A plain function (``NUMBA_DISABLE_JIT=1``) is
    returned as it is."""
    if hasattr(dispatcher, "py_func"):
        dispatcher._cache = CheckedFunctionCache(dispatcher.py_func)
    return dispatcher


def njit(function):
    """``numba.njit(cache=True, nogil=True, error_model="numpy")``, its cache checked."""
    return use_checked_cache(numba.njit(nogil=True, error_model="numpy")(function))


def load_compiled(dispatcher, *args) -> bool:
    """Whether ``dispatcher`` is compiled for the types of ``args``, loading that compile
    from its cache where it is there; never compiles (what ``Dispatcher.compile`` does
    before it compiles). False where this Numba's internals differ."""
    try:
        signature = tuple(map(dispatcher.typeof_pyval, args))
        with global_compiler_lock:
            if signature in dispatcher.overloads:
                return True
            result = dispatcher._cache.load_overload(signature, dispatcher.targetctx)
            if result is None:
                return False
            dispatcher.targetctx.insert_user_function(
                result.entry_point, result.fndesc, [result.library]
            )
            dispatcher.add_overload(result)
            return True
    except (AttributeError, TypeError):
        return False


class CompileNotice(numba_event.Listener):
    """A context manager: within it, the first compile of a numbce function prints
    ``message`` to ``stream`` (a function loaded from the cache is not compiled), once
    per process, so that a first run is never silent for the seconds compiling takes."""

    said = False
    """Whether a notice was printed in this process."""

    def __init__(self, stream, message: str) -> None:
        self.stream, self.message = stream, message

    def on_start(self, event) -> None:
        module = getattr(event.data["dispatcher"].py_func, "__module__", None) or ""
        if not CompileNotice.said and module.startswith("numbce"):
            CompileNotice.said = True
            print(self.message, file=self.stream, flush=True)

    def on_end(self, event) -> None:
        pass

    def __enter__(self) -> Self:
        numba_event.register("numba:compile", self)
        return self

    def __exit__(self, *error) -> None:
        numba_event.unregister("numba:compile", self)
