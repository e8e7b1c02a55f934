"""GET /v1/jobs/{id}/events: the job's events as Server-Sent Events.

Order of work, so that no event is lost or sent twice:
1. subscribe to the job on the process's hub (live events queue up from now);
2. replay the log after ``Last-Event-ID`` (authoritative);
3. stream live events, dropping those at or below the last seq sent and
   re-reading the log when a seq is skipped, the hub resynced, or nothing came
   for a heartbeat interval;
4. close after the terminal event.

While the job is queued, its ETA (``pipeline.service.eta``) is recomputed when the
stream wakes up anyway (right after the replay, and at each quiet heartbeat
interval, ``GENLINE_SSE_HEARTBEAT_S``) and an ``estimation`` event is sent
when it first exists and whenever the remaining time to the estimated finish
moves by more than 10% of the wait it last announced. An estimation is not a
job event: it is not in the log, and its id repeats the seq of the last logged
event the stream sent. So ``Last-Event-ID`` keeps naming the log, a resumed
stream simply gets the current estimate again, and a client that skips ids it
has seen (the Python and JS clients do) ignores estimations without breaking.

A stream opened (or resumed) after the terminal event answers 204, which tells
a browser's EventSource to stop reconnecting.
"""
from __future__ import annotations

import json
import logging
import time

from flask import Blueprint, Response, request, stream_with_context

from pipeline.core.lifecycle import TERMINAL_EVENTS, JobStatus, is_terminal
from pipeline.service import eta
from pipeline.service.representation import iso
from pipeline.store import jobs
from pipeline.store.models import utcnow
from web import hub
from web.api.errors import ApiError
from web.api.jobs import get_job_or_404
from web.auth import config, reader_for_job
from web.queueing import estimates, queue_positions

bp = Blueprint("events", __name__)
log = logging.getLogger("genline.events")

RETRY_MS = 2000
"""The reconnect delay a browser's EventSource is told to use."""
MAX_STREAM_S = 900
"""A stream ends after this long; the client resumes with Last-Event-ID (keeps proxies and leaks honest)."""
OFFLINE_POLL_S = 1.0
"""How often to read the log while the hub has no Redis subscription."""


def last_event_id() -> int:
    """``Last-Event-ID`` (header, as EventSource sends it) or ``?last_event_id=``; 0 when absent."""
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id")
    if raw in (None, ""):
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ApiError(422, "invalid_input", "Last-Event-ID: must be the id of an event this stream sent",
                       {"Last-Event-ID": "must be a whole number"})
    return value


def frame(event: dict) -> str:
    """One SSE message: id (the seq), event type, and the event as JSON."""
    data = json.dumps(event, separators=(",", ":"))
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n"


class Replayer:
    """Yields each event of one job exactly once, in seq order, from the log and the hub."""

    def __init__(self, job_id: str, after: int):
        self.job_id, self.last = job_id, after
        self.done = False

    def from_log(self):
        """Every logged event after the last one sent; marks ``done`` at a final terminal event."""
        while True:
            batch = jobs.events_after(self.job_id, self.last)
            for event in batch:
                yield from self._send(event, final=event is batch[-1])
            if len(batch) < 1000:
                return

    def live(self, event: dict):
        """A pub/sub event: dropped if already sent; a gap means read the log instead."""
        seq = event.get("id")
        if not isinstance(seq, int) or seq <= self.last:
            return
        if seq == self.last + 1:
            yield from self._send(event, final=True)
        else:
            yield from self.from_log()

    def _send(self, event: dict, final: bool):
        if event["id"] <= self.last:
            return
        self.last = event["id"]
        yield frame(event)
        # A terminal event followed by more (a retry re-queued the job) is not the end.
        if event["type"] in TERMINAL_EVENTS and final:
            self.done = True


class Estimation:
    """The last estimate a stream sent; ``check`` gives a new ``estimation`` frame when it moved by more than 10%."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.sent: tuple = (None, None)
        self.sent_at = None

    def check(self, last_seq: int) -> str | None:
        job = jobs.get(self.job_id)
        if job is None or job.status != JobStatus.QUEUED.value:
            return None
        positions = queue_positions([job])
        new = estimates([job], positions, config())[job.id]
        now = utcnow()
        if not eta.moved(self.sent, new, self.sent_at):
            return None
        self.sent, self.sent_at = new, now
        return frame({"id": last_seq, "type": "estimation", "job_id": job.id, "created_at": iso(now),
                      "data": {"queue_position": positions[job.id], "estimated_start_at": iso(new[0]),
                               "estimated_finish_at": iso(new[1])}})


def stream(job_id: str, after: int, heartbeat_s: float):
    """The SSE body of one job: subscribe first, then replay the log, then live events."""
    sub = hub.current().subscribe(job_id)
    try:
        replay = Replayer(job_id, after)
        estimation = Estimation(job_id)
        yield f"retry: {RETRY_MS}\n\n"
        yield from replay.from_log()
        if not replay.done:
            yield from _estimate(estimation, replay.last)
        ends = time.monotonic() + MAX_STREAM_S
        while not replay.done and time.monotonic() < ends:
            event = sub.get(heartbeat_s if sub.live else min(heartbeat_s, OFFLINE_POLL_S))
            if event is None:
                # Quiet: re-read the log in case a publish was lost, then keep the connection warm.
                yield from replay.from_log()
                if not replay.done:
                    yield from _estimate(estimation, replay.last)
                    yield ": heartbeat\n\n"
            elif event is hub.RESYNC:
                yield from replay.from_log()
            else:
                yield from replay.live(event)
    finally:
        sub.close()


def _estimate(estimation: Estimation, last_seq: int):
    """The estimation frame when it moved; nothing (and a log line) when it cannot be computed."""
    try:
        found = estimation.check(last_seq)
    except Exception as exc:  # noqa: BLE001 - an estimate is advisory: never end the job's stream for it
        log.warning("estimation skipped job_id=%s error=%s", estimation.job_id, exc.__class__.__name__)
        return
    if found:
        yield found


@bp.get("/v1/jobs/<job_id>/events")
def job_events(job_id: str):
    tenant = reader_for_job(job_id)
    job = get_job_or_404(job_id, tenant)
    after = last_event_id()
    if after > job.event_seq:
        raise ApiError(422, "invalid_input", f"Last-Event-ID: the job has no event {after} (its last is {job.event_seq})",
                       {"Last-Event-ID": "unknown event"})
    if is_terminal(job.status) and after >= job.event_seq:
        # Nothing left to send: 204 is how SSE tells a client not to reconnect.
        return Response(status=204)
    body = stream_with_context(stream(job.id, after, config().sse_heartbeat_s))
    response = Response(body, mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache, no-transform"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response
