"""The four step tasks of a job. Each takes the job id and nothing else.

validate -> generate -> upload -> notify; ``pipeline.worker.steps.run_step`` does the
claiming, leasing, retrying and recording for all of them.
"""
from __future__ import annotations

import hashlib
import io
import logging
import time

from celery import shared_task
from flask import current_app
from PIL import Image

from pipeline.adapters import metrics, tracing
from pipeline.adapters.inputs import load_inputs, provider_urls
from pipeline.adapters.providers import AttemptContext, ProviderRequest, get_provider
from pipeline.adapters.storage import attempt_dir, open_storage, output_key
from pipeline.core import budget, media
from pipeline.core.errors import GenlineError, InternalError, ProviderError
from pipeline.core.lifecycle import JobStatus, Step
from pipeline.store import jobs, staging
from pipeline.store.models import utcnow
from pipeline.worker import cancelwatch, progress
from pipeline.worker import notify as notifier
from pipeline.worker.steps import StepResult, config, run_step
from pipeline.worker.taskstate import JobFailed

log = logging.getLogger("genline.tasks")

STEP_REQUEST = "pipeline.worker.hardlimit:StepRequest"
"""Records a hard time limit kill as a timeout attempt (see pipeline/worker/hardlimit.py)."""

THROWS = (JobFailed,)
"""A step that ends its job as failed is an expected outcome: Celery logs it in one line, without a traceback."""

PROGRESS_EVERY_S = 0.25
"""At most one progress event this often per attempt (each is a row and a publish)."""


def validate_work(job, owner, lease):
    """Decode and check the inputs; record what was found."""
    images, mask = load_inputs(job, config())
    return {"images": [list(i.size) for i in images], "mask": list(mask.size) if mask else None}


