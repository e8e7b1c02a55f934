"""The bench's HTTP clients: submit load, end-to-end waits over ?wait and SSE, notify latency.

Plain threads over a shared urllib3 pool (keep-alive), and http.client for SSE
streams, so the client stays small next to the server it measures. Every time
is ``time.perf_counter`` on this side, except notify latency, which compares the
server's event ``created_at`` with this machine's clock (same host: same clock).
"""
from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from urllib.parse import urlsplit

import urllib3

from pipeline.core.lifecycle import TERMINAL_STATUSES, JobStatus

TERMINAL = TERMINAL_STATUSES
COMPLETED = JobStatus.COMPLETED.value  # also the type of its event


def epoch(stamp: str) -> float:
    """Seconds since the epoch of an API timestamp (``…Z``)."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def job_body(size: str, latency_s: float = 0.0) -> dict:
    """A zero-latency (or simulated-latency) local job of ``size``."""
    params = {"size": size, "seed": 7}
    if latency_s:
        params["simulate"] = {"latency_s": latency_s}
    return {"prompt": "a lighthouse at dusk", "provider": "local", "params": params}


class Client:
    """One API base URL and key, shared by many threads."""

    def __init__(self, url: str, key: str | None, connections: int = 64):
        parts = urlsplit(url)
        self.base = url.rstrip("/")
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port or (443 if self.https else 80)
        self.headers = {"Content-Type": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.pool = urllib3.connection_from_url(url, maxsize=connections, block=True, retries=False,
                                                timeout=urllib3.Timeout(connect=10, read=90))

    def request(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        """(status, parsed JSON or None)."""
        data = json.dumps(body).encode() if body is not None else None
        resp = self.pool.request(method, path, body=data, headers={**self.headers, **(headers or {})})
        try:
            return resp.status, json.loads(resp.data) if resp.data else None
        except ValueError:
            return resp.status, None

    def submit(self, body: dict, wait_s: int = 0):
        headers = {"Prefer": f"wait={wait_s}"} if wait_s else None
        return self.request("POST", "/v1/jobs", body, headers)

    def events(self, job_id: str, on_event, timeout: float = 90) -> bool:
        """Stream the job's SSE events, calling ``on_event(event, received_at)`` until a terminal one.

        False when the endpoint is not there (no SSE on this deployment).
        """
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=timeout)
        try:
            conn.request("GET", f"/v1/jobs/{job_id}/events", headers={**self.headers, "Accept": "text/event-stream"})
            resp = conn.getresponse()
            if resp.status != 200 or "text/event-stream" not in (resp.getheader("Content-Type") or ""):
                return False
            data = []
            while True:
                line = resp.readline()
                if not line:
                    return True
                line = line.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif line == "" and data:
                    received = time.time()
                    event = json.loads("\n".join(data))
                    data = []
                    on_event(event, received)
                    if event.get("type") in TERMINAL:
                        return True
        finally:
            conn.close()


def pct(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile, in the values' unit; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-p * len(ordered) // 100)) - 1))
    return ordered[rank]


def concurrent(n: int, concurrency: int, one, advance=lambda: None) -> tuple[list, float]:
    """Run ``one(i)`` for i in range(n) on ``concurrency`` threads; (results in order, wall seconds)."""
    results = [None] * n
    counter = iter(range(n))
    lock = threading.Lock()
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            with lock:
                i = next(counter, None)
            if i is None:
                return
            results[i] = one(i)
            advance()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        try:
            for future in [pool.submit(loop) for _ in range(concurrency)]:
                future.result()
        finally:
            stop.set()  # on Ctrl-C or a failed client, the others finish their request and stop
    return results, time.perf_counter() - start


def timed_posts(client: Client, path: str, n: int, concurrency: int, body: dict, advance) -> dict:
    """POST ``body`` ``n`` times at ``concurrency``: latencies, rps, and the answers."""
    def one(_i):
        start = time.perf_counter()
        status, answer = client.request("POST", path, body)
        return time.perf_counter() - start, status, answer

    results, wall = concurrent(n, concurrency, one, advance)
    ok = [r for r in results if r[1] in (200, 202)]
    return {"latencies": [r[0] for r in ok], "rps": len(ok) / wall if wall else 0.0, "wall_s": wall,
            "errors": len(results) - len(ok), "answers": [r[2] for r in ok],
            "statuses": sorted({r[1] for r in results})}


def _active(client: Client, wanted: set[str], limit: int = 100) -> set[str] | None:
    """Which of ``wanted`` are queued or processing (every page); None when the listing failed."""
    active, cursor = set(), None
    while True:
        status, page = client.request("GET", f"/v1/jobs?status=queued,processing&limit={limit}"
                                      + (f"&cursor={cursor}" if cursor else ""))
        if status != 200:
            return None
        active |= {j["id"] for j in page["data"]} & wanted
        cursor = page.get("next_cursor")
        if not cursor:
            return active


def _any_active(client: Client, wanted: set[str]) -> bool | None:
    """Whether the newest active job is one of ``wanted`` (True), none is active (False), or it
    is somebody else's (None: only a full count can tell)."""
    status, page = client.request("GET", "/v1/jobs?status=queued,processing&limit=1")
    if status != 200:
        return None
    if not page["data"]:
        return False
    return True if page["data"][0]["id"] in wanted else None


COUNT_EVERY_S = 10.0
"""How often the drain's progress bar is brought up to date with a full count."""


