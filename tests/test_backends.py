"""Embedding backends: ONNX Runtime (float, and int8 weights) against torch, with the real
bundled model converted locally, once per test session."""

from __future__ import annotations

import json

import numpy as np
import pytest

from registry import InputError
from registry.embed import DEFAULT_MODEL, INT8_FILE, Embedder, onnx_dir, resolve_model

TEXTS = ["Vi IMproved - enhanced vi editor", "small, friendly text editor inspired by Pico",
         "Real-time strategy game of ancient warfare", "3D arcade racer with ponies"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One ONNX export for the module, in a private cache folder."""
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("cache")
    mp.setenv("REGISTRY_CACHE", str(folder))
    yield folder
    mp.undo()


def test_onnx_gives_the_torch_vectors_and_int8_a_close_space_of_its_own(cache):
    torch_v = Embedder(None).encode(TEXTS)
    onnx = Embedder(None, backend="onnx")
    np.testing.assert_allclose(onnx.encode(TEXTS), torch_v, atol=1e-5)
    assert onnx.label == DEFAULT_MODEL
    int8 = Embedder(None, backend="onnx-int8")
    got = int8.encode(TEXTS)
    assert int8.label == DEFAULT_MODEL + "+int8"
    cos = (got * torch_v).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(torch_v, axis=1)
    assert cos.min() > 0.95 and not np.allclose(got, torch_v, atol=1e-4)
    # converted once, into the cache folder, never next to the installed model
    folder = onnx_dir(resolve_model(None))
    assert folder.parent.parent == cache and (folder / INT8_FILE).is_file()
    assert not list(folder.parent.glob(".export-*"))


def test_backend_is_checked(cache):
    with pytest.raises(InputError, match="backend must be one of"):
        Embedder(None, backend="tensorrt")
    with pytest.raises(InputError, match="runs on the CPU"):
        Embedder(None, backend="onnx", device="cuda")


def test_add_with_int8_keeps_its_own_model_label(run, cache, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"key": f"k{i}", "title": t}) + "\n"
                            for i, t in enumerate(TEXTS)))
    r = run("add", str(path), "--text", "title", "--backend", "onnx-int8", "--json")
    assert r.exit_code == 0, r.output
    listed = run("items", "--json")
    assert {row["model"] for row in json.loads(listed.output)["items"]} == \
        {DEFAULT_MODEL + "+int8"}
