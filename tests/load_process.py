"""A separate load process for crash and scale-out tests: POSTs events, records ids answered 202.

Usage: python -m tests.load_process URL OUT_FILE SECONDS [BATCH] [THREADS] [MAX_EVENTS] [SITE]
Stops by itself after SECONDS, after MAX_EVENTS were sent, or after the server stops answering
for 2 seconds. Each accepted id is written (and flushed) to OUT_FILE as soon as its 202 arrives;
the last line is ``done`` when the process ended by itself.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import httpx

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"


class Budget:
    """Events left to send across all workers (thread-safe)."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.lock = threading.Lock()

    def take(self, wanted: int) -> int:
        with self.lock:
            got = min(wanted, self.left)
            self.left -= got
            return got


def worker(
    url: str,
    out: list[str],
    lock: threading.Lock,
    stop_at: float,
    batch: int,
    n: int,
    budget: Budget,
    site: str,
) -> None:
    failures_since: float | None = None
    seq = 0
    pending: list[dict[str, object]] = []
    with httpx.Client(timeout=10.0, headers={"user-agent": UA}) as client:
        while time.monotonic() < stop_at:
            if not pending:  # a refused or failed batch is sent again, not replaced
                size = budget.take(batch)
                if size == 0:
                    return
                pending = [
                    {
                        "site_id": site,
                        "path": f"/w{n}/{seq + i}",
                        "props": {"seq": seq + i},
                        # an idempotency key: a batch resent after a lost answer is stored once
                        "event_id": f"p{os.getpid()}-w{n}-{seq + i}",
                    }
                    for i in range(size)
                ]
                seq += size
            try:
                response = client.post(
                    f"{url}/api/v1/events",
                    json=pending,
                    headers={"x-forwarded-for": f"198.51.100.{n + 1}"},
                )
            except httpx.HTTPError:
                failures_since = failures_since or time.monotonic()
                if time.monotonic() - failures_since > 2.0:
                    return
                time.sleep(0.05)
                continue
            failures_since = None
            if response.status_code == 202:
                with lock:
                    out.extend(response.json()["ids"])
                pending = []
            else:
                time.sleep(0.1)


def main() -> None:
    url, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    budget = Budget(int(sys.argv[6]) if len(sys.argv) > 6 else 10**9)
    site = sys.argv[7] if len(sys.argv) > 7 else "crash.test"
    stop_at = time.monotonic() + seconds
    accepted: list[str] = []
    lock = threading.Lock()
    with open(path, "w") as handle:
        pool = [
            threading.Thread(
                target=worker, args=(url, accepted, lock, stop_at, batch, n, budget, site)
            )
            for n in range(threads)
        ]
        for thread in pool:
            thread.start()
        written = 0
        while any(t.is_alive() for t in pool):
            time.sleep(0.01)
            with lock:
                fresh = accepted[written:]
                written = len(accepted)
            if fresh:
                handle.write("".join(f"{i}\n" for i in fresh))
                handle.flush()
        for thread in pool:
            thread.join()
        handle.write("".join(f"{i}\n" for i in accepted[written:]))
        handle.write("done\n")


if __name__ == "__main__":
    main()
