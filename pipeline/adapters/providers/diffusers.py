"""The ``diffusers`` provider: a Hugging Face diffusers pipeline in the compute worker.

- generate: text-to-image at ``params.size``;
- edit: image-to-image of the first input image (``params.strength``), at its size;
- inpaint: the masked region of the first input image repainted, at its size.
  The mask follows genline's convention (transparent, or else white, is repainted).

Params map onto the pipeline's arguments: ``n`` -> ``num_images_per_prompt``,
``seed`` -> a ``torch.Generator`` (the same seed gives the same bytes),
``steps`` -> ``num_inference_steps``, ``guidance`` -> ``guidance_scale``,
``negative_prompt`` and ``strength``. Unset params keep the pipeline's defaults.

Every denoising step is a progress event (step i of n). Cancel and the soft
time limit are honoured at the next step boundary with diffusers' documented
interrupt (``pipe._interrupt = True`` in ``callback_on_step_end``); the hard
limit still kills a step that never ends. The model itself is loaded once per
worker process by ``pipeline.adapters.providers.diffusers_model``.
"""
from __future__ import annotations

import inspect
import io
import logging
import time

from PIL import Image, ImageOps

from pipeline.adapters.providers import diffusers_model
from pipeline.adapters.providers.base import AttemptContext, GeneratedImage, ProviderRequest
from pipeline.adapters.providers.diffusers_steps import StepWatch, deferred_soft_limit
from pipeline.adapters.providers.local import mask_region, parse_size
from pipeline.core import media
from pipeline.core.errors import GenlineError, InvalidInput, ProviderError, UnsafeContent

log = logging.getLogger("genline.diffusers")

ARGUMENTS = {"steps": "num_inference_steps", "guidance": "guidance_scale",
             "negative_prompt": "negative_prompt", "strength": "strength"}
"""genline's params -> the pipeline's call arguments (besides size, n and seed)."""


class DiffusersProvider:
    name = "diffusers"

    def run(self, request: ProviderRequest, ctx: AttemptContext) -> list[GeneratedImage]:
        loaded = diffusers_model.current()
        if request.model and request.model not in (loaded.name, loaded.source):
            raise InvalidInput(f"this worker serves the diffusers model {loaded.name}; leave model empty or name it "
                               f"(model {request.model!r} is not loaded)")
        pipe = loaded.pipeline(request.operation)
        kwargs = call_arguments(pipe, request)
        ctx.check()
        watch = StepWatch(ctx)
        started = time.monotonic()
        try:
            with deferred_soft_limit(watch):
                output = pipe(**kwargs, callback_on_step_end=watch, output_type="np")
        except GenlineError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped onto genline's codes with what to change
            raise map_error(exc, request, loaded) from exc
        watch.raise_if_stopped(log, request, time.monotonic() - started)
        images = checked_images(output, loaded)
        size = request.images[0].size if request.operation != "generate" else None
        return [encode(image, request.params.get("format", "png"), loaded.name, size) for image in images]


def call_arguments(pipe, request: ProviderRequest) -> dict:
    """The pipeline's call arguments for ``request``; InvalidInput naming a param the pipeline lacks."""
    import torch  # lazy: optional genline[diffusers]
    params = request.params
    accepted = inspect.signature(pipe.__call__).parameters
    kwargs = {"prompt": request.prompt, "num_images_per_prompt": params.get("n", 1)}
    for param, argument in ARGUMENTS.items():
        if params.get(param) is None:
            continue
        if argument not in accepted:
            raise InvalidInput(f"params.{param}: the model's {type(pipe).__name__} does not take it",
                               fields={f"params.{param}": "not taken by this model"})
        kwargs[argument] = params[param]
    if params.get("seed") is not None:
        # A CPU generator gives the same noise on every device, so a seed means one image everywhere.
        kwargs["generator"] = torch.Generator("cpu").manual_seed(params["seed"])
    if request.operation == "generate":
        kwargs["width"], kwargs["height"] = parse_size(params.get("size", "1024x1024"))
        return kwargs
    if not request.images:
        raise InvalidInput(f"{request.operation} needs an input image")
    source = ImageOps.exif_transpose(request.images[0]).convert("RGB")
    kwargs["image"] = source
    if request.operation == "inpaint":
        if request.mask is None:
            raise InvalidInput("inpaint needs a mask")
        if request.mask.size != source.size:
            raise InvalidInput(f"the mask is {request.mask.size[0]}x{request.mask.size[1]} but the image is "
                               f"{source.size[0]}x{source.size[1]}")
        kwargs["mask_image"] = mask_region(request.mask)  # white = repaint, as diffusers wants
        kwargs["width"], kwargs["height"] = (side - side % 8 for side in source.size)
    return kwargs


