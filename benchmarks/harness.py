"""What every benchmark shares: the machine's description, percentiles, scratch folders,
server processes, and where results are written (``benchmarks/out/``, not in git).

Numbers are only comparable with the machine they came from, so each result file carries the
machine (cores, memory, load average before and after), the versions of Python and of the
packages on the request path, and the git commit of the tree that was measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
PACKAGES = (
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "fastapi",
    "msgspec",
    "duckdb",
    "ua-parser",
    "prometheus-client",
    "httpx",
)


def _run(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout or done.stderr).strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def wrk_version() -> str:
    path = shutil.which("wrk")
    if path is None:
        return ""
    return _run([path, "-v"]).splitlines()[0] if _run([path, "-v"]) else "wrk (unknown version)"


def git_revision() -> str:
    rev = _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return f"{rev}{' + uncommitted changes' if dirty else ''}"


def source_digest() -> str:
    """A digest of every file under ``src/``: tells whether two runs measured the same code,
    uncommitted changes included (the git revision alone does not)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine() -> dict[str, Any]:
    """The facts a reader needs to judge a figure: where, when, with what."""
    return {
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": _run(["nproc"]) or str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": _run(["free", "-h"]),
        "loadavg": Path("/proc/loadavg").read_text().strip()
        if Path("/proc/loadavg").exists()
        else "",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": {name: _version(name) for name in PACKAGES},
        "wrk": wrk_version(),
        "git": git_revision(),
        "src_digest": source_digest(),
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); the value a request really took."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def median(values: list[float]) -> float:
    """The middle value (mean of the two middle ones for an even count)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@contextmanager
def scratch(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh folder under the system temp dir, removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A server process on a free loopback port, ready once ``ready_path`` answers 2xx."""

    def __init__(
        self, name: str, args: list[str], log_path: Path, *, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [part.replace("{port}", str(self.port)) for part in args]
        self.env = {k: v.replace("{port}", str(self.port)) for k, v in (env or {}).items()}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_path: str, timeout: float = 60.0) -> Service:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}{ready_path}", timeout=1.0).is_success:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {timeout}s: {self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def baseline_server(log_path: Path) -> Service:
    """``benchmarks.baseline_app`` under uvicorn with hitstream's serving options."""
    args = [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.baseline_app:create_app"]
    args += ["--host", "127.0.0.1", "--port", "{port}", "--workers", "1", "--loop", "uvloop"]
    args += ["--http", "httptools", "--no-access-log", "--log-level", "warning"]
    return Service("baseline", args, log_path).start("/readyz")


def collector_server(
    data_dir: Path, log_path: Path, extra: dict[str, str] | None = None
) -> Service:
    """``hitstream collector``: the collector role alone, no processor in the process."""
    env = {
        "HITSTREAM_DATA_DIR": str(data_dir),
        "HITSTREAM_PORT": "{port}",
        "HITSTREAM_HOST": "127.0.0.1",
        "HITSTREAM_TRUSTED_PROXIES": "127.0.0.1/32",
        "HITSTREAM_LOG_LEVEL": "warning",
        **(extra or {}),
    }
    args = [sys.executable, "-m", "hitstream.cli", "collector"]
    return Service("collector", args, log_path, env=env).start("/readyz")


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Save one run's figures as JSON in ``benchmarks/out/`` and return the path."""
    OUT.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = OUT / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
