"""A separate load process for crash, scale-out and fault tests: POSTs events, records ids answered 202.

Usage: python -m tests.load_process URL OUT_FILE SECONDS [BATCH] [THREADS] [MAX_EVENTS] [SITE]
       [--rate EVENTS_PER_S] [--until-file PATH]

Stops by itself after SECONDS, after MAX_EVENTS were sent, after the server stops answering
for 2 seconds, on SIGTERM, or (with ``--until-file``) once that file exists. Each accepted id
is written (and flushed) to OUT_FILE as soon as its 202 arrives; the last line is ``done``
when the process ended by itself. Beside it:

- ``OUT_FILE.responses``: one JSON line per request: wall time, status (0: no answer),
  events in the batch, the ``Retry-After`` header: what clients saw, for outage figures.
- ``OUT_FILE.indoubt``: the ids of the batches left unanswered-202 when the load stopped of
  which some attempt got no answer at all (a timeout, a cut connection): the server may have
  stored them without the client knowing. They are computed as the collector does from the
  batch's idempotency keys.

A batch that is refused (503) or gets no answer is sent again with the same idempotency keys,
as a well-behaved client does, so a retried batch is stored once.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from typing import Any

import httpx

from hitstream.services.collector import client_event_id

UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"


class Budget:
    """Events left to send across all workers, and the pace (thread-safe)."""

    def __init__(self, total: int, rate: float | None) -> None:
        self.left = total
        self.rate = rate
        self.lock = threading.Lock()
        self.next_at = time.monotonic()

    def take(self, wanted: int) -> int:
        with self.lock:
            got = min(wanted, self.left)
            self.left -= got
            if self.rate is None or got == 0:
                return got
            wait_until = self.next_at
            self.next_at = max(self.next_at, time.monotonic()) + got / self.rate
        delay = wait_until - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return got


class Recorder:
    """What every worker saw, shared; written out by the main thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[str] = []
        self.responses: list[dict[str, Any]] = []
        self.in_doubt: list[str] = []


def worker(
    url: str,
    recorder: Recorder,
    stop: threading.Event,
    batch: int,
    n: int,
    budget: Budget,
    site: str,
) -> None:
    failures_since: float | None = None
    seq = 0
    pending: list[dict[str, object]] = []
    unanswered = False  # an attempt at ``pending`` got no answer: it may be stored
    with httpx.Client(timeout=10.0, headers={"user-agent": UA}) as client:
        while not stop.is_set():
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
                unanswered = False
            try:
                response = client.post(
                    f"{url}/api/v1/events",
                    json=pending,
                    headers={"x-forwarded-for": f"198.51.100.{n + 1}"},
                )
            except httpx.HTTPError:
                unanswered = True
                with recorder.lock:
                    recorder.responses.append({"t": time.time(), "status": 0, "n": len(pending)})
                failures_since = failures_since or time.monotonic()
                if time.monotonic() - failures_since > 2.0:
                    break
                time.sleep(0.05)
                continue
            failures_since = None
            with recorder.lock:
                recorder.responses.append(
                    {
                        "t": time.time(),
                        "status": response.status_code,
                        "n": len(pending),
                        "retry_after": response.headers.get("retry-after"),
                    }
                )
                if response.status_code == 202:
                    recorder.accepted.extend(response.json()["ids"])
            if response.status_code == 202:
                pending = []
            else:
                time.sleep(0.1)
    if pending and unanswered:
        with recorder.lock:
            recorder.in_doubt.extend(client_event_id(site, str(e["event_id"])) for e in pending)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("out")
    parser.add_argument("seconds", type=float)
    parser.add_argument("batch", type=int, nargs="?", default=10)
    parser.add_argument("threads", type=int, nargs="?", default=4)
    parser.add_argument("max_events", type=int, nargs="?", default=10**9)
    parser.add_argument("site", nargs="?", default="crash.test")
    parser.add_argument("--rate", type=float, default=None, help="events per second, all told")
    parser.add_argument("--until-file", default=None, help="stop once this file exists")
    return parser.parse_args(argv)


def main() -> None:
    args = parse()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    budget = Budget(args.max_events, args.rate)
    recorder = Recorder()
    stop_at = time.monotonic() + args.seconds
    with open(args.out, "w") as handle, open(f"{args.out}.responses", "w") as responses:
        pool = [
            threading.Thread(
                target=worker,
                args=(args.url, recorder, stop, args.batch, n, budget, args.site),
            )
            for n in range(args.threads)
        ]
        for thread in pool:
            thread.start()
        written = seen = 0
        while any(t.is_alive() for t in pool):
            time.sleep(0.01)
            if time.monotonic() > stop_at or (args.until_file and os.path.exists(args.until_file)):
                stop.set()
            with recorder.lock:
                fresh = recorder.accepted[written:]
                written = len(recorder.accepted)
                answers = recorder.responses[seen:]
                seen = len(recorder.responses)
            if fresh:
                handle.write("".join(f"{i}\n" for i in fresh))
                handle.flush()
            if answers:
                responses.write("".join(json.dumps(a) + "\n" for a in answers))
                responses.flush()
        for thread in pool:
            thread.join()
        handle.write("".join(f"{i}\n" for i in recorder.accepted[written:]))
        responses.write("".join(json.dumps(a) + "\n" for a in recorder.responses[seen:]))
        with open(f"{args.out}.indoubt", "w") as doubt:
            doubt.write("".join(f"{i}\n" for i in recorder.in_doubt))
        handle.write("done\n")


if __name__ == "__main__":
    main()
