"""The whole flow on a generated catalog, in a scratch SQLite file: what ``registry demo`` runs.

The catalog is generated with known structure (topics, each with a few subtopics) so that the
demo can show what the IDs mean: items sharing a level-1 code share a topic.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .api import Registry

TOPICS = ["audio", "books", "cameras", "coffee", "cycling", "databases", "editors", "fonts",
          "games", "gardening", "hiking", "kernels", "knitting", "maps", "music", "networking",
          "painting", "printing", "recipes", "science", "security", "shells", "tea", "video"]


def synthetic_catalog(n: int, *, start: int = 0, dim: int = 64,
                      seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Keys ``topic/sub/item`` and vectors = topic centre + subtopic offset + noise.

    The centres depend only on the structure seed (0), so later batches (other ``seed``)
    come from the same topics.
    """
    structure = np.random.default_rng(0)
    centres = structure.standard_normal((len(TOPICS), dim))
    offsets = 0.3 * structure.standard_normal((len(TOPICS), 6, dim))
    rng = np.random.default_rng(1000 + seed)
    topic = rng.integers(0, len(TOPICS), n)
    sub = rng.integers(0, 6, n)
    x = centres[topic] + offsets[topic, sub] + 0.5 * rng.standard_normal((n, dim))
    keys = [f"{TOPICS[t]}/sub{s}/item{start + i:06d}" for i, (t, s) in enumerate(zip(topic, sub,
                                                                                       strict=True))]
    return keys, x.astype(np.float32)


@dataclass
class Meaning:
    """What one level-1 code stands for: its size, its topics and a few of its items."""

    code: int
    items: int
    topics: list[tuple[str, int]]
    examples: list[str]

    def to_dict(self) -> dict:
        return {"code": self.code, "items": self.items, "topics": self.topics,
                "examples": self.examples}


@dataclass
class DemoReport:
    workdir: str
    database: str
    steps: list[tuple[str, object]] = field(default_factory=list)
    meanings: list[Meaning] = field(default_factory=list)
    purity: float = 0.0

    def to_dict(self) -> dict:
        return {"workdir": self.workdir, "database": self.database,
                "steps": [{"step": name, "result": r.to_dict() if hasattr(r, "to_dict")
                           else [x.to_dict() for x in r]} for name, r in self.steps],
                "meanings": [m.to_dict() for m in self.meanings],
                "level1_topic_purity": self.purity}


def run(workdir: str | Path | None = None, *, items: int = 12_000, newer: int = 1_500,
        seed: int = 0) -> DemoReport:
    """Init, add, train, freeze, activate, add newer items, assign, get and look up."""
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="registry-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    db_path = work / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_path}"
    report = DemoReport(str(work), url)

    keys, vectors = synthetic_catalog(items, seed=seed)
    np.save(work / "catalog.npy", vectors)
    (work / "catalog-keys.txt").write_text("\n".join(keys) + "\n")
    new_keys, new_vectors = synthetic_catalog(newer, start=items, seed=seed + 1)
    with open(work / "newer.jsonl", "w") as f:
        for k, v in zip(new_keys, new_vectors, strict=True):
            f.write(json.dumps({"key": k, "vector": v.tolist(), "topic": k.split("/")[0]}) + "\n")

    with Registry(url) as reg:
        report.steps.append(("init", reg.init()))
        report.steps.append(("add", reg.add_file(work / "catalog.npy",
                                                 keys_file=work / "catalog-keys.txt")))
        trained = reg.train(codebook_size=[32, 32, 32], seed=seed, name="first")
        report.steps.append(("train", trained))
        report.steps.append(("freeze", reg.freeze("first", reason="demo")))
        report.steps.append(("activate", reg.activate("first", reason="demo")))
        report.steps.append(("add", reg.add_file(work / "newer.jsonl", vector="vector")))
        report.steps.append(("assign", reg.assign()))
        report.steps.append(("get", reg.get([keys[0], new_keys[0]])))
        records = reg.get(keys + new_keys)
        first_code = records[0].codes[0]
        report.steps.append(("lookup", reg.lookup(str(first_code), limit=5)))
        report.steps.append(("versions", reg.versions()))

        by_code: dict[int, Counter] = {}
        for r in records:
            by_code.setdefault(r.codes[0], Counter())[r.key.split("/")[0]] += 1
        report.purity = sum(c.most_common(1)[0][1] for c in by_code.values()) / len(records)
        for code, topics in sorted(by_code.items(), key=lambda kv: -sum(kv[1].values()))[:4]:
            examples = [r.key for r in reg.lookup(str(code), limit=3).records]
            report.meanings.append(Meaning(code, sum(topics.values()),
                                           topics.most_common(3), examples))
    return report
