"""An option that would do nothing is refused with one line, and changes nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from .conftest import dump, make_keys, make_vectors


@pytest.fixture
def files(tmp_path):
    np.save(tmp_path / "m.npy", make_vectors(30))
    (tmp_path / "k.txt").write_text("\n".join(make_keys(30)) + "\n")
    rows = [{"key": f"t{i}", "title": f"package {i}"} for i in range(3)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


NPY = ["add", "{d}/m.npy", "--keys", "{d}/k.txt"]
DOING_NOTHING = [
    ([*NPY, "--text", "foo"], "--text: is for JSONL, CSV and Parquet files"),
    ([*NPY, "--key", "id"], "--key: is for JSONL, CSV and Parquet files"),
    ([*NPY, "--vector", "v"], "--vector: is for JSONL, CSV and Parquet files"),
    ([*NPY, "--model", "all-MiniLM-L6-v2"], "--model: is for texts to embed"),
    ([*NPY, "--device", "cpu"], "--device: is for texts to embed"),
    ([*NPY, "--batch-size", "8"], "--batch-size: is for texts to embed"),
    ([*NPY, "--backend", "onnx"], "--backend: is for texts to embed"),
    (["add", "{d}/t.jsonl", "--text", "title", "--vector-model", "x"],
     "--vector-model: is for vectors"),
    (["train", "--stickiness", "2"], "--stickiness: applies to a retrain from another version "
                                     "(--from)"),
    (["remove", "item00001", "--key", "id"], "--key: names the key column of --file"),
]


@pytest.mark.parametrize("args, message", DOING_NOTHING)
def test_options_that_would_do_nothing_are_refused(trained, run, files, migrated_url, args,
                                                   message):
    before = dump(migrated_url)
    result = run(*[a.format(d=files) for a in args])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert dump(migrated_url) == before
