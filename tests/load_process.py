"""A separate load process for crash tests: POSTs events, records every id answered 202.

Usage: python -m tests.load_process URL OUT_FILE SECONDS [BATCH] [THREADS]
Stops by itself after SECONDS, or after the server stops answering for 2 seconds. Each
accepted id is written (and flushed) to OUT_FILE as soon as its 202 arrives.
"""

from __future__ import annotations

import sys
import threading
import time

import httpx

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"


def worker(
    url: str, out: list[str], lock: threading.Lock, stop_at: float, batch: int, n: int
) -> None:
    failures_since = None
    seq = 0
    with httpx.Client(timeout=5.0, headers={"user-agent": UA}) as client:
        while time.monotonic() < stop_at:
            events = [
                {"site_id": "crash.test", "path": f"/w{n}/{seq + i}", "props": {"seq": seq + i}}
                for i in range(batch)
            ]
            seq += batch
            try:
                response = client.post(
                    f"{url}/api/v1/events",
                    json=events,
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


def main() -> None:
    url, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 10
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    stop_at = time.monotonic() + seconds
    accepted: list[str] = []
    lock = threading.Lock()
    with open(path, "w") as handle:
        pool = [
            threading.Thread(target=worker, args=(url, accepted, lock, stop_at, batch, n))
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


if __name__ == "__main__":
    main()
