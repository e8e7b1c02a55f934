"""The ``openai`` provider: the OpenAI Images API, or any server that speaks it.

- generate: ``POST {OPENAI_BASE_URL}/images/generations`` with a JSON body;
- edit and inpaint: ``POST {OPENAI_BASE_URL}/images/edits`` as multipart, the
  input images as ``image[]`` files and, for inpaint, a ``mask`` PNG whose
  transparent pixels mark what to repaint (a mask without alpha is converted:
  white means repaint, as for the ``local`` provider).

Images come back as ``data[].b64_json`` (or ``data[].url``, fetched within the
same attempt). gpt-image models always answer base64 and take
``output_format``; other models (dall-e-*, compatible servers) are asked for
``response_format: b64_json``. There is no seed in this API: ``params.seed`` is
not sent. Failures are mapped by ``pipeline.adapters.providers.httpcall``.
"""
from __future__ import annotations

import io

from PIL import Image

from pipeline.adapters.providers.base import AttemptContext, GeneratedImage, ProviderRequest
from pipeline.adapters.providers.httpcall import ProviderUnusable, b64_image, call, checked_image
from pipeline.adapters.providers.local import mask_region
from pipeline.core.errors import ProviderError

DEFAULT_MODEL = "gpt-image-1"


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def mask_png(mask: Image.Image) -> bytes:
    """The mask as OpenAI wants it: an RGBA PNG, alpha 0 where the image is repainted."""
    if mask.mode in ("RGBA", "LA") or "transparency" in mask.info:
        return _png(mask.convert("RGBA"))
    rgba = Image.new("RGBA", mask.size, (0, 0, 0, 255))
    rgba.putalpha(mask_region(mask).point(lambda v: 255 - v))
    return _png(rgba)


class OpenAIProvider:
    name = "openai"
    runs_in_worker = False  # waits on the network: the I/O kind (see pipeline.adapters.routing)

    def __init__(self, api_key: str | None, base_url: str):
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")

    @classmethod
    def from_config(cls, cfg) -> OpenAIProvider:
        return cls(cfg.openai_api_key, cfg.openai_base_url)

    def run(self, request: ProviderRequest, ctx: AttemptContext) -> list[GeneratedImage]:
        if not self.api_key:
            raise ProviderUnusable("the openai provider is not configured: set OPENAI_API_KEY on the workers")
        model = request.model or DEFAULT_MODEL
        fields = self._fields(request, model)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        ctx.progress(0.05, f"calling {model}")
        if request.operation == "generate":
            response = call(self.name, "POST", f"{self.base_url}/images/generations", ctx, json=fields, headers=headers)
        else:
            response = call(self.name, "POST", f"{self.base_url}/images/edits", ctx,
                            data=fields, files=self._files(request, model), headers=headers)
        images = self._images(response, ctx)
        ctx.progress(0.95, f"{len(images)} image(s) from {model}")
        return [GeneratedImage(data, media_type, model=model) for data, media_type in images]

    @staticmethod
    def _fields(request: ProviderRequest, model: str) -> dict:
        params = request.params
        fields = {"model": model, "prompt": request.prompt, "n": params.get("n", 1),
                  "size": params.get("size", "1024x1024")}
        if model.startswith("gpt-image"):
            fields["output_format"] = params.get("format", "png")
        else:
            fields["response_format"] = "b64_json"
        return fields

    @staticmethod
    def _files(request: ProviderRequest, model: str) -> list:
        if model.startswith("gpt-image"):
            files = [("image[]", (f"image{i}.png", _png(img), "image/png")) for i, img in enumerate(request.images)]
        else:  # dall-e-2 and most compatible servers take one ``image``
            files = [("image", ("image.png", _png(request.images[0]), "image/png"))]
        if request.operation == "inpaint" and request.mask is not None:
            files.append(("mask", ("mask.png", mask_png(request.mask), "image/png")))
        return files

    def _images(self, response, ctx: AttemptContext) -> list[tuple[bytes, str]]:
        try:
            items = response.json()["data"]
        except (ValueError, KeyError, TypeError):
            raise ProviderError("openai answered without a data list") from None
        if not isinstance(items, list) or not items:
            raise ProviderError("openai answered with no images")
        images = []
        for i, item in enumerate(items):
            what = f"data[{i}]"
            if isinstance(item, dict) and item.get("b64_json"):
                data = b64_image(item["b64_json"], f"openai {what}.b64_json")
            elif isinstance(item, dict) and item.get("url"):
                data = call(self.name, "GET", item["url"], ctx).content
            else:
                raise ProviderError(f"openai {what} has neither b64_json nor url")
            images.append(checked_image(self.name, data, what))
        return images
