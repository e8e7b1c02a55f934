"""Keeping a prefork pool process's slot busy with steps, not with what surrounds them.

A compute slot runs one generate after another. Measured with
``tests/bench/slots.py`` (1 s generates, 2 slots, a full queue), what it spent
besides the generation was, per task: the follow-ups of a step's end (the ETA
sample, sending the next step's message, waking the tenant's parked jobs: three
to five round trips to Redis and Postgres), and on each process's first task
another 150-250 ms opening a database connection and a Postgres backend's
catalog cache, compiling the claim and end statements, connecting to Redis.

So, in a prefork pool process only (``enable``, from ``worker_process_init``):

- ``after(fn, *args)`` runs a step's follow-ups on the process's write-behind
  thread (``pipeline.worker.progress``) once the step's end is recorded, and the
  task returns at once: the slot's next message is acknowledged and fetched
  while they run. The next step's message goes that way too (``send_after``)
  only on a worker that does not consume ``io.finish`` (the compute kind). The
  end itself (output, lease release, staged images) is still written before
  the task returns; a process killed before its follow-ups ran leaves a job
  with no lease and no in-flight marker, whose step the reaper sends again (as
  after a send that failed).
- ``warm(app)`` runs the hot path's statements once against a job id that
  matches no row (they change nothing), before the process takes its first task.

Elsewhere (the gevent I/O worker, tests calling steps directly) ``after`` runs
``fn`` at once: a greenlet holds no slot, and one writer for a thousand waiting
jobs would only queue them.
"""
from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from PIL import Image

from pipeline.adapters import events, routing
from pipeline.core.lifecycle import Step
from pipeline.service import admission
from pipeline.store import jobs
from pipeline.worker import cancelwatch, leases, progress

log = logging.getLogger("genline.slot")

WARM_S = 2.0
"""The longest a pool process waits for its warm-up before it reports up."""

_state: dict[str, Any] = {"deferring": False, "sends_own_queue": True, "app": None}


def consumes(queues) -> None:
    """The worker's queues (set in its main process, before the pool forks).

    A worker that consumes ``io.finish`` (one worker on every queue) must send a
    generate's upload before its task returns: the slot's next fetch polls
    ``io.finish`` first and must find it there, or it takes the next generate
    and the upload waits behind it (a generated image lost to a backlog).
    """
    _state["sends_own_queue"] = routing.FINISH in set(queues)


def enable(app) -> None:
    """This process is a prefork pool child running ``app``'s tasks: defer step follow-ups from now on."""
    _state["deferring"], _state["app"] = True, app


def send_after(fn, *args) -> None:
    """``after`` for sending the next step's message: now when this worker consumes its queue."""
    if _state["sends_own_queue"]:
        fn(*args)
    else:
        after(fn, *args)


def after(fn, *args) -> None:
    """Run ``fn(*args)`` after the current step: on the write-behind thread in a pool process, else now."""
    if not _state["deferring"]:
        fn(*args)
        return
    # A follow-up that raises is logged there; the reaper sends a step whose message never went.
    progress.writer(_state["app"]).put(fn, *args)


def warm(app) -> None:
    """Open the connections and compile the statements a step's first run would, changing nothing.

    Every write below names a job id that does not exist, so each UPDATE
    matches no row (and appends no event, stages nothing). A failure (the
    database or Redis not up yet) only leaves the first task to do it.
    """
    cfg = app.extensions["genline.config"]
    nobody = f"warm-{uuid.uuid4().hex}"
    try:
        with app.app_context():
            admission.throttle_gate(nobody)
            jobs.claim(nobody, Step.GENERATE, nobody, cfg.lease_s)
            # The shape of a generate's end (pipeline.worker.steps.finish): one staged image.
            stage = {"job_id": nobody, "n": 0, "media_type": "image/png", "data": b"", "provider": "local",
                     "model": None}
            jobs.end_step(nobody, Step.GENERATE, nobody,
                          {"provider": "local", "model": None, "step": Step.UPLOAD.value, "step_outputs": {},
                           "timing": {}}, stages=[stage])
            jobs.record_progress(nobody, nobody, 0.0, {})
            events.client().ping()
            # The process's helper threads (lease renewal, cancel watch, write-behind), and PIL's image plugins.
            renewer = leases.renewer(app)
            renewer.release(renewer.hold(nobody, nobody, cfg.lease_s))
            watch = cancelwatch.watcher(app)
            watch.unwatch(watch.watch(nobody, nobody))
            progress.writer(app).put(lambda: None)
            Image.init()
            with app.extensions["celery"].producer_pool.acquire(block=True, timeout=WARM_S) as producer:
                producer.connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("pool process warm-up incomplete error=%s", exc.__class__.__name__)


def warm_briefly(app) -> None:
    """``warm``, waiting for it at most WARM_S: a pool process must report up within
    Celery's ``worker_proc_alive_timeout`` (4 s) even when the database is slow to answer."""
    thread = threading.Thread(target=warm, args=(app,), name="genline-warm", daemon=True)
    thread.start()
    thread.join(WARM_S)
