"""A real hitstream process (``serve`` or one role) in a subprocess, for e2e and crash tests.

Sites must be registered and reads need credentials: before the process starts, an admin API
key for every site is made in its store (through the real registry, as ``hitstream keys
create --site '*' --scope admin`` would), and ``add_site`` registers a site through the API.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """Starts ``hitstream <command>`` on a free loopback port with its own data folder."""

    def __init__(
        self,
        data_dir: Path,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        command: str = "serve",
        args: Sequence[str] = (),
    ) -> None:
        self.command = command
        self.args = list(args)
        """Options after the command (``--grpc-port 50123``)."""
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"{command}-{self.port}.log"
        self.admin_key = ""
        self.sites: set[str] = set()

    @property
    def headers(self) -> dict[str, str]:
        """An admin's credential: every site, every action."""
        return {"Authorization": f"Bearer {self.admin_key}"}

    def _make_admin_key(self) -> str:
        """Made in the process's store before it starts (a thread: the caller may be inside
        an event loop)."""
        from hitstream.bootstrap import open_store
        from hitstream.services.accounts import Accounts
        from hitstream.settings import Settings

        settings = Settings(
            data_dir=self.data_dir, store_url=self.extra_env.get("HITSTREAM_STORE_URL", "")
        )

        async def make() -> str:
            async with open_store(settings) as store:
                return (await Accounts(store).create_key("*", "admin", "tests"))[0]

        found: list[str] = []
        thread = threading.Thread(target=lambda: found.append(asyncio.run(make())))
        thread.start()
        thread.join(60)
        return found[0]

    def add_site(self, site_id: str, **settings: object) -> None:
        """Register a site through the API (a web role), unless this helper did already."""
        if site_id in self.sites:
            return
        answer = httpx.post(
            f"{self.url}/api/v1/sites",
            json={"site_id": site_id, **settings},
            headers=self.headers,
            timeout=10,
        )
        assert answer.status_code in (201, 409), answer.text
        self.sites.add(site_id)

    def start(self, timeout: float = 90.0, *, until: str = "/readyz") -> ServerProcess:
        """Start and wait until ``until`` answers 200 (``/healthz``: the port is open, the
        process may still wait for its parts)."""
        env = {
            **os.environ,
            "HITSTREAM_DATA_DIR": str(self.data_dir),
            "HITSTREAM_PORT": str(self.port),
            "HITSTREAM_HOST": "127.0.0.1",
            "HITSTREAM_TRUSTED_PROXIES": "127.0.0.1/32",
            "HITSTREAM_ALLOW_HEADLESS": "true",
            "HITSTREAM_LOG_LEVEL": "warning",
            **self.extra_env,
        }
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.admin_key:
            self.admin_key = self._make_admin_key()
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hitstream.cli", self.command, *self.args],
                env=env,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}{until}", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not ready in {timeout}s: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def terminate(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL the server and wait until its children are gone too: they die with it
        (``PR_SET_PDEATHSIG``), but a moment later, and until then one still answers on the
        data folder's control socket (a store opened meanwhile is reset under it)."""
        if self.proc is not None and self.proc.poll() is None:
            children = _children(self.proc.pid)
            self.proc.kill()
            self.proc.wait(10)
            deadline = time.monotonic() + 10
            while any(Path(f"/proc/{pid}").exists() for pid in children):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"children {children} of a killed server still run")
                time.sleep(0.01)


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux: ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in listing.read_text().split()]
        except OSError:
            continue
    return found
