"""The whole flow on a real catalog, in a scratch SQLite file: what ``registry demo`` runs.

The catalog is the sample of Debian packages that ships with the package: names and short
descriptions, embedded with the bundled all-MiniLM-L6-v2 model, with each package's section
kept as metadata. The section is not used for the IDs, so it shows what they mean: packages
under one level-1 code mostly share a section.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .api import Registry
from .catalog import Progress
from .data import DEBIAN_SAMPLE
from .errors import InputError
from .quality import prefix_purity

TEXT = "{key}: {title}"
SIZES = [32, 16, 16]


@dataclass
class Meaning:
    """What one level-1 code stands for: its size, its main sections and a few items."""

    code: int
    items: int
    sections: list[tuple[str, int]]
    examples: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DemoReport:
    """What the demo did: its folder and database, each step (name, the command it stands
    for, its result), and what the largest level-1 codes mean."""

    workdir: str
    database: str
    steps: list[tuple[str, str, object]] = field(default_factory=list)
    meanings: list[Meaning] = field(default_factory=list)
    purity: float = 0.0

    def to_dict(self) -> dict:
        return {"workdir": self.workdir, "database": self.database,
                "steps": [{"step": name, "command": cmd,
                           "result": r.to_dict() if hasattr(r, "to_dict")
                           else [x.to_dict() for x in r]} for name, cmd, r in self.steps],
                "meanings": [m.to_dict() for m in self.meanings],
                "level1_section_purity": self.purity}


def _write_sample(work: Path, items: int | None) -> tuple[dict[str, dict], Path, Path]:
    with gzip.open(DEBIAN_SAMPLE.open("rb"), "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    catalog = [r for r in rows if r["batch"] == "catalog"][:items]
    newer = [r for r in rows if r["batch"] == "newer"]
    paths = []
    for name, part in (("catalog.jsonl", catalog), ("newer.jsonl", newer)):
        path = work / name
        with open(path, "w", encoding="utf-8") as f:
            for r in part:
                f.write(json.dumps({k: r[k] for k in ("key", "section", "title")}) + "\n")
        paths.append(path)
    return {r["key"]: r for r in catalog + newer}, paths[0], paths[1]


def run(workdir: str | Path | None = None, *, items: int | None = None, seed: int = 0,
        progress: Progress | None = None) -> DemoReport:
    """Init, add the catalog, train, freeze, activate, add newer items, assign, get, look up
    a prefix, and say what the level-1 codes mean: on the first ``items`` packages of the
    sample (600 to all 3,000)."""
    if items is not None and not 600 <= items <= 3000:
        raise InputError(f"use between 600 and 3000 items, got {items}", param="items")
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="registry-demo-"))
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot make the demo folder: {e.strerror}", source=str(work)) from None
    db_path = work / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db_path}"
    report = DemoReport(str(work), url)
    packages, catalog, newer = _write_sample(work, items)

    with Registry(url) as reg:
        def step(name: str, args: str, result: object) -> None:
            report.steps.append((name, f"registry {name} {args}".strip(), result))

        step("init", "", reg.init())
        step("add", f"{catalog.name} --text '{TEXT}'",
             reg.add_file(catalog, text=TEXT, progress=progress))
        sizes = ",".join(map(str, SIZES))
        step("train", f"--codebook-size {sizes} --name first",
             reg.train(codebook_size=SIZES, seed=seed, name="first"))
        step("freeze", "first", reg.freeze("first", reason="demo"))
        step("activate", "first", reg.activate("first", reason="demo"))
        step("add", f"{newer.name} --text '{TEXT}'",
             reg.add_file(newer, text=TEXT, progress=progress))
        step("assign", "", reg.assign())
        some = [next(iter(packages)), next(k for k, r in packages.items()
                                           if r["batch"] == "newer")]
        step("get", " ".join(some), reg.get(some))
        records = reg.get(list(packages))
        top = str(records[0].codes[0])
        step("lookup", f"{top} --limit 5", reg.lookup(top, limit=5, count=True))
        step("versions", "", reg.versions())

        by_code: dict[int, Counter] = {}
        for r in records:
            by_code.setdefault(r.codes[0], Counter())[packages[r.key]["section"]] += 1
        report.purity = prefix_purity(np.array([r.codes for r in records]),
                                      np.array([packages[r.key]["section"] for r in records]))
        for code, sections in sorted(by_code.items(), key=lambda kv: -sum(kv[1].values()))[:5]:
            examples = [f"{r.key}: {packages[r.key]['title']}"
                        for r in reg.lookup(str(code), limit=3).records]
            report.meanings.append(Meaning(code, sum(sections.values()),
                                           sections.most_common(3), examples))
    return report
