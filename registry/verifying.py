"""``registry verify``: check every invariant of the store and report each violation with the
rows involved.

What is checked: the schema is at this registry's latest migration and its guard triggers are
in place; every codebook blob matches its sha256, dtype and shape, and each version has one
codebook per level of the sizes it was trained with; every ID's codes lie within its levels'
sizes; no ID is shared within a version and no item has two IDs in one; every ID belongs to an
existing item and version; each frozen or retired version still has the codebooks it was frozen
with and its IDs only grew since (its seal); aliases point at existing, frozen versions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from .errors import DatabaseError
from .store import checks, codebooks, db, seals, versions
from .store.db import Tx
from .store.schema import State

# rows shown per violation
SHOWN = 20


@dataclass
class Violation:
    """One broken invariant: which check, what is wrong, and (some of) the rows involved."""

    check: str
    message: str
    rows: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VerifyReport:
    """Every violation found, and what was looked at."""

    violations: list[Violation]
    versions: int
    ids: int
    checks: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {"ok": self.ok, "versions": self.versions, "ids": self.ids,
                "checks": self.checks, "violations": [v.to_dict() for v in self.violations]}


# "item count": PostgreSQL's only (migration 0012)
CHECKS = ("schema", "item count", "codebooks", "code ranges", "unique IDs",
          "one ID per item", "orphan IDs", "frozen versions", "aliases")


def verify(tx: Tx) -> VerifyReport:
    """Run every check in one read transaction (one consistent snapshot on PostgreSQL)."""
    out: list[Violation] = []
    with tx(write=False) as conn:
        rev = db.schema_revision(conn)
        try:
            db.check_schema(conn)
        except DatabaseError as e:
            # the other checks assume this schema: report and stop
            return VerifyReport([Violation("schema", str(e), [{"revision": rev}])], 0, 0,
                                ["schema"])
        missing = checks.missing_guards(conn)
        if missing:
            out.append(Violation("schema", f"{len(missing)} guard triggers are missing or "
                                 "disabled: frozen versions are not protected by the database, "
                                 "or the item count that assign relies on is not kept",
                                 [{"trigger": name} for name in missing]))
        if conn.dialect.name == "postgresql":
            kept, rows = checks.item_counts(conn)
            if kept != rows:
                out.append(Violation("item count", f"the item count kept for assign says "
                                     f"{kept}, the items table holds {rows}: assign could "
                                     "leave items without an ID; `registry init` counts them "
                                     "again", [{"kept": kept, "rows": rows}]))
        every = [v for v, _ in versions.all_versions(conn)]
        counts = checks.id_counts(conn)
        out += _codebooks(conn, every)
        for v in every:
            bad = checks.codes_out_of_range(conn, v.number, math.prod(v.space.sizes), SHOWN)
            if bad:
                out.append(Violation("code ranges", f"{v.label} has IDs whose codes are out "
                                     f"of range for sizes {list(v.space.sizes)}",
                                     [{"item": i, "code": c, "number": d} for i, c, d in bad]))
        shared = checks.shared_ids(conn, SHOWN)
        if shared:
            out.append(Violation("unique IDs", "IDs held by more than one item", [
                {"version": v, "code": c, "number": d, "items": n} for v, c, d, n in shared]))
        several = checks.items_with_several_ids(conn, SHOWN)
        if several:
            out.append(Violation("one ID per item", "items with more than one ID in a version",
                                 [{"version": v, "item": i, "ids": n} for v, i, n in several]))
        orphans = checks.orphan_ids(conn, SHOWN)
        if orphans:
            out.append(Violation("orphan IDs", "IDs of an item or version that does not exist",
                                 [{"version": v, "item": i, "code": c, "number": d}
                                  for v, i, c, d in orphans]))
        out += _seals(conn, every, counts)
        bad_aliases = checks.bad_aliases(conn)
        if bad_aliases:
            out.append(Violation("aliases", "aliases that point at a missing or unfrozen "
                                 "version", [{"alias": a, "version": n, "state": s}
                                             for a, n, s in bad_aliases]))
        ran = [c for c in CHECKS if c != "item count" or conn.dialect.name == "postgresql"]
    return VerifyReport(out, len(every), sum(counts.values()), ran)


def _codebooks(conn, every: list[versions.Version]) -> list[Violation]:
    out = []
    by_version: dict[int, list[tuple]] = {}
    for row in checks.codebook_rows(conn):
        by_version.setdefault(row[0], []).append(row)
    known = {v.number: v for v in every}
    for number, rows in sorted(by_version.items()):
        if number not in known:
            out.append(Violation("codebooks", f"codebooks of version {number}, which does not "
                                 "exist", [{"version": number, "level": r[1]} for r in rows]))
    for v in every:
        rows = by_version.get(v.number, [])
        sizes = v.space.sizes
        shape = [(r[1], r[2], r[3]) for r in rows]
        wanted = [(level, k, v.dim) for level, k in enumerate(sizes, start=1)]
        if shape != wanted:
            out.append(Violation("codebooks", f"{v.label} should have codebooks (level, k, "
                                 f"dim) {wanted}, has {shape}",
                                 [{"version": v.number, "level": r[1], "k": r[2], "dim": r[3]}
                                  for r in rows]))
        for r in rows:
            try:
                codebooks.load(*r)
            except DatabaseError as e:
                out.append(Violation("codebooks", str(e), [
                    {"version": r[0], "level": r[1], "k": r[2], "dim": r[3], "dtype": r[4],
                     "sha256": r[5]}]))
    return out


def _seals(conn, every: list[versions.Version], counts: dict[int, int]) -> list[Violation]:
    out = []
    sealed = seals.every(conn)
    for v in every:
        seal = sealed.get(v.number)
        if v.state == State.DRAFT:
            if seal is not None:
                out.append(Violation("frozen versions", f"{v.label} is a draft but was sealed "
                                     "when frozen: its state was changed back",
                                     [{"version": v.number, "state": v.state}]))
            continue
        if seal is None:
            out.append(Violation("frozen versions", f"{v.label} is {v.state} but has no seal "
                                 "of what it held when frozen", [{"version": v.number}]))
            continue
        now_sha = seals.codebooks_sha256(conn, v.number)
        if now_sha != seal.codebooks_sha256:
            out.append(Violation("frozen versions", f"{v.label}'s codebooks changed since it "
                                 "was frozen", [{"version": v.number, "now": now_sha,
                                                 "sealed": seal.codebooks_sha256}]))
        have = counts.get(v.number, 0)
        if have != seal.count:
            out.append(Violation("frozen versions", f"{v.label} holds {have} IDs; it held "
                                 f"{seal.frozen_count} when frozen and {seal.grown_count} were "
                                 f"assigned since", [{"version": v.number, "ids": have,
                                                      "expected": seal.count}]))
        elif seals.digest(*seals.id_rows(conn, v.number)) != seal.digest:
            out.append(Violation("frozen versions", f"{v.label}'s IDs were changed since it "
                                 "was frozen (same count, different rows)",
                                 [{"version": v.number, "ids": have}]))
    return out
