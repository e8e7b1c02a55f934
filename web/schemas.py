"""Request schemas (pydantic). They validate requests and are the source of the
OpenAPI document, so the contract cannot drift from the code that enforces it.

Limits that come from config (caps, pixels, simulate) are checked by
``check_against_config`` after the shape is known.
"""
from __future__ import annotations

import json
import re
from typing import Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import InitErrorDetails

from pipeline.core.lifecycle import TERMINAL_EVENT_TYPES, ActiveStatus, EndedStatus, EventType
from pipeline.core.media import OutputFormat
from pipeline.core.priorities import Priority
from pipeline.core.providers import PROVIDER_NAMES

MAX_PROMPT_CHARS = 4000
MAX_N = 4
MAX_METADATA_BYTES = 16 * 1024
MAX_INPUT_IMAGES = 4
MIN_SIDE, MAX_SIDE = 16, 4096
SIZE_PATTERN = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
MAX_STEPS = 150
MAX_GUIDANCE = 30.0
DIFFUSERS_PARAMS = ("steps", "guidance", "negative_prompt", "strength")
"""Params only the ``diffusers`` provider takes (DESIGN §5)."""



def json_number(v):
    """A JSON number as a float (None stays None); a bool or a numeric string is refused."""
    if v is None:
        return v
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("must be a number")
    return float(v)

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Simulate(Strict):
    """Fault injection for the local provider (only with GENLINE_ALLOW_SIMULATE=1)."""

    latency_s: float = Field(0, ge=0, le=3600)
    fail_attempts: StrictInt = Field(0, ge=0, le=100)
    fail_code: Literal[
        "provider_error", "rate_limited", "network_error", "timeout", "storage_error",
        "unsafe_content", "invalid_input", "internal_error",
    ] = "provider_error"
    hang: StrictBool = False

    @field_validator("latency_s", mode="before")
    @classmethod
    def _number(cls, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError("must be a number")
        return float(v)


class Params(Strict):
    size: str = Field("1024x1024", description="WIDTHxHEIGHT, each side 16..4096")
    n: StrictInt = Field(1, ge=1, le=MAX_N)
    seed: Optional[StrictInt] = Field(None, ge=0, le=2**63 - 1)
    format: OutputFormat = "png"
    simulate: Optional[Simulate] = None
    steps: Optional[StrictInt] = Field(None, ge=1, le=MAX_STEPS, description="diffusers: denoising steps")
    guidance: Optional[float] = Field(None, ge=0, le=MAX_GUIDANCE, description="diffusers: classifier-free guidance scale")
    negative_prompt: Optional[str] = Field(None, max_length=MAX_PROMPT_CHARS, description="diffusers: what to steer away from")
    strength: Optional[float] = Field(None, gt=0, le=1, description="diffusers, edit only: how far from the input image to move")

    @field_validator("guidance", "strength", mode="before")
    @classmethod
    def _number(cls, v):
        return json_number(v)

    @field_validator("negative_prompt")
    @classmethod
    def _text(cls, v):
        if v is not None and "\x00" in v:
            raise ValueError("must not contain NUL characters")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: str) -> str:
        match = SIZE_PATTERN.match(v)
        if not match:
            raise ValueError("must look like 1024x1024")
        w, h = int(match.group(1)), int(match.group(2))
        if not (MIN_SIDE <= w <= MAX_SIDE and MIN_SIDE <= h <= MAX_SIDE):
            raise ValueError(f"each side must be between {MIN_SIDE} and {MAX_SIDE} pixels")
        return v


class Inputs(Strict):
    images: list[str] = Field(default_factory=list, max_length=MAX_INPUT_IMAGES,
                              description="upload ids (upl_…), data: URIs or https URLs")
    mask: Optional[str] = None


class Budget(Strict):
    timeout_s: Optional[float] = Field(None, gt=0)
    deadline_s: Optional[float] = Field(None, gt=0)
    max_attempts: Optional[StrictInt] = Field(None, ge=1)

    @field_validator("timeout_s", "deadline_s", mode="before")
    @classmethod
    def _number(cls, v):
        return json_number(v)


WebhookEvent = EventType


class Webhook(Strict):
    url: str = Field(..., max_length=2048)
    events: list[WebhookEvent] = Field(default_factory=lambda: list(TERMINAL_EVENT_TYPES))


