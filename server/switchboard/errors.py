"""One error hierarchy; the API layer maps every subclass to OpenAI's error JSON."""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base error: carries the HTTP status and the OpenAI error `type`, `code` and `param`."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retry_after: int | None = None  # seconds, sent as Retry-After
    headers: dict[str, str] | None = None  # more response headers (a rate limit's x-ratelimit-*)

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(SwitchboardError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(SwitchboardError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(SwitchboardError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class AdapterNotFound(SwitchboardError):
    status = 404
    type = "not_found_error"
    code = "model_not_found"


class NotFound(SwitchboardError):
    status = 404
    type = "not_found_error"
    code = "not_found"


class Conflict(SwitchboardError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class PayloadTooLarge(SwitchboardError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class AdapterIncompatible(SwitchboardError):
    status = 422
    type = "invalid_request_error"
    code = "adapter_incompatible"


class Overloaded(SwitchboardError):
    status = 429
    type = "rate_limit_error"
    code = "overloaded"


class EngineFailure(SwitchboardError):
    status = 503
    type = "server_error"
    code = "engine_unavailable"


class ShuttingDown(SwitchboardError):
    """The server is draining (SIGTERM): it finishes what it has and takes nothing new."""

    status = 503
    type = "server_error"
    code = "shutting_down"
    retry_after = 1


class RegistryUnavailable(SwitchboardError):
    """The shared registry (PostgreSQL) cannot be reached: changes wait; serving goes on."""

    status = 503
    type = "server_error"
    code = "registry_unavailable"
    retry_after = 5
