"""``registry add`` of texts against ``SentenceTransformer.encode`` on the same texts.

Texts: "{key}: {title}" of real Debian packages (../shared/data when present, else the sample
that ships with the package). In each round, one after the other: the bare
``SentenceTransformer.encode`` (bundled all-MiniLM-L6-v2, same batch size), then
``Registry.add_file`` into a fresh database on each engine (read and validate the file, hash,
embed, write), then the same ``add_file`` again (nothing changed: nothing is embedded).
Targets (issue 3): add at least 0.9x the direct throughput; re-adding the unchanged file at
most 5% of the first add's time.

    python bench/bench_embed.py            # 3000 texts, 2 rounds, SQLite and PostgreSQL
    python bench/bench_embed.py --quick    # 600 texts, 1 round
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, database, machine, record, table

from registry import Registry
from registry.data import DEBIAN_SAMPLE
from registry.embed import resolve_model

SHARED = ROOT.parent / "shared" / "data" / "debian_catalog.jsonl.gz"
TARGET_THROUGHPUT, TARGET_READD = 0.9, 0.05


def packages(n: int) -> tuple[list[dict], str]:
    source = SHARED if SHARED.exists() else DEBIAN_SAMPLE
    with gzip.open(source.open("rb") if source is DEBIAN_SAMPLE else source, "rt") as f:
        rows = [json.loads(line) for line in f]
    # every k-th package: a spread over the whole alphabet and every section
    step = max(1, len(rows) // n)
    return [{"key": r["key"], "section": r["section"], "title": r["title"]}
            for r in rows[::step][:n]], str(source.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="600 texts, one round")
    ap.add_argument("--items", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--databases", default="sqlite,postgresql")
    ap.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = ap.parse_args()
    n = args.items or (600 if args.quick else 3000)
    rounds = args.rounds or (1 if args.quick else 2)
    rows, source = packages(n)
    texts = [f"{r['key']}: {r['title']}" for r in rows]
    kinds = args.databases.split(",")

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_model(None).path, device="cpu")
    model.encode(texts[:64], batch_size=args.batch_size)  # warm up
    times: dict[str, list[float]] = {"direct": [], **{k: [] for k in kinds},
                                     **{f"{k} again": [] for k in kinds}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "packages.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for _ in range(rounds):
            start = time.perf_counter()
            model.encode(texts, batch_size=args.batch_size)
            times["direct"].append(time.perf_counter() - start)
            for kind in kinds:
                with ExitStack() as stack:
                    url = stack.enter_context(database(kind, Path(tmp)))
                    reg = stack.enter_context(Registry(url))
                    reg.init()
                    for label in (kind, f"{kind} again"):
                        start = time.perf_counter()
                        r = reg.add_file(path, text="{key}: {title}",
                                         batch_size=args.batch_size)
                        times[label].append(time.perf_counter() - start)
                        assert r.embedded == (n if label == kind else 0), r
        # the command line in a fresh process, imports included
        with database("sqlite", Path(tmp)) as url:
            cli = [sys.executable, "-m", "registry.cli", "--db", url]
            subprocess.run([*cli, "init"], check=True, capture_output=True)
            start = time.perf_counter()
            subprocess.run([*cli, "add", str(path), "--text", "{key}: {title}",
                            "--batch-size", str(args.batch_size)], check=True,
                           capture_output=True)
            cli_first = time.perf_counter() - start
            start = time.perf_counter()
            subprocess.run([*cli, "add", str(path), "--text", "{key}: {title}"], check=True,
                           capture_output=True)
            cli_again = time.perf_counter() - start

    direct = statistics.median(times["direct"])
    rows_out = [["SentenceTransformer.encode (bare)", f"{direct:.2f}", f"{n / direct:.0f}",
                 "1.00", "-"]]
    for kind in kinds:
        first = statistics.median(times[kind])
        again = statistics.median(times[f"{kind} again"])
        ratio = direct / first
        rows_out.append([f"registry add, {kind}", f"{first:.2f}", f"{n / first:.0f}",
                         f"{ratio:.2f}", "yes" if ratio >= TARGET_THROUGHPUT else "NO"])
        share = again / first
        rows_out.append([f"registry add again (unchanged), {kind}", f"{again:.3f}", "-",
                         f"{share:.1%} of first add",
                         "yes" if share <= TARGET_READD else "NO"])
    rows_out.append(["`registry add` command, fresh process (imports included), sqlite",
                     f"{cli_first:.2f}", f"{n / cli_first:.0f}", f"{direct / cli_first:.2f}",
                     "(not a target)"])
    rows_out.append(["`registry add` command again (unchanged), fresh process, sqlite",
                     f"{cli_again:.2f}", "-", f"{cli_again / cli_first:.1%} of first add",
                     "(not a target)"])
    for kind in ("direct", *kinds):
        print(kind, [round(t, 2) for t in times[kind]])
    body = (f"{n} texts (\"{{key}}: {{title}}\" of Debian packages from {source}), "
            f"all-MiniLM-L6-v2 on the CPU, batch size {args.batch_size}, median of {rounds} "
            f"round(s); {machine()}. Command: `python bench/bench_embed.py"
            f"{' --quick' if args.quick else ''}`.\n"
            "Each round runs the bare encode, then `Registry.add_file` into a fresh database "
            "(read and validate the file, hash, embed, write in batches) and the same add "
            "again, in one process. Targets: throughput ratio >= "
            f"{TARGET_THROUGHPUT}; re-adding the unchanged file <= {TARGET_READD:.0%} of the "
            "first add. The fresh-process rows add Python, torch and model start-up.\n\n"
            + table(["run", "seconds", "texts/s", "ratio", "within target"], rows_out))
    print(body)
    if not args.no_write and not args.quick:
        record("add texts vs SentenceTransformer.encode (issue 3)", body)


if __name__ == "__main__":
    main()
