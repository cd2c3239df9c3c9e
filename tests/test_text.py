"""Text items: embedded with the real bundled all-MiniLM-L6-v2, never twice for the same text,
updated, removed, re-embedded, stored as float32 or float16."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from registry import InputError
from registry.embed import DEFAULT_MODEL, resolve_model

from .conftest import drop_failing_trigger, dump, fail_inserts, make_vectors

PACKAGES = [
    {"key": k, "section": s, "title": t} for k, s, t in [
        ("python3-numpy", "python", "Fast array facility to the Python 3 language"),
        ("python3-scipy", "python", "scientific tools for Python 3"),
        ("vim", "editors", "Vi IMproved - enhanced vi editor"),
        ("nano", "editors", "small, friendly text editor inspired by Pico"),
        ("postgresql-15", "database", "The World's Most Advanced Open Source Relational DB"),
        ("redis-server", "database", "Persistent key-value database with network interface"),
        ("0ad", "games", "Real-time strategy game of ancient warfare"),
        ("supertuxkart", "games", "3D arcade racer with a variety of characters"),
    ]
]


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture
def catalog_file(tmp_path):
    path = tmp_path / "packages.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PACKAGES))
    return path


def test_paraphrases_are_closer_than_unrelated_texts(reg):
    reg.add(["a", "b", "c"], texts=["A small text editor for the terminal",
                                    "Lightweight console program for editing text files",
                                    "Real-time strategy game set in ancient times"])
    a, b, c = reg.embeddings(["a", "b", "c"])
    assert a.shape == (384,) and a.dtype == np.float32
    assert _cos(a, b) > _cos(a, c) + 0.2


def test_stored_embeddings_are_what_sentence_transformers_gives(reg):
    from sentence_transformers import SentenceTransformer

    texts = ["office productivity suite -- drawing", "3D racing game with ponies"]
    reg.add(["x", "y"], texts=texts)
    direct = SentenceTransformer(resolve_model(None).path, device="cpu").encode(texts)
    np.testing.assert_allclose(reg.embeddings(["x", "y"]), direct, atol=1e-5)


def test_template_text_metadata_and_no_second_embedding(reg, catalog_file, migrated_url):
    first = reg.add_file(catalog_file, text="{key}: {title}")
    assert (first.added, first.embedded, first.model, first.dim) == (8, 8, DEFAULT_MODEL, 384)
    eng = create_engine(migrated_url)
    with eng.connect() as conn:
        row = conn.execute(text("SELECT text, meta, embedding_model, embedding_dim, "
                                "embedding_dtype FROM items WHERE key = 'vim'")).one()
    eng.dispose()
    meta = json.loads(row.meta) if isinstance(row.meta, str) else row.meta
    assert row.text == "vim: Vi IMproved - enhanced vi editor"
    assert meta == {"section": "editors"}  # key and title are in the text already
    assert (row.embedding_model, row.embedding_dim, row.embedding_dtype) == \
        (DEFAULT_MODEL, 384, "float32")
    before = dump(migrated_url)
    again = reg.add_file(catalog_file, text="{key}: {title}")
    assert (again.unchanged, again.embedded) == (8, 0)
    assert dump(migrated_url) == before
    # the same rows with the text taken from one column are other texts: all re-embedded
    other = reg.add_file(catalog_file, text="title")
    assert (other.changed, other.embedded) == (8, 8)


def test_changed_text_is_re_embedded_and_marked_changed(trained_text):
    reg, path = trained_text
    old_id = reg.get(["vim"])[0].id
    old_vec = reg.embeddings(["vim"])[0]
    rows = [dict(p) for p in PACKAGES]
    rows[2]["title"] = "Vi IMproved - a programmer's text editor with syntax highlighting"
    path.write_text("".join(json.dumps(p) + "\n" for p in rows))
    r = reg.add_file(path, text="{key}: {title}")
    assert (r.changed, r.unchanged, r.embedded) == (1, 7, 1)
    assert not np.allclose(reg.embeddings(["vim"])[0], old_vec)
    assert reg.get(["vim"])[0].id == old_id  # an issued ID never changes
    changed = reg.items(changed_since=1)
    assert [x.key for x in changed.rows] == ["vim"]
    assert changed.counts["changed_since_version_1"] == 1


def test_removed_items_keep_their_ids_but_leave_new_versions(trained_text):
    reg, path = trained_text
    old = {r.key: r.id for r in reg.get(["vim", "nano"])}
    assert reg.remove(["vim", "nano"]).removed == 2
    assert reg.remove(["vim"]).already_removed == 1
    records = reg.get(["vim", "nano"])
    assert {r.key: r.id for r in records} == old and all(r.removed for r in records)
    assert reg.lookup(old["vim"]).records[0].removed
    counts = reg.items().counts
    assert (counts["live"], counts["removed"]) == (6, 2)
    assert [x.key for x in reg.items(status="removed").rows] == ["vim", "nano"]
    v2 = reg.train(codebook_size=[2, 2], name="two").version
    assert reg.versions()[-1].items == 6
    missing = reg.get(["vim"], v2.number)
    assert (missing.unassigned, missing.removed) == ([], ["vim"])
    assert missing.problem() == ("removed item without an ID in version 2: 'vim' (add it "
                                 "again to bring it back)")
    # adding them again brings them back, without embedding them again
    back = reg.add_file(path, text="{key}: {title}")
    assert (back.restored, back.embedded) == (2, 0)
    assert reg.items().counts["live"] == 8
    assert reg.assign("two").assigned == 2


def test_remove_unknown_keys_removes_nothing(trained_text, migrated_url):
    reg, _ = trained_text
    before = dump(migrated_url)
    with pytest.raises(Exception, match="unknown key: 'nope'"):
        reg.remove(["vim", "nope"])
    assert dump(migrated_url) == before


def test_float16_storage_halves_the_bytes(reg, migrated_url):
    texts = ["a text editor", "a racing game"]
    reg.add(["a", "b"], texts=texts, dtype="float16")
    eng = create_engine(migrated_url)
    with eng.connect() as conn:
        sizes = conn.execute(text("SELECT length(embedding), embedding_dtype FROM items")).all()
    eng.dispose()
    assert sorted(sizes) == [(768, "float16"), (768, "float16")]
    vec16 = reg.embeddings(["a"])[0]
    reg.add(["c"], texts=["a text editor"])
    np.testing.assert_allclose(vec16, reg.embeddings(["c"])[0], atol=2e-3)
    # training reads float16 and float32 items alike
    reg.add([f"k{i}" for i in range(30)], texts=[f"package number {i}" for i in range(30)],
            dtype="float16")
    assert reg.train(codebook_size=[4]).items == 33


def test_another_model_needs_reembed(reg, tmp_path, migrated_url):
    reg.add(["a", "b"], texts=["a text editor", "a racing game"])
    other = tmp_path / "my-model"
    shutil.copytree(resolve_model(None).path, other)
    before = dump(migrated_url)
    with pytest.raises(InputError, match="come from model all-MiniLM-L6-v2 .* add with "
                                         "`reembed`"):
        reg.add(["c"], texts=["a database"], model=str(other))
    with pytest.raises(InputError, match="come from model all-MiniLM-L6-v2 .* if these vectors "
                                         "come from all-MiniLM-L6-v2, say so with "
                                         "`vector_model` all-MiniLM-L6-v2"):
        reg.add(["d"], make_vectors(1, dim=384))
    assert dump(migrated_url) == before
    r = reg.add(["c"], texts=["a database"], model=str(other), reembed=True)
    assert (r.added, r.reembedded, r.embedded) == (1, 2, 3)
    assert {x.model for x in reg.items().rows} == {str(other.resolve())}
    # vectors cannot re-embed items they do not cover: the hint says what to do
    with pytest.raises(InputError, match="`reembed` with vectors needs one for every item, "
                                         "and 3 items are not in this file .* add their vectors"):
        reg.add(["v1"], make_vectors(1, dim=384), reembed=True)
    # ... and when they do, the registry moves to them
    keys = ["a", "b", "c"]
    moved = reg.add(keys, make_vectors(3, dim=384), reembed=True)
    assert (moved.changed, moved.embedded) == (3, 3)
    assert {x.model for x in reg.items().rows} == {None}


def test_vectors_from_the_model_of_the_texts_join_them(reg, run, tmp_path, migrated_url):
    """Precomputed vectors say which model made them: they then share the space of the
    items that model embedded here (checked against its dimension)."""
    reg.add(["vim", "nano"], texts=["vim: Vi IMproved", "nano: small editor"])
    stored = reg.embeddings(["vim"])
    before = dump(migrated_url)
    with pytest.raises(InputError, match="dimension 16, but all-MiniLM-L6-v2 gives vectors "
                                         "of dimension 384"):
        reg.add(["x"], make_vectors(1, dim=16), vector_model="all-MiniLM-L6-v2")
    with pytest.raises(InputError, match="vector_model: is for vectors"):
        reg.add(["x"], texts=["x"], vector_model="all-MiniLM-L6-v2")
    assert dump(migrated_url) == before
    r = reg.add(["emacs"], stored + 0.01, vector_model="sentence-transformers/all-MiniLM-L6-v2")
    assert r.added == 1 and r.model == "all-MiniLM-L6-v2"
    assert {x.model for x in reg.items().rows} == {"all-MiniLM-L6-v2"}
    assert reg.train(codebook_size=[2]).items == 3
    # the same from a .npy matrix on the command line
    np.save(tmp_path / "m.npy", stored + 0.02)
    (tmp_path / "k.txt").write_text("ed\n")
    done = run("add", str(tmp_path / "m.npy"), "--keys", str(tmp_path / "k.txt"),
               "--vector-model", "all-MiniLM-L6-v2", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["model"] == "all-MiniLM-L6-v2"
    np.save(tmp_path / "m2.npy", stored + 0.03)
    (tmp_path / "k2.txt").write_text("joe\n")
    text = run("add", str(tmp_path / "m2.npy"), "--keys", str(tmp_path / "k2.txt"),
               "--vector-model", "all-MiniLM-L6-v2").stdout
    assert "(all-MiniLM-L6-v2, dimension 384)" in text and "stored 1 vector in" in text
    assert "embedded" not in text  # no text was embedded
    # a model known by name only (an API's) is a space of its own
    with pytest.raises(InputError, match="not model text-embedding-3-small; .* add with "
                                         "`reembed` a file that holds a vector for every item"):
        reg.add(["y"], make_vectors(1, dim=384), vector_model="text-embedding-3-small")


@pytest.mark.parametrize("kwargs, message", [
    ({"model": "/no/such/model"}, "unknown model '/no/such/model'"),
    ({"device": "tpu"}, "device must be"),
    ({"batch_size": 0}, "batch size must be"),
    ({"dtype": "int8"}, "dtype must be"),
])
def test_bad_embedding_options(reg, kwargs, message):
    with pytest.raises(InputError, match=message):
        reg.add(["a"], texts=["a text"], **kwargs)


def test_bad_text_files(run, tmp_path, migrated_url, catalog_file):
    run("add", str(catalog_file), "--text", "{key}: {title}")
    before = dump(migrated_url)
    cases = [
        ([{"key": "a", "title": " "}], "title", "row 1: empty text"),
        ([{"key": "a", "title": "x"}, {"key": "b"}], "{key}: {title}", "row 2: no column 'title'"),
        ([{"key": "a", "title": "x" * 10_000_000}], "title",
         "row 1: text is 10000000 characters long; the limit is 100000"),
        ([{"key": "a", "title": {"x": 1}}], "title",
         "row 1: text in column 'title' is not a string"),
        ([{"key": "a", "title": "x"}, {"key": "a", "title": "y"}], "title",
         "row 2: duplicate key 'a' (first at row 1)"),
        ([{"id": "a", "title": "x"}], "title", "row 1: no column 'key'"),
        ([{"key": "a", "title": "x"}], "{title!r}", "fields must be plain column names"),
        ([{"key": "a", "title": "x"}], "{title", "bad template"),
        ([{"key": "a", "title": "x"}], "{}", "fields must be plain column names"),
    ]
    for rows, spec, message in cases:
        path = tmp_path / "bad.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        result = run("add", str(path), "--text", spec)
        assert result.exit_code == 1, (spec, result.output)
        assert len(result.output.strip().splitlines()) == 1, result.output
        assert message in result.output, (message, result.output)
    result = run("add", str(catalog_file), "--text", "title", "--model", "/nowhere")
    assert result.exit_code == 1 and "unknown model '/nowhere'" in result.output
    result = run("add", str(catalog_file), "--text", "title", "--vector", "v")
    assert result.exit_code == 1 and "either --text" in result.output
    assert dump(migrated_url) == before


def test_csv_and_parquet_text_files(reg, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_path = tmp_path / "p.csv"
    csv_path.write_text("key,title,section\n" + "".join(
        f'{p["key"]},"{p["title"]}",{p["section"]}\n' for p in PACKAGES[:4]))
    assert reg.add_file(csv_path, text="title").added == 4
    pq_path = tmp_path / "p.parquet"
    pq.write_table(pa.table({k: [p[k] for p in PACKAGES[4:]] for k in PACKAGES[0]}), pq_path)
    assert reg.add_file(pq_path, text="{key}: {title}").added == 4
    assert reg.items().counts["live"] == 8


def test_an_interrupted_add_resumes_without_embedding_again(reg, catalog_file, migrated_url):
    reg.add(["first"], texts=["the first item"])
    fail_inserts(migrated_url, "items", "NEW.key = 'supertuxkart'")
    with pytest.raises(Exception, match="boom"):
        reg.add_file(catalog_file, text="{key}: {title}", commit_every=3)
    # batches 1 and 2 (six packages) were committed; the third, with supertuxkart, was not
    assert reg.items().counts["live"] == 7
    drop_failing_trigger(migrated_url, "items")
    again = reg.add_file(catalog_file, text="{key}: {title}", commit_every=3)
    assert (again.unchanged, again.added, again.embedded) == (6, 2, 2)


def test_without_the_embed_extra_text_says_what_to_install(migrated_url, catalog_file):
    probe = ("import sys; sys.modules['sentence_transformers'] = None; "
             "from registry.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", probe, "--db", migrated_url, "add",
                           str(catalog_file), "--text", "title"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: --text: text embedding needs the embed extra: pip install -c constraints.txt "
        "torch==2.13.0 && pip install -c constraints.txt -e '.[embed]' in the registry checkout "
        "(or bring vectors with --vector)"]


def test_progress_bar_on_a_terminal_only(migrated_url, catalog_file):
    import os
    import pty

    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "registry.cli", "--db", migrated_url, "add",
                             str(catalog_file), "--text", "title"],
                            stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    out = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=120) == 0
    os.close(primary)
    shown = out.decode(errors="replace")
    assert "embedding" in shown and "items/s" in shown and "8 added" in shown
    quiet = subprocess.run([sys.executable, "-m", "registry.cli", "--db", migrated_url, "add",
                            str(catalog_file), "--text", "{key} {title}", "--json"],
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert json.loads(quiet.stdout)["changed"] == 8


@pytest.fixture
def trained_text(reg, catalog_file):
    """The eight packages as text, version 1 (2 x 2 codes) trained, frozen and active."""
    reg.add_file(catalog_file, text="{key}: {title}")
    reg.train(codebook_size=[2, 2], name="one")
    reg.freeze(1)
    reg.activate(1)
    return reg, catalog_file


def test_cuda_is_a_clear_error_where_there_is_none(reg):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(InputError, match="device cuda is not available here"):
        reg.add(["a"], texts=["a text"], device="cuda")


def test_remove_from_a_file_and_new_items_since_a_version(trained_text, run, tmp_path):
    (tmp_path / "gone.txt").write_text("vim\nnano\n")
    result = run("remove", "--file", str(tmp_path / "gone.txt"), "--json")
    assert json.loads(result.output) == {"removed": 2, "already_removed": 0}
    gz = tmp_path / "more.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"key": "emacs", "title": "GNU Emacs editor"}\n'))
    assert run("add", str(gz), "--text", "title").exit_code == 0
    new = json.loads(run("items", "--new-since", "1", "--json").output)
    assert [i["key"] for i in new["items"]] == ["emacs"]
    assert new["counts"] == {"live": 7, "removed": 2, "new_since_version_1": 1}
    shown = run("items", "--status", "removed").output
    assert "7 live, 2 removed" in shown and "vim" in shown and "removed" in shown
    result = run("remove", "--file", str(gz), "--json")
    assert json.loads(result.output)["removed"] == 1
    assert run("remove").output.startswith("Error: KEYS: give at least one key")
