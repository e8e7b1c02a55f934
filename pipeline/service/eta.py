"""ETA of a queued job: ``estimated_start_at`` and ``estimated_finish_at`` (DESIGN §2, §8).

History: when a step ends, its worker folds the duration into an exponentially
weighted mean in one small Redis hash (``KEY``), with one Lua call (``record``):

- ``generate:<provider>`` and ``generate:*``: how long a generate holds its slot;
- ``job:<provider>``: how long a job takes from its start (the generate claim,
  ``started_at``) to its completion (generate, upload, the hops between).

Each mean keeps a sample count next to it (``<field>:n``); with fewer than
``MIN_SAMPLES`` there is too little history and both fields are null.

Reading (``estimate``) costs one HMGET and one small SQL statement (counts on
indexed columns: the jobs in generate now, the tenant's, its limit), never a
scan of past jobs. The model, a fluid approximation of the queue:

- *slots* are the jobs in generate right now (at least 1): the observed
  concurrency of the workers consuming generate. It is honest while a queue
  exists (every slot busy, which is when an ETA matters); with no worker
  consuming, it claims one slot is working.
- the job's *position* P (``web.queueing``: its priority and above, held jobs
  included in their admission order) says how many starts come before it;
  starts come every ``generate:* / slots`` seconds, and the first after about
  half of that (the running jobs are part-way through), so the start is
  ``now + (P - free - 0.5) * mean / slots`` (``free``: 1 when nothing runs).
- its tenant's concurrency cap (``pipeline.service.concurrency``): when the cap is
  below the slots, the tenant's own jobs ahead drain at ``cap`` at a time,
  and the later of the two starts wins. A job held until ``admit_at`` (the
  tenant throttle, a replay) starts no earlier than that.
- the finish is the start plus ``job:<provider>``.
"""
from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import bindparam, func, select

from pipeline.adapters import events
from pipeline.core.lifecycle import JobStatus, Step
from pipeline.service.concurrency import limit_of
from pipeline.store import autocommit
from pipeline.store.models import Job, utcnow

log = logging.getLogger("genline.eta")

KEY = "genline:eta"
ALPHA = 0.3
"""Weight of the newest sample: recent enough to follow a provider slowing down, smooth enough to ignore one outlier."""
MIN_SAMPLES = 3
"""Fewer samples than this of a mean: too little history, no estimate."""
ALL = "*"

_UPDATE = """
for i, field in ipairs(KEYS) do
  if i > 1 then
    local n = redis.call('HINCRBY', KEYS[1], field .. ':n', 1)
    local old = tonumber(redis.call('HGET', KEYS[1], field))
    local v = tonumber(ARGV[1])
    if old ~= nil and n > 1 then v = old + tonumber(ARGV[2]) * (v - old) end
    redis.call('HSET', KEYS[1], field, tostring(v))
  end
end
return 1
"""


_GAP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local last = tonumber(redis.call('HGET', KEYS[1], 'last_generate_end'))
redis.call('HSET', KEYS[1], 'last_generate_end', tostring(now))
if last ~= nil and now - last <= tonumber(ARGV[2]) then
  local n = redis.call('HINCRBY', KEYS[1], 'gap:n', 1)
  local old = tonumber(redis.call('HGET', KEYS[1], 'gap'))
  local v = now - last
  if old ~= nil and n > 1 then v = old + tonumber(ARGV[1]) * (v - old) end
  redis.call('HSET', KEYS[1], 'gap', tostring(v))
end
return 1
"""
GAP_ALPHA = 0.15
"""The gaps between generate ends are irregular (two slots can end together): a smoother mean."""
BUSY_GAP = 1.5
"""A gap up to this many times the generate that just ended is the fleet's pace; longer ones include idle time."""


def _script():
    return events.client().register_script(_UPDATE)


def record(kind: str, provider: str | None, seconds: float) -> None:
    """Fold one duration of ``kind`` (``generate`` or ``job``) into the means. Never raises.

    Called by the worker right after the step's end was recorded; a lost
    sample only makes the mean a little older.
    """
    if seconds is None or seconds < 0:
        return
    fields = [f"{kind}:{provider or ALL}"] + ([f"{kind}:{ALL}"] if kind == "generate" and provider else [])
    try:
        _script()(keys=[KEY, *fields], args=[repr(float(seconds)), repr(ALPHA)])
        if kind == "generate":
            # A gap is a sample of the fleet's pace only while the pool was busy: this generate
            # ran through most of it (two slots ending in step give a gap of a generate plus the
            # other steps run in between); a longer one includes idle time.
            events.client().register_script(_GAP)(keys=[KEY], args=[repr(GAP_ALPHA), repr(BUSY_GAP * seconds)])
    except Exception as exc:  # noqa: BLE001 - an ETA sample is not worth failing a step for
        log.warning("eta sample not recorded kind=%s provider=%s error=%s", kind, provider, exc.__class__.__name__)


