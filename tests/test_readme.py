"""The README's code runs as it stands: the generative-recommender walk-through."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from .conftest import make_keys, make_vectors

README = Path(__file__).resolve().parent.parent / "README.md"


def _section_code(title: str) -> str:
    text = README.read_text()
    section = text.split(f"## {title}\n", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_using_the_ids_in_a_generative_recommender(reg, tmp_path):
    pytest.importorskip("transformers")
    reg.add(make_keys(300), make_vectors(300))
    reg.train(codebook_size=[8, 4, 4], name="v")
    reg.freeze("v")
    reg.activate("v")
    code = _section_code("Using the IDs in a generative recommender")
    assert 'url = "sqlite:///registry.db"' in code
    code = code.replace('url = "sqlite:///registry.db"', f"url = {reg.url!r}")
    printed = io.StringIO()
    here = os.getcwd()
    os.chdir(tmp_path)  # the walk-through writes its files where it runs
    try:
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(here)
    lines = printed.getvalue().splitlines()
    assert len(lines) == 8
    assert all(line.split()[0] == "found" for line in lines), lines
    assert (tmp_path / "vocab.txt").exists() and (tmp_path / "ids.parquet").exists()
