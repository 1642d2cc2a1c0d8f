"""What DuckDB's own allocator holds (decision 0039).

DuckDB's wheel for Linux links jemalloc (its symbols prefixed ``duckdb_je_``) and allocates
its buffers there, not with glibc's ``malloc``. ``duckdb_memory()`` tells what DuckDB uses;
jemalloc keeps the pages DuckDB frees resident until it purges them, and without its
background threads it purges an arena only when that arena allocates again, so a process
that once used 150 MB for a query kept 150 MB resident after DuckDB gave it back. The store
turns the background threads on (``allocator_background_threads``: freed pages go back to
the system after DuckDB's decay of 1 s) and reads jemalloc's own figures through its
exported ``mallctl``, where the library has it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import threading
from typing import Any

STATES = ("allocated", "active", "resident")
"""jemalloc's ``stats.<state>``: bytes DuckDB asked for and holds; the pages those take;
the pages jemalloc holds in memory (its metadata and freed pages not yet purged too)."""

_lock = threading.Lock()
_loaded = False
_mallctl: Any = None


def _load() -> Any:
    """jemalloc's ``mallctl`` in DuckDB's library, or None where it is not there."""
    global _loaded, _mallctl
    with _lock:
        if not _loaded:
            _loaded = True
            spec = importlib.util.find_spec("_duckdb")
            origin = spec.origin if spec is not None else None
            try:
                library = ctypes.CDLL(origin) if origin else None
                function = library.duckdb_je_mallctl if library is not None else None
            except (OSError, AttributeError):
                function = None
            if function is not None:
                function.argtypes = [
                    ctypes.c_char_p,
                    ctypes.c_void_p,
                    ctypes.POINTER(ctypes.c_size_t),
                    ctypes.c_void_p,
                    ctypes.c_size_t,
                ]
                function.restype = ctypes.c_int
            _mallctl = function
        return _mallctl


def _read(mallctl: Any, name: str, value: Any) -> bool:
    size = ctypes.c_size_t(ctypes.sizeof(value))
    return int(mallctl(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0)) == 0


def usage() -> dict[str, int]:
    """Bytes by state (``STATES``) in DuckDB's jemalloc, fresh; empty without jemalloc."""
    mallctl = _load()
    if mallctl is None:
        return {}
    epoch = ctypes.c_uint64(1)
    size = ctypes.c_size_t(ctypes.sizeof(epoch))
    with _lock:  # a new epoch refreshes the figures every thread reads
        mallctl(b"epoch", ctypes.byref(epoch), ctypes.byref(size), ctypes.byref(epoch), size)
        out = {}
        for state in STATES:
            value = ctypes.c_size_t()
            if _read(mallctl, f"stats.{state}", value):
                out[state] = int(value.value)
    return out


def purging() -> bool | None:
    """Whether jemalloc's background threads run (they purge freed pages); None without
    jemalloc."""
    mallctl = _load()
    if mallctl is None:
        return None
    value = ctypes.c_bool()
    return bool(value.value) if _read(mallctl, "background_thread", value) else None
