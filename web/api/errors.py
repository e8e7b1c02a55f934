"""One error shape for the whole API: {"error": {"code", "message", "fields"}}."""
from __future__ import annotations

import logging

from flask import g, jsonify
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from pipeline.store.models import db

log = logging.getLogger("genline.web")

HTTP_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "payload_too_large",
    414: "uri_too_long", 415: "unsupported_media_type", 422: "invalid_input", 429: "rate_limited",
    431: "headers_too_large", 500: "internal_error", 503: "service_unavailable",
}


class ApiError(Exception):
    """Raise to answer with the error shape."""

    def __init__(self, status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.headers = fields or {}, headers or {}


def error_response(status: int, code: str, message: str, fields: dict | None = None, headers: dict | None = None):
    """The error shape; a 401 names the scheme (RFC 6750), a Retry-After given here is kept over Flask-Limiter's."""
    response = jsonify({"error": {"code": code, "message": message, "fields": fields or {}}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="genline"'
    if "Retry-After" in response.headers:
        g.genline_retry_after = response.headers["Retry-After"]
    return response


def fields_from_validation(exc: ValidationError) -> dict:
    """{"params.size": "must look like 1024x1024", ...} from a pydantic error."""
    out = {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        out.setdefault(loc, message)
    return out


def validation_error(exc: ValidationError) -> ApiError:
    fields = fields_from_validation(exc)
    first = next(iter(fields.items()))
    return ApiError(422, "invalid_input", f"{first[0]}: {first[1]}", fields)


def register(app) -> None:
    """Install the handlers that turn every failure into the error shape."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        err = validation_error(exc)
        return error_response(err.status, err.code, err.message, err.fields)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is larger than the {limit} bytes allowed (GENLINE_MAX_BODY_BYTES)"
        headers = {"Retry-After": exc.retry_after} if getattr(exc, "retry_after", None) else None
        response = error_response(status, HTTP_CODES.get(status, "error"), message, headers=headers)
        if status == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)  # every pooled connection busy past GENLINE_DB_CONNECT_TIMEOUT_S
    def _database_down(exc):
        log.warning("database unavailable error=%s", exc.__class__.__name__)
        _rollback()
        return error_response(503, "service_unavailable", "the database is unavailable; try again shortly",
                              headers={"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("unhandled error")
        _rollback()
        return error_response(500, "internal_error", "genline failed to handle this request; it was logged")


def _rollback():
    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone; the next request gets a new one
        pass
