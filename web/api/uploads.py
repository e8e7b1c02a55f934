"""Input image uploads for edit and inpaint (DESIGN §2): ``POST /v1/uploads``.

The file is decoded before anything is kept: only PNG, JPEG and WebP within
GENLINE_MAX_UPLOAD_BYTES and GENLINE_MAX_PIXELS are accepted, and a refused
file leaves neither an object in storage nor a row behind.
"""
from __future__ import annotations

import hashlib

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from pipeline.adapters.inputs import decode_image
from pipeline.adapters.storage import open_storage, upload_key
from pipeline.core import media
from pipeline.core.errors import InvalidInput, StorageError
from pipeline.core.ids import new_id
from pipeline.store.models import Upload, db
from web.api.errors import ApiError
from web.auth import config, require_tenant

bp = Blueprint("uploads", __name__)

FORM_OVERHEAD_BYTES = 64 * 1024
"""Room for the multipart boundaries and headers around the file itself."""

FIELD_NAMES = ("file", "image")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "invalid_input", f"the file is larger than the {limit} bytes allowed (GENLINE_MAX_UPLOAD_BYTES)",
                    {"file": f"must be at most {limit} bytes"})


def _invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_input", f"file: {message}", {"file": message})


def _read_file(limit: int) -> bytes:
    """The uploaded file's bytes, or an ApiError saying what is wrong with the request."""
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the image as multipart/form-data in a field named 'file'")
    request.max_content_length = limit + FORM_OVERHEAD_BYTES
    try:
        part = next((request.files[name] for name in FIELD_NAMES if name in request.files), None)
    except RequestEntityTooLarge:
        raise _too_large(limit) from None
    if part is None:
        raise _invalid("is missing: send the image in a multipart field named 'file'")
    data = part.stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit)
    if not data:
        raise _invalid("is empty")
    return data


@bp.post("/v1/uploads")
def create_upload():
    """Store one input image; answer ``{id, media_type, width, height, bytes}``."""
    tenant = require_tenant()
    cfg = config()
    data = _read_file(cfg.max_upload_bytes)
    try:
        image = decode_image(data, "the file", cfg.max_pixels)
    except InvalidInput as exc:
        raise _invalid(exc.message.removeprefix("the file ")) from None
    media_type = media.BY_PIL[image.format]
    upload_id = new_id("upl")
    key = upload_key(upload_id, media_type)
    try:
        open_storage(cfg).put(key, data, media_type)
    except StorageError as exc:
        raise ApiError(503, "storage_error", f"the upload could not be stored; try again ({exc.message})",
                       headers={"Retry-After": "5"}) from None
    row = Upload(id=upload_id, tenant_id=tenant, storage_key=key, media_type=media_type,
                 width=image.width, height=image.height, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    db.session.add(row)
    db.session.commit()
    response = jsonify({"id": upload_id, "media_type": media_type, "width": image.width,
                        "height": image.height, "bytes": len(data)})
    response.status_code = 201
    return response
