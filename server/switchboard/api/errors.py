"""Every failure leaves as OpenAI's error JSON with the right status; never a stack trace."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidRequest, PayloadTooLarge, SwitchboardError
from .validation_messages import validation_message

logger = logging.getLogger(__name__)

_HTTP_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
}


def error_response(
    status: int,
    message: str,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SwitchboardError)
    async def _switchboard(_: Request, exc: SwitchboardError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
        if exc.retry_after is not None:
            headers["Retry-After"] = str(exc.retry_after)
        headers.update(exc.headers or {})
        return error_response(exc.status, exc.message, exc.type, exc.code, exc.param, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(exc.errors())
        return error_response(400, message, InvalidRequest.type, InvalidRequest.code, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_, code = _HTTP_TYPES.get(exc.status_code, ("invalid_request_error", None))
        headers = dict(exc.headers or {})  # 405 keeps its Allow header (the methods the path takes)
        message, path = str(exc.detail), request.url.path
        path = path if len(path) <= 100 else path[:97] + "..."
        if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
            # FastAPI's body parser says "There was an error parsing the body"
            message = "request body is not UTF-8 text; send JSON encoded as UTF-8"
        elif exc.status_code == 404:
            message = f"no endpoint at {path}; the API is listed at /docs (docs/api.md)"
        elif exc.status_code == 405:
            allowed = headers.get("Allow") or headers.get("allow") or "another method"
            message = f"method {request.method} is not allowed on {path}; use {allowed}"
        return error_response(exc.status_code, message, type_, code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error")
        return error_response(503, "internal error; the request was not served", "server_error", "internal_error")


class BodyLimitMiddleware:
    """Refuse bodies over `limit` bytes with 413, whether or not Content-Length is declared."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._reject(send)
                return
        seen = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_large = True
                    raise PayloadTooLarge(f"request body exceeds {self.limit} bytes")
            return message

        async def guarded_send(message: Message) -> None:
            # Frameworks wrap errors raised while reading the body into their own 400; say 413 instead.
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._reject(send)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, send: Send) -> None:
        err = PayloadTooLarge(f"request body exceeds {self.limit} bytes")
        body = json.dumps(err.to_dict()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
