"""genline-client: Python client for genline (DESIGN §11).

    from genline_client import Genline
    client = Genline(api_key="...", base_url="http://127.0.0.1:8000")
    job = client.run("a lighthouse at dusk", size="512x512", timeout=120)
    print(job.outputs[0].url)
"""
from genline_client.aio import AsyncGenline
from genline_client.client import Genline
from genline_client.errors import (
    ApiError,
    ConnectionFailed,
    GenlineError,
    JobCanceled,
    JobEnded,
    JobFailed,
    RateLimited,
    WaitTimeout,
    WebhookVerificationError,
)
from genline_client.models import (
    Budget,
    CancelResult,
    Event,
    Job,
    JobError,
    Output,
    Page,
    Timing,
    Upload,
    Urls,
    WebhookMessage,
)
from genline_client.webhooks import verify as verify_webhook

__version__ = "0.1.0"
__all__ = [
    "Genline", "AsyncGenline", "GenlineError", "ApiError", "RateLimited", "ConnectionFailed", "JobEnded",
    "JobFailed", "JobCanceled", "WaitTimeout", "WebhookVerificationError", "Budget", "CancelResult", "Event",
    "Job", "JobError", "Output", "Page", "Timing", "Upload", "Urls", "WebhookMessage", "verify_webhook",
]
