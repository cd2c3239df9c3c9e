"""Embedding backends (issue 6): torch, ONNX Runtime and ONNX Runtime with int8 weights, on
real Debian package texts ("{key}: {title}"), against a bare ``SentenceTransformer.encode``.

For each backend: throughput (texts/s, the model already loaded and warm), its ratio to the
bare torch encode, the share of each text's 10 exact cosine neighbours (under the torch
vectors) that its own vectors keep, and the neighbourhood agreement at depth 1 and 2 of IDs
trained on its vectors (registry engine, 3 x 64), measured against the torch neighbours.

    python bench/bench_backends.py            # 10,000 texts
    python bench/bench_backends.py --quick    # 2,000 texts
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_embed import packages
from common import machine, record, table

from registry import engine, quality
from registry.embed import BACKENDS, Embedder, resolve_model

SIZES = (64, 64, 64)


def knn(x: np.ndarray, rows: np.ndarray, k: int = 10) -> np.ndarray:
    import faiss

    x = np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, found = index.search(x[rows], k + 1)
    return found[:, 1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    n = 2000 if args.quick else 10_000
    rows, source = packages(n)
    texts = [f"{r['key']}: {r['title']}" for r in rows]
    from sentence_transformers import SentenceTransformer

    bare = SentenceTransformer(resolve_model(None).path, device="cpu")
    bare.encode(texts[:64], batch_size=args.batch_size)
    start = time.perf_counter()
    reference = bare.encode(texts, batch_size=args.batch_size)
    bare_rate = len(texts) / (time.perf_counter() - start)
    sample = np.random.default_rng(0).choice(len(texts), 1000, replace=False)
    truth = knn(reference, sample)
    x_ref = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    out = [["bare SentenceTransformer.encode (torch)", f"{bare_rate:.0f}", "1.00", "-", "-",
            "-"]]
    for backend in BACKENDS:
        emb = Embedder(None, backend=backend, batch_size=args.batch_size)
        emb.encode(texts[:64])  # load (and on first use convert) the model, warm up
        start = time.perf_counter()
        vectors = emb.encode(texts)
        rate = len(texts) / (time.perf_counter() - start)
        kept = np.mean([len(set(a) & set(b)) / len(a)
                        for a, b in zip(truth, knn(vectors, sample), strict=True)])
        codes = engine.train(vectors, engine.TrainParams(SIZES, seed=0)).codes
        agree = quality.neighbourhood_agreement(x_ref, codes, sample=1000)
        out.append([f"registry Embedder, {backend} ({emb.label})", f"{rate:.0f}",
                    f"{rate / bare_rate:.2f}", f"{kept:.3f}", f"{agree[0]:.3f}",
                    f"{agree[1]:.3f}"])
        print(out[-1])
    body = (f"{len(texts):,} Debian package texts from {source}, batch size {args.batch_size},"
            f" CPU; {machine()}. Command: `python bench/bench_backends.py"
            f"{' --quick' if args.quick else ''}`. Throughput with the model loaded and warm; "
            "neighbours kept = share of each of 1,000 sampled texts' 10 exact cosine "
            "neighbours under the torch vectors that the backend's vectors keep; agreement = "
            "neighbourhood agreement (against the torch neighbours) of IDs trained on the "
            f"backend's vectors, {' x '.join(map(str, SIZES))}. Target (issue 6): the torch "
            "path at least 0.9x the bare encode.\n\n"
            + table(["run", "texts/s", "ratio to bare", "neighbours kept", "agreement d1",
                     "agreement d2"], out))
    print(body)
    if not args.no_write and not args.quick:
        record("Embedding backends: torch, ONNX, ONNX int8 (issue 6)", body)


if __name__ == "__main__":
    main()
