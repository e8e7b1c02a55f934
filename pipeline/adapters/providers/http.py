"""The ``http`` provider: a self-hosted inference endpoint (a GPU box).

genline sends ``POST GENLINE_HTTP_PROVIDER_URL`` with
``Authorization: Bearer GENLINE_HTTP_PROVIDER_TOKEN`` (when set) and the JSON body

    {"operation": "generate|edit|inpaint", "prompt": "...", "params": {...},
     "model": "..." | null, "inputs": ["<url>", ...], "mask": "<url>" | null}

where the input URLs are signed and expire (GENLINE_URL_TTL_S): presigned S3
URLs, or the API's ``/files/<token>`` route under GENLINE_PUBLIC_URL; data URIs
and https URLs given in the job are passed as they are.

The endpoint answers with the image itself (``Content-Type: image/*``, one
image) or with JSON: ``{"images": ["<base64>", ...], "model": "..."}`` (items
may also be ``{"b64_json": "..."}``; OpenAI's ``{"data": [...]}`` works too).
Errors map like OpenAI's (see ``pipeline.adapters.providers.httpcall``), and the request
is abandoned as soon as the job is canceled.
"""
from __future__ import annotations

from pipeline.adapters.providers.base import AttemptContext, GeneratedImage, ProviderRequest
from pipeline.adapters.providers.httpcall import ProviderUnusable, b64_image, call, checked_image
from pipeline.core.errors import ProviderError


def _items(body) -> list:
    if isinstance(body, dict):
        for key in ("images", "data"):
            if isinstance(body.get(key), list):
                return body[key]
    raise ProviderError("the http provider answered JSON without an images list")


class HTTPProvider:
    name = "http"
    runs_in_worker = False  # waits on the network: the I/O kind (see pipeline.adapters.routing)

    def __init__(self, url: str | None, token: str | None):
        self.url = url
        self.token = token

    @classmethod
    def from_config(cls, cfg) -> HTTPProvider:
        return cls(cfg.http_provider_url, cfg.http_provider_token)

    def run(self, request: ProviderRequest, ctx: AttemptContext) -> list[GeneratedImage]:
        if not self.url:
            raise ProviderUnusable("the http provider is not configured: set GENLINE_HTTP_PROVIDER_URL on the workers")
        params = {k: v for k, v in request.params.items() if k != "simulate"}
        body = {"operation": request.operation, "prompt": request.prompt, "params": params,
                "model": request.model, "inputs": request.input_urls, "mask": request.mask_url}
        headers = {"Accept": "image/*, application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        ctx.progress(0.05, "calling the inference endpoint")
        response = call(self.name, "POST", self.url, ctx, json=body, headers=headers)
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type.startswith("image/"):
            data, media_type = checked_image(self.name, response.content, "its answer")
            return [GeneratedImage(data, media_type, model=request.model)]
        try:
            answer = response.json()
        except ValueError:
            raise ProviderError(f"the http provider answered {content_type or 'no content type'}, "
                                "neither an image nor JSON") from None
        model = answer.get("model") if isinstance(answer, dict) else None
        results = []
        for i, item in enumerate(_items(answer)):
            value = item.get("b64_json") or item.get("b64") if isinstance(item, dict) else item
            data, media_type = checked_image(self.name, b64_image(value, f"images[{i}]"), f"images[{i}]")
            results.append(GeneratedImage(data, media_type, model=model or request.model))
        if not results:
            raise ProviderError("the http provider answered with no images")
        return results
