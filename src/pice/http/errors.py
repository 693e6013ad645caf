"""Translate every exception into an OpenAI error body, in one place."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pice.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    PiceError,
)

logger = logging.getLogger(__name__)


def error_response(err: PiceError) -> JSONResponse:
    """The JSON response for ``err``: its status, headers and OpenAI error body."""
    return JSONResponse(err.to_body(), status_code=err.status_code, headers=err.headers())


# Pydantic names the member of a union that failed in ``loc`` (``stop.str``,
# ``stop.list[str].0``, ``messages.0.content.list[TextPart]``); OpenAI's ``param`` names only the
# request's own fields, which are snake_case, so a type's name is dropped from the path.
_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _is_type_tag(part: str) -> bool:
    return part in _TYPE_NAMES or "[" in part or part[:1].isupper()


# What pydantic reports when the body parsed, but to something other than an object.
_NOT_AN_OBJECT = frozenset({"model_attributes_type", "model_type", "dict_type"})


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this type as JSON: none given, ``application/json``
    or ``application/*+json`` (parameters such as ``charset`` aside)."""
    if not content_type:
        return True
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def validation_error(
    exc: RequestValidationError, content_type: str | None = None
) -> InvalidRequestError:
    """Turn pydantic's list of problems into one 400 that names the first offending field.

    A body sent with another ``Content-Type`` (``curl -d`` sends a form type unless told
    otherwise) is not parsed as JSON at all, and pydantic's complaint about it ("Input should
    be a valid dictionary") would hide the cause: the error names the header instead. Such a
    body is refused rather than parsed anyway: a browser page can POST ``text/plain``
    cross-origin without a preflight, so reading it as JSON would let any web page drive a
    gateway that runs without API keys on a user's machine."""
    errors: list[Any] = list(exc.errors())
    if not errors:
        return InvalidRequestError("Invalid request body.")
    first = errors[0]
    whole_body = tuple(first.get("loc", ())) == ("body",)
    if whole_body and not _is_json(content_type):
        return InvalidRequestError(
            "The request body must be JSON, sent with 'Content-Type: application/json' "
            f"(this request's Content-Type is '{content_type}').",
            code="invalid_content_type",
            param=None,
        )
    if whole_body and first.get("type") in _NOT_AN_OBJECT:
        return InvalidRequestError(
            "The request body must be a JSON object.", code="invalid_json", param=None
        )
    # A union reports one error per member; the one that got furthest into the value says most
    # (``content`` given an image part: "should be 'text'" rather than "should be a string").
    field = tuple(first.get("loc", ()))[:2]
    first = max(
        (e for e in errors if tuple(e.get("loc", ()))[:2] == field),
        key=lambda e: len(e.get("loc", ())),
    )
    if first.get("type") == "json_invalid":
        return InvalidRequestError(
            "The request body is not valid JSON.", code="invalid_json", param=None
        )
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    loc = [part for part in loc if not _is_type_tag(part)]
    param = ".".join(loc) or None
    if first.get("type") == "missing" and param is None:
        return InvalidRequestError("The request body is missing.", code="invalid_json")
    message = first.get("msg", "Invalid value")
    where = f" at '{param}'" if param else ""
    return InvalidRequestError(f"{message}{where}.", param=param, code="invalid_value")


def _http_error(exc: StarletteHTTPException) -> PiceError:
    detail = str(exc.detail)
    if exc.status_code == 404:
        return NotFoundError(detail or "Not found.")
    if exc.status_code == 401:
        return AuthenticationError(detail)
    if exc.status_code == 413:
        return PayloadTooLargeError(detail)
    err = PiceError(detail)
    # Keep the status of HTTP errors raised by the framework itself (405, ...).
    err.status_code = exc.status_code  # type: ignore[misc]
    err.error_type = "invalid_request_error" if exc.status_code < 500 else "internal_error"  # type: ignore[misc]
    return err


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that make every failure an OpenAI-shaped error."""

    async def on_pice_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PiceError)
        return error_response(exc)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc, request.headers.get("content-type")))

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return error_response(_http_error(exc))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("Unhandled error on %s %s", request.method, request.url.path)
        return error_response(PiceError("The server had an error processing your request."))

    app.add_exception_handler(PiceError, on_pice_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