def _progress_reporter(job_id: str, owner: str):
    # Counting from the attempt's start: an attempt shorter than PROGRESS_EVERY_S
    # reports nothing (its step's end follows at once), saving a write per job.
    last = {"at": time.monotonic(), "fraction": -1.0}

    def report(fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last["at"] < PROGRESS_EVERY_S:
            return
        if fraction <= last["fraction"]:
            return
        last.update(at=now, fraction=fraction)
        # The hot path's one-statement write (as a step's), as the last report comes just before the end.
        fraction = round(fraction, 3)
        jobs.record_progress(job_id, owner, fraction, {"fraction": fraction, "message": message})
    return report


def _record_step(job_id: str, owner: str, done: int, total: int) -> None:
    fraction = round(done / total, 3) if total else 0.0
    jobs.record_progress(job_id, owner, fraction, {"fraction": fraction, "message": f"step {done} of {total}",
                                                   "step": done, "steps": total})


class _StepEvents:
    """Every step a provider reports (``AttemptContext.step``) becomes its own progress event,
    written behind the attempt by ``writer`` (``pipeline.worker.progress``).

    ``flush`` waits for this attempt's events only if it queued any: the
    hand-off to the writer thread and back cost a compute slot 1-8 ms a task
    (py-spy, ``tests/bench/slots.py``) for providers that report no steps.
    """

    def __init__(self, job_id: str, owner: str, writer):
        self.job_id, self.owner, self.writer = job_id, owner, writer
        self.queued = False

    def report(self, done: int, total: int) -> None:
        self.queued = True
        self.writer.put(_record_step, self.job_id, self.owner, done, total)

    def flush(self) -> None:
        if self.queued:
            self.writer.flush()


def _is_canceled(job_id: str, lease, owner: str | None = None, watched=None):
    def check() -> bool:
        if lease.is_set():
            return True
        if watched is not None:  # one query per process for every running attempt (pipeline.worker.cancelwatch)
            return watched.stopped.is_set()
        job = jobs.get(job_id)
        # Not ours any more: canceled, or canceled and retried, or re-leased by the reaper.
        return job is None or job.status == JobStatus.CANCELED.value or (
            owner is not None and job.lease_owner != owner)
    return check


def generate_work(job, owner, lease):
    """Call the provider within the attempt's time; stage its images for upload."""
    cfg = config()
    images, mask = load_inputs(job, cfg)
    steps = _StepEvents(job.id, owner, progress.writer(current_app._get_current_object()))
    soft, _hard = budget.attempt_limits(job.timeout_s, job.deadline_at, utcnow())
    watch = cancelwatch.watcher(current_app._get_current_object())
    watched = watch.watch(job.id, owner)
    try:
        ctx = AttemptContext(job_id=job.id, attempt=job.attempt - job.lost_count,
                             deadline=time.monotonic() + soft,
                             is_canceled=_is_canceled(job.id, lease, owner, watched),
                             on_progress=_progress_reporter(job.id, owner),
                             on_step=steps.report, check_every_s=0.1)
        return _generate(job, cfg, images, mask, ctx, steps)
    finally:
        watch.unwatch(watched)


def _generate(job, cfg, images, mask, ctx, steps):
    provider = get_provider(job.provider, cfg)
    request = ProviderRequest(operation=job.operation, prompt=job.prompt, params=job.params,
                              model=job.model, images=images, mask=mask)
    if provider.name not in ("local", "diffusers"):  # remote providers fetch inputs by signed, expiring URL
        request.input_urls, request.mask_url = provider_urls(job, cfg)
    started, outcome = time.monotonic(), "interrupted"
    try:
        with tracing.span("provider.run", job_id=job.id, provider=provider.name, model=job.model,
                          operation=job.operation, attempt=ctx.attempt):
            results = provider.run(request, ctx)
        outcome = "ok"
    except GenlineError as exc:
        outcome = exc.code
        raise
    finally:
        metrics.provider_call(provider.name, job.operation, outcome, time.monotonic() - started)
        steps.flush()  # the step events precede the step's end (or are dropped with a lost lease)
    if not results:
        raise ProviderError(f"the provider {provider.name} returned no image")
    # The job names the provider and model that made its outputs (failover may have moved on).
    model = results[0].model or job.model
    return StepResult({"provider": provider.name, "model": model, "images": len(results)},
                      values={"provider": provider.name, "model": model},
                      stages=staging.rows_of(job.id, results, provider.name, job.model))


def upload_work(job, owner, lease):
    """Encode staged images in the requested format and put them in storage."""
    storage = open_storage(config())
    pil_format, media_type = media.pil_and_media_type(job.params.get("format", "png"))
    outputs = []
    for staged in staging.load(job.id):
        image = Image.open(io.BytesIO(staged.data))
        data = staged.data
        if staged.media_type != media_type:
            buf = io.BytesIO()
            image.convert("RGB" if pil_format == "JPEG" else image.mode).save(buf, pil_format)
            data = buf.getvalue()
        key = output_key(job.id, staged.n, media_type, attempt_dir(owner))  # fenced: see attempt_dir
        with tracing.span("storage.put", job_id=job.id, key=key, bytes=len(data), media_type=media_type):
            stored = storage.put(key, data, media_type)
        outputs.append({
            "key": stored.key, "media_type": media_type, "bytes": stored.bytes,
            "width": image.width, "height": image.height,
            "sha256": hashlib.sha256(data).hexdigest(),
            "provider": staged.provider, "model": staged.model,
        })
    if not outputs:
        # The generate step recorded images that are gone: genline's fault, not the request's.
        raise InternalError("no generated image was found to upload")
    return outputs


@shared_task(name="genline.validate", bind=True, Request=STEP_REQUEST, throws=THROWS)
def validate(self, job_id: str) -> None:
    """Check a job's inputs before any provider is called."""
    run_step(self, job_id, Step.VALIDATE, validate_work)


@shared_task(name="genline.generate", bind=True, Request=STEP_REQUEST, throws=THROWS)
def generate(self, job_id: str) -> None:
    """One provider attempt of a job."""
    run_step(self, job_id, Step.GENERATE, generate_work)


@shared_task(name="genline.upload", bind=True, Request=STEP_REQUEST, throws=THROWS)
def upload(self, job_id: str) -> None:
    """Store a job's generated images; completes the job."""
    run_step(self, job_id, Step.UPLOAD, upload_work)


@shared_task(name="genline.notify", bind=True)
def notify(self, job_id: str) -> None:
    """Tell the outside world a job ended (webhooks)."""
    tracing.annotate(job_id=job_id, step=Step.NOTIFY.value)
    notifier.notify_terminal(job_id)
