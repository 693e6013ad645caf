"""The one exception tree of PICE, and its mapping to OpenAI error bodies.

    PiceError                      500 internal_error       (base; never raised bare)
    ├── InvalidRequestError        400 invalid_request_error
    │   └── ContextOverflowError   400 context_length_exceeded
    ├── AuthenticationError        401 authentication_error
    ├── PermissionDeniedError      403 permission_error     (e.g. edge channels not enabled)
    ├── NotFoundError              404 not_found_error
    │   └── ModelNotFoundError     404 model_not_found
    ├── PayloadTooLargeError       413 request_too_large
    ├── RateLimitError             429 rate_limit_error     (carries Retry-After)
    │   └── OverloadedError        429 rate_limit_error, code server_overloaded
    ├── ServiceUnavailableError    503 service_unavailable  (carries Retry-After)
    │   └── UpstreamError          503 upstream_error       (a cloud or edge failed)
    │       ├── UpstreamTimeoutError
    │       └── UpstreamProtocolError                   (it answered outside its wire protocol)
    ├── ModelProvisioningError     500 model_provisioning   (CLI / start-up only)
    └── InsecureBindError          500 insecure_configuration (start-up only: no auth off loopback)

Every error a client can see is one of these. Handlers map them by *type* (see
:mod:`pice.http.errors`); nothing matches on message text and no traceback reaches a client.
An error's ``message`` is what the client reads; its ``detail`` (the lower-level cause, e.g. an
upstream's address and the socket error) is for the gateway's logs only (:attr:`described`).
"""

from __future__ import annotations

from typing import Any, ClassVar


class PiceError(Exception):
    """Base of every PICE error. Subclasses fix the HTTP status and the OpenAI error type."""

    status_code: ClassVar[int] = 500
    error_type: ClassVar[str] = "internal_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.detail = detail

    @property
    def described(self) -> str:
        """The message with its detail, for logs: never sent to a client."""
        return f"{self.message} ({self.detail})" if self.detail else self.message

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers that go with this error (e.g. ``Retry-After``)."""
        return {}

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(PiceError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextOverflowError(InvalidRequestError):
    default_code = "context_length_exceeded"


class AuthenticationError(PiceError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(PiceError):
    status_code = 403
    error_type = "permission_error"


class NotFoundError(PiceError):
    status_code = 404
    error_type = "not_found_error"


class ModelNotFoundError(NotFoundError):
    error_type = "invalid_request_error"
    default_code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"The model '{model}' does not exist.", param="model")


class PayloadTooLargeError(PiceError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "request_too_large"


class _RetryAfterError(PiceError):
    """An error that tells the client when to retry (``Retry-After``, whole seconds)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: int = 1,
        param: str | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, param=param, code=code, detail=detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimitError(_RetryAfterError):
    """Too many requests; ``Retry-After`` says how many seconds until one would be accepted."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class OverloadedError(RateLimitError):
    """This service's own bounded queue is full (``pice.admission``): retry after
    ``retry_after`` seconds. The code tells it apart from an upstream's rate limit."""

    default_code = "server_overloaded"


class ServiceUnavailableError(_RetryAfterError):
    status_code = 503
    error_type = "service_unavailable"


class UpstreamError(ServiceUnavailableError):
    """A cloud or edge server failed: unreachable, an error status, or a broken stream."""

    error_type = "upstream_error"


class UpstreamTimeoutError(UpstreamError):
    default_code = "upstream_timeout"


class UpstreamProtocolError(UpstreamError):
    """An upstream answered, but with a message its wire protocol does not allow.

    Unlike a timeout or a broken connection, it says nothing about the server being down: the
    fault is in one response (the gateway keeps such an edge in service).
    """


class ModelProvisioningError(PiceError):
    """A model could not be found, fetched, joined or verified."""

    error_type = "model_provisioning"


class InsecureBindError(PiceError):
    """A server was asked to listen beyond loopback with no authentication and no opt-out."""

    error_type = "insecure_configuration"
