"""Response schemas (pydantic) of the API, for the OpenAPI document.

Requests are validated by ``web/schemas.py``; these describe what comes back.
The schemathesis test checks every live response against them, so they cannot
silently drift from ``pipeline/service/representation.py``. New response fields are
allowed (``extra="allow"``): adding a field is not a breaking change.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from pipeline.core.lifecycle import Status
from pipeline.core.priorities import Priority


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(Open):
    code: str = Field(..., description="a stable, machine-readable code, e.g. invalid_input, not_found, rate_limited")
    message: str = Field(..., description="for humans; names the limit or field at fault")
    fields: dict[str, Optional[str]] = Field(default_factory=dict, description="field path -> what is wrong")


class Error(Open):
    """The one error shape of every endpoint."""

    error: ErrorBody


class JobError(Open):
    code: str
    message: str
    retryable: Optional[bool] = None
    step: Optional[str] = None


class Output(Open):
    url: str = Field(..., description="signed, expiring URL of the bytes")
    media_type: Optional[str] = None
    bytes: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    sha256: Optional[str] = None


class JobUrls(Open):
    self: str = Field(..., description="the job, with a job-scoped read token")
    events: str = Field(..., description="Server-Sent Events of the job, with the token")
    cancel: str


class Job(Open):
    """A job: every field is always present, null where unknown."""

    id: str
    status: Status
    operation: Literal["generate", "edit", "inpaint"]
    provider: Optional[str]
    providers: Optional[list[str]] = Field(..., description="the providers to try, in order")
    model: Optional[str]
    prompt: Optional[str] = Field(..., description="returned verbatim, as text; removed by retention")
    prompt_sha256: str
    params: dict
    inputs: Optional[dict]
    budget: dict[str, Optional[float]]
    priority: Priority
    step: Optional[str]
    attempt: int
    progress: Optional[float]
    queue_position: Optional[int] = Field(..., description="1 = next to start; null unless queued")
    error: Optional[JobError]
    outputs: Optional[list[Output]]
    metadata: Optional[dict] = Field(..., description="null in the job-token (browser) view")
    webhook: Optional[dict] = Field(..., description="null in the job-token (browser) view")
    created_at: str
    started_at: Optional[str]
    completed_at: Optional[str]
    deadline_at: Optional[str]
    estimated_start_at: Optional[str] = Field(
        ..., description="queued jobs: when the job should start, from the jobs ahead of it and recent service "
                         "times (docs/eta.md); null when not queued or with too little history")
    estimated_finish_at: Optional[str] = Field(
        ..., description="queued jobs: when the job should finish; null when not queued or with too little history")
    timing: dict[str, Optional[float]]
    urls: JobUrls


class JobPage(Open):
    data: list[Job]
    next_cursor: Optional[str] = Field(..., description="pass as ?cursor= for the next page; null at the end")


class BulkCanceled(Open):
    canceled: int
    data: list[Job]


class Health(Open):
    status: str


class Ready(Open):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class ReplayedJob(Open):
    id: str
    status: str
    step: Optional[str]
    provider: Optional[str]
    operation: str
    error_code: Optional[str]
    created_at: str
    requeued: Optional[bool] = Field(..., description="null in a dry run; false when the job moved on meanwhile")


class Replayed(Open):
    """What a bulk replay matched and re-queued."""

    dry_run: bool
    matched: int = Field(..., description="jobs matched by this call (at most its limit)")
    requeued: int = Field(..., description="jobs moved to queued by this call (0 in a dry run)")
    remaining: int = Field(..., description="matching jobs after this page")
    next_cursor: Optional[str] = Field(..., description="pass as cursor to go on; null at the end")
    admission: dict = Field(..., description="rate at which replayed jobs enter the queues, and how many wait")
    jobs: list[ReplayedJob]


class FailureGroup(Open):
    error_code: Optional[str]
    provider: Optional[str]
    step: Optional[str]
    count: int
    first_failed_at: Optional[str]
    last_failed_at: Optional[str]
    latest_message: Optional[str]
    retryable: Optional[bool]
    filter: dict = Field(..., description="the body of POST /v1/jobs/retry that replays this group")
    links: dict[str, str]


class Failures(Open):
    """Failed jobs in a window, grouped by error code, provider and step."""

    created_after: str
    created_before: Optional[str]
    total: int
    groups: list[FailureGroup]
