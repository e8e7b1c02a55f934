"""CORS for the URLs a browser reads with a job token (``GENLINE_CORS_ORIGINS``).

Only GET on a job, its events and its outputs, and no ``Authorization``
header: a browser in another origin reads one job with its token and can
never use an API key.
"""
from __future__ import annotations

from flask_cors import CORS

TOKEN_URLS = (
    r"^/v1/jobs/job_[^/]+$",
    r"^/v1/jobs/job_[^/]+/events$",
    r"^/v1/jobs/job_[^/]+/outputs/[^/]+$",
    r"^/files/.+$",
)


def init_app(app) -> None:
    origins = list(app.extensions["genline.config"].cors_origins)
    if not origins:
        return
    CORS(app, resources={pattern: {"origins": origins} for pattern in TOKEN_URLS},
         methods=["GET", "HEAD", "OPTIONS"], allow_headers=["Last-Event-ID", "Cache-Control"],
         supports_credentials=False, max_age=600, vary_header=True)
