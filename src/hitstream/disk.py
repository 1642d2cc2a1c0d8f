"""The local folders a process writes to (embedded log and store, salts), as a readiness check.

Why a check of its own: with the disk full, appends fail and the collector answers 503, but
nothing else notices; a load balancer or Kubernetes would keep sending traffic to a process
that refuses every event. ``check`` writes and fsyncs a small probe file in each folder and
removes it: if the disk refuses the write (full, read-only, quota, I/O error), ``/readyz``
says so, names the folder and the reason, and turns ready again once a write goes through.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from hitstream.errors import DiskUnavailable

PROBE_NAME = ".hitstream-write-probe"


class DataFolders:
    name = "disk"

    def __init__(self, folders: Iterable[Path], *, probe_bytes: int = 64 * 1024) -> None:
        self.folders = sorted({Path(os.path.realpath(folder)) for folder in folders})
        self.probe_bytes = probe_bytes
        """Room a probe needs: a disk with less than this left counts as full already."""

    async def start(self) -> None:
        """Nothing to open: the folders are made by whoever writes in them."""

    async def close(self) -> None: ...

    async def check(self) -> None:
        await asyncio.to_thread(self._probe_all)

    def _probe_all(self) -> None:
        for folder in self.folders:
            if folder.is_dir():
                self._probe(folder)

    def _probe(self, folder: Path) -> None:
        path = folder / PROBE_NAME
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                written = os.write(fd, b"\0" * self.probe_bytes)
                if written < self.probe_bytes:
                    raise OSError(28, "No space left on device (short write)")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise DiskUnavailable(f"{folder} refuses writes: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)


def open_to_others(folder: Path) -> int | None:
    """The permission bits of ``folder`` that let other users in (group or others: the
    store in it holds password hashes and the events), or None when there are none or the
    folder is missing."""
    try:
        mode = folder.stat().st_mode & 0o077
    except OSError:
        return None
    return mode or None
