"""``AsyncGenline``: the asyncio client (httpx.AsyncClient), the same surface as ``Genline``."""
from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Optional, Union

import httpx

from genline_client import _core
from genline_client._core import JobRef
from genline_client.client import outcome
from genline_client.errors import ConnectionFailed, RateLimited, WaitTimeout
from genline_client.models import CancelResult, Event, Job, Page, Upload
from genline_client.webhooks import Webhooks

UploadSource = Union[str, os.PathLike, bytes]

OnUpdate = Optional[Callable[[Event], object]]


class _StreamCut(Exception):
    """The event stream broke (or could not be opened for a retryable reason)."""


async def _call(callback: OnUpdate, event: Event) -> None:
    if callback is not None:
        result = callback(event)
        if inspect.isawaitable(result):
            await result


class AsyncGenline:
    """The asyncio client; see ``Genline`` for the arguments."""

    def __init__(self, api_key: Optional[str] = None, base_url: Optional[str] = None, *, max_retries: int = 4,
                 max_retry_after: float = 60.0, timeout: float = 30.0,
                 http_client: Optional[httpx.AsyncClient] = None):
        self.api_key = api_key if api_key is not None else os.environ.get("GENLINE_API_KEY")
        self.base_url = base_url or os.environ.get("GENLINE_URL") or _core.DEFAULT_BASE_URL
        self.max_retries, self.max_retry_after = max_retries, max_retry_after
        self._headers = {"User-Agent": _core.USER_AGENT}
        if self.api_key:
            self._headers["Authorization"] = f"Bearer {self.api_key}"
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._sleep = asyncio.sleep
        self.jobs = AsyncJobs(self)
        self.webhooks = Webhooks()
        self.uploads = AsyncUploads(self)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def run(self, prompt: str, *, timeout: Optional[float] = None, on_update: OnUpdate = None,
                  cancel_on_timeout: bool = True, **create) -> Job:
        """Create a job and wait for it (see ``Genline.run``)."""
        job = await self.jobs.create(prompt, **create)
        return await self.jobs.wait(job, timeout=timeout, on_update=on_update, cancel_on_timeout=cancel_on_timeout)

    async def request(self, method: str, url: str, *, json_body=None, params=None, headers=None, files=None,
                      timeout: Optional[float] = None) -> httpx.Response:
        """One call with retries (see ``Genline.request``)."""
        all_headers = {**self._headers, **(headers or {})}
        safe = method == "GET" or "Idempotency-Key" in all_headers
        url = url if url.startswith(("http://", "https://")) else self.base_url.rstrip("/") + url
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = await self._http.request(
                    method, url, json=json_body, params=params, headers=all_headers, files=files,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
            except httpx.TransportError as exc:
                if last or not (isinstance(exc, _core.CONNECT_ERRORS) or safe):
                    raise ConnectionFailed(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
                await self._sleep(_core.backoff_s(attempt))
                continue
            if response.status_code < 400:
                return response
            error = _core.error_from_response(response)
            wait = getattr(error, "retry_after", None)
            if last or response.status_code not in _core.RETRY_STATUSES or (wait or 0) > self.max_retry_after:
                if isinstance(error, RateLimited):
                    error.idempotency_key = all_headers.get("Idempotency-Key")
                raise error
            await self._sleep(wait if wait is not None else _core.backoff_s(attempt))
        raise AssertionError("unreachable")


class AsyncJobs:
    """``client.jobs`` of AsyncGenline (see ``Jobs``)."""

    def __init__(self, client: AsyncGenline):
        self._c = client

    def _target(self, ref: JobRef) -> _core.Target:
        return _core.target(self._c.base_url, ref, bool(self._c.api_key))

    async def create(self, prompt: str, *, idempotency_key: Optional[str] = None, wait: Optional[float] = None,
                     **fields) -> Job:
        """Submit a job; one idempotency key per call, reused on every retry (see ``Jobs.create``)."""
        headers = {"Idempotency-Key": idempotency_key or _core.new_idempotency_key()}
        timeout = None
        if wait:
            headers["Prefer"] = f"wait={int(wait)}"
            timeout = wait + 15
        response = await self._c.request("POST", "/v1/jobs", json_body=_core.create_body(prompt, **fields),
                                         headers=headers, timeout=timeout)
        return Job.from_dict(response.json())

    async def get(self, job: JobRef, wait: Optional[float] = None) -> Job:
        url = self._target(job).self_url
        if wait:
            # Merged into the URL's own query: httpx's params= would drop a token URL's ?token=.
            url = str(httpx.URL(url).copy_merge_params({"wait": int(wait)}))
        response = await self._c.request("GET", url, timeout=wait + 15 if wait else None)
        return Job.from_dict(response.json())

    def list(self, *, status: Union[str, list, None] = None, operation: Optional[str] = None,
             created_after: Optional[str] = None, created_before: Optional[str] = None,
             limit: Optional[int] = None) -> AsyncJobPages:
        """``async for job in client.jobs.list(...)``, or ``async for page in ....pages()``."""
        params = {"status": ",".join(status) if isinstance(status, (list, tuple)) else status,
                  "operation": operation, "created_after": created_after, "created_before": created_before,
                  "limit": limit}
        return AsyncJobPages(self._c, {k: v for k, v in params.items() if v is not None})

    async def cancel(self, job: JobRef) -> Job:
        return Job.from_dict((await self._c.request("POST", self._target(job).cancel_url)).json())

    async def retry(self, job: JobRef) -> Job:
        url = self._target(job).self_url.split("?")[0] + "/retry"
        return Job.from_dict((await self._c.request("POST", url)).json())

    async def cancel_many(self, *, ids: Optional[list] = None, status: Optional[list] = None,
                          created_before: Optional[str] = None) -> CancelResult:
        given = (("ids", ids), ("status", status), ("created_before", created_before))
        body = {k: v for k, v in given if v is not None}
        data = (await self._c.request("POST", "/v1/jobs/cancel", json_body=body)).json()
        return CancelResult(data["canceled"], [Job.from_dict(j) for j in data["data"]])

    async def stream(self, job: JobRef, last_event_id: Optional[int] = None) -> AsyncIterator[Event]:
        """Every event after ``last_event_id``, once each, in order, reopening a broken stream."""
        last, failures = last_event_id, 0
        while True:
            state: dict = {}
            try:
                async for event in self._events_once(job, last, state):
                    last, failures = event.id, 0
                    yield event
            except _StreamCut as exc:
                if failures >= self._c.max_retries:
                    raise ConnectionFailed(f"the event stream of {self._target(job).job_id} kept breaking") from exc
                await self._c._sleep(_core.backoff_s(failures))
                failures += 1
                continue
            if state.get("ended"):
                return

    async def wait(self, job: JobRef, timeout: Optional[float] = None, on_update: OnUpdate = None,
                   cancel_on_timeout: bool = False) -> Job:
        """Follow the job until it ends (see ``Jobs.wait``); ``on_update`` may be a coroutine function."""
        if timeout is None:
            return outcome(await self._follow(job, None, on_update))
        deadline = time.monotonic() + timeout
        try:
            final = await asyncio.wait_for(self._follow(job, deadline, on_update), timeout)
        except asyncio.TimeoutError:
            canceled = False
            if cancel_on_timeout:
                await self.cancel(job)
                canceled = True
            raise WaitTimeout(self._target(job).job_id, timeout, canceled=canceled) from None
        return outcome(final)

    async def _follow(self, ref: JobRef, deadline: Optional[float], on_update: OnUpdate) -> Job:
        """SSE, and a long-poll whenever it is cut; the terminal job (see ``Jobs._follow``)."""
        last, cuts, idle = None, 0, 0
        while True:
            state: dict = {}
            try:
                async for event in self._events_once(ref, last, state):
                    last, idle, cuts = event.id, 0, 0
                    await _call(on_update, event)
            except _StreamCut:
                cuts += 1
                hold = min(_core.LONG_POLL_S, _core.FIRST_LONG_POLL_S * cuts)
                if deadline is not None:
                    hold = max(1, min(hold, int(deadline - time.monotonic())))
                current = await self.get(ref, wait=hold)
                if current.terminal and cuts >= 3:
                    return current
                continue
            cuts = 0
            if state.get("ended"):
                current = await self.get(ref)
                if current.terminal:
                    return current
            idle += 1
            if idle > 1:
                await self._c._sleep(min(2.0, _core.backoff_s(idle)))

    async def _events_once(self, ref: JobRef, last: Optional[int], state: dict) -> AsyncIterator[Event]:
        """One connection to the event stream (see ``Jobs._events_once``)."""
        target = self._target(ref)
        headers = {**self._c._headers, "Accept": "text/event-stream"}
        if last is not None:
            headers["Last-Event-ID"] = str(last)
        timeout = httpx.Timeout(10.0, read=_core.STREAM_READ_TIMEOUT_S)
        try:
            async with self._c._http.stream("GET", target.events_url, headers=headers, timeout=timeout) as response:
                if response.status_code == 204:
                    state["ended"] = True
                    return
                if response.status_code >= 400:
                    await response.aread()
                    if response.status_code in _core.RETRY_STATUSES:
                        raise _StreamCut(f"HTTP {response.status_code}")
                    raise _core.error_from_response(response)
                decoder = _core.SSEDecoder()
                async for line in response.aiter_lines():
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


class AsyncJobPages:
    """``jobs.list(...)`` of AsyncGenline: ``async for`` gives jobs; ``pages()`` gives each Page."""

    def __init__(self, client: AsyncGenline, params: dict):
        self._c, self._params = client, params

    async def pages(self) -> AsyncIterator[Page]:
        cursor = None
        while True:
            params = dict(self._params, **({"cursor": cursor} if cursor else {}))
            data = (await self._c.request("GET", "/v1/jobs", params=params)).json()
            page = Page([Job.from_dict(j) for j in data["data"]], data.get("next_cursor"))
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def __aiter__(self):
        async for page in self.pages():
            for job in page.data:
                yield job


class AsyncUploads:
    """``client.uploads``: input images for edit and inpaint jobs (``POST /v1/uploads``)."""

    def __init__(self, client: AsyncGenline):
        self._c = client

    async def create(self, file: UploadSource, filename: Optional[str] = None) -> Upload:
        """Upload an image from a path or bytes; returns its ``upl_`` id, media type and size."""
        if isinstance(file, (bytes, bytearray)):
            data, name = bytes(file), filename or "image"
        else:
            with open(file, "rb") as handle:
                data = handle.read()
            name = filename or os.path.basename(os.fspath(file))
        response = await self._c.request("POST", "/v1/uploads", files={"file": (name, data)})
        return Upload.from_dict(response.json())