def checked_images(output, loaded) -> list[Image.Image]:
    """PIL images of the pipeline's float output; a NaN image or a safety-checker hit is an error."""
    import numpy as np  # lazy: optional genline[diffusers] (numpy comes with torch)
    flagged = getattr(output, "nsfw_content_detected", None)
    if flagged and any(flagged):
        raise UnsafeContent("the model's safety checker flagged the image; change the prompt")
    images = output.images
    if not np.isfinite(images).all():
        raise ProviderError(
            f"the diffusers model {loaded.name} produced a NaN (black) image on {loaded.device} in {loaded.dtype}: "
            "half precision overflowing in the VAE is the usual cause; set GENLINE_DIFFUSERS_DTYPE=float32 or "
            "bfloat16, or use a VAE made for float16")
    return [Image.fromarray((np.clip(image, 0, 1) * 255).round().astype("uint8")) for image in images]


def encode(image: Image.Image, fmt: str, model: str, size: tuple[int, int] | None) -> GeneratedImage:
    """Encode in the job's format; edits and inpaints come back at their input's exact size."""
    if size is not None and image.size != size:
        image = image.resize(size, Image.LANCZOS)
    pil_format, media_type = media.pil_and_media_type(fmt)
    out = io.BytesIO()
    image.save(out, pil_format, **({"compress_level": 1} if pil_format == "PNG" else {}))
    return GeneratedImage(out.getvalue(), media_type, model=model)


def is_out_of_memory(exc: BaseException) -> bool:
    import torch  # lazy: optional genline[diffusers]
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    if isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def map_error(exc: Exception, request: ProviderRequest, loaded) -> GenlineError:
    """A pipeline failure as one of DESIGN's codes, with what to change."""
    what = f"{exc.__class__.__name__}: {str(exc)[:400]}"
    if is_out_of_memory(exc):
        _free_device_memory(loaded.device)
        params = request.params
        size = params.get("size") if request.operation == "generate" else "the input's size"
        return ProviderError(
            f"the {loaded.device} device ran out of memory making {params.get('n', 1)} image(s) at {size} "
            f"({loaded.dtype}): ask for fewer images (params.n) or a smaller params.size, run one job per device "
            f"(celery -c 1), or use GENLINE_DIFFUSERS_DTYPE=float16 ({what})")
    if isinstance(exc, (ValueError, TypeError)):
        return InvalidInput(f"the diffusers pipeline refused the request: {what}")
    if isinstance(exc, RuntimeError) and any(k in str(exc) for k in ("channels", "size mismatch", "shape")):
        return InvalidInput(
            f"the diffusers model {loaded.name} cannot {request.operation} this way ({what}); an inpainting "
            "model only inpaints: set GENLINE_DIFFUSERS_MODEL to a model made for this operation")
    log.exception("diffusers pipeline failed model=%s operation=%s", loaded.name, request.operation)
    return ProviderError(f"the diffusers pipeline failed: {what}")


def _free_device_memory(device: str) -> None:
    """Give the allocator's cached blocks back after an OOM, so the next job starts clean."""
    import torch  # lazy: optional genline[diffusers]
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    elif device == "mps":
        torch.mps.empty_cache()
