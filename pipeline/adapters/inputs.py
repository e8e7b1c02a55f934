"""Input images of edit and inpaint: references in ``job.inputs`` turned into pictures.

A reference is one of:
- an upload id (``upl_…``, from ``POST /v1/uploads``), read from storage; only
  the tenant that uploaded it may use it;
- a ``data:image/...;base64,`` URI;
- an https URL, fetched with the SSRF rules (``pipeline.adapters.ssrf``: every DNS
  answer checked, the checked address connected to, each redirect checked
  again, never https to http), a size cap (GENLINE_MAX_UPLOAD_BYTES) and a timeout.
  Plain http is accepted only where private addresses are allowed (tests, dev).
"""
from __future__ import annotations

import base64
import binascii
import io
from urllib.parse import urljoin

import requests
from PIL import Image, UnidentifiedImageError

from pipeline.adapters import ssrf
from pipeline.adapters.providers.httpcall import read_capped
from pipeline.adapters.storage import open_storage
from pipeline.core import media
from pipeline.core.errors import InvalidInput, StorageError
from pipeline.core.ids import is_id
from pipeline.service.representation import output_url
from pipeline.store.models import Upload, db

FETCH_TIMEOUT_S = 15.0
MAX_REDIRECTS = 3



def decode_image(data: bytes, what: str, max_pixels: int) -> Image.Image:
    """Decode and fully load image bytes; ``InvalidInput`` naming ``what`` otherwise."""
    Image.MAX_IMAGE_PIXELS = None  # we check the limit ourselves, with a clear message
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in media.BY_PIL:
            raise InvalidInput(f"{what} is {image.format or 'an unknown format'}; use PNG, JPEG or WebP")
        if image.width * image.height > max_pixels:
            raise InvalidInput(f"{what} is {image.width}x{image.height}, "
                               f"more than the {max_pixels} pixels allowed (GENLINE_MAX_PIXELS)")
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


def find_upload(upload_id: str, tenant_id: str):
    """The ``Upload`` row of this tenant, or ``InvalidInput`` (another tenant's id is unknown too)."""
    row = db.session.get(Upload, upload_id) if is_id(upload_id, "upl") else None
    if row is not None:
        db.session.expunge(row)  # keep its loaded values; release the connection before slow work
    db.session.rollback()
    if row is None or row.tenant_id != tenant_id:
        raise InvalidInput(f"no upload {upload_id!r} (upload images with POST /v1/uploads first)")
    return row


def check_ref(ref, what: str, tenant_id: str, allow_http: bool) -> None:
    """Cheap checks of a reference at submit time: its form, and that an upload id exists."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(f"{what} must be an upload id, a data: URI or an https URL")
    if ref.startswith("upl_"):
        find_upload(ref, tenant_id)
    elif not (ref.startswith("data:") or ref.startswith("https://") or (allow_http and ref.startswith("http://"))):
        raise InvalidInput(f"{what} must be an upload id (upl_…), a data: URI or an https URL")


def fetch_url(url: str, what: str, cfg) -> bytes:
    """GET an input URL within the SSRF rules, the size cap and the timeout.

    Each hop (the URL and every redirect) is checked and connected to by
    ``ssrf.open_url``; a redirect from https to plain http is refused, since
    inputs are https-only and a downgrade would expose the fetch.
    """
    allow_private = cfg.webhook_allow_private
    if url.startswith("http://") and not allow_private:
        raise InvalidInput(f"{what} must be an https URL")
    limit = cfg.max_upload_bytes
    for _ in range(MAX_REDIRECTS + 1):
        try:
            with ssrf.open_url("GET", url, allow_private=allow_private, what=what, stream=True,
                               timeout=FETCH_TIMEOUT_S,
                               headers={"Accept": ", ".join(media.MEDIA_TYPES)}) as response:
                if response.is_redirect:
                    target = urljoin(url, response.headers.get("Location", ""))
                    if url.startswith("https://") and not target.startswith("https://"):
                        raise InvalidInput(f"{what} redirects from https to {target.split(':', 1)[0]}, which is refused")
                    url = target
                    continue
                if response.status_code != 200:
                    raise InvalidInput(f"{what} could not be fetched: the server answered {response.status_code}")
                data = read_capped(response, limit)
                if data is None:
                    raise InvalidInput(f"{what} is larger than the {limit} bytes allowed (GENLINE_MAX_UPLOAD_BYTES)")
                return data
        except requests.RequestException as exc:
            raise InvalidInput(f"{what} could not be fetched ({exc.__class__.__name__})") from None
    raise InvalidInput(f"{what} redirects more than {MAX_REDIRECTS} times")


def resolve(ref: str, what: str, cfg, tenant_id: str) -> bytes:
    """The bytes a reference points at."""
    if isinstance(ref, str) and ref.startswith("data:"):
        return decode_data_uri(ref, what)
    if isinstance(ref, str) and ref.startswith("upl_"):
        row = find_upload(ref, tenant_id)
        try:
            return open_storage(cfg).get(row.storage_key)
        except StorageError as exc:
            raise StorageError(f"{what}: upload {ref} could not be read ({exc.message})") from exc
    if isinstance(ref, str) and ref.startswith(("https://", "http://")):
        return fetch_url(ref, what, cfg)
    raise InvalidInput(f"{what} must be an upload id (upl_…), a data: URI or an https URL")


def url_for_provider(ref: str, cfg, tenant_id: str) -> str:
    """A URL a remote provider can fetch: signed and expiring for uploads, the reference otherwise."""
    if not ref.startswith("upl_"):
        return ref
    return output_url(cfg, cfg.public_url, "", 0, find_upload(ref, tenant_id).storage_key)


def provider_urls(job, cfg) -> tuple[list[str], str | None]:
    """(image URLs, mask URL) of a job's inputs for remote providers."""
    inputs = job.inputs or {}
    images = [url_for_provider(ref, cfg, job.tenant_id) for ref in inputs.get("images") or []]
    mask = inputs.get("mask")
    return images, (url_for_provider(mask, cfg, job.tenant_id) if mask else None)


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