class JobCreate(Strict):
    """The body of POST /v1/jobs."""

    operation: Literal["generate", "edit", "inpaint"] = "generate"
    prompt: str = Field(..., min_length=1, max_length=MAX_PROMPT_CHARS)
    provider: Optional[Union[str, list[str]]] = Field(
        None, description="a provider name, or several to fail over in order; "
                          "default: the deployment's GENLINE_DEFAULT_PROVIDER (local in development)")
    model: Optional[str] = Field(None, max_length=100)
    params: Params = Field(default_factory=Params)
    inputs: Optional[Inputs] = None
    budget: Budget = Field(default_factory=Budget)
    priority: Priority = "normal"
    metadata: dict = Field(default_factory=dict)
    webhook: Optional[Webhook] = None

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        if "\x00" in v:
            raise ValueError("must not contain NUL characters")
        return v

    @field_validator("provider")
    @classmethod
    def _providers(cls, v):
        if v is None:
            return None
        names = [v] if isinstance(v, str) else v
        if not names:
            raise ValueError("name at least one provider")
        unknown = [n for n in names if n not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"unknown provider {unknown[0]!r}; known: {', '.join(PROVIDER_NAMES)}")
        return names

    @field_validator("params")
    @classmethod
    def _provider_params(cls, v: Params, info: ValidationInfo) -> Params:
        """Params of one provider only with that provider; ``strength`` only for edit."""
        providers, operation = info.data.get("provider"), info.data.get("operation")
        if providers is None or operation is None:
            return v  # provider or operation already failed; their errors are reported
        wrong = []
        if "diffusers" in providers:
            if v.strength is not None and operation != "edit":
                wrong.append(("strength", v.strength, "is taken only by operation edit"))
            w, _, h = v.size.partition("x")
            if int(w) % 8 or int(h) % 8:
                wrong.append(("size", v.size, "the diffusers provider needs both sides to be multiples of 8"))
        else:
            wrong += [(name, getattr(v, name), "is taken only by the diffusers provider")
                      for name in DIFFUSERS_PARAMS if getattr(v, name) is not None]
        if wrong:
            # Raised as a ValidationError so each error names its field (params.<name>).
            raise ValidationError.from_exception_data("Params", [
                InitErrorDetails(type="value_error", loc=(name,), input=value, ctx={"error": ValueError(message)})
                for name, value, message in wrong])
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict) -> dict:
        if len(json.dumps(v)) > MAX_METADATA_BYTES:
            raise ValueError(f"must be at most {MAX_METADATA_BYTES} bytes of JSON")
        return v


class JobList(Strict):
    """Query of GET /v1/jobs."""

    cursor: Optional[str] = None
    limit: int = Field(20, ge=1, le=100)
    status: Optional[str] = None
    operation: Optional[Literal["generate", "edit", "inpaint"]] = None
    created_after: Optional[str] = None
    created_before: Optional[str] = None
    error_code: Optional[str] = Field(None, max_length=64, description="error.code of failed jobs")
    provider: Optional[str] = Field(None, max_length=32)
    step: Optional[Literal["validate", "generate", "upload", "notify"]] = None


class BulkCancel(Strict):
    """The body of POST /v1/jobs/cancel."""

    ids: Optional[list[str]] = Field(None, max_length=1000)
    status: Optional[list[ActiveStatus]] = None
    created_before: Optional[str] = None


ReplayStep = Literal["validate", "generate", "upload"]


class BulkReplay(Strict):
    """The body of POST /v1/jobs/retry: replay failed or canceled jobs matching every filter given."""

    ids: Optional[list[str]] = Field(None, max_length=1000)
    status: Optional[list[EndedStatus]] = Field(None, description="default: both")
    error_code: Optional[str] = Field(None, max_length=64)
    provider: Optional[str] = Field(None, max_length=32)
    operation: Optional[Literal["generate", "edit", "inpaint"]] = None
    step: Optional[ReplayStep] = Field(None, description="the step the job failed in")
    created_after: Optional[str] = None
    created_before: Optional[str] = None
    tenant: Optional[str] = Field(None, max_length=64, description="operators only (the genline CLI): a key gets 403")
    limit: StrictInt = Field(1000, ge=1, le=1000, description="at most this many jobs this call")
    cursor: Optional[str] = Field(None, max_length=64, description="next_cursor of the previous call")
    dry_run: StrictBool = False


class FailureQuery(Strict):
    """Query of GET /v1/jobs/failures (the window is on created_at; default: the last 24 hours)."""

    created_after: Optional[str] = None
    created_before: Optional[str] = None
