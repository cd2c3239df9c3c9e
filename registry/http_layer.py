"""The HTTP layer of ``registry serve`` apart from its routes: JSON answers and the one shape
of every error, the exception handlers, a plain ASGI middleware for the body limit and the
request metrics, and the Prometheus figures (summed over workers where there are several)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from .errors import RegistryError
from .serving import Served
from .store.db import first_line
from .tokens import allows

disable_created_metrics()  # a *_created series per label set is noise for counters

# the status of each library error kind
STATUS = {"input": 400, "not_found": 404, "state": 409, "database": 503}


class ApiError(Exception):
    """An answer other than 200: its status, kind and one-line detail."""

    def __init__(self, status: int, kind: str, detail: str,
                 headers: dict[str, str] | None = None):
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers


def json_response(content: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """``content`` as compact UTF-8 JSON."""
    body = json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status, headers=headers, media_type="application/json")


def error_response(status: int, kind: str, detail: str, headers=None) -> Response:
    """The one shape of every error: ``{"error": KIND, "detail": one line}``."""
    return json_response({"error": kind, "detail": detail}, status, headers)


def short(text: str) -> str:
    """A client's text as an error quotes it: 60 characters at most."""
    return text if len(text) <= 60 else text[:60] + "..."


def install_handlers(app: FastAPI) -> None:
    """Every error as :func:`error_response`: ours, the library's, FastAPI's request checks,
    Starlette's 404 and 405, a database that is away; anything else is a bug, logged with
    its traceback and answered 500 without it."""
    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return error_response(e.status, e.kind, e.detail, e.headers)

    @app.exception_handler(RegistryError)
    async def registry_error(request, e: RegistryError):
        return error_response(STATUS.get(e.code, 400), e.code, str(e))

    @app.exception_handler(OperationalError)
    async def database_away(request, e: OperationalError):
        return error_response(503, "database", f"database error: {first_line(e)}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request, e: RequestValidationError):
        kind = request.headers.get("content-type", "application/json")
        if request.method == "POST" and "json" not in kind:
            return error_response(415, "unsupported_media_type", f"a body of {short(kind)}: "
                                  "send JSON, with `Content-Type: application/json`")
        return error_response(400, "input", _invalid(e.errors()))

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed",
                413: "too_large"}.get(e.status_code, "input")
        return error_response(e.status_code, kind, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(request, e: Exception):  # a bug: the server's log has its traceback
        return error_response(500, "internal", f"{type(e).__name__}: an unexpected error "
                              "(see the server's log)")


# the parts of a validation error's location that say nothing to a client
_NOISE = {"body", "query", "path", "str", "int", "float", "bool", "list", "dict",
          "list[str]", "list[float]", "dict[str,any]", "none", "function-after"}


def _invalid(errors: list[dict]) -> str:
    """FastAPI's first validation error as one line: where (``items row 2 vector``) and
    what."""
    if not errors:
        return "invalid request"
    first = errors[0]
    if first.get("type") == "json_invalid":
        at = [p for p in first.get("loc", ()) if isinstance(p, int)]
        return "malformed JSON" + (f" at character {at[0]}" if at else "")
    where, parts = [], list(first.get("loc", ()))
    for before, part in zip([None, *parts], parts, strict=False):
        if isinstance(part, int):
            where.append(f"row {part + 1}" if before == "items" else f"number {part + 1}")
        elif str(part).lower().replace(" ", "") not in _NOISE:
            where.append(str(part))
    detail = first.get("msg", "invalid")
    if first.get("type") == "missing":
        detail = "required"
    return f"{' '.join(where)}: {detail}" if where else detail


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# the ASGI scope key a route finds the name of the token it was called with under
ACTOR = "registry.actor"


class Bearer:
    """Plain ASGI middleware that checks the bearer token before anything else of the
    request is read (a request without a token learns nothing about its body): 401 for
    none, or an unknown or revoked one; 403 for a scope too small. ``check`` None: no
    tokens (everyone may do everything)."""

    def __init__(self, app, check: Callable[[str], Any] | None,
                 need: Callable[[str, str], str | None]):
        self.app, self.check, self.need = app, check, need

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _CONTROL.search(scope["path"]):
            # a decoded %0A ends a route's pattern ($ matches before a final newline)
            return await error_response(400, "input", "control characters in the path")(
                scope, receive, send)
        if scope["type"] == "http" and self.check is not None:
            need = self.need(scope["method"], scope["path"])
            if need is not None:
                refused = self._refused(scope, need)
                if refused is not None:
                    return await refused(scope, receive, send)
        return await self.app(scope, receive, send)

    def _refused(self, scope, need: str) -> Response | None:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        scheme, _, secret = header.decode("latin-1").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not secret.strip():
            return error_response(401, "unauthorized", "send `Authorization: Bearer <token>` "
                                  "(see `registry token create`)", challenge)
        token = self.check(secret.strip())
        if token is None:
            return error_response(401, "unauthorized", "unknown or revoked token", challenge)
        if not allows(token.scope, need):
            return error_response(403, "forbidden", f"token {token.name!r} has scope "
                                  f"{token.scope}; this needs {need}")
        scope[ACTOR] = token.name
        return None


class Metrics:
    """The Prometheus figures, in a registry of their own (several apps in one process, as
    the tests run them, do not collide)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("registry_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.seconds = Histogram("registry_http_request_duration_seconds",
                                 "Time to answer, by route", ["route"],
                                 buckets=(.0005, .001, .0025, .005, .01, .025, .05, .1, .25,
                                          .5, 1, 2.5, 5, 10), registry=self.registry)
        self._children: dict = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        found = self._children.get(key)
        if found is None:  # labels() looks its child up by name each time: kept instead
            found = self._children[key] = (self.requests.labels(method, route, str(status)),
                                           self.seconds.labels(route))
        found[0].inc()
        found[1].observe(seconds)

    def render(self, state: Served) -> bytes:
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if shared:  # several workers: the counts of all of them, from their shared files
            from prometheus_client import multiprocess

            everyone = CollectorRegistry()
            multiprocess.MultiProcessCollector(everyone, path=shared)
            lines = [generate_latest(everyone).decode()]
        else:
            lines = [generate_latest(self.registry).decode()]
        gauges = [("registry_view_ids", "IDs held in memory by this worker, by version",
                   [(f'{{version="{v.version.number}"}}', len(v.snapshot))
                    for v in state.held()]),
                  ("registry_refresh_age_seconds", "Seconds since the views were refreshed",
                   [("", round(time.monotonic() - state.refreshed_at, 3))]),
                  ("registry_view_reads_total", "Versions read whole by this worker",
                   [("", state.reloads)]),
                  ("registry_view_merges_total", "Views this worker grew by the IDs "
                   "assigned since", [("", state.merges)]),
                  ("registry_refresh_errors_total", "Refreshes of this worker that failed "
                   "(database away)", [("", state.refresh_errors)])]
        for name, doc, values in gauges:
            kind = "counter" if name.endswith("_total") else "gauge"
            lines.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
            lines += [f"{name}{labels} {value}\n" for labels, value in values]
        return "".join(lines).encode()


class Guard:
    """Plain ASGI middleware (no task per request, unlike BaseHTTPMiddleware): refuses a
    body over the limit with a JSON 413 (by its Content-Length, or while a chunked one
    arrives), and counts and times every answer by route and status."""

    def __init__(self, app, limit: int, metrics: Metrics):
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def sent(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            if length is not None:
                if not length.isdigit() or int(length) > self.limit:
                    return await _too_large(sent, self.limit)
            elif b"transfer-encoding" in headers:  # chunked: read it here, up to the limit
                body = await _read(receive, self.limit)
                if body is None:
                    return await _too_large(sent, self.limit)
                receive = _replay(body)
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            self.metrics.observe(scope["method"], route.path if route else "unmatched",
                                 status[0], time.perf_counter() - start)


async def _read(receive, limit: int) -> bytes | None:
    """A whole request body, or None once it passes ``limit`` bytes."""
    parts, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        part = message.get("body", b"")
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
        more = message.get("more_body", False)
    return b"".join(parts)


def _replay(body: bytes):
    sent = [False]

    async def receive():
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _too_large(send, limit: int) -> None:
    body = json.dumps({"error": "too_large", "detail": f"request body over {limit} bytes"},
                      separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def describe(app: FastAPI) -> None:
    """The OpenAPI description as the service answers: bearer tokens (so that the docs'
    Authorize button works), and the errors in their one shape instead of FastAPI's 422."""
    build = app.openapi
    error = {"description": "an error: `{\"error\": KIND, \"detail\": one line}`",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    statuses = {"400": "bad input", "401": "no token, or an unknown or revoked one",
                "403": "the token's scope is too small", "404": "no such version or item",
                "409": "not in this state", "413": "too large",
                "415": "not JSON"}

    def openapi():
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a token from `registry token create`"}}
            schemas = components.setdefault("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            schemas["Error"] = {"type": "object", "required": ["error", "detail"],
                                "properties": {"error": {"type": "string"},
                                               "detail": {"type": "string"}}}
            for path, operations in schema["paths"].items():
                if not (path.startswith("/v1/") or path == "/metrics"):
                    continue
                for operation in operations.values():
                    answers = operation.setdefault("responses", {})
                    answers.pop("422", None)
                    for status, why in statuses.items():
                        answers.setdefault(status, {**error, "description": why})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
