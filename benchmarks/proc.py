"""A server process's own counters from ``/proc``: CPU time (all threads, and the main thread
apart), resident memory, and the machine's load average, read around a measured window.

CPU per event is the process's utime + stime delta over the window divided by the events it
handled in it: the kernel's account, not a wall-clock guess, and it includes the threads a
server keeps besides its event loop (the SQLite log's writer, the DuckDB worker, ``to_thread``
work). The main thread's share tells event-loop work from the rest. Resolution is one clock
tick (10 ms on Linux), so windows are seconds long.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat_cpu(path: Path) -> float:
    """utime + stime in seconds from a ``stat`` file (fields 14 and 15; the name may hold
    spaces, so fields are counted after its closing parenthesis)."""
    fields = path.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_seconds(pid: int) -> float:
    """CPU seconds the whole process has used (every thread, living or ended)."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def children(pid: int) -> list[int]:
    """The living child processes of ``pid``."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def unit_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and every process under it, living or ended and waited for
    (``hitstream serve`` runs its processor in a child process: the unit's cost)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    own = sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK  # utime stime cutime cstime
    return own + sum(unit_cpu_seconds(child) for child in children(pid))


def main_thread_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process's first thread: the event loop of a uvicorn server."""
    return _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds per living thread id (the ids py-spy prints as ``thread (id)``)."""
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = _stat_cpu(task / "stat")
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return out


def memory(pid: int) -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) in bytes, of ``pid`` and every
    living process under it summed (``hitstream serve`` holds its store in a child process;
    the peaks are each process's own, so their sum bounds the unit's peak from above)."""
    out: dict[str, int] = {"VmRSS": 0, "VmHWM": 0}
    pending = [pid]
    while pending:
        process = pending.pop()
        pending += children(process)
        try:
            lines = Path(f"/proc/{process}/status").read_text().splitlines()
        except OSError:  # ended meanwhile
            continue
        for line in lines:
            name, _, value = line.partition(":")
            if name in out:
                out[name] += int(value.split()[0]) * 1024
    return out


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass
class Window:
    """CPU and wall time of one process over a measured span; ``stop`` fills the deltas.
    ``cpu_s`` counts its child processes too (``serve``'s processor process); the main
    thread and per-thread figures are the process's own."""

    pid: int
    wall_s: float = 0.0
    cpu_s: float = 0.0
    main_cpu_s: float = 0.0
    load_start: str = ""
    load_end: str = ""
    _t0: float = field(default=0.0, repr=False)
    _c0: float = field(default=0.0, repr=False)
    _m0: float = field(default=0.0, repr=False)
    _threads0: dict[int, float] = field(default_factory=dict, repr=False)
    threads_cpu_s: dict[int, float] = field(default_factory=dict)
    """CPU seconds per thread id over the window (threads that lived through it)."""

    def start(self) -> Window:
        self.load_start = loadavg()
        self._c0, self._m0 = unit_cpu_seconds(self.pid), main_thread_cpu_seconds(self.pid)
        self._threads0 = thread_cpu_seconds(self.pid)
        self._t0 = time.monotonic()
        return self

    def stop(self) -> Window:
        self.wall_s = time.monotonic() - self._t0
        self.cpu_s = unit_cpu_seconds(self.pid) - self._c0
        self.main_cpu_s = main_thread_cpu_seconds(self.pid) - self._m0
        now = thread_cpu_seconds(self.pid)
        self.threads_cpu_s = {
            tid: round(cpu - self._threads0.get(tid, 0.0), 2)
            for tid, cpu in now.items()
            if cpu - self._threads0.get(tid, 0.0) >= 0.01
        }
        self.load_end = loadavg()
        return self

    @property
    def core_share(self) -> float:
        """CPU seconds per wall second: 1.0 is one core busy all the time."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def figures(self, units: float | None = None, unit: str = "event") -> dict[str, object]:
        """The window as JSON; with ``units`` (events or requests handled), CPU µs per unit."""
        out: dict[str, object] = {
            "wall_s": round(self.wall_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "main_thread_cpu_s": round(self.main_cpu_s, 2),
            "core_percent": round(self.core_share * 100, 1),
            "threads_cpu_s": dict(sorted(self.threads_cpu_s.items(), key=lambda kv: -kv[1])[:8]),
            "load_start": self.load_start,
            "load_end": self.load_end,
        }
        if units:
            out[f"cpu_us_per_{unit}"] = round(self.cpu_s / units * 1e6, 1)
            out[f"main_thread_cpu_us_per_{unit}"] = round(self.main_cpu_s / units * 1e6, 1)
        return out


def own_rss(pid: int) -> int:
    """``VmRSS`` of ``pid`` alone, in bytes (0 once it has ended)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        name, _, value = line.partition(":")
        if name == "VmRSS":
            return int(value.split()[0]) * 1024
    return 0


def mappings(pid: int, top: int = 6) -> dict[str, float]:
    """Where ``pid``'s resident memory lies (``/proc/<pid>/smaps``), in MB: ``anonymous``
    (heaps, arenas, mmaps of allocators), ``[heap]`` (the brk heap) and the largest files by
    name (shared libraries: code that does not grow)."""
    by: dict[str, int] = {}
    name = ""
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return {}
    for line in lines:
        head = line.split(None, 5)
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            path = head[5].strip() if len(head) > 5 else ""
            name = path.rsplit("/", 1)[-1] if path.startswith("/") else (path or "anonymous")
        elif line.startswith("Rss:"):
            by[name] = by.get(name, 0) + int(line.split()[1]) * 1024
    ranked = sorted(by.items(), key=lambda item: -item[1])
    out = {k: round(v / 1e6, 1) for k, v in ranked if k in ("anonymous", "[heap]")}
    files = [(k, v) for k, v in ranked if k not in ("anonymous", "[heap]")]
    for k, v in files[:top]:
        out[k] = round(v / 1e6, 1)
    out["other files"] = round(sum(v for _, v in files[top:]) / 1e6, 1)
    return out


class MemorySampler(threading.Thread):
    """Samples a process's resident memory (with its children's) every ``interval``
    seconds until stopped; ``own`` keeps the process's own share of each sample."""

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic s, RSS bytes)
        self.own: list[int] = []
        """RSS of ``pid`` alone at each sample (the rest is its children's)."""
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), memory(self.pid)["VmRSS"]))
            except (OSError, KeyError):
                return
            self.own.append(own_rss(self.pid))
            self._halt.wait(self.interval)

    def stop(self) -> list[tuple[float, int]]:
        self._halt.set()
        if self.is_alive():
            self.join(10)
        return self.samples


def growth_mb_per_min(samples: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of RSS over time, in MB per minute (None below 3 samples)."""
    if len(samples) < 3:
        return None
    xs = [t for t, _ in samples]
    ys = [r / 1e6 for _, r in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den
    return round(slope * 60, 2)
