"""``registry serve``: the registry as an HTTP service (FastAPI on uvicorn).

FastAPI for the OpenAPI description and interactive docs it derives from the same
declarations that check each request; the hot routes build their answers directly on
Starlette, which FastAPI runs on. Reads answer from :mod:`registry.serving`'s in-memory
views; writes go through the library (:mod:`registry.intake`, :mod:`registry.lifecycle`)
in a worker thread. Every answer names the version that gave it; every error is
``{"error": KIND, "detail": ...}`` with a 4xx status (5xx only for a database that is away).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any

import numpy as np
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from . import defaults
from .api import Registry
from .catalog import KEEP
from .errors import InputError
from .http_layer import (
    ACTOR,
    ApiError,
    Bearer,
    Guard,
    Metrics,
    describe,
    error_response,
    install_handlers,
    json_response,
    short,
)
from .ids import parse_id
from .intake import Intake
from .serving import Served
from .snapshot import MAX_NEAREST
from .version import __version__


@dataclass(frozen=True)
class Limits:
    """The most one request may carry (``registry serve`` options)."""

    body: int = defaults.SERVE_MAX_BODY
    ids: int = defaults.SERVE_MAX_IDS
    items: int = defaults.SERVE_MAX_ITEMS
    page: int = defaults.SERVE_MAX_PAGE


OPTIONS = "REGISTRY_SERVE"  # the environment variable the options travel in
VERSION_PARAMETER = {"name": "version", "in": "query", "required": False,
                     "description": "number, name or alias; default: the active version",
                     "schema": {"type": "string"}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ResolveRequest(_Strict):
    """Model output to resolve, in one batch."""

    ids: list[str] = Field(description="IDs, their token form, or prefixes of either")
    version: str | int | None = Field(None, description="number, name or alias; default: "
                                      "the active version")
    nearest: int = Field(0, ge=0, le=MAX_NEAREST, description="for an unknown whole ID, "
                         "this many issued IDs closest to it")
    metadata: bool = Field(False, description="add the found items' metadata")


class NewItem(_Strict):
    """One item: its key, and a text to embed or a vector; metadata left out keeps what the
    item has (null clears it)."""

    key: str
    text: str | None = None
    vector: list[float] | None = Field(None, description="finite numbers, the catalog's "
                                       "dimension")
    metadata: dict[str, Any] | None = None


class ItemsRequest(_Strict):
    """Items to add or update and give IDs at once."""

    items: list[NewItem]
    version: str | int | None = Field(None, description="the frozen version to give IDs "
                                      "in; default: the active version")
    vector_model: str | None = Field(None, description="the model the vectors come from, "
                                     "where the catalog's vectors name one")


class ChangeRequest(_Strict):
    """Why (kept in the history)."""

    reason: str | None = Field(None, max_length=1000)


class RollbackRequest(ChangeRequest):
    """Why, and where to (default: where the alias pointed before)."""

    to: str | int | None = Field(None, description="the version to go back to; default: "
                                 "the one the alias pointed at before")


# the paths anyone may ask for: health, and the API's description
PUBLIC = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect",
                    "/redoc"})


def scope_needed(method: str, path: str) -> str | None:
    """The token scope a request needs (None: none), checked before anything else: denied
    by default, so that a path the list does not know needs the most (the middleware refuses
    control characters first, which the routes' patterns would let through)."""
    if path in PUBLIC:
        return None
    if method == "POST":
        return {"/v1/resolve": "read", "/v1/items": "write"}.get(path, "admin")
    return "read"


# -- the application ---------------------------------------------------------------------

def create_app(url: str | None = None, *, auth: bool = True, limits: Limits = Limits(),
               poll: float | None = None) -> FastAPI:
    """The service over the registry at ``url``. ``auth`` False answers without tokens
    (``registry serve --no-tokens``, loopback only); ``poll``: seconds between looks at the
    database (:data:`registry.serving.POLL`)."""
    reg = Registry(url)
    db = reg.database
    state = Served(db, auth=auth, **({} if poll is None else {"poll": poll}))
    intake = Intake(db.tx)
    metrics = Metrics()

    app = FastAPI(title="registry", version=__version__,
                  description="Semantic IDs: resolve model output, look items up, register "
                  "new items, move the active version. Every route under /v1 and /metrics "
                  "needs `Authorization: Bearer <token>` (`registry token create`).",
                  lifespan=_lifespan(state))
    app.state.served = state
    secured = {"openapi_extra": {"security": [{"bearer": []}]}}

    @app.get("/healthz", tags=["health"])
    @app.head("/healthz", include_in_schema=False)  # what some load balancers check with
    async def healthz() -> Response:
        """The process answers (no token needed)."""
        return json_response({"status": "ok"})

    @app.get("/readyz", tags=["health"])
    @app.head("/readyz", include_in_schema=False)  # what some load balancers check with
    async def readyz() -> Response:
        """The database answered the last refresh (no token needed); 503 otherwise."""
        if not state.ready:
            return error_response(503, "not_ready", "the database has not answered lately")
        return json_response({"status": "ready"})

    @app.get("/metrics", tags=["health"], **secured)
    async def prometheus(request: Request) -> Response:
        """Prometheus text format: requests by route and status, latency, views held."""
        only(request)
        return Response(metrics.render(state), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/versions", tags=["read"], **secured)
    async def list_versions(request: Request) -> Response:
        """Every version with its state, aliases and parameters; ``version``: the active
        one."""
        only(request)
        rows = [s.to_dict() for s in await run_in_threadpool(reg.versions)]
        active = [r for r in rows if defaults.ALIAS in r["aliases"]]
        return json_response({"version": {"number": active[0]["version"],
                                          "name": active[0]["name"]} if active else None,
                              "versions": rows})

    # the query read by hand: a FastAPI Query parameter costs the hottest route about a
    # quarter of the framework's own time (BENCHMARKS.md, Design figures: the items route's
    # query)
    @app.get("/v1/items/{key:path}", tags=["read"], openapi_extra={
        **secured["openapi_extra"], "parameters": [VERSION_PARAMETER]})
    async def item(request: Request, key: str) -> Response:
        """The item's ID in the version, whether it is live or removed, its metadata."""
        only(request, "version")
        view = await _view(state, request.query_params.get("version"))
        found = view.item(key)
        if found is None:
            raise ApiError(404, "not_found", f"no ID for key {short(key)!r} in "
                           f"{view.version.label}")
        found["version"] = view.label
        return json_response(found)

    @app.post("/v1/resolve", tags=["read"], **secured)
    async def resolve(request: Request, body: ResolveRequest) -> Response:
        """One row per input, in order: found, removed, prefix (with ``count`` items under
        it), unknown or malformed; a bad row never fails the batch."""
        only(request)
        if len(body.ids) > limits.ids:
            raise ApiError(413, "too_large", f"{len(body.ids)} ids; at most {limits.ids} "
                           "per request")
        view = await _view(state, body.version)
        snap = view.snapshot  # once: the refresher may swap in a grown one meanwhile
        res = snap.resolve(body.ids)
        if body.nearest:
            books = await run_in_threadpool(view.codebooks, db)
            res.nearest = snap.nearest(res, body.nearest, books)
        rows = res.rows()
        if body.metadata:
            for row in rows:
                meta = None if row["key"] is None else view.meta.get(row["key"])
                row["metadata"] = None if row["key"] is None else (
                    json.loads(meta) if meta else {})
        return json_response({"version": view.label, "rows": rows})

    @app.get("/v1/prefixes/{prefix}", tags=["read"], **secured)
    async def prefix(request: Request, prefix: str,
                     version: Annotated[str | None, Query(description="number, name or "
                                                          "alias")] = None,
                     limit: Annotated[int, Query(ge=1)] = defaults.SERVE_PAGE,
                     after: Annotated[str | None, Query(description="the `next` cursor of "
                                                        "the page before")] = None
                     ) -> Response:
        """The items under a prefix (``12-4`` or ``<a_12><b_4>``) in ID order, a page at a
        time: ``next`` is the cursor of the page after, null on the last."""
        only(request, "version", "limit", "after")
        if limit > limits.page:
            raise ApiError(400, "input", f"limit: at most {limits.page}, got {limit}")
        view = await _view(state, version)
        snap = view.snapshot
        parsed = parse_id(prefix, snap.space)
        if parsed.is_full:
            raise ApiError(400, "input", f"{short(prefix)!r} is a whole ID, not a prefix: "
                           "POST it to /v1/resolve")
        lo, hi = snap.range(parsed.codes)
        start = lo
        if after is not None:
            cursor = parse_id(after, snap.space)
            if not cursor.is_full:
                raise ApiError(400, "input", f"after: {short(after)!r} is not a whole ID")
            packed = int(snap.space.pack(np.array([cursor.codes]))[0])
            start = max(lo, snap.first_after(packed, cursor.disambiguation))
        end = min(hi, start + limit)
        places = np.arange(start, end)
        ids = snap.ids(places) if end > start else []
        rows = [{"key": snap.keys[p], "id": i, "state": "removed" if snap.removed[p]
                 else "live"} for p, i in zip(places.tolist(), ids, strict=True)]
        return json_response({"version": view.label, "prefix": prefix, "count": hi - lo,
                              "items": rows, "next": ids[-1] if end < hi and ids else None})

    @app.post("/v1/items", tags=["write"], **secured)
    async def post_items(request: Request, body: ItemsRequest) -> Response:
        """Add or update items (texts to embed, or vectors) and give each an ID in the
        active version at once: per item, added / changed / restored / unchanged and its
        ID. The same request twice changes nothing the second time."""
        only(request)
        given = body.items
        if not given:
            raise ApiError(400, "input", "items: give at least one item")
        if len(given) > limits.items:
            raise ApiError(413, "too_large", f"{len(given)} items; at most {limits.items} "
                           "per request")
        keys, texts, vectors, metas = _split(given)
        if body.vector_model is not None and texts is not None:
            raise ApiError(400, "input", "vector_model: is for vectors; texts are embedded "
                           "with the server's model")
        done = await run_in_threadpool(intake.register, keys, texts=texts, vectors=vectors,
                                       metas=metas, version=_ref(body.version),
                                       vector_model=body.vector_model, source="items")
        await run_in_threadpool(state.refresh)  # this server reads its own writes at once
        return json_response({"version": _label(done.version), "items": done.rows(),
                              "full": done.full})

    @app.post("/v1/versions/{version}/activate", tags=["admin"], **secured)
    async def activate(request: Request, version: str,
                       body: Annotated[ChangeRequest | None, Body()] = None) -> Response:
        """Point the active alias at a frozen version, after giving the items registered
        since it was trained their IDs in it; the history names the token."""
        only(request)
        reason = body.reason if body else None
        change = await run_in_threadpool(partial(reg.activate, _ref(version), reason=reason,
                                                 actor=actor(request), assign_first=True))
        await run_in_threadpool(state.refresh)
        return json_response({"version": _label(change.version),
                              "change": change.to_dict()})

    @app.post("/v1/rollback", tags=["admin"], **secured)
    async def rollback(request: Request,
                       body: Annotated[RollbackRequest | None, Body()] = None) -> Response:
        """Point the active alias back at the version before (or ``to``); the items
        registered since get their IDs there first. The history names the token."""
        only(request)
        body = body or RollbackRequest()
        done = await run_in_threadpool(partial(reg.rollback, _ref(body.to),
                                               reason=body.reason, actor=actor(request)))
        await run_in_threadpool(state.refresh)
        return json_response({"version": _label(done.version), "rollback": done.to_dict()})

    install_handlers(app)
    # outermost last: the guard counts every answer, the bearer check's too
    app.add_middleware(Bearer, check=state.caller if auth else None, need=scope_needed)
    app.add_middleware(Guard, limit=limits.body, metrics=metrics)
    describe(app)
    return app


def only(request: Request, *query: str) -> None:
    """Refuse a query parameter other than ``query``: it would do nothing."""
    if request.scope["query_string"]:
        unknown = set(request.query_params) - set(query)
        if unknown:
            raise ApiError(400, "input", "unknown query parameter "
                           f"{short(sorted(unknown)[0])!r}" + (
                               f" (this takes {', '.join(query)})" if query else ""))


def actor(request: Request) -> str | None:
    """The name of the token the request came with (None without tokens)."""
    return request.scope.get(ACTOR)


def from_environment() -> FastAPI:
    """The app as ``registry serve`` configures it for uvicorn's worker processes (which
    import it by name): the options travel in REGISTRY_SERVE."""
    options = json.loads(os.environ.get(OPTIONS, "{}"))
    return create_app(options.get("url"), auth=options.get("auth", True),
                      limits=Limits(**options.get("limits", {})), poll=options.get("poll"))


def _lifespan(state: Served):
    @asynccontextmanager
    async def lifespan(app):
        from .allocator import give_back

        give_back()
        await run_in_threadpool(state.start)
        yield
        state.stop()
        state.db.close()

    return lifespan


async def _view(state: Served, ref: str | int | None):
    held = state.held_view(ref)
    if held is not None:
        return held
    return await run_in_threadpool(state.view, ref)


def _label(v) -> dict:
    return {"number": v.number, "name": v.name}


def _ref(value: str | int | None) -> str | int | None:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


def _split(given: list[NewItem]):
    """keys, texts, vectors and metadata of the posted items: all texts or all vectors."""
    with_text = [i for i, it in enumerate(given) if it.text is not None]
    with_vector = [i for i, it in enumerate(given) if it.vector is not None]
    for i, it in enumerate(given):
        if (it.text is None) == (it.vector is None):
            raise ApiError(400, "input", f"items row {i + 1}: give `text` or `vector`, one "
                           "of them")
    if with_text and with_vector:
        raise ApiError(400, "input", f"items row {with_text[0] + 1} has a text and row "
                       f"{with_vector[0] + 1} a vector: post texts and vectors apart")
    keys = [it.key for it in given]
    metas = [it.metadata if "metadata" in it.model_fields_set else KEEP for it in given]
    if with_text:
        return keys, [it.text for it in given], None, metas
    lengths = {len(it.vector) for it in given}
    if len(lengths) != 1:
        raise ApiError(400, "input", "items: every vector needs the same length")
    with np.errstate(over="ignore"):
        vectors = np.asarray([it.vector for it in given], dtype=np.float32)
    if not np.isfinite(vectors).all():
        row = int(np.flatnonzero(~np.isfinite(vectors).all(axis=1))[0])
        raise ApiError(400, "input", f"items row {row + 1} vector: numbers must be finite "
                       "and within float32's range")
    return keys, None, vectors, metas


def run(url: str | None, *, host: str = defaults.SERVE_HOST, port: int = defaults.SERVE_PORT,
        workers: int = defaults.SERVE_WORKERS, auth: bool = True, limits: Limits = Limits(),
        poll: float | None = None) -> None:
    """Serve until interrupted, under uvicorn; ``workers`` processes share the port, each
    with its own views. Without tokens (``auth`` False) only on a loopback address."""
    import uvicorn

    check_options(host, port, workers, auth, limits, poll)
    options = {"url": url, "auth": auth, "poll": poll,
               "limits": {"body": limits.body, "ids": limits.ids, "items": limits.items,
                          "page": limits.page}}
    saved = {k: os.environ.get(k) for k in (OPTIONS, "PROMETHEUS_MULTIPROC_DIR")}
    try:
        os.environ[OPTIONS] = json.dumps(options)  # how uvicorn's workers get them
        with tempfile.TemporaryDirectory(prefix="registry-metrics-") as shared:
            if workers > 1:  # each worker counts into files here; /metrics adds them up
                os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
            uvicorn.run("registry.service:from_environment", factory=True, host=host,
                        port=port, workers=workers, log_level="info", access_log=False,
                        timeout_graceful_shutdown=10)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_options(host: str, port: int, workers: int, auth: bool, limits: Limits,
                  poll: float | None) -> None:
    """Refuse what would not work, or would open the registry to the network."""
    import ipaddress

    if not auth:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise InputError(f"serving without tokens is for a loopback address (127.0.0.1, "
                             f"::1, localhost) only, not {host}: create a token with "
                             "`registry token create NAME` and serve with tokens",
                             param="auth")
    for param, value, low, high in (("port", port, 1, 65535), ("workers", workers, 1, 64),
                                    ("max_body", limits.body, 1024, 1 << 30),
                                    ("max_ids", limits.ids, 1, 1_000_000),
                                    ("max_items", limits.items, 1, 100_000),
                                    ("max_page", limits.page, 1, 1_000_000)):
        if not low <= value <= high:
            raise InputError(f"must be between {low} and {high}, got {value}", param=param)
    if poll is not None and not 0.05 <= poll <= 60:
        raise InputError(f"must be between 0.05 and 60 seconds, got {poll}", param="poll")
