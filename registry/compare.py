"""How far two versions, or a version and its newer items, have moved apart. Numpy only.

- churn at depth d: share of items present in both whose first d codes differ;
- label alignment: k-means labels are arbitrary, so a version not trained from the other is
  compared after matching its labels, level by level, to the other's by the optimal
  one-to-one matching of co-assigned items (Hungarian algorithm on the contingency table);
- drift of a code distribution: Jensen-Shannon divergence (base 2) of per-level code usage,
  judged against a noise floor: the divergence between a random subset of the reference
  population, as large as the compared one, and the rest of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .quality import collision_rate

# verdict thresholds: (watch above, retrain above)
JS_FLOOR_MULTIPLES = (2.0, 4.0)
ERROR_RATIOS = (1.10, 1.25)
MIN_NEW_ITEMS = 50


def churn(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Share of rows whose first d codes differ, for d = 1..L (rows paired by position)."""
    if a.shape[0] == 0:
        return [0.0] * a.shape[1]
    differs = np.cumsum(a != b, axis=1) > 0
    return [float(x) for x in differs.mean(axis=0)]


def align_level(a: np.ndarray, b: np.ndarray, ka: int, kb: int) -> np.ndarray:
    """A map from b's labels to a's (length kb) maximising the items both put together;
    b labels left without a partner map to -1."""
    from scipy.optimize import linear_sum_assignment

    table = np.zeros((ka, kb), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    mapping = np.full(kb, -1, dtype=np.int64)
    mapping[cols] = rows
    return mapping


def align(a: np.ndarray, b: np.ndarray, sizes_a: tuple[int, ...],
          sizes_b: tuple[int, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """b's codes relabelled, level by level, onto a's labels; and the per-level maps."""
    out = np.empty_like(b)
    maps = []
    for level in range(min(a.shape[1], b.shape[1])):
        m = align_level(a[:, level], b[:, level], sizes_a[level], sizes_b[level])
        out[:, level] = m[b[:, level]]
        maps.append(m)
    return out, maps


def centroid_movement(old: np.ndarray, new: np.ndarray,
                      mapping: np.ndarray | None = None) -> dict:
    """Mean and largest distance between matched centroids (same index, or ``mapping`` from
    new labels to old ones)."""
    if mapping is None:
        if old.shape != new.shape:
            return {"mean": None, "max": None}
        d = np.linalg.norm(old - new, axis=1)
    else:
        keep = mapping >= 0
        d = np.linalg.norm(old[mapping[keep]] - new[keep], axis=1)
    return {"mean": float(d.mean()) if d.size else None,
            "max": float(d.max()) if d.size else None}


def usage(codes: np.ndarray, k: int) -> np.ndarray:
    """Share of items on each of the k codes."""
    counts = np.bincount(codes, minlength=k).astype(np.float64)
    return counts / counts.sum() if counts.sum() else counts


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint)."""
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return max(0.0, (kl(p) + kl(q)) / 2)


def noise_floor(codes: np.ndarray, k: int, size: int, seed: int = 0, draws: int = 5) -> float:
    """Mean divergence between a random subset of ``size`` reference items and the rest:
    what sampling alone gives, with no drift at all."""
    n = codes.shape[0]
    size = max(1, min(size, n // 2))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        pick = np.zeros(n, dtype=bool)
        pick[rng.choice(n, size, replace=False)] = True
        out.append(js_divergence(usage(codes[pick], k), usage(codes[~pick], k)))
    return float(np.mean(out))


@dataclass
class Cluster:
    """A level-1 code whose share of items moved: from ``before`` to ``after``."""

    code: int
    before: float
    after: float
    # the keys of a few of its items (the caller names them), and their positions among
    # their population's rows
    examples: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"code": self.code, "share_before": self.before, "share_after": self.after,
                "examples": self.examples}


@dataclass
class Drift:
    """Drift of population B (new items) against population A (the reference)."""

    reference: int
    compared: int
    js: list[float]
    floor: list[float]
    error_ratio: float | None
    collision_before: float
    collision_after: float
    grew: list[Cluster]
    shrank: list[Cluster]
    usage_a: list[np.ndarray]
    usage_b: list[np.ndarray]
    verdict: str = "ok"
    reasons: list[str] = field(default_factory=list)

    def thresholds(self) -> dict:
        return {"js_vs_floor_watch": JS_FLOOR_MULTIPLES[0],
                "js_vs_floor_retrain": JS_FLOOR_MULTIPLES[1],
                "error_ratio_watch": ERROR_RATIOS[0], "error_ratio_retrain": ERROR_RATIOS[1],
                "min_new_items": MIN_NEW_ITEMS}

    def to_dict(self) -> dict:
        return {"reference_items": self.reference, "compared_items": self.compared,
                "js_divergence": self.js, "noise_floor": self.floor,
                "quantisation_error_ratio": self.error_ratio,
                "raw_collision_rate_before": self.collision_before,
                "raw_collision_rate_after": self.collision_after,
                "grew": [c.to_dict() for c in self.grew],
                "shrank": [c.to_dict() for c in self.shrank],
                "verdict": self.verdict, "reasons": self.reasons,
                "thresholds": self.thresholds()}


def drift(codes_a: np.ndarray, codes_b: np.ndarray, sizes: tuple[int, ...], *,
          error_a: np.ndarray | None = None, error_b: np.ndarray | None = None,
          also_in_a: np.ndarray | None = None, top: int = 5, seed: int = 0) -> Drift:
    """Compare B's code usage (and quantisation error) with A's and give a verdict.

    ``also_in_a`` (N_B booleans) marks the rows of B that are items of A too (a newer
    version's training items include the older one's): the raw collision rate after is that
    of A and B together, each item once.
    """
    js, floor, ua, ub = [], [], [], []
    for level, k in enumerate(sizes):
        pa, pb = usage(codes_a[:, level], k), usage(codes_b[:, level], k)
        ua.append(pa)
        ub.append(pb)
        js.append(js_divergence(pa, pb) if codes_b.shape[0] else 0.0)
        floor.append(noise_floor(codes_a[:, level], k, codes_b.shape[0], seed=seed + level))
    ratio = None
    if error_a is not None and error_b is not None and error_b.size and error_a.mean() > 0:
        ratio = float(error_b.mean() / error_a.mean())
    grow = ub[0] - ua[0]
    order = np.argsort(grow)

    def clusters(codes: np.ndarray, picks: np.ndarray) -> list[Cluster]:
        out = []
        for c in picks:
            members = np.flatnonzero(codes[:, 0] == c)[:3]
            out.append(Cluster(int(c), float(ua[0][c]), float(ub[0][c]),
                               rows=members.tolist()))
        return out

    grew = clusters(codes_b, [c for c in order[::-1][:top] if grow[c] > 0])
    shrank = clusters(codes_a, [c for c in order[:top] if grow[c] < 0])
    joined = codes_b if also_in_a is None else codes_b[~np.asarray(also_in_a, dtype=bool)]
    result = Drift(codes_a.shape[0], codes_b.shape[0], js, floor, ratio,
                   collision_rate(codes_a), collision_rate(np.vstack([codes_a, joined])),
                   grew, shrank, ua, ub)
    _judge(result)
    return result


def _judge(d: Drift) -> None:
    levels = {"ok": 0, "watch": 1, "retrain": 2}
    worst = 0
    for level, (js, floor) in enumerate(zip(d.js, d.floor, strict=True), start=1):
        multiple = js / floor if floor > 0 else (0.0 if js == 0 else float("inf"))
        if multiple > JS_FLOOR_MULTIPLES[1]:
            worst = max(worst, 2)
            d.reasons.append(f"level {level} code usage diverges {multiple:.1f}x the noise floor")
        elif multiple > JS_FLOOR_MULTIPLES[0]:
            worst = max(worst, 1)
            d.reasons.append(f"level {level} code usage diverges {multiple:.1f}x the noise floor")
    if d.error_ratio is not None:
        if d.error_ratio > ERROR_RATIOS[1]:
            worst = max(worst, 2)
            d.reasons.append(f"new items are quantised {d.error_ratio:.2f}x worse")
        elif d.error_ratio > ERROR_RATIOS[0]:
            worst = max(worst, 1)
            d.reasons.append(f"new items are quantised {d.error_ratio:.2f}x worse")
    if d.compared < MIN_NEW_ITEMS:
        d.reasons.append(f"only {d.compared} new items: too few to judge")
        worst = 0
    d.verdict = next(name for name, rank in levels.items() if rank == worst)
