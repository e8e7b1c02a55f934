"""The public JSON shape of a job (DESIGN §2): every field present, null where unknown."""
from __future__ import annotations

from pipeline.adapters.storage import open_storage
from pipeline.core import tokens


def iso(value):
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def job_urls(cfg, base_url: str, job_id: str) -> dict:
    token = tokens.job_token(cfg.secret_key, job_id)
    base = f"{base_url.rstrip('/')}/v1/jobs/{job_id}"
    return {"self": f"{base}?token={token}", "events": f"{base}/events?token={token}", "cancel": f"{base}/cancel"}


def output_url(cfg, base_url: str, job_id: str, n: int, key: str) -> str:
    """A signed, expiring URL of an output: presigned for S3, the signed files route otherwise."""
    signed = open_storage(cfg).signed_url(key, cfg.url_ttl_s)
    if signed:
        return signed
    return f"{base_url.rstrip('/')}/files/{tokens.file_token(cfg.secret_key, key)}"


def job_to_dict(job, cfg, base_url: str, queue_position: int | None = None, estimate: tuple | None = None) -> dict:
    """Render a job snapshot for the API, webhooks and the CLI.

    ``estimate``: (start, finish) of a queued job (``pipeline.service.eta``); null fields when not given.
    """
    start, finish = estimate or (None, None)
    outputs = None
    if job.outputs:
        outputs = [
            {k: o.get(k) for k in ("media_type", "bytes", "width", "height", "sha256", "provider", "model")}
            | {"url": output_url(cfg, base_url, job.id, n, o["key"])}
            for n, o in enumerate(job.outputs)
        ]
    return {
        "id": job.id,
        "status": job.status,
        "operation": job.operation,
        "provider": job.provider,
        "providers": job.providers,
        "model": job.model,
        "prompt": job.prompt,
        "prompt_sha256": job.prompt_sha256,
        "params": job.params,
        "inputs": _inputs_view(job.inputs),
        "budget": {"timeout_s": job.timeout_s, "deadline_s": job.deadline_s, "max_attempts": job.max_attempts},
        "priority": job.priority,
        "step": job.step,
        "attempt": job.attempt,
        "progress": job.progress,
        "queue_position": queue_position,
        "error": job.error,
        "outputs": outputs,
        "metadata": job.job_metadata or {},
        "webhook": job.webhook,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "deadline_at": iso(job.deadline_at),
        "estimated_start_at": iso(start),
        "estimated_finish_at": iso(finish),
        "timing": {
            "queued_s": (job.timing or {}).get("queued_s"),
            "generate_s": (job.timing or {}).get("generate_s"),
            "upload_s": (job.timing or {}).get("upload_s"),
            "total_s": (job.timing or {}).get("total_s"),
        },
        "urls": job_urls(cfg, base_url, job.id),
    }


def _inputs_view(inputs):
    """Inputs as references; data URIs are abbreviated so a job stays small to read."""
    if not inputs:
        return None

    def short(ref):
        if isinstance(ref, str) and ref.startswith("data:"):
            return ref.split(",", 1)[0] + ",…"
        return ref
    return {"images": [short(r) for r in inputs.get("images") or []], "mask": short(inputs.get("mask"))}
