"""The demo page at ``/`` (``GENLINE_DEMO=1``): submit as the anonymous ``demo`` tenant.

Submissions need no key and are limited per client IP (``GENLINE_DEMO_RATE_LIMIT``).
The page reads its job with the job's token like any frontend would, and may
cancel only demo-tenant jobs it holds the token of.
"""
from __future__ import annotations

from typing import Literal, Optional

from flask import Blueprint, jsonify, render_template, request, send_from_directory, url_for
from pydantic import Field

from pipeline.core import tokens
from pipeline.service import control
from web import limits
from web.api.errors import ApiError
from web.api.jobs import base_url, render
from web.api.openapi import BINARY, PUBLIC, describe
from web.auth import config
from web.requests import json_body
from web.schemas import MAX_PROMPT_CHARS, Budget, JobCreate, Simulate, Strict
from web.submit import submit

bp = Blueprint("demo", __name__, template_folder="templates", static_folder="static",
               static_url_path="/demo/static")

TENANT = "demo"
SIZES = ("256x256", "512x512", "768x512", "512x768", "1024x1024")


class DemoSubmit(Strict):
    """What the demo form sends; turned into a regular JobCreate."""

    prompt: str = Field(..., max_length=10_000)
    operation: Literal["generate", "edit", "inpaint"] = "generate"
    size: str = "512x512"
    image: Optional[str] = Field(None, max_length=900_000)
    mask: Optional[str] = Field(None, max_length=900_000)
    simulate: Optional[Simulate] = None
    budget: Optional[Budget] = None


def demo_budget(form: DemoSubmit, cfg) -> dict:
    """The demo job's budget: what the page asked within the demo's own caps, else the defaults capped.

    An anonymous visitor gets at most GENLINE_DEMO_MAX_TIMEOUT_S per attempt,
    GENLINE_DEMO_MAX_DEADLINE_S in all and GENLINE_DEMO_MAX_ATTEMPTS attempts,
    and no ``simulate.hang`` unless GENLINE_DEMO_ALLOW_HANG=1.
    """
    asked = form.budget or Budget()
    caps = (("timeout_s", asked.timeout_s, cfg.default_timeout_s, cfg.demo_max_timeout_s, "GENLINE_DEMO_MAX_TIMEOUT_S"),
            ("deadline_s", asked.deadline_s, cfg.default_deadline_s, cfg.demo_max_deadline_s, "GENLINE_DEMO_MAX_DEADLINE_S"),
            ("max_attempts", asked.max_attempts, cfg.default_max_attempts, cfg.demo_max_attempts, "GENLINE_DEMO_MAX_ATTEMPTS"))
    budget = {}
    for name, value, default, cap, var in caps:
        if value is not None and value > cap:
            message = f"must be at most {cap:g} on the demo ({var})"
            raise ApiError(422, "invalid_input", f"budget.{name}: {message}", {f"budget.{name}": message})
        budget[name] = value if value is not None else min(default, cap)
    if form.simulate is not None and form.simulate.hang and not cfg.demo_allow_hang:
        message = "is not allowed on the demo (GENLINE_DEMO_ALLOW_HANG=1 enables it)"
        raise ApiError(422, "invalid_input", f"simulate.hang: {message}", {"simulate.hang": message})
    if form.simulate is not None and form.simulate.latency_s > budget["deadline_s"]:
        message = f"must be at most the demo deadline, {budget['deadline_s']:g} s"
        raise ApiError(422, "invalid_input", f"simulate.latency_s: {message}", {"simulate.latency_s": message})
    return budget


def _enabled() -> None:
    if not config().demo:
        raise ApiError(404, "not_found", "the demo page is off on this deployment (GENLINE_DEMO=1 turns it on)")


def _job_json(job, positions: dict | None = None) -> dict:
    out = render(job, positions, browser=True)
    token = tokens.job_token(config().secret_key, job.id)
    # The page cancels through the demo route with the job's token, not with an API key.
    out["urls"]["cancel"] = base_url().rstrip("/") + url_for("demo.cancel", job_id=job.id, token=token)
    return out


@bp.get("/")
def page():
    _enabled()
    cfg = config()
    return render_template("demo.html", sizes=SIZES, allow_simulate=cfg.allow_simulate,
                           rate_limit=cfg.demo_rate_limit, max_prompt=MAX_PROMPT_CHARS,
                           default_provider=_default_provider(cfg))


def _default_provider(cfg) -> str:
    """The provider a job without one runs on (the first of a list), for the page's note."""
    chosen = getattr(cfg, "default_provider", None) or "local"
    return chosen if isinstance(chosen, str) else (list(chosen) or ["local"])[0]


@bp.get("/favicon.ico")
@describe("The site's icon",
          responses={200: {"description": "the icon",
                           "content": {"image/x-icon": BINARY, "application/octet-stream": BINARY}}},
          auth=PUBLIC)
def favicon():
    """The page's icon (also for /docs and any browser that asks), served whether or not the demo is on."""
    return send_from_directory(bp.static_folder, "favicon.ico", mimetype="image/x-icon", max_age=86400)


@bp.post("/demo/jobs")
@limits.per_ip
def create():
    _enabled()
    form, _raw = json_body(DemoSubmit)
    raw = {"operation": form.operation, "prompt": form.prompt, "params": {"size": form.size}}
    if form.simulate is not None:
        raw["params"]["simulate"] = form.simulate.model_dump()
    raw["budget"] = demo_budget(form, config())
    if form.image:
        raw["inputs"] = {"images": [form.image]} | ({"mask": form.mask} if form.mask else {})
    body = JobCreate.model_validate(raw)
    job, _created, positions = submit(body, raw, TENANT, config(), None)
    response = jsonify(_job_json(job, positions))
    response.status_code = 202
    return response


@bp.post("/demo/jobs/<job_id>/cancel")
def cancel(job_id: str):
    """Cancel a demo job; the job's token proves the caller is the page that submitted it."""
    _enabled()
    cfg = config()
    granted = tokens.job_from_token(cfg.secret_key, request.args.get("token") or "", cfg.token_ttl_s)
    job = None
    if granted == job_id:
        try:
            job = control.cancel(job_id, TENANT, message="canceled from the demo page", by="demo")
        except control.NotAllowed as exc:
            raise ApiError(409, "conflict", f"the job is already {exc.job.status}") from None
    if job is None:
        raise ApiError(404, "not_found", f"no demo job {job_id!r} for this token")
    response = jsonify(_job_json(job))
    response.status_code = 202
    return response