def wait_drained(client: Client, job_ids: list[str], update=lambda done: None, timeout: float = 600) -> None:
    """Poll until none of ``job_ids`` is queued or processing.

    The bench must not load the machine it measures: listing every active job
    (all pages, each job rendered) four times a second cost the web and Postgres
    13 ms of CPU per drained job, half of what the pool processes themselves
    spent. So the poll every 0.25 s reads one job (is any left?) and the
    progress bar gets a full count every COUNT_EVERY_S, the first one only
    then: a count at the start lists every job still queued, at the moment the
    drain it measures begins. (The drain rate comes from the jobs' own
    ``completed_at``, not from these polls.)
    """
    wanted, end = set(job_ids), time.monotonic() + timeout
    counted_at = time.monotonic()
    while time.monotonic() < end:
        left = None if time.monotonic() - counted_at >= COUNT_EVERY_S else _any_active(client, wanted)
        if left is None:
            counted_at = time.monotonic()
            active = _active(client, wanted)
            if active is None:
                return  # the per-job reads afterwards still report each job's state
            update(len(wanted) - len(active))
            left = bool(active)
        if not left:
            update(len(wanted))
            return
        time.sleep(0.25)


def final_states(client: Client, job_ids: list[str], concurrency: int, advance) -> list[dict]:
    """Each job once terminal (long-polled with ?wait; at once for jobs already done)."""
    def one(i):
        for _ in range(10):
            status, job = client.request("GET", f"/v1/jobs/{job_ids[i]}?wait=60")
            if status == 200 and job["status"] in TERMINAL:
                return job
        return job if status == 200 else {"id": job_ids[i], "status": f"http {status}"}
    return concurrent(len(job_ids), concurrency, one, advance)[0]


def throughput(jobs: list[dict], idle_at: float | None = None) -> float:
    """Completed jobs per second, from the first creation until the workers were done
    (``idle_at`` when known, else the last completion; server clock).

    While jobs are still being submitted the web competes with the workers for
    the machine: this is the rate with submission included.
    """
    done = [j for j in jobs if j.get("status") == COMPLETED]
    if not done:
        return 0.0
    last = max(max(epoch(j["completed_at"]) for j in done), idle_at or 0.0)
    span = last - min(epoch(j["created_at"]) for j in jobs)
    return len(done) / span if span > 0 else 0.0


DRAIN_MIN_SHARE = 0.2
"""The drain window must hold at least this share of the jobs, else it is too short to measure."""


def drain_rate(jobs: list[dict], idle_at: float | None = None) -> float | None:
    """Jobs/s the workers complete from a full queue: completions after the last job was
    created, over the time from that creation until the workers were done (server clock).

    Done is ``idle_at`` when known (the worker's queues empty: the notify step of a
    job runs after its completion, so the last completion is not the end of the
    work), else the last ``completed_at``. The workers' capacity at saturation,
    with the web idle again; None when too few jobs were left to drain after
    submission (the workers kept up with it).
    """
    done = [epoch(j["completed_at"]) for j in jobs if j.get("status") == COMPLETED]
    if not done:
        return None
    submitted = max(epoch(j["created_at"]) for j in jobs)
    after = [t for t in done if t > submitted]
    span = max(max(done), idle_at or 0.0) - submitted
    if len(after) < DRAIN_MIN_SHARE * len(jobs) or span <= 0:
        return None
    return len(after) / span


def e2e_wait(client: Client, n: int, size: str, advance) -> list[float]:
    """Seconds from submit to the answer holding ``completed``, one job at a time, over ``Prefer: wait``."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        status, job = client.submit(job_body(size), wait_s=60)
        while status in (200, 202) and job["status"] not in TERMINAL:
            status, job = client.request("GET", f"/v1/jobs/{job['id']}?wait=60")
        if status in (200, 202) and job["status"] == COMPLETED:
            out.append(time.perf_counter() - start)
        advance()
    return out


def e2e_sse(client: Client, n: int, size: str, advance) -> list[float] | None:
    """Seconds from submit to the SSE client holding ``completed``; None when there is no SSE."""
    out = []
    for _ in range(n):
        start = time.perf_counter()
        status, job = client.submit(job_body(size))
        if status not in (200, 202):
            advance()
            continue
        seen = {}
        # B023: events() calls the callback before it returns, while seen is this job's
        if not client.events(job["id"], lambda e, _at: seen.setdefault(e.get("type"), time.perf_counter())):  # noqa: B023
            return None
        if COMPLETED in seen:
            out.append(seen[COMPLETED] - start)
        advance()
    return out


def notify_latencies(client: Client, n: int, concurrency: int, advance, latency_s: float = 0.3) -> list[float] | None:
    """Seconds from the ``completed`` event's created_at to an SSE client holding it.

    The jobs sleep ``latency_s`` in the provider so each stream is open, and the
    event arrives live rather than from the replay, when the job completes.
    """
    missing = threading.Event()

    def one(_i):
        status, job = client.submit(job_body("16x16", latency_s))
        if status not in (200, 202):
            return None
        got = {}

        def on_event(event, received):
            if event.get("type") == COMPLETED:
                got["s"] = received - epoch(event["created_at"])
        if not client.events(job["id"], on_event):
            missing.set()
        return got.get("s")

    results, _wall = concurrent(n, concurrency, one, advance)
    if missing.is_set():
        return None
    return [r for r in results if r is not None]
