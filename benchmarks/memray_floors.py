"""Which stacks of a memray capture hold more and more of C's heap (issue 11, point 6).

Reads a full capture (``memray run --native -o FILE``, not ``--aggregate``) and, for every
stack that allocated through glibc (``malloc``, ``calloc``, ``realloc`` and the aligned
forms), how many bytes it held at 100 moments spread over the capture. A stack's *floor* in a
window is the least it held there, so memory a write holds for a moment does not count; the
stacks are ranked by how much their floor rose from the early window to the late one. Prints
glibc's total in use over time, then the top stacks with what they held at each tenth and
their first native frames and Python frames.

    python -m benchmarks.memray_floors proc.bin --early 0.3 0.45 --late 0.8 0.95 [--top 12]

Session 14 ran the processor under memray with a local, uncommitted hook (``unit.py``'s
child command prefixed with ``memray run --native --force -q -o FILE``) for a 4-minute soak
(``python -m benchmarks.scale --rows soak --soak-minutes 4 --events 50000 --duckdb-dir
DIR``); decision 0040 has what it found.
"""

from __future__ import annotations

import argparse
import bisect
from collections import Counter
from typing import Any

POINTS = 100


def _glibc() -> set[Any]:
    from memray import AllocatorType

    names = ("MALLOC", "CALLOC", "REALLOC", "POSIX_MEMALIGN", "ALIGNED_ALLOC", "MEMALIGN")
    return {getattr(AllocatorType, n) for n in names if hasattr(AllocatorType, n)}


def main() -> None:
    from memray import AllocatorType, FileReader

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture")
    parser.add_argument("--early", type=float, nargs=2, default=(0.3, 0.45))
    parser.add_argument("--late", type=float, nargs=2, default=(0.8, 0.95))
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    reader = FileReader(args.capture)
    snapshots = list(reader.get_memory_snapshots())
    at = [len(snapshots) * k // POINTS for k in range(POINTS)]
    early = [k for k in range(POINTS) if args.early[0] <= k / POINTS < args.early[1]]
    late = [k for k in range(POINTS) if args.late[0] <= k / POINTS < args.late[1]]
    glibc = _glibc()
    total = [0] * POINTS
    rise: Counter[Any] = Counter()
    held_by: dict[Any, list[int]] = {}
    stacks: dict[Any, list[Any]] = {}
    for record in reader.get_temporal_allocation_records(merge_threads=True):
        if AllocatorType(record.allocator) not in glibc:
            continue
        held = [0] * POINTS
        for interval in record.intervals:
            first = bisect.bisect_left(at, interval.allocated_before_snapshot)
            freed = interval.deallocated_before_snapshot
            last = POINTS if freed is None else bisect.bisect_left(at, freed)
            for k in range(first, last):
                held[k] += interval.n_bytes
        for k in range(POINTS):
            total[k] += held[k]
        grew = min(held[k] for k in late) - min(held[k] for k in early)
        if grew > 0:
            key = (record.allocator, record.stack_id, record.native_stack_id, record.tid)
            rise[key] += grew
            held_by[key] = held
            stacks[key] = record.hybrid_stack_trace(max_stacks=80)
    began = snapshots[0].time
    print(
        "seconds:     ", [round((snapshots[at[k]].time - began) / 1000) for k in range(0, 100, 5)]
    )
    print("glibc in use:", [round(total[k] / 1e6, 1) for k in range(0, 100, 5)], "MB")
    print(f"floors rose by {sum(rise.values()) / 1e6:.2f} MB in all")
    for key, grew in rise.most_common(args.top):
        tenths = [round(held_by[key][k] / 1e6, 2) for k in range(0, 100, 10)]
        print(f"\n+{grew / 1e6:.3f} MB; held at each tenth (MB): {tenths}")
        frames = stacks[key]
        python = [f for f in frames if f[1] and f[1].endswith(".py")]
        for function, path, line in frames[:7] + python[:6]:
            print("   ", function[:100], path.rsplit("/", 1)[-1] if path else "", line)


if __name__ == "__main__":
    main()
