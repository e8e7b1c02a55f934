"""The ``local`` provider: real image work with Pillow in the worker, no network.

- generate: a deterministic picture from prompt and seed at the requested size;
- edit: the input image tinted toward a colour drawn from the prompt;
- inpaint: a generated picture composited into the masked region only. The mask
  follows OpenAI's convention: transparent pixels (alpha 0) are repainted; a
  mask without alpha repaints where it is white (luminance >= 128).

``params.simulate`` (only when ``GENLINE_ALLOW_SIMULATE=1``) injects latency,
failures or a hang, for tests, benchmarks and demos of failure handling.
"""
from __future__ import annotations

import hashlib
import io
import random
import time

from billiard.exceptions import SoftTimeLimitExceeded
from PIL import Image, ImageDraw, ImageOps

from pipeline.adapters.providers.base import AttemptContext, GeneratedImage, ProviderRequest
from pipeline.core import media
from pipeline.core.errors import InvalidInput, error_for


def parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.lower().partition("x")
    return int(width), int(height)


def _rng(prompt: str, seed) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


_RAMP = Image.linear_gradient("L").crop((0, 0, 1, 256))
"""An L column from 0 (top) to 255 (bottom)."""


def render(prompt: str, seed, size: tuple[int, int]) -> Image.Image:
    """A deterministic picture: a two-colour gradient and shapes, all drawn from the prompt."""
    rng = _rng(prompt, seed)
    width, height = size
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    # Pillow blends the two colours down a 0..255 ramp in C; a per-pixel
    # list in Python was most of a tiny job's render time.
    column = Image.composite(Image.new("RGB", (1, 256), bottom), Image.new("RGB", (1, 256), top), _RAMP)
    image = column.resize((width, height))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        w, h = rng.randrange(1, max(2, width // 2)), rng.randrange(1, max(2, height // 2))
        fill = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=fill)
    return image


def tint(image: Image.Image, prompt: str, seed) -> Image.Image:
    """The edit: every pixel moved halfway toward a colour drawn from the prompt."""
    colour = tuple(_rng(prompt, seed).randrange(256) for _ in range(3))
    base = image.convert("RGB")
    return Image.blend(base, Image.new("RGB", base.size, colour), 0.5)


def mask_region(mask: Image.Image) -> Image.Image:
    """An L image: 255 where the mask says repaint, 0 where the original must stay."""
    if mask.mode in ("RGBA", "LA") or "transparency" in mask.info:
        alpha = mask.convert("RGBA").getchannel("A")
        return alpha.point(lambda a: 255 if a == 0 else 0)
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0)


def encode(image: Image.Image, fmt: str) -> GeneratedImage:
    pil_format, media_type = media.pil_and_media_type(fmt)
    out = io.BytesIO()
    image.save(out, pil_format, **({"compress_level": 1} if pil_format == "PNG" else {}))
    return GeneratedImage(out.getvalue(), media_type, model="local-pillow")


class LocalProvider:
    name = "local"
    runs_in_worker = True  # CPU work in the worker: the compute kind (prefork time limits)

    def __init__(self, allow_simulate: bool = False):
        self.allow_simulate = allow_simulate

    def run(self, request: ProviderRequest, ctx: AttemptContext) -> list[GeneratedImage]:
        params = request.params
        simulate = params.get("simulate")
        if simulate:
            if not self.allow_simulate:
                raise InvalidInput("params.simulate is not allowed (set GENLINE_ALLOW_SIMULATE=1)")
            self._simulate(simulate, ctx)
        n, seed, fmt = params.get("n", 1), params.get("seed"), params.get("format", "png")
        results = []
        for i in range(n):
            ctx.check()
            image = self._one(request, seed if seed is None else seed + i, i)
            results.append(encode(image, fmt))
            if i + 1 < n:  # after the last image the step's end follows at once: no write for it
                ctx.progress((i + 1) / n, f"image {i + 1} of {n}")
        return results

    def _one(self, request: ProviderRequest, seed, index: int) -> Image.Image:
        prompt = request.prompt if index == 0 else f"{request.prompt}#{index}"
        if request.operation == "generate":
            return render(prompt, seed, parse_size(request.params.get("size", "1024x1024")))
        if not request.images:
            raise InvalidInput(f"{request.operation} needs an input image")
        source = ImageOps.exif_transpose(request.images[0]).convert("RGB")
        if request.operation == "edit":
            return tint(source, prompt, seed)
        if request.mask is None:
            raise InvalidInput("inpaint needs a mask")
        if request.mask.size != source.size:
            raise InvalidInput(f"the mask is {request.mask.size[0]}x{request.mask.size[1]} "
                               f"but the image is {source.size[0]}x{source.size[1]}")
        painted = render(prompt, seed, source.size)
        return Image.composite(painted, source, mask_region(request.mask))

    def _simulate(self, simulate: dict, ctx: AttemptContext) -> None:
        if simulate.get("hang"):
            self._hang()
        latency = float(simulate.get("latency_s") or 0)
        if latency > 0:
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < latency:
                ctx.progress(elapsed / latency * 0.9, "simulated work")
                # Until ``latency`` after the start, whatever reporting the progress took.
                ctx.sleep(min(0.25, start + latency - time.monotonic()))
        if ctx.attempt <= int(simulate.get("fail_attempts") or 0):
            code = simulate.get("fail_code") or "provider_error"
            raise error_for(code, f"simulated {code} on attempt {ctx.attempt}")

    @staticmethod
    def _hang() -> None:
        """Hang past every limit: ignore cancel and the soft time limit; only a kill ends it."""
        while True:
            try:
                time.sleep(0.1)
            except SoftTimeLimitExceeded:
                continue
