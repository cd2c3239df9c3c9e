"""Make the sample catalog that ships with the package (registry/data/debian-sample.jsonl.gz).

Reads the full Debian 12 catalog (../shared/data/debian_catalog.jsonl.gz: 63,666 binary
packages of bookworm main, amd64, with their section and short description) and keeps a
seeded random sample: 3,000 packages as the catalog and 500 more as "newer" items, marked
in a `batch` column. Run once; the output is committed.

    python tools/make_debian_sample.py ../shared/data/debian_catalog.jsonl.gz
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "registry" / "data" / "debian-sample.jsonl.gz"


def main(source: str, catalog: int = 3000, newer: int = 500, seed: int = 12) -> None:
    with gzip.open(source, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    picked = random.Random(seed).sample(range(len(rows)), catalog + newer)
    with gzip.open(OUT, "wt", encoding="utf-8", compresslevel=9) as out:
        for n, i in enumerate(picked):
            r = rows[i]
            batch = "catalog" if n < catalog else "newer"
            out.write(json.dumps({"key": r["key"], "section": r["section"],
                                  "title": r["title"], "batch": batch}) + "\n")
    print(f"wrote {catalog} + {newer} packages to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
