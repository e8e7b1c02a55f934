"""Input images of edit and inpaint: references in ``job.inputs`` turned into pictures.

A reference is a ``data:image/...;base64,`` URI. (Upload ids and https URLs are
resolved here too once uploads exist.)
"""
from __future__ import annotations

import base64
import binascii
import io

from PIL import Image, UnidentifiedImageError

from pipeline.errors import InvalidInput

ALLOWED_MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def decode_image(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """Decode and fully load image bytes; ``InvalidInput`` naming ``what`` otherwise."""
    Image.MAX_IMAGE_PIXELS = None  # we check the limit ourselves, with a clear message
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ALLOWED_MEDIA:
            raise InvalidInput(f"{what} is {image.format or 'an unknown format'}; use PNG, JPEG or WebP")
        if image.width * image.height > max_pixels:
            raise InvalidInput(f"{what} is {image.width}x{image.height}, more than the {max_pixels} pixels allowed")
        image.load()
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidInput(f"{what} is not a readable image ({exc.__class__.__name__})") from None
    return image


def decode_data_uri(uri: str, what: str) -> bytes:
    header, sep, payload = uri.partition(",")
    if not sep or not header.startswith("data:") or ";base64" not in header:
        raise InvalidInput(f"{what} must be a data:image/...;base64, URI")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what} is not valid base64") from None


def resolve(ref: str, what: str, cfg, tenant_id: str) -> bytes:
    """The bytes a reference points at."""
    if isinstance(ref, str) and ref.startswith("data:"):
        return decode_data_uri(ref, what)
    raise InvalidInput(f"{what} must be a data: URI")


def load_inputs(job, cfg) -> tuple[list[Image.Image], Image.Image | None]:
    """The job's input images and mask, decoded and checked."""
    inputs = job.inputs or {}
    images = [
        decode_image(resolve(ref, f"inputs.images[{i}]", cfg, job.tenant_id), f"inputs.images[{i}]", cfg.max_pixels)
        for i, ref in enumerate(inputs.get("images") or [])
    ]
    mask = None
    if inputs.get("mask"):
        mask = decode_image(resolve(inputs["mask"], "inputs.mask", cfg, job.tenant_id), "inputs.mask", cfg.max_pixels)
    if job.operation in ("edit", "inpaint") and not images:
        raise InvalidInput(f"{job.operation} needs inputs.images")
    if job.operation == "inpaint":
        if mask is None:
            raise InvalidInput("inpaint needs inputs.mask")
        if mask.size != images[0].size:
            raise InvalidInput(
                f"inputs.mask is {mask.width}x{mask.height} but inputs.images[0] is {images[0].width}x{images[0].height}"
            )
    return images, mask