def means(provider: str | None) -> tuple[float, float, float | None] | None:
    """(slot seconds of any generate, start-to-finish seconds of ``provider``'s jobs, seconds between
    generate ends while busy or None), or None without history."""
    names = [f"generate:{ALL}", f"job:{provider or ALL}", "gap"]
    try:
        raw = events.client().hmget(KEY, *[f for n in names for f in (n, f"{n}:n")])
    except Exception as exc:  # noqa: BLE001 - no Redis: no estimate, the job still reads
        log.warning("eta history unreadable error=%s", exc.__class__.__name__)
        return None
    if any(v is None for v in raw[:4]) or min(int(raw[1]), int(raw[3])) < MIN_SAMPLES:
        return None
    gap = float(raw[4]) if raw[4] is not None and int(raw[5]) >= MIN_SAMPLES else None
    return float(raw[0]), float(raw[2]), gap


@lru_cache(maxsize=8)
def _load_statement(default_limit: int):
    """One statement: jobs in generate now, the tenant's, and its concurrency limit (bound: tenant)."""
    in_generate = (Job.status == JobStatus.PROCESSING.value) & (Job.step == Step.GENERATE.value)
    tenant = bindparam("tenant")
    running = select(func.count()).select_from(Job).where(in_generate).scalar_subquery()
    mine = select(func.count()).select_from(Job).where(in_generate, Job.tenant_id == tenant).scalar_subquery()
    return select(running.label("running"), mine.label("mine"), limit_of(tenant, default_limit).label("cap"))


def load(tenant_id: str, default_limit: int):
    """(jobs in generate, the tenant's jobs in generate, the tenant's cap) right now."""
    row = autocommit.rows(_load_statement(default_limit), {"tenant": tenant_id})[0]
    return int(row.running), int(row.mine), int(row.cap)


def observed_slots(slot_s: float, gap: float | None) -> int:
    """How many generates run at once when busy, from Little's law: a generate's mean over the mean gap
    between generate ends. Rounded up (the pool's other work makes the ratio fall a little short of the
    slot count), less a tenth so that noise around 1 does not make 2. 0 without a gap."""
    if not gap:
        return 0
    return max(1, math.ceil(slot_s / gap - 0.1))


def wait_s(position: int, slot_s: float, slots: int, running: int, gap: float | None = None) -> float:
    """Seconds until the ``position``-th start, with ``slots`` slots of which ``running`` are busy.

    ``gap``: the observed seconds between starts (generate ends) while busy, which
    replaces ``slot_s / slots`` when known: it also counts the pool's other work.
    """
    # With nothing running we cannot tell how many workers are there to start jobs: one, at least.
    free = max(0, slots - running) if running else 1
    if position <= free:
        return 0.0
    # Jobs queued ahead while a slot looks free: the pool is busy with other steps
    # (validate, upload) or the slot is about to be taken; the free slot saves no wait.
    return (position - 0.5) * (gap if gap is not None else slot_s / slots)


def estimate(job, position: int | None, default_limit: int, tenant_ahead=None,
             now: datetime | None = None, cache: dict | None = None) -> tuple[datetime | None, datetime | None]:
    """(estimated start, estimated finish) of a queued job at ``position``; (None, None) otherwise.

    ``tenant_ahead``: a callable giving how many of the job's tenant's queued
    jobs start before it; called only when the tenant's cap binds. ``cache``:
    a dict shared by the jobs of one page, so a list reads the history and the
    load once per provider and tenant, not once per job.
    """
    if job.status != JobStatus.QUEUED.value or position is None:
        return None, None
    cache = {} if cache is None else cache
    if ("means", job.provider) not in cache:
        cache["means", job.provider] = means(job.provider)
    found = cache["means", job.provider]
    if found is None:
        return None, None
    slot_s, job_s, gap = found
    if ("load", job.tenant_id) not in cache:
        cache["load", job.tenant_id] = load(job.tenant_id, default_limit)
    running, mine, cap = cache["load", job.tenant_id]
    slots = max(1, running, observed_slots(slot_s, gap))
    wait = wait_s(position, slot_s, slots, running, gap)
    if cap < slots and tenant_ahead is not None:
        wait = max(wait, wait_s(tenant_ahead() + 1, slot_s, cap, mine))
    now = now or utcnow()
    start = now + timedelta(seconds=wait)
    admit_at = getattr(job, "admit_at", None)
    if admit_at is not None and admit_at > start:
        start = admit_at
    return start, start + timedelta(seconds=job_s)


def moved(old: tuple, new: tuple, sent_at: datetime | None, threshold: float = 0.10) -> bool:
    """True when the estimated finish moved by more than ``threshold`` of the wait it announced when sent.

    ``old`` was sent at ``sent_at``; its wait was ``old finish - sent_at``. Comparing
    with that wait, not with the time left now, keeps a steady estimate quiet as
    its moment approaches. An estimate that appears or vanishes always moved.
    """
    if (old[1] is None) != (new[1] is None):
        return True
    if new[1] is None or sent_at is None:
        return False
    announced = max((old[1] - sent_at).total_seconds(), 0.001)
    return abs((new[1] - old[1]).total_seconds()) > threshold * announced
