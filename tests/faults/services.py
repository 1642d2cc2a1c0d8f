"""Private backing services the fault tier may stop, kill and start again at will.

Each runs as a child process of the test on its own loopback port and in its own folder, so
stopping it disturbs nobody else on the machine (other suites use the shared PostgreSQL and
Redis): a PostgreSQL cluster made with initdb, a redis-server, a Tansu broker keeping its
data in a local S3 (moto_server) so that it can restart with its topics, records and
committed offsets, and a small tmpfs to fill up.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.brokers import free_port, port_open


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while not port_open(port):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{what} did not start on port {port}: {tail}")
        time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes] | None, sig: int, grace: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# -- PostgreSQL ------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return Path(found[-1]).parent
    binary = shutil.which("postgres")
    return Path(binary).parent if binary else None


class PrivatePostgres:
    """A throwaway cluster. PostgreSQL refuses to run as root, so as root the cluster belongs
    to (and the server runs as) the ``postgres`` OS user; otherwise as the current user."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        # not under pytest's tmp folder: that one is private to root, the server runs as postgres
        self.folder = Path(tempfile.mkdtemp(prefix="hitstream-faults-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.user = "postgres" if os.geteuid() == 0 else None
        self.process: subprocess.Popen[bytes] | None = None
        if self.user:
            shutil.chown(self.folder, self.user, self.user)
        self._run([self.bindir / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust"])

    def _run(self, command: list[str | Path]) -> None:
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            user=self.user,
            group=self.user,
            extra_groups=[] if self.user else None,
            cwd=self.folder,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    self.bindir / "postgres",
                    "-D",
                    self.data,
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.folder}",
                    "-c",
                    "fsync=off",  # its durability is not under test: it is stopped cleanly
                    "-c",
                    "max_connections=100",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self.user,
                group=self.user,
                extra_groups=[] if self.user else None,
                cwd=self.folder,
            )
        _wait_port(self.port, self.process, "postgres", self.log)
        self._wait_accepting()

    def _wait_accepting(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:  # "the database system is starting up"
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """A fast shutdown (what ``pg_ctl stop -m fast`` sends): sessions are cut, the
        server checkpoints and exits; clients see their connections die."""
        _stop(self.process, signal.SIGINT, 30)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        _stop(self.process, signal.SIGQUIT, 10)
        shutil.rmtree(self.folder, ignore_errors=True)


# -- Redis -----------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own. ``persistent``: an append-only file fsynced on every
    write (what the README asks of a Redis Streams log that must keep every 202); otherwise
    nothing is saved, and a restart comes back empty."""

    def __init__(self, folder: Path, *, persistent: bool) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistent = persistent
        self.log = folder / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        durability = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.persistent
            else ["--appendonly", "no"]
        )
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.folder),
                    "--save",
                    "",
                    *durability,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_port(self.port, self.process, "redis", self.log)

    def stop(self) -> None:
        _stop(self.process, signal.SIGTERM, 10)

    def kill(self) -> None:
        _stop(self.process, signal.SIGKILL, 10)


# -- a Kafka-protocol broker that keeps its data across restarts ---------------------------


class S3Broker:
    """Tansu with its ``s3://`` storage engine on a local moto_server: topics, records and
    committed offsets survive a broker restart (its ``memory://`` engine forgets them)."""

    def __init__(self, tansu: Path, moto: Path, folder: Path) -> None:
        self.tansu = tansu
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.s3_port = free_port()
        self.log = folder / "tansu.log"
        self.moto_log = folder / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None
        with self.moto_log.open("ab") as out:
            self.moto = subprocess.Popen(
                [moto, "-H", "127.0.0.1", "-p", str(self.s3_port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_port(self.s3_port, self.moto, "moto_server", self.moto_log)
        bucket = urllib.request.Request(f"http://127.0.0.1:{self.s3_port}/tansu", method="PUT")
        with urllib.request.urlopen(bucket, timeout=10) as answer:
            assert answer.status == 200

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        address = f"tcp://127.0.0.1:{self.port}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "RUST_LOG": "warn",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT": f"http://127.0.0.1:{self.s3_port}",
            "AWS_ALLOW_HTTP": "true",
        }
        command: list[str | Path] = [self.tansu, "broker", "--listener-url", address]
        command += ["--advertised-listener-url", address, "--storage-engine", "s3://tansu/"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        _wait_port(self.port, self.process, "tansu", self.log)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 2 s (with clients connected it can take ~5 s to go);
        its data is in S3 either way."""
        _stop(self.process, signal.SIGTERM, 2)

    def close(self) -> None:
        self.stop()
        _stop(self.moto, signal.SIGTERM, 5)


# -- a disk that fills up --------------------------------------------------------------


def _as_root(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    return subprocess.run(command, capture_output=True, check=False)


class SmallDisk:
    """A size-limited tmpfs mounted on ``folder`` (as root, or through passwordless sudo)."""

    def __init__(self, folder: Path, size_mib: int) -> None:
        self.folder = folder
        self.size_mib = size_mib
        self.filler = folder / "filler"
        folder.mkdir(parents=True, exist_ok=True)

    def mount(self) -> str | None:
        """Mount it; the reason it could not be mounted otherwise."""
        done = _as_root(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m", "tmpfs", str(self.folder)]
        )
        if done.returncode != 0:
            return done.stderr.decode(errors="replace").strip() or f"mount exit {done.returncode}"
        if os.geteuid() != 0:
            _as_root(["chown", f"{os.getuid()}:{os.getgid()}", str(self.folder)])
        return None

    def fill(self) -> int:
        """Write a file until the disk refuses more (big writes, then small ones, unbuffered
        so that nothing is left to fail at close); return its size."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 16, 512):
                chunk = b"\0" * size
                while True:
                    try:
                        count = os.write(fd, chunk)
                    except OSError:
                        break
                    if count == 0:
                        break
                    written += count
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        for _ in range(50):
            if _as_root(["umount", str(self.folder)]).returncode == 0:
                return
            time.sleep(0.1)
        _as_root(["umount", "-l", str(self.folder)])
