"""Output bytes: through the API with a key or job token, and through signed file URLs."""
from __future__ import annotations

from flask import Blueprint, redirect, send_file

from pipeline.adapters.storage import open_storage
from pipeline.core import media, tokens
from pipeline.core.errors import StorageError
from web.api.errors import ApiError
from web.api.jobs import get_job_or_404
from web.auth import config, reader_for_job

bp = Blueprint("outputs", __name__)


def _serve(key: str, media_type: str, private: bool = True):
    """The bytes (file storage) or a redirect to presigned ones (S3).

    ``private``: answered to a key or job-token holder, so no shared cache may
    keep it (the URL alone does not grant it). A signed ``/files/`` URL is its
    own credential and may be cached by anyone who holds it.
    """
    storage = open_storage(config())
    signed = storage.signed_url(key, config().url_ttl_s)
    if signed:
        return redirect(signed, code=302)
    try:
        path = storage.path(key)
    except StorageError:
        raise ApiError(404, "not_found", "no such output") from None
    if not path.is_file():
        raise ApiError(404, "not_found", "the output is no longer stored (retention may have removed it)")
    response = send_file(path, mimetype=media_type, max_age=3600)
    if private:
        response.cache_control.public = False
        response.cache_control.private = True
    return response


@bp.get("/v1/jobs/<job_id>/outputs/<n>")
def read_output(job_id: str, n: str):
    tenant = reader_for_job(job_id)
    job = get_job_or_404(job_id, tenant)
    if not n.isdigit() or not job.outputs or int(n) >= len(job.outputs):
        raise ApiError(404, "not_found", f"job {job_id} has no output {n!r}")
    output = job.outputs[int(n)]
    return _serve(output["key"], output["media_type"])


@bp.get("/files/<token>")
def read_file(token: str):
    key = tokens.key_from_file_token(config().secret_key, token, config().url_ttl_s)
    if key is None:
        raise ApiError(404, "not_found", "this link is not valid or has expired")
    media_type = media.BY_EXTENSION.get(key.rsplit(".", 1)[-1], "application/octet-stream")
    return _serve(key, media_type, private=False)
