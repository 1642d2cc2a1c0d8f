"""Fan-out from a child process to its parent over a local Unix socket.

``hitstream serve`` runs the processor in a child process (``bootstrap/unit.py``), while the
dashboards' live connections are held by the parent's web role. The child's processor and
alerting publish through ``RelayFanout`` (``relay:///<data_dir>/fanout.sock``); the parent's
``FanoutRelay`` listens there (mode 0600) and publishes every frame it reads on the parent's
own fan-out, where the live hub subscribed. Frames: a 4-byte big-endian length and a msgpack
``[channel, message]``.

Best effort, like every fan-out: when the parent is not listening a publish raises
``FanoutUnavailable`` (the processor logs it and goes on: the store has the data) and the next
publish connects again. Subscribers in the publishing process get its publishes directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections import defaultdict
from pathlib import Path
from typing import Final

import msgspec

from hitstream.errors import FanoutUnavailable
from hitstream.fanout.base import Fanout, Subscription

log = logging.getLogger(__name__)
_LENGTH: Final = struct.Struct(">I")
MAX_FRAME: Final = 16 * 1024 * 1024
_ENCODE = msgspec.msgpack.Encoder()
_DECODE = msgspec.msgpack.Decoder(tuple[str, bytes])


def frame(channel: str, message: bytes) -> bytes:
    payload = _ENCODE.encode((channel, message))
    return _LENGTH.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    size = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))[0]
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes is over {MAX_FRAME}")
    return _DECODE.decode(await reader.readexactly(size))


class RelayFanout(Fanout):
    """The publishing end (the child process)."""

    name = "relay"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._writer: asyncio.StreamWriter | None = None
        self._lock: asyncio.Lock | None = None
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)

    async def publish(self, channel: str, message: bytes) -> None:
        for subscription in tuple(self._subscribers.get(channel, ())):
            subscription.put(message)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                if self._writer is None:
                    _, self._writer = await asyncio.open_unix_connection(str(self.path))
                self._writer.write(frame(channel, message))
                await self._writer.drain()
            except OSError as exc:
                await self._drop()
                raise FanoutUnavailable(f"fan-out relay {self.path}: {exc}") from exc

    async def _drop(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def subscribe(self, channel: str, maxsize: int = 256) -> Subscription:
        subscription = Subscription(channel, maxsize)
        self._subscribers[channel].add(subscription)
        return subscription

    async def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        self._subscribers.get(subscription.channel, set()).discard(subscription)

    async def close(self) -> None:
        await self._drop()
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.close()
        self._subscribers.clear()


class FanoutRelay:
    """The listening end (the parent): every frame read is published on ``into``."""

    def __init__(self, into: Fanout, path: str | Path) -> None:
        self.into = into
        self.path = Path(path)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a stale socket of a killed process
        old = os.umask(0o177)  # created 0600: only this user may publish
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(self.path))
        finally:
            os.umask(old)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            while True:
                channel, message = await read_frame(reader)
                try:
                    await self.into.publish(channel, message)
                except Exception as exc:  # live updates pause; the relay goes on
                    log.warning("relayed update for %s not published: %s", channel, exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the child went away (stopped, or killed: it comes back and reconnects)
        except (ValueError, msgspec.DecodeError) as exc:
            log.warning("fan-out relay: dropped a connection sending garbage: %s", exc)
        finally:
            writer.close()
            if task is not None:
                self._clients.discard(task)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in tuple(self._clients):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        self.path.unlink(missing_ok=True)
