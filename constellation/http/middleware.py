"""The daemon's protections, as one ASGI middleware: request body size limit (413), API
keys and roles (401/403), per-client rate limit (429 with ``Retry-After``). Health and
metrics endpoints are exempt from authentication and rate limiting.

And :class:`ResponseMiddleware`, innermost: ``HEAD`` wherever ``GET`` is, and an
unexpected exception answered 500 (E500) *there*, so the connection stays open (the
catch-all handler of Starlette's outermost middleware re-raises, and the server then
drops the connection).
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from constellation.http.auth import Role, digest
from constellation.http.limits import RateLimiter

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from constellation.http.auth import AuthProvider
    from constellation.http.settings import ServerSettings

__all__ = ["ClientGone", "JSONBody", "ProtectionMiddleware", "ResponseMiddleware",
           "api_error", "required_role"]

logger = logging.getLogger("constellation.http")

EXEMPT = ("/health", "/health/live", "/health/ready", "/health/detail", "/metrics")
PUBLIC = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/dashboard")


class ClientGone(Exception):  # noqa: N818 - not an error: nobody waits for the answer
    """The client disconnected while its request was being served."""


def finite(value: Any) -> Any:
    """``value`` with every NaN and infinite float replaced by None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


class JSONBody(JSONResponse):
    """A JSON response in which NaN and ±Infinity are ``null``, as in the records that
    ``GET /executions`` serves (strict JSON has no such numbers)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # a non-finite float (rare: checked only when it happens)
            return json.dumps(finite(content), ensure_ascii=False, allow_nan=False,
                              separators=(",", ":"), default=str).encode("utf-8")


def api_error(status: int, code: str, message: str, details: dict[str, Any],
              headers: dict[str, str] | None = None) -> JSONResponse:
    """The error body every endpoint uses."""
    return JSONBody({"error": {"code": code, "message": message, "details": details}},
                    status_code=status, headers=headers)


def _text(value: bytes) -> str:
    # Header values are bytes; clients send non-ASCII ones (an API key) as UTF-8.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


# POSTs that manage stored pipelines (rollback, canaries, reload) need admin.
_ADMIN_POST = re.compile(r"/pipelines/[^/]+/(?:reload|rollback(?:/[^/]+)?|"
                         r"canary(?:/promote|/rollback)?)")


def required_role(method: str, path: str) -> Role:
    """The least role that may call ``method path``: DELETE, PUT and the POSTs that
    manage stored pipelines need admin, other POSTs execute, the rest readonly."""
    if method in ("DELETE", "PUT", "PATCH"):
        return Role.ADMIN
    if method == "POST":
        return Role.ADMIN if _ADMIN_POST.fullmatch(path) else Role.EXECUTE
    return Role.READONLY


class ProtectionMiddleware:
    """See the module docstring.

    Args:
        app: the wrapped application.
        auth: API keys (None: no authentication).
        settings: limits.
    """

    def __init__(self, app: ASGIApp, auth: AuthProvider | None,
                 settings: ServerSettings) -> None:
        self.app = app
        self.auth = auth
        self.max_body = settings.max_body_bytes
        self.limiter = (RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
                        if settings.rate_limit_per_minute > 0 else None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): _text(v) for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._reply(scope, receive, send, api_error(
                413, "E606", f"request body over {self.max_body} bytes",
                {"max_body_bytes": self.max_body}))
            return
        if path not in EXEMPT and method != "OPTIONS":
            refusal = self._check(path, method, headers, scope)
            if refusal is not None:
                await self._reply(scope, receive, send, refusal)
                return
        if length is None and method in ("POST", "PUT", "PATCH", "DELETE"):
            # No Content-Length (a chunked body): read it here, bounded, then replay it.
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    await self._reply(scope, receive, send, api_error(
                        413, "E606", f"request body over {self.max_body} bytes",
                        {"max_body_bytes": self.max_body}))
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    def _check(self, path: str, method: str, headers: dict[str, str], scope: Scope
               ) -> JSONResponse | None:
        key = headers.get("x-api-key")
        auth_header = headers.get("authorization", "")
        if key is None and auth_header.lower().startswith("bearer "):
            key = auth_header[7:].strip()
        role: Role | None = None
        if self.auth is not None and key:
            role = self.auth.authenticate(key)
        client = f"key:{digest(key)}" if role is not None and key else \
            f"ip:{(scope.get('client') or ('unknown', 0))[0]}"
        if self.limiter is not None:
            wait = self.limiter.acquire(client)
            if wait > 0:
                retry = RateLimiter.retry_after(wait)
                return api_error(429, "E605", f"rate limit exceeded; retry in {retry} s",
                                 {"retry_after": int(retry)}, {"Retry-After": retry})
        if self.auth is None or path in PUBLIC:
            return None
        if not key:
            return api_error(401, "E603", "an API key is required (Authorization: Bearer "
                                          "<key> or X-API-Key)", {},
                             {"WWW-Authenticate": "Bearer"})
        if role is None:
            return api_error(401, "E603", "unknown API key", {},
                             {"WWW-Authenticate": "Bearer"})
        needed = required_role(method, path)
        if role < needed:
            return api_error(403, "E604", f"role {role.name.lower()} may not {method} "
                                          f"{path} (needs {needed.name.lower()})",
                             {"role": role.name.lower(), "required": needed.name.lower()})
        return None

    @staticmethod
    async def _reply(scope: Scope, receive: Receive, send: Send, response: JSONResponse
                     ) -> None:
        await response(scope, receive, send)


class ResponseMiddleware:
    """Innermost: ``HEAD`` answered as ``GET`` without the body, wherever ``GET`` is; an
    unexpected exception answered 500 (E500, logged) before the response started, and the
    keep-alive connection kept."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        head = scope["method"] == "HEAD"
        ended = False

        async def sending(message: Message) -> None:
            nonlocal started, ended
            if message["type"] == "http.response.start":
                started = True
                await send(message)
                return
            if not head:
                await send(message)
                return
            if ended:  # a stream goes on after a HEAD was answered: stop it
                raise OSError("HEAD answered")
            ended = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def receiving() -> Message:
            if ended:  # a HEAD is answered: a stream waiting for the client stops
                return {"type": "http.disconnect"}
            return await receive()

        if head:
            scope = {**scope, "method": "GET"}
        try:
            await self.app(scope, receiving if head else receive, sending)
        except Exception:
            if head and ended:
                return  # the stream stopped as asked
            if started:
                raise  # nothing sensible to send any more: the server drops it
            logger.exception("unexpected error serving a request")
            await api_error(500, "E500", "internal error (logged on the server)", {})(
                scope, receive, sending)
