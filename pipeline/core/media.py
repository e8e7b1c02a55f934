"""Image formats genline reads and writes: the one table of names, media types and extensions. No I/O here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

OutputFormat = Literal["png", "jpeg", "webp"]
"""``params.format`` of a job."""


@dataclass(frozen=True)
class ImageFormat:
    name: str        # params.format
    pil: str         # Pillow's format name
    media_type: str
    extension: str   # of stored objects


FORMATS: dict[str, ImageFormat] = {f.name: f for f in (
    ImageFormat("png", "PNG", "image/png", "png"),
    ImageFormat("jpeg", "JPEG", "image/jpeg", "jpg"),
    ImageFormat("webp", "WEBP", "image/webp", "webp"),
)}
assert tuple(FORMATS) == get_args(OutputFormat)

MEDIA_TYPES: tuple[str, ...] = tuple(f.media_type for f in FORMATS.values())

BY_PIL: dict[str, str] = {f.pil: f.media_type for f in FORMATS.values()} | {"MPO": "image/jpeg"}
"""Media type of an image Pillow opened, by its format (MPO: a JPEG with extra frames, as cameras write)."""

EXTENSIONS: dict[str, str] = {f.media_type: f.extension for f in FORMATS.values()}
"""File extension of stored objects, by media type."""

BY_EXTENSION: dict[str, str] = {f.extension: f.media_type for f in FORMATS.values()}


def pil_and_media_type(name: str) -> tuple[str, str]:
    """(Pillow format, media type) of an output ``params.format``."""
    found = FORMATS[name]
    return found.pil, found.media_type
