"""The bare endpoints bench_serve.py compares `registry serve` with: the same framework and
server, constant JSON bodies, nothing looked up."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()
ITEM = (b'{"key":"item00000005","id":"12-200-31-0","state":"live","metadata":{"i":5},'
        b'"version":{"number":1,"name":"v"}}')
# the body the bare resolve answers: the registry's real answer, as bench_serve.py saved it
ANSWER = Path(os.environ["SERVE_BARE_ANSWER"]).read_bytes()


@app.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@app.get("/bare/items/{key}")
async def item(key: str) -> Response:
    return Response(ITEM, media_type="application/json")


@app.post("/bare/resolve")
async def resolve(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")
