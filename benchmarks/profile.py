"""Where a server's CPU goes: py-spy samples of a running process, summarised as text.

``Recorder`` attaches ``py-spy record`` (raw collapsed stacks, one line per distinct stack with
its sample count, threads apart) to a pid for a bounded time. ``summarize`` turns such a file
into ranked lists: per thread its share of all samples, then the functions with the largest
inclusive share (the function or anything it called was running) and the largest self share
(the function itself was the innermost Python frame; C code it calls, such as a DuckDB query
or a socket send, counts as its self time). Idle threads are not sampled (py-spy leaves out
threads waiting in the kernel), so shares are of on-CPU time, threads added up.

py-spy: ``.venv/bin/pip install py-spy`` (it needs ptrace rights over the server, which a
process started by the same user has). Reading a file again::

    python -m benchmarks.profile benchmarks/out/profile-row1-collector-....txt --top 30
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_PLUMBING = (
    "threading.py",
    "concurrent/futures/thread.py",
    "asyncio/events.py",
    "asyncio/base_events.py",
    "asyncio/runners.py",
    "<frozen runpy>",
)
"""Frames every stack of a thread passes through: left out of the inclusive ranking."""
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter, or on the PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Recorder:
    """``py-spy record`` on ``pid`` for ``seconds``, into ``out`` (raw collapsed stacks)."""

    def __init__(self, pid: int, out: Path, seconds: float, rate: int = 100) -> None:
        self.out = out
        exe = py_spy()
        if exe is None:
            raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
        self.args = [exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds)))]
        self.args += ["-r", str(rate), "--threads", "--subprocesses", "-f", "raw", "-o", str(out)]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Recorder:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def wait(self, timeout: float = 120.0) -> Path | None:
        if self.proc is None:
            return None
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            _, err = self.proc.communicate(timeout=10)
        if not self.out.exists():
            print(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
            return None
        return self.out


@dataclass(frozen=True)
class Frame:
    func: str
    file: str

    @property
    def label(self) -> str:
        short = "/".join(self.file.split("/")[-2:]) if self.file else ""
        return f"{self.func} ({short})" if short else self.func


def _frame(text: str) -> Frame:
    match = _FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip(), "")
    return Frame(match["func"], match["file"])


def thread_names(path: Path) -> dict[int, str]:
    """Thread id -> name as py-spy printed them (``thread (1234): MainThread;...``)."""
    names: dict[int, str] = {}
    for match in re.finditer(
        r"^thread \((\d+)\): ([^;]+);", path.read_text(errors="replace"), re.M
    ):
        names[int(match[1])] = _thread_kind(match[2].strip())
    return names


def cpu_by_thread(path: Path, threads_cpu_s: dict[int, float]) -> list[tuple[str, float]]:
    """The kernel's CPU seconds per thread (from ``proc.Window``) under py-spy's names: py-spy
    counts a thread blocked in a system call such as ``fsync`` as active, the kernel does not."""
    names = thread_names(path)
    total: Counter[str] = Counter()
    for tid, seconds in threads_cpu_s.items():
        total[names.get(int(tid), f"thread {tid} (native: no Python frames sampled)")] += seconds
    return [(name, round(seconds, 2)) for name, seconds in total.most_common()]


def read(path: Path) -> list[tuple[str, list[Frame], int]]:
    """(thread name, frames outermost first, samples) per line of a raw py-spy file."""
    stacks: list[tuple[str, list[Frame], int]] = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        parts = stack.split(";")
        thread = parts[0]
        if thread.startswith("thread ("):
            name = thread.split(":", 1)[1].strip() if ":" in thread else thread
            parts = parts[1:]
        else:
            name = "all"
        stacks.append((_thread_kind(name), [_frame(p) for p in parts], int(count)))
    return stacks


def _thread_kind(name: str) -> str:
    """Thread names without their pool numbers: ``asyncio_3`` -> ``asyncio``."""
    return re.sub(r"_\d+$", "", name)


def summarize(
    path: Path,
    top: int = 25,
    min_share: float = 0.5,
    threads_cpu_s: dict[int, float] | None = None,
) -> dict[str, object]:
    """Ranked shares of all samples: threads, inclusive and self time per function; with the
    window's per-thread CPU, the kernel's CPU seconds per thread name too."""
    stacks = read(path)
    total = sum(count for _, _, count in stacks)
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for thread, frames, count in stacks:
        threads[thread] += count
        for label in {f.label for f in frames if not f.file.endswith(_PLUMBING)}:
            inclusive[label] += count
        if frames:
            own[frames[-1].label] += count

    def ranked(counter: Counter[str]) -> list[tuple[str, float]]:
        out = [(k, round(v / total * 100, 1)) for k, v in counter.most_common(top)]
        return [(k, share) for k, share in out if share >= min_share]

    return {
        "file": str(path),
        "samples": total,
        "cpu_s_by_thread": cpu_by_thread(path, threads_cpu_s) if threads_cpu_s else [],
        "threads": ranked(threads) if total else [],
        "inclusive": ranked(inclusive) if total else [],
        "self": ranked(own) if total else [],
    }


def text(summary: dict[str, object]) -> str:
    lines = [f"{summary['file']}: {summary['samples']} samples (on-CPU, all threads)"]
    if summary.get("cpu_s_by_thread"):
        lines.append("  CPU seconds by thread (kernel):")
        rows = summary["cpu_s_by_thread"]
        assert isinstance(rows, list)
        lines.extend(f"    {seconds:7.2f} s  {name}" for name, seconds in rows)
    for key, title in (
        ("threads", "threads"),
        ("inclusive", "inclusive"),
        ("self", "self (innermost Python frame)"),
    ):
        lines.append(f"  {title}:")
        rows = summary[key]
        assert isinstance(rows, list)
        lines.extend(f"    {share:5.1f} %  {label}" for label, share in rows)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--min-share", type=float, default=0.5, help="percent")
    parser.add_argument("--thread", help="only stacks of this thread kind (e.g. MainThread)")
    args = parser.parse_args()
    for path in args.files:
        if args.thread:
            kept = [line for line in path.read_text().splitlines() if f": {args.thread}" in line]
            filtered = path.with_suffix(f".{args.thread}.txt")
            filtered.write_text("\n".join(kept) + "\n")
            path = filtered
        print(text(summarize(path, args.top, args.min_share)))


if __name__ == "__main__":
    main()
