"""registry serve: a real server process on a free port, a real HTTP client, both databases."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import numpy as np
import pytest

from registry import Registry

from .conftest import dump, make_keys, make_vectors

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``registry serve`` in a process of its own."""

    def __init__(self, url: str, *args: str, env: dict | None = None):
        self.url, self.args, self.env = url, args, env or {}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Server:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "registry.cli", "--db", self.url, "serve", "--port",
             str(self.port), "--poll", "0.2", *self.args],
            env={**os.environ, **self.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.proc.stdout.read().decode()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("server not ready within 60 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)


@contextmanager
def serving(url: str, *args: str, env: dict | None = None):
    server = Server(url, *args, env=env).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tokens(trained):
    """Secrets of a read, a write and an admin token."""
    reg, _ = trained
    return {scope: reg.create_token(f"{scope}-bot", scope)[1]
            for scope in ("read", "write", "admin")}


def wait_for(check, seconds: float = 2.0) -> float:
    """Seconds until ``check()`` holds; fails past ``seconds``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - start


def new_items(keys: list[str], seed: int = 7) -> list[dict]:
    vectors = make_vectors(len(keys), seed=seed)
    return [{"key": k, "vector": v.tolist(), "metadata": {"n": i}}
            for i, (k, v) in enumerate(zip(keys, vectors, strict=True))]


def test_every_endpoint(trained, tokens, migrated_url):
    reg, _ = trained
    expected = {r.key: r.id for r in reg.get(make_keys(600))}
    snap = reg.snapshot()
    with serving(migrated_url) as server, server.client(tokens["admin"]) as c:
        assert httpx.get(server.base + "/healthz").json() == {"status": "ok"}
        assert httpx.get(server.base + "/readyz").json() == {"status": "ready"}
        assert httpx.head(server.base + "/healthz").status_code == 200  # load balancers

        listed = c.get("/v1/versions").json()
        assert listed["version"] == {"number": 1, "name": "v1"}
        assert [x["version"] for x in listed["versions"]] == [1]

        got = c.get("/v1/items/item00042").json()
        assert got == {"key": "item00042", "id": expected["item00042"], "state": "live",
                       "metadata": None, "version": {"number": 1, "name": "v1"}}
        assert c.get("/v1/items/item00042", params={"version": "v1"}).json()["id"] == \
            expected["item00042"]

        ids = [expected[k] for k in make_keys(50)] + ["0", "9-9-9-9", "nonsense"]
        res = c.post("/v1/resolve", json={"ids": ids}).json()
        assert res["version"]["number"] == 1
        assert [r["status"] for r in res["rows"]] == ["found"] * 50 + \
            ["prefix", "malformed", "malformed"]
        assert [r["key"] for r in res["rows"][:50]] == make_keys(50)
        assert res["rows"][50]["count"] == snap.count([0])
        assert res["rows"] == [{**r} for r in snap.resolve(ids).rows()]

        # a prefix page by page, cursor to cursor: every ID under it once, in ID order
        lo, hi = snap.range([1])
        seen, after = [], None
        while True:
            page = c.get("/v1/prefixes/1", params={"limit": 7, **({"after": after}
                                                                  if after else {})}).json()
            assert page["count"] == hi - lo
            seen += page["items"]
            after = page["next"]
            if after is None:
                break
        assert [r["id"] for r in seen] == snap.ids(np.arange(lo, hi))
        assert [r["key"] for r in seen] == snap.keys[lo:hi]
        tokens_form = c.get("/v1/prefixes/<a_1>", params={"limit": 3}).json()
        assert tokens_form["items"] == seen[:3]

        # new items: added with IDs at once; the same request again changes nothing
        posted = new_items(["fresh-1", "fresh-2", "item00001"])
        posted[2]["vector"] = make_vectors(600)[1].tolist()  # item00001 as it is
        first = c.post("/v1/items", json={"items": posted})
        assert first.status_code == 200, first.text
        rows = first.json()["items"]
        assert [r["outcome"] for r in rows] == ["added", "added", "changed"]  # its metadata
        assert rows[2]["id"] == expected["item00001"]
        again = c.post("/v1/items", json={"items": posted}).json()["items"]
        assert [r["outcome"] for r in again] == ["unchanged"] * 3
        assert [r["id"] for r in again] == [r["id"] for r in rows]
        assert reg.get(["fresh-1"])[0].id == rows[0]["id"]
        assert c.get("/v1/items/fresh-2").json()["metadata"] == {"n": 1}  # read own write
        # metadata left out keeps what the item has; null clears it
        kept = {k: v for k, v in posted[1].items() if k != "metadata"}
        assert c.post("/v1/items", json={"items": [kept]}).json()["items"][0][
            "outcome"] == "unchanged"
        assert c.get("/v1/items/fresh-2").json()["metadata"] == {"n": 1}
        c.post("/v1/items", json={"items": [{**kept, "metadata": None}]})
        assert c.get("/v1/items/fresh-2").json()["metadata"] is None
        # any key comes back, slashes and all
        slash = c.post("/v1/items", json={"items": new_items(["a/b c"], seed=3)}).json()
        assert c.get("/v1/items/a%2Fb%20c").json()["id"] == slash["items"][0]["id"]

        metrics = c.get("/metrics").text
        assert 'registry_http_requests_total{method="POST",route="/v1/items",status="200"} ' \
               '5.0' in metrics
        assert 'registry_view_ids{version="1"} 603' in metrics
        schema = httpx.get(server.base + "/openapi.json").json()
        assert {"/v1/items/{key}", "/v1/resolve", "/v1/prefixes/{prefix}", "/v1/items",
                "/v1/rollback", "/v1/versions/{version}/activate"} <= set(schema["paths"])
        assert "bearer" in schema["components"]["securitySchemes"]
        answers = schema["paths"]["/v1/resolve"]["post"]["responses"]
        assert "422" not in answers and {"400", "401", "403", "413"} <= set(answers)
        assert "swagger" in httpx.get(server.base + "/docs").text.lower()

        # activate and roll back, each recorded with the token's name as the actor
        reg.train(codebook_size=[8, 4, 4], seed=5, name="v2", max_disambiguation=1000)
        reg.freeze("v2")
        late = c.post("/v1/items", json={"items": new_items(["late-1"], seed=8)}).json()
        assert late["version"]["number"] == 1
        moved = c.post("/v1/versions/v2/activate", json={"reason": "better"}).json()
        assert moved["version"]["number"] == 2 and moved["change"]["previous"] == 1
        assert c.get("/v1/items/fresh-1").json()["version"]["number"] == 2
        # registered after v2 was trained: given its ID there before the alias moved
        assert c.get("/v1/items/late-1").json()["id"] == reg.get(["late-1"], "v2")[0].id
        back = c.post("/v1/rollback", json={"reason": "worse"}).json()
        assert back["version"]["number"] == 1
        events = reg.history(limit=2)
        assert [(e.action, e.actor, e.reason) for e in events] == [
            ("rollback", "admin-bot", "worse"), ("activate", "admin-bot", "better")]
    assert reg.verify().ok


def test_tokens(trained, tokens, migrated_url):
    reg, _ = trained
    with serving(migrated_url) as server:
        base = server.base
        assert httpx.get(base + "/v1/items/item00001").status_code == 401
        wrong = httpx.get(base + "/v1/items/item00001", headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        basic = httpx.get(base + "/v1/items/item00001", headers={"Authorization": "Basic x"})
        assert basic.status_code == 401
        for path in ("/v1/versions", "/metrics", "/v1/nothing"):
            assert httpx.get(base + path).status_code == 401
        # the token before anything else: a bad body without one is 401, with too small
        # a scope 403
        assert httpx.post(base + "/v1/resolve", content=b"{bad").status_code == 401
        assert httpx.get(base + "/v1/prefixes/1?limit=abc").status_code == 401
        with server.client(tokens["read"]) as c:
            assert c.get("/v1/items/item00001").status_code == 200
            denied = c.post("/v1/items", json={"items": new_items(["r-1"])})
            assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
            assert c.post("/v1/items", content=b"{bad").status_code == 403
            assert c.post("/v1/rollback", json={}).status_code == 403
            # a decoded line break would end the routes' patterns: refused before the scope
            for method, path in (("POST", "/v1/rollback%0A"), ("POST", "/v1/items%0A"),
                                 ("POST", "/v1/versions/1/activate%0a"),
                                 ("POST", "/v1/anything"), ("GET", "/metrics%0A")):
                assert c.request(method, path, json={}).status_code in (400, 403), path
        assert httpx.get(base + "/metrics%0A").status_code == 400
        assert [e.action for e in reg.history()].count("activate") == 1  # the fixture's
        with server.client(tokens["write"]) as c:
            assert c.post("/v1/items", json={"items": new_items(["w-1"])}).status_code == 200
            assert c.post("/v1/versions/1/activate", json={}).status_code == 403
        with server.client(tokens["admin"]) as c:
            assert c.post("/v1/versions/1/activate", json={}).status_code == 200
            assert c.get("/v1/items/w-1").status_code == 200
        # revoked from the command line: refused within 2 seconds
        reg.revoke_token("read-bot")
        with server.client(tokens["read"]) as c:
            wait_for(lambda: c.get("/v1/items/item00001").status_code == 401)
        # a token made while it runs works within 2 seconds
        _, late = reg.create_token("late", "read")
        with server.client(late) as c:
            wait_for(lambda: c.get("/v1/items/item00001").status_code == 200)


def test_no_tokens_only_on_loopback(trained, migrated_url, run):
    refused = run("serve", "--no-tokens", "--host", "0.0.0.0")
    assert refused.exit_code == 1
    assert "loopback" in refused.output and "Traceback" not in refused.output
    with serving(migrated_url, "--no-tokens") as server:
        assert httpx.get(server.base + "/v1/items/item00001").status_code == 200


def test_alias_moved_by_the_cli_is_seen_within_2_seconds(trained, tokens, migrated_url, run):
    reg, _ = trained
    reg.train(codebook_size=[4, 4, 4], seed=9, name="v2", max_disambiguation=1000)
    reg.freeze("v2")
    with serving(migrated_url) as server, server.client(tokens["read"]) as c:
        assert c.get("/v1/items/item00003").json()["version"]["number"] == 1
        assert run("activate", "v2").exit_code == 0
        took = wait_for(lambda: c.get("/v1/items/item00003").json()["version"]["number"] == 2)
        assert took < 2
        assert c.get("/v1/items/item00003").json()["id"] == reg.get(["item00003"], "v2")[0].id
        assert run("rollback").exit_code == 0
        wait_for(lambda: c.post("/v1/resolve", json={"ids": ["1"]}).json()["version"][
            "number"] == 1)
        # IDs assigned and items removed by another process show up too
        reg.add(["cli-new"], make_vectors(1, seed=11))
        reg.assign()
        wait_for(lambda: c.get("/v1/items/cli-new").status_code == 200)
        reg.remove(["item00004"])
        wait_for(lambda: c.get("/v1/items/item00004").json()["state"] == "removed")
        # one removed and another brought back within one poll: both seen
        reg.remove(["item00006"])
        reg.add(["item00004"], make_vectors(600)[4:5])
        wait_for(lambda: [c.get(f"/v1/items/item0000{i}").json()["state"] for i in (4, 6)]
                 == ["live", "removed"])
        reg.add(["item00005"], make_vectors(600)[5:6], metas=[{"edited": True}])
        wait_for(lambda: c.get("/v1/items/item00005").json()["metadata"] == {"edited": True})


def test_instances_see_each_other(trained, tokens, migrated_url):
    """Two instances on one database, one with two workers: an activate made through one is
    seen by the other within 2 s; /metrics counts the requests of every worker."""
    reg, _ = trained
    reg.train(codebook_size=[4, 4, 4], seed=9, name="v2", max_disambiguation=1000)
    reg.freeze("v2")
    with serving(migrated_url, "--workers", "2") as a, serving(migrated_url) as b, \
            a.client(tokens["admin"]) as ca, b.client(tokens["read"]) as cb:
        assert cb.get("/v1/items/item00003").json()["version"]["number"] == 1
        assert ca.post("/v1/versions/v2/activate", json={}).status_code == 200
        assert wait_for(lambda: cb.get("/v1/items/item00003").json()["version"][
            "number"] == 2) < 2
        for _ in range(20):
            assert ca.get("/v1/items/item00003").status_code == 200
        metrics = ca.get("/metrics").text
        line = ('registry_http_requests_total{method="GET",route="/v1/items/{key:path}",'
                'status="200"}')
        assert f"{line} 20.0" in metrics


def _nested(depth: int) -> bytes:
    return b'{"ids": ' + b"[" * depth + b"]" * depth + b"}"


def hostile(vector_dim: int) -> list[tuple[str, str, str, object, int]]:
    """(label, method, path, body (bytes, or JSON as a Python value), expected status)."""
    v = [0.5] * vector_dim
    return [
        ("malformed JSON", "POST", "/v1/resolve", b'{"ids": [', 400),
        ("a list for a body", "POST", "/v1/resolve", [], 400),
        ("ids a string", "POST", "/v1/resolve", {"ids": "1-2"}, 400),
        ("ids of numbers", "POST", "/v1/resolve", {"ids": [1, 2]}, 400),
        ("no ids", "POST", "/v1/resolve", {}, 400),
        ("unknown field", "POST", "/v1/resolve", {"ids": [], "bogus": 1}, 400),
        ("nearest negative", "POST", "/v1/resolve", {"ids": ["1"], "nearest": -1}, 400),
        ("nearest huge", "POST", "/v1/resolve", {"ids": ["1"], "nearest": 10**40}, 400),
        ("nearest 1e400", "POST", "/v1/resolve", b'{"ids": ["1"], "nearest": 1e400}', 400),
        ("unknown version", "POST", "/v1/resolve", {"ids": ["1"], "version": "nope"}, 404),
        ("huge version", "POST", "/v1/resolve", {"ids": ["1"], "version": 10**40}, 404),
        ("negative version", "POST", "/v1/resolve", {"ids": ["1"], "version": -1}, 404),
        ("a draft", "POST", "/v1/resolve", {"ids": ["1"], "version": "draft"}, 409),
        ("too many ids", "POST", "/v1/resolve", {"ids": ["1"] * 51}, 413),
        ("body too large", "POST", "/v1/resolve", {"ids": ["1-1-1-1" * 2000] * 10}, 413),
        ("nested 100,000 deep", "POST", "/v1/resolve", _nested(100_000), 413),
        ("nested 5,000 deep", "POST", "/v1/resolve", _nested(5_000), 400),
        ("text/plain body", "POST", "/v1/resolve", ("text/plain", b'{"ids": []}'), 415),
        ("not UTF-8", "POST", "/v1/resolve", b'{"ids": ["\xff\xfe"]}', 400),
        ("NUL in a key", "GET", "/v1/items/a%00b", None, 400),
        ("a line break ending the path", "GET", "/v1/items/item00001%0A", None, 400),
        ("unknown key", "GET", "/v1/items/no-such-key", None, 404),
        ("unknown query", "GET", "/v1/items/item00001?bogus=1", None, 400),
        ("query where none is taken", "POST", "/v1/resolve?nearest=3", {"ids": ["1"]}, 400),
        ("unknown prefix query", "GET", "/v1/prefixes/1?limt=3", None, 400),
        ("version unknown", "GET", "/v1/items/item00001?version=nope", None, 404),
        ("version a superscript digit", "GET", "/v1/items/item00001?version=%C2%B2", None,
         404),
        ("version an Arabic-Indic 1", "GET", "/v1/items/item00001?version=%D9%A1", None, 404),
        ("activate a superscript digit", "POST", "/v1/versions/%C2%B2/activate", {}, 404),
        ("resolve in a superscript", "POST", "/v1/resolve", {"ids": ["1"], "version": "²"},
         404),
        ("rollback to a superscript", "POST", "/v1/rollback", {"to": "²"}, 404),
        ("prefix malformed", "GET", "/v1/prefixes/zz", None, 400),
        ("prefix out of range", "GET", "/v1/prefixes/99-99", None, 400),
        ("a whole ID as prefix", "GET", "/v1/prefixes/1-1-1-0", None, 400),
        ("limit 0", "GET", "/v1/prefixes/1?limit=0", None, 400),
        ("limit huge", "GET", f"/v1/prefixes/1?limit={10**40}", None, 400),
        ("limit a word", "GET", "/v1/prefixes/1?limit=abc", None, 400),
        ("cursor garbage", "GET", "/v1/prefixes/1?after=%00%00", None, 400),
        ("no items", "POST", "/v1/items", {"items": []}, 400),
        ("too many items", "POST", "/v1/items",
         {"items": [{"key": f"k{i}", "vector": [0.0]} for i in range(21)]}, 413),
        ("item without key", "POST", "/v1/items", {"items": [{"vector": v}]}, 400),
        ("empty key", "POST", "/v1/items", {"items": [{"key": "", "vector": v}]}, 400),
        ("NUL in new key", "POST", "/v1/items", {"items": [{"key": "a\x00", "vector": v}]},
         400),
        ("text and vector", "POST", "/v1/items",
         {"items": [{"key": "x", "vector": v, "text": "t"}]}, 400),
        ("neither", "POST", "/v1/items", {"items": [{"key": "x"}]}, 400),
        ("wrong dimension", "POST", "/v1/items", {"items": [{"key": "x", "vector": [1.0]}]},
         400),
        ("float32 overflow", "POST", "/v1/items",
         {"items": [{"key": "x", "vector": [1e39] * vector_dim}]}, 400),
        ("NaN", "POST", "/v1/items",
         b'{"items": [{"key": "x", "vector": [NaN' + b", 0.5" * (vector_dim - 1) + b"]}]}",
         400),
        ("metadata a list", "POST", "/v1/items",
         {"items": [{"key": "x", "vector": v, "metadata": [1]}]}, 400),
        ("duplicate keys", "POST", "/v1/items",
         {"items": [{"key": "x", "vector": v}, {"key": "x", "vector": v}]}, 400),
        ("vectors of another model", "POST", "/v1/items",
         {"items": [{"key": "x", "vector": v}], "vector_model": "all-MiniLM-L6-v2"}, 400),
        ("texts and vectors", "POST", "/v1/items",
         {"items": [{"key": "x", "vector": v}, {"key": "y", "text": "t"}]}, 400),
        ("activate unknown", "POST", "/v1/versions/999/activate", {}, 404),
        ("activate a draft", "POST", "/v1/versions/draft/activate", {}, 409),
        ("rollback to unknown", "POST", "/v1/rollback", {"to": "nope"}, 404),
        ("rollback reason huge", "POST", "/v1/rollback", {"reason": "x" * 5000}, 400),
        ("wrong method", "DELETE", "/v1/items/item00001", None, 405),
        ("unknown path", "GET", "/v2/nothing", None, 404),
    ]


def test_hostile_requests(trained, tokens, migrated_url):
    reg, _ = trained
    reg.train(codebook_size=[4, 4, 4], seed=2, name="draft")
    before = dump(migrated_url)
    table = hostile(16)
    assert len(table) >= 30
    with serving(migrated_url, "--max-ids", "50", "--max-items", "20", "--max-body",
                 "65536") as server, server.client(tokens["admin"]) as c:
        for label, method, path, body, status in table:
            headers, content = {}, None
            if isinstance(body, tuple):
                headers["Content-Type"], content = body
            elif isinstance(body, bytes):
                headers["Content-Type"], content = "application/json", body
            elif body is not None:
                headers["Content-Type"], content = "application/json", json.dumps(body)
            r = c.request(method, path, content=content, headers=headers)
            assert r.status_code == status, (label, r.status_code, r.text[:300])
            answer = r.json()
            assert set(answer) == {"error", "detail"}, (label, answer)
            assert "Traceback" not in r.text and "\n" not in answer["detail"], label
        # a chunked body over the limit, with no Content-Length
        r = c.post("/v1/resolve", content=iter([b'{"ids": ["', b"1" * 70_000, b'"]}']),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "too_large"
        assert c.get("/readyz").status_code == 200
    assert dump(migrated_url) == before


def test_concurrent_posters(trained, tokens, migrated_url):
    """8 clients posting overlapping new items at once: one ID per item, none lost."""
    reg, _ = trained
    pool = make_keys(160, prefix="con")
    items = {it["key"]: it for it in new_items(pool, seed=21)}
    rng = np.random.default_rng(0)
    plans = [[sorted(rng.choice(pool, 30, replace=False).tolist()) for _ in range(4)]
             for _ in range(8)]
    answers: list[dict] = []
    failures: list[str] = []
    with serving(migrated_url) as server:
        def poster(plan):
            with server.client(tokens["write"]) as c:
                for keys in plan:
                    r = c.post("/v1/items", json={"items": [items[k] for k in keys]})
                    if r.status_code != 200:
                        failures.append(r.text)
                    else:
                        answers.extend(r.json()["items"])

        threads = [threading.Thread(target=poster, args=(p,)) for p in plans]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    posted = {k for plan in plans for keys in plan for k in keys}
    final = {r.key: r.id for r in reg.get(sorted(posted))}
    assert set(final) == posted
    assert len(set(final.values())) == len(final)
    for a in answers:
        assert a["id"] == final[a["key"]]
    assert sum(a["outcome"] == "added" for a in answers) == len(posted)
    assert reg.verify().ok


def test_sigkill_in_the_middle_of_a_post(trained, tokens, migrated_url, tmp_path):
    reg, _ = trained
    answered: dict[str, str] = {}
    server = Server(migrated_url).start()
    try:
        stop = threading.Event()

        def poster():
            with server.client(tokens["write"]) as c:
                for n in range(1000):
                    keys = make_keys(20, start=n * 20, prefix="kill")
                    try:
                        r = c.post("/v1/items", json={"items": new_items(keys, seed=n)})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        answered.update((x["key"], x["id"]) for x in r.json()["items"])
                    if stop.is_set():
                        return

        t = threading.Thread(target=poster)
        t.start()
        wait_for(lambda: len(answered) >= 60, seconds=60)
        server.kill()
        stop.set()
        t.join()
    finally:
        server.kill()
    # killed between the IDs' writing and their commit
    marker = tmp_path / "paused"
    paused = Server(migrated_url, env={"REGISTRY_PAUSE_AT": "assign-written",
                                       "REGISTRY_PAUSE_MARKER": str(marker)}).start()
    stuck = new_items(make_keys(5, prefix="stuck"), seed=99)
    try:
        def post_stuck():
            with suppress(httpx.HTTPError), paused.client(tokens["write"]) as c:
                c.post("/v1/items", json={"items": stuck})

        t = threading.Thread(target=post_stuck)
        t.start()
        wait_for(lambda: marker.exists(), seconds=60)
        paused.kill()
        t.join()
    finally:
        paused.kill()
    assert reg.verify().ok
    got = {r.key: r.id for r in reg.get(sorted(answered))}
    assert got == answered  # every item answered 200 has the ID it was told
    with serving(migrated_url) as server, server.client(tokens["write"]) as c:
        retry = c.post("/v1/items", json={"items": stuck}).json()["items"]
        assert all(r["id"] is not None for r in retry)
    assert reg.verify().ok


def test_a_view_grows_as_a_fresh_one(trained):
    """IDs assigned since a view was read, merged in, give what a fresh read gives."""
    from registry.serving import Served

    reg, _ = trained
    served = Served(reg.database)
    served.refresh()
    view = served.view(None)
    reg.add(make_keys(300, prefix="grow"), make_vectors(300, seed=4),
            metas=[{"g": i} for i in range(300)])
    reg.assign()
    served.refresh()
    assert served.merges == 1 and served.reloads == 1
    grown, fresh = view.snapshot, reg.snapshot()
    assert grown.keys == fresh.keys
    assert np.array_equal(grown.codes, fresh.codes)
    assert np.array_equal(grown.disambiguation, fresh.disambiguation)
    assert view.item("grow00007") == {**view.item("grow00007"), "metadata": {"g": 7}}
    assert view.item("grow00007")["id"] == reg.get(["grow00007"])[0].id


def test_serve_without_the_database_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    Path(tmp_path / "none.db").touch()
    out = subprocess.run([sys.executable, "-m", "registry.cli", "--db", url, "serve"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "registry init" in out.stderr and "Traceback" not in out.stderr
    with Registry(url) as reg:
        reg.init()
