"""``Genline``: the synchronous client (httpx.Client)."""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Optional, Union

import httpx

from genline_client import _core
from genline_client._core import JobRef
from genline_client.errors import ConnectionFailed, JobCanceled, JobFailed, RateLimited, WaitTimeout
from genline_client.models import CancelResult, Event, Job, Page, Upload
from genline_client.webhooks import Webhooks

UploadSource = Union[str, os.PathLike, bytes]

OnUpdate = Optional[Callable[[Event], None]]


def outcome(job: Job) -> Job:
    """The completed job, or the typed error of a job that ended otherwise."""
    if job.status == "failed":
        raise JobFailed(job)
    if job.status == "canceled":
        raise JobCanceled(job)
    return job


class _StreamCut(Exception):
    """The event stream broke (or could not be opened for a retryable reason)."""


class Genline:
    """A genline API client. ``api_key`` and ``base_url`` default to GENLINE_API_KEY and GENLINE_URL;
    ``api_key=""`` makes a keyless client that reads jobs through their token URLs only.

    ``max_retries`` bounds the retries of one call (connect errors, 429, 5xx);
    ``max_retry_after`` is the longest ``Retry-After`` honoured before giving up.
    """

    def __init__(self, api_key: Optional[str] = None, base_url: Optional[str] = None, *, max_retries: int = 4,
                 max_retry_after: float = 60.0, timeout: float = 30.0, http_client: Optional[httpx.Client] = None):
        self.api_key = api_key if api_key is not None else os.environ.get("GENLINE_API_KEY")
        self.base_url = base_url or os.environ.get("GENLINE_URL") or _core.DEFAULT_BASE_URL
        self.max_retries, self.max_retry_after = max_retries, max_retry_after
        headers = {"User-Agent": _core.USER_AGENT}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = http_client or httpx.Client(timeout=timeout)
        self._headers = headers
        self._sleep = time.sleep
        self.jobs = Jobs(self)
        self.webhooks = Webhooks()
        self.uploads = Uploads(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._http.close()

    def run(self, prompt: str, *, timeout: Optional[float] = None, on_update: OnUpdate = None,
            cancel_on_timeout: bool = True, **create) -> Job:
        """Create a job and wait for it: the completed job, or JobFailed / JobCanceled / WaitTimeout.

        ``timeout`` is this call's wait; the job's own server-side limits go in ``budget=``.
        """
        job = self.jobs.create(prompt, **create)
        return self.jobs.wait(job, timeout=timeout, on_update=on_update, cancel_on_timeout=cancel_on_timeout)

    def request(self, method: str, url: str, *, json_body=None, params=None, headers=None, files=None,
                timeout: Optional[float] = None) -> httpx.Response:
        """One call with retries: connect errors, 429 and 5xx, with backoff and ``Retry-After``; never other 4xx.

        Errors after the request may have reached the server are retried only when
        sending it again is safe (a GET, or a POST with an Idempotency-Key).
        """
        all_headers = {**self._headers, **(headers or {})}
        safe = method == "GET" or "Idempotency-Key" in all_headers
        url = url if url.startswith(("http://", "https://")) else self.base_url.rstrip("/") + url
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._http.request(
                    method, url, json=json_body, params=params, headers=all_headers, files=files,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.TransportError as exc:
                if last or not (isinstance(exc, _core.CONNECT_ERRORS) or safe):
                    raise ConnectionFailed(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
                self._sleep(_core.backoff_s(attempt))
                continue
            if response.status_code < 400:
                return response
            error = _core.error_from_response(response)
            wait = getattr(error, "retry_after", None)
            if last or response.status_code not in _core.RETRY_STATUSES or (wait or 0) > self.max_retry_after:
                if isinstance(error, RateLimited):
                    error.idempotency_key = all_headers.get("Idempotency-Key")
                raise error
            self._sleep(wait if wait is not None else _core.backoff_s(attempt))
        raise AssertionError("unreachable")


class Jobs:
    """``client.jobs``: create, read, list, cancel, retry, wait for and stream jobs."""

    def __init__(self, client: Genline):
        self._c = client

    def _target(self, ref: JobRef) -> _core.Target:
        return _core.target(self._c.base_url, ref, bool(self._c.api_key))

    def create(self, prompt: str, *, idempotency_key: Optional[str] = None, wait: Optional[float] = None,
               **fields) -> Job:
        """Submit a job (every field of POST /v1/jobs: operation, provider, model, params or size/n/seed/format,
        inputs or images/mask, budget, priority, metadata, webhook). One idempotency key is made per call
        (or given) and sent on every retry, so a retried call never makes a second job."""
        key = idempotency_key or _core.new_idempotency_key()
        headers = {"Idempotency-Key": key}
        timeout = None
        if wait:
            headers["Prefer"] = f"wait={int(wait)}"
            timeout = wait + 15
        body = _core.create_body(prompt, **fields)
        return Job.from_dict(self._c.request("POST", "/v1/jobs", json_body=body, headers=headers,
                                             timeout=timeout).json())

    def get(self, job: JobRef, wait: Optional[float] = None) -> Job:
        """The job; with ``wait`` (≤ 60 s) the server holds the answer until it ends or that time passes."""
        url = self._target(job).self_url
        if wait:
            # Merged into the URL's own query: httpx's params= would drop a token URL's ?token=.
            url = str(httpx.URL(url).copy_merge_params({"wait": int(wait)}))
        return Job.from_dict(self._c.request("GET", url, timeout=wait + 15 if wait else None).json())

    def list(self, *, status: Union[str, list, None] = None, operation: Optional[str] = None,
             created_after: Optional[str] = None, created_before: Optional[str] = None,
             limit: Optional[int] = None) -> JobPages:
        """Jobs newest first: iterate for jobs (pages are fetched as needed), or ``.pages()`` for pages."""
        params = {"status": ",".join(status) if isinstance(status, (list, tuple)) else status,
                  "operation": operation, "created_after": created_after, "created_before": created_before,
                  "limit": limit}
        return JobPages(self._c, {k: v for k, v in params.items() if v is not None})

    def cancel(self, job: JobRef) -> Job:
        """Cancel a queued or processing job; ApiError 409 (``conflict``) if it had already ended."""
        return Job.from_dict(self._c.request("POST", self._target(job).cancel_url).json())

    def retry(self, job: JobRef) -> Job:
        """Resume a failed or canceled job from the step that did not finish; ApiError 409 otherwise."""
        return Job.from_dict(self._c.request("POST", self._target(job).self_url.split("?")[0] + "/retry").json())

    def cancel_many(self, *, ids: Optional[list] = None, status: Optional[list] = None,
                    created_before: Optional[str] = None) -> CancelResult:
        """Cancel every active job matching all filters given (at least one)."""
        given = (("ids", ids), ("status", status), ("created_before", created_before))
        body = {k: v for k, v in given if v is not None}
        data = self._c.request("POST", "/v1/jobs/cancel", json_body=body).json()
        return CancelResult(data["canceled"], [Job.from_dict(j) for j in data["data"]])

    def stream(self, job: JobRef, last_event_id: Optional[int] = None) -> Iterator[Event]:
        """Every event of the job after ``last_event_id``, once each, in order, until it ends.

        A broken stream is reopened with ``Last-Event-ID`` (with backoff), so nothing is missed or doubled.
        """
        last, failures = last_event_id, 0
        while True:
            state: dict = {}
            try:
                for event in self._events_once(job, last, state):
                    last, failures = event.id, 0
                    yield event
            except _StreamCut as exc:
                if failures >= self._c.max_retries:
                    raise ConnectionFailed(f"the event stream of {self._target(job).job_id} kept breaking") from exc
                self._c._sleep(_core.backoff_s(failures))
                failures += 1
                continue
            if state.get("ended"):
                return

    def wait(self, job: JobRef, timeout: Optional[float] = None, on_update: OnUpdate = None,
             cancel_on_timeout: bool = False) -> Job:
        """Follow the job until it ends: the completed job, or JobFailed / JobCanceled.

        SSE first; when the stream is cut, one long-poll, then the stream resumes with
        Last-Event-ID, so ``on_update`` sees every event once. After ``timeout`` seconds
        (the client's wait, not the job's budget) WaitTimeout carries the job id; the job
        is canceled only with ``cancel_on_timeout``.
        """
        ref = job
        if timeout is None:
            for item in self._follow(ref, None, threading.Event()):
                if isinstance(item, Job):
                    return outcome(item)
                if on_update:
                    on_update(item)
        return self._wait_until(ref, timeout, on_update, cancel_on_timeout)

    def _wait_until(self, ref: JobRef, timeout: float, on_update: OnUpdate, cancel_on_timeout: bool) -> Job:
        """``wait`` with a deadline: the stream is read in a thread so that the deadline holds to the moment."""
        deadline = time.monotonic() + timeout
        items: queue.Queue = queue.Queue()
        stop = threading.Event()

        def pump():
            try:
                for item in self._follow(ref, deadline, stop):
                    items.put((True, item))
                    if stop.is_set():
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                items.put((False, exc))

        threading.Thread(target=pump, name="genline-wait", daemon=True).start()
        try:
            return self._drain(ref, items, stop, deadline, timeout, on_update, cancel_on_timeout)
        finally:
            stop.set()  # however the wait ends (an on_update that raised too), the reader stops

    def _drain(self, ref: JobRef, items: queue.Queue, stop: threading.Event, deadline: float, timeout: float,
               on_update: OnUpdate, cancel_on_timeout: bool) -> Job:
        """Hand the reader's events to ``on_update`` until the job ends or the deadline passes."""
        while True:
            try:
                ok, item = items.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                stop.set()
                target = self._target(ref)
                canceled = False
                if cancel_on_timeout:
                    self.cancel(ref)
                    canceled = True
                raise WaitTimeout(target.job_id, timeout, canceled=canceled) from None
            if not ok:
                raise item
            if isinstance(item, Job):
                return outcome(item)
            if on_update:
                on_update(item)

    def _follow(self, ref: JobRef, deadline: Optional[float], stop: threading.Event):
        """Events, then the terminal job as the last item: SSE, and a long-poll whenever it is cut."""
        last, cuts, idle = None, 0, 0
        while not stop.is_set():
            state: dict = {}
            try:
                for event in self._events_once(ref, last, state):
                    last, idle, cuts = event.id, 0, 0
                    yield event
                    if stop.is_set():
                        return
            except _StreamCut:
                cuts += 1
                hold = min(_core.LONG_POLL_S, _core.FIRST_LONG_POLL_S * cuts)
                if deadline is not None:
                    hold = max(1, min(hold, int(deadline - time.monotonic())))
                current = self.get(ref, wait=hold)
                # The stream resumes next time round and replays what the cut hid; a stream that
                # cannot be had at all (a proxy that buffers) is given up on once the job ended.
                if current.terminal and cuts >= 3:
                    yield current
                    return
                continue
            cuts = 0
            if state.get("ended"):
                current = self.get(ref)
                if current.terminal:
                    yield current
                    return
            # The stream ended early (the server's longest stream) or the job was retried: resume.
            idle += 1
            if idle > 1:
                self._c._sleep(min(2.0, _core.backoff_s(idle)))

    def _events_once(self, ref: JobRef, last: Optional[int], state: dict) -> Iterator[Event]:
        """One connection to the event stream; ``state["ended"]`` once the job's stream is over (terminal or 204)."""
        target = self._target(ref)
        headers = {**self._c._headers, "Accept": "text/event-stream"}
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        timeout = httpx.Timeout(10.0, read=_core.STREAM_READ_TIMEOUT_S)
        try:
            with self._c._http.stream("GET", target.events_url, headers=headers, timeout=timeout) as response:
                if response.status_code == 204:
                    state["ended"] = True
                    return
                if response.status_code >= 400:
                    response.read()
                    if response.status_code in _core.RETRY_STATUSES:
                        raise _StreamCut(f"HTTP {response.status_code}")
                    raise _core.error_from_response(response)
                decoder = _core.SSEDecoder()
                for line in response.iter_lines():
                    message = decoder.feed(line)
                    if message is None:
                        continue
                    event = Event.from_dict(json.loads(message["data"]))
                    if last is not None and event.id <= last:
                        continue
                    last = event.id
                    state["ended"] = event.terminal
                    yield event
        except httpx.TransportError as exc:
            raise _StreamCut(str(exc)) from exc


class JobPages:
    """``jobs.list(...)``: iterating gives jobs across pages; ``pages()`` gives each Page."""

    def __init__(self, client: Genline, params: dict):
        self._c, self._params = client, params

    def pages(self) -> Iterator[Page]:
        cursor = None
        while True:
            params = dict(self._params, **({"cursor": cursor} if cursor else {}))
            data = self._c.request("GET", "/v1/jobs", params=params).json()
            page = Page([Job.from_dict(j) for j in data["data"]], data.get("next_cursor"))
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def __iter__(self) -> Iterator[Job]:
        for page in self.pages():
            yield from page.data


class Uploads:
    """``client.uploads``: input images for edit and inpaint jobs (``POST /v1/uploads``)."""

    def __init__(self, client: Genline):
        self._c = client

    def create(self, file: UploadSource, filename: Optional[str] = None) -> Upload:
        """Upload an image from a path or bytes; returns its ``upl_`` id, media type and size."""
        if isinstance(file, (bytes, bytearray)):
            data, name = bytes(file), filename or "image"
        else:
            with open(file, "rb") as handle:
                data = handle.read()
            name = filename or os.path.basename(os.fspath(file))
        response = self._c.request("POST", "/v1/uploads", files={"file": (name, data)})
        return Upload.from_dict(response.json())
