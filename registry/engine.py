"""Residual k-means with faiss: train codebooks, encode vectors into codes, decode codes.

Numpy in, numpy out; nothing here knows about the database. Inputs are converted once, at
the boundary, into a private contiguous float32 copy that is L2-normalized (cosine geometry),
so the caller's arrays are never modified.

Level 1 clusters the vectors; level i + 1 clusters what level i leaves over. In ``plain``
mode the residual is ``x - centroid`` (the standard; it can be decoded); in ``normalized``
mode each residual is rescaled to unit length before the next level, as the seed tutorial
does, which spreads the deeper levels more evenly but cannot be decoded. IDs care about
prefixes, so a level-1 code always means "nearest centroid"; levels 2..L are greedy too, or
(plain mode, ``beam`` > 1) the best of a small beam search below level 1.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from . import collisions, defaults, kmeans, stable
from .errors import InputError
from .ids import MAX_CODEBOOK_SIZE, MAX_LEVELS, CodeSpace, check_sizes
from .quality import collision_rate
from .vectors import check_vectors

RESIDUAL_MODES = ("plain", "normalized")
# faiss warns below this many training points per centroid; we report it ourselves instead.
MIN_POINTS_PER_CENTROID = 39
# rows encoded at a time where the engine encodes what it trained on again
ENCODE_CHUNK = 65536
# below this many code tuples per item, train warns that the code space is too small; it
# suggests sizes with the second figure's room (the catalog can double and keep a free
# tuple near most items)
MIN_TUPLES_PER_ITEM = 2
ROOMY_TUPLES_PER_ITEM = 8
# capacity-constrained k-means rounds after the plain ones, for the balanced option
BALANCE_ROUNDS = 5
MAX_BEAM = 16


@dataclass(frozen=True)
class TrainParams:
    """Everything that decides a training run: same params and data give the same codes."""

    codebook_sizes: tuple[int, ...]
    niter: int = defaults.NITER
    seed: int = defaults.SEED
    max_points_per_centroid: int = defaults.MAX_POINTS_PER_CENTROID
    residual: str = defaults.RESIDUAL
    collisions: str = defaults.COLLISIONS
    balance: float | None = None
    refine: int | None = None  # None: defaults.REFINE where it applies, else 0
    beam: int | None = None  # None: defaults.BEAM where it applies, else 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "codebook_sizes", check_sizes(self.codebook_sizes))
        if self.residual not in RESIDUAL_MODES:
            raise InputError(f"residual mode must be one of {', '.join(RESIDUAL_MODES)}, "
                             f"got {self.residual!r}", param="residual")
        if self.collisions not in collisions.STRATEGIES:
            raise InputError(f"collision strategy must be one of "
                             f"{', '.join(collisions.STRATEGIES)}, got {self.collisions!r}",
                             param="collisions")
        if self.balance is not None and not 0 <= self.balance <= 10:
            raise InputError(f"balance slack must be between 0 and 10, got {self.balance}",
                             param="balance")
        if not 1 <= self.niter <= 1000:
            raise InputError(f"iterations must be between 1 and 1000, got {self.niter}",
                             param="niter")
        applies = self.residual == "plain" and self.balance is None
        if self.refine is None:
            object.__setattr__(self, "refine", defaults.REFINE if applies else 0)
        if not 0 <= self.refine <= 100:
            raise InputError(f"refinement passes must be between 0 and 100, got "
                             f"{self.refine}", param="refine")
        if self.refine and not applies:
            raise InputError("refinement passes need plain residuals and no `balance`: set "
                             "`refine` to 0", param="refine")
        if self.beam is None:
            object.__setattr__(self, "beam", defaults.BEAM if applies else 1)
        if not 1 <= self.beam <= MAX_BEAM:
            raise InputError(f"beam width must be between 1 and {MAX_BEAM}, got {self.beam}",
                             param="beam")
        if self.beam > 1 and not applies:
            raise InputError("a beam search needs plain residuals and no `balance`: set "
                             "`beam` to 1", param="beam")
        if not 0 <= self.seed < 2**31:
            raise InputError(f"seed must be between 0 and 2^31-1, got {self.seed}",
                             param="seed")
        if not 1 <= self.max_points_per_centroid <= 1_000_000:
            raise InputError("max points per centroid must be between 1 and 1000000, "
                             f"got {self.max_points_per_centroid}",
                             param="max_points_per_centroid")

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codebook_sizes"] = list(self.codebook_sizes)
        return d


@dataclass
class TrainResult:
    """Codebooks (one (k_i, dim) float32 array per level), codes (N, L) and summary figures."""

    codebooks: list[np.ndarray]
    codes: np.ndarray
    stats: dict = field(default_factory=dict)


def prepare(x: np.ndarray, *, source: str = "vectors", overwrite: bool = False) -> np.ndarray:
    """Validate ``x`` and return a contiguous, L2-normalized float32 copy of it.

    ``overwrite=True`` lets a caller that owns ``x`` (and will not use it again) skip the
    copy when ``x`` is already contiguous float32: then ``x`` itself is normalized.
    """
    out = check_vectors(x, source)
    if not overwrite and (out is x or np.shares_memory(out, np.asarray(x))):
        out = out.copy()
    faiss.normalize_L2(out)
    return out


def sum_squares(a: np.ndarray, chunk: int = 65536) -> float:
    """Sum of squares in float64, without a full-size temporary."""
    return float(sum(np.einsum("ij,ij->", a[i:i + chunk], a[i:i + chunk], dtype=np.float64)
                     for i in range(0, a.shape[0], chunk)))


def step_residual(residual: np.ndarray, codebook: np.ndarray, labels: np.ndarray,
                  mode: str) -> None:
    """Advance ``residual`` (our own array) in place to the next level."""
    kmeans.shift(residual, codebook, labels, -1.0)
    if mode == "normalized":
        stable.renormalize(residual)


def code_space_advice(sizes: tuple[int, ...], n: int) -> str | None:
    """A warning when the code space has fewer than MIN_TUPLES_PER_ITEM tuples per item (many
    IDs would then share a tuple and differ by their disambiguation number alone), naming
    sizes with ROOMY_TUPLES_PER_ITEM per item; None when it has room."""
    tuples = math.prod(sizes)
    if tuples >= MIN_TUPLES_PER_ITEM * n:
        return None
    want = ROOMY_TUPLES_PER_ITEM * n
    levels, last = len(sizes), sizes[-1]
    options = []
    wider = 2
    while wider ** levels < want and wider < MAX_CODEBOOK_SIZE:
        wider *= 2
    if wider ** levels >= want:
        options.append([wider] * levels)
    deeper = list(sizes)
    while math.prod(deeper) < want and len(deeper) < MAX_LEVELS:
        deeper.append(last)
    if math.prod(deeper) >= want:
        options.append(deeper)
    fit = " or ".join(f"{','.join(map(str, o))} ({math.prod(o):,} tuples)" for o in options)
    return (f"the code space has {tuples:,} tuples ({' x '.join(map(str, sizes))}) for {n:,} "
            f"items, fewer than {MIN_TUPLES_PER_ITEM} per item: many items will share a "
            "code tuple and differ only by their disambiguation number"
            + (f"; codebook sizes with room for the catalog to grow: {fit}" if fit else ""))


def size_warnings(n: int, params: TrainParams) -> list[str]:
    """What a train of ``n`` items warns about; refuses too few for a codebook."""
    warnings = []
    for level, k in enumerate(params.codebook_sizes, start=1):
        if n < k:
            raise InputError(f"level {level} needs at least {k} items for {k} codes, "
                             f"but there are only {n}; add items or use a smaller "
                             "`codebook_size`", param="codebook_size")
        if n < MIN_POINTS_PER_CENTROID * k:
            warnings.append(f"level {level}: {n} items for {k} codes is under "
                            f"{MIN_POINTS_PER_CENTROID} per code; centroids may be poor")
    roomy = code_space_advice(params.codebook_sizes, n)
    if roomy is not None:
        warnings.append(roomy)
    return warnings


def check_warm(params: TrainParams, warm: list[np.ndarray] | None, keep: np.ndarray | None,
               n: int, dim: int) -> tuple[list[np.ndarray] | None, np.ndarray | None]:
    """A warm start's codebooks and the codes rows keep (see :func:`train`), checked:
    (contiguous float32 codebooks, int64 codes) or Nones."""
    if warm is not None and params.balance is not None:
        raise InputError("a balanced version cannot be trained from another yet",
                         param="balance")
    if warm is not None and params.refine:
        # a stable retrain keeps earlier codes level by level: joint refinement would move
        # the centroids they sit on for small gains
        raise InputError("does not apply to a warm start (a retrain from another version): "
                         "it keeps the parent's codes instead", param="refine")
    if warm is not None:
        warm = _check_codebooks(warm, dim)
        if tuple(cb.shape[0] for cb in warm) != params.codebook_sizes:
            raise InputError(f"warm start needs codebook sizes {list(params.codebook_sizes)},"
                             f" got {[cb.shape[0] for cb in warm]}", param="warm")
    if keep is not None:
        keep = np.asarray(keep, dtype=np.int64)
        if keep.shape != (n, params.levels):
            raise ValueError(f"keep must have shape {(n, params.levels)}, got {keep.shape}")
    return warm, keep


def _check_codebooks(codebooks: list[np.ndarray], dim: int) -> list[np.ndarray]:
    if not codebooks:
        raise InputError("no codebooks given", param="codebooks")
    out = []
    for level, cb in enumerate(codebooks, start=1):
        cb = np.ascontiguousarray(cb, dtype=np.float32)
        if cb.ndim != 2 or cb.shape[1] != dim:
            raise InputError(f"level {level} codebook has shape {cb.shape}, vectors have "
                             f"dimension {dim}", param="codebooks")
        out.append(cb)
    return out


def train(x: np.ndarray, params: TrainParams, *, overwrite: bool = False,
          warm: list[np.ndarray] | None = None, keep: np.ndarray | None = None,
          stickiness: float = 0.0) -> TrainResult:
    """Learn one codebook per level by residual k-means and return every row's codes.

    ``x`` is left as it was unless ``overwrite`` (see :func:`prepare`). With ``warm`` (an
    earlier version's codebooks) each level starts from those centroids; ``keep`` (N, L)
    gives rows their earlier codes (-1 for new rows) to hold on to, within ``stickiness``
    (see :mod:`registry.stable`).
    """
    start = time.perf_counter()
    data = prepare(x, overwrite=overwrite)
    n, dim = data.shape
    warnings = size_warnings(n, params)
    warm, preferred = check_warm(params, warm, keep, n, dim)
    if keep is not None:
        keep = preferred.copy()
    # normalized residuals cannot be undone: keep the vectors for moving colliding items, and
    # for a warm start's raw collision rate (below)
    original = data.copy() if (params.residual == "normalized" and (
        params.collisions == "nearest-free" or warm is not None)) else None
    # total variance first: after that ``data`` is consumed as the running residual
    mean = data.mean(axis=0, dtype=np.float64)
    total = sum_squares(data) - n * float(mean @ mean)
    residual = data
    codebooks: list[np.ndarray] = []
    codes = np.empty((n, params.levels), dtype=np.int64)
    for level, k in enumerate(params.codebook_sizes):
        held = None if keep is None else keep[:, level]
        if warm is None:
            codebook = kmeans.train_level(
                residual, k, niter=params.niter, seed=params.seed + level,
                max_points_per_centroid=params.max_points_per_centroid, project=level > 0)
        else:
            codebook = stable.anchored_kmeans(
                residual, warm[level], held, niter=params.niter, stickiness=stickiness,
                max_points=params.max_points_per_centroid * k, seed=params.seed + level)
        if params.balance is not None and warm is None:
            codebook = stable.balanced_kmeans(
                residual, codebook, niter=BALANCE_ROUNDS, slack=params.balance,
                max_points=params.max_points_per_centroid * k, seed=params.seed + level)
            labels = stable.capacity_assign(residual, codebook,
                                            stable.capacity(n, k, params.balance))
        else:
            labels = stable.sticky_assign(residual, codebook, held, stickiness)
        if keep is not None and level + 1 < params.levels:
            keep[labels != held, level + 1:] = -1  # changed here: free below
        codes[:, level] = labels
        codebooks.append(codebook)
        step_residual(residual, codebook, labels, params.residual)

    level_err = None
    if warm is None:
        kmeans.refine_deeper(residual, codes, codebooks, params.refine, beam=params.beam,
                             sample=params.max_points_per_centroid * max(params.codebook_sizes),
                             seed=params.seed)
    else:
        # a warm start (no refinement: checked above) leaves the rows that kept their whole
        # earlier tuple as they are and encodes the others with the beam; an earlier tuple
        # is then measured against the level-by-level pass's, as without a beam
        level_err = np.einsum("ij,ij->i", residual, residual)
        beam_rows(residual, codes, codebooks, params.beam,
                  np.arange(n) if preferred is None
                  else np.flatnonzero((codes != preferred).any(axis=1)))
    if preferred is not None and params.residual == "plain":
        keep_whole_tuples(residual, codes, codebooks, preferred, stickiness, level_err)
    greedy = codes  # before collision handling: the final residuals are under these

    def rows_x(rows: np.ndarray) -> np.ndarray:
        if original is not None:
            return original[rows]
        # plain residuals: the vector is the final residual plus the chosen centroids
        x = residual[rows]
        kmeans.add_centroids(x, greedy[rows], codebooks)
        return x

    # the raw collision rate is one of the nearest codes: a cold train's are those (the
    # encoder gives the same), a warm start's kept ones are not, and are encoded afresh
    nearest = codes if warm is None else np.concatenate([
        encode(rows_x(np.arange(at, min(n, at + ENCODE_CHUNK))), codebooks, params.residual,
               params.beam) for at in range(0, n, ENCODE_CHUNK)])
    stats: dict = {"items": n, "dim": dim, "raw_collision_rate": collision_rate(nearest)}
    del nearest
    error = sum_squares(residual) if params.residual == "plain" else None
    if params.collisions == "nearest-free":
        # plain residuals: ``residual`` is each row's final one, under the codes it holds
        codes, stats["moved"], error = free_tuples(
            rows_x, lambda rows: residual[rows], greedy, codebooks, params, error,
            prefer=preferred, residual_sq=np.einsum("ij,ij->i", residual, residual)
            if params.residual == "plain" else None)
    if error is not None:
        stats["reconstruction_error"] = error / total if total > 0 else 0.0
    stats["train_seconds"] = round(time.perf_counter() - start, 3)
    if warnings:
        stats["warnings"] = warnings
    return TrainResult(codebooks=codebooks, codes=codes, stats=stats)


def free_tuples(rows_x, residual_rows, greedy: np.ndarray, codebooks: list[np.ndarray],
                params: TrainParams, error: float | None, *, prefer: np.ndarray | None = None,
                residual_sq: np.ndarray | None = None) -> tuple[np.ndarray, int, float | None]:
    """A train's nearest-free step: (codes, rows moved, the sum of squared final residuals
    ``error`` once the moved rows sit on their new tuples; None stays None).

    ``rows_x(rows)`` gives rows' normalized vectors, ``residual_rows(rows)`` their final
    residuals under ``greedy`` (plain residuals only); see :func:`collisions.nearest_free`.
    """
    space = CodeSpace(params.codebook_sizes)
    codes, moved = collisions.nearest_free(
        rows_x, greedy, codebooks, params.residual, space, collisions.Occupancy(space),
        prefer=prefer, residual_sq=residual_sq)
    changed = np.flatnonzero((codes != greedy).any(axis=1))
    if error is not None and changed.size:
        for at in range(0, changed.size, collisions.MOVER_CHUNK):
            part = changed[at:at + collisions.MOVER_CHUNK]
            x = rows_x(part)
            error -= sum_squares(residual_rows(part))
            for lvl, cb in enumerate(codebooks):
                kmeans.shift(x, cb, codes[part, lvl], -1.0)
            error += sum_squares(x)
    return codes, moved, error


def beam_rows(residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray], beam: int,
              rows: np.ndarray) -> None:
    """Encode levels 2..L of ``rows`` again with ``beam`` (in place; final residuals)."""
    if beam == 1 or not rows.size:
        return
    part_r, part_c = residual[rows], codes[rows]
    kmeans.reencode(part_r, part_c, books, beam)
    residual[rows], codes[rows] = part_r, part_c


def keep_whole_tuples(residual: np.ndarray, codes: np.ndarray, books: list[np.ndarray],
                      preferred: np.ndarray, stickiness: float,
                      level_err: np.ndarray | None) -> None:
    """Give rows back their earlier tuple (in place) where it reconstructs them within
    ``1 + stickiness`` of the tuple the level-by-level pass gave them (squared errors
    ``level_err``, where a beam search may have found a better tuple since; None: the tuple
    they hold): that rule cannot see that an earlier code chosen to avoid a collision is
    still a fine place for the item."""
    rows = np.flatnonzero((preferred >= 0).all(axis=1) & (codes != preferred).any(axis=1))
    if rows.size == 0:
        return
    x = residual[rows] + sum(cb[codes[rows, lvl]] for lvl, cb in enumerate(books))
    old = x - sum(cb[preferred[rows, lvl]] for lvl, cb in enumerate(books))
    now = np.einsum("ij,ij->i", residual[rows], residual[rows]) if level_err is None \
        else level_err[rows]
    back = np.einsum("ij,ij->i", old, old) <= (1.0 + stickiness) * now + 1e-12
    codes[rows[back]] = preferred[rows[back]]
    residual[rows[back]] = old[back]


# the most memory :func:`encode` gives to the inner products it can hand back
PRODUCTS_MAX_BYTES = 256 << 20


@dataclass
class Kept:
    """What :func:`encode` computes on the way and nearest-free uses again, so that it need
    not read the rows' vectors (plain residuals, beam > 1, three or more levels, inner
    products up to PRODUCTS_MAX_BYTES; otherwise left empty).

    ``products``: one (N, k) array per level 2..L, the level-1 residual's inner products with
    that level's codebook (see :func:`registry.collisions.up_products`). ``residual_sq``:
    (N,), each row's squared final residual under the codes returned."""

    products: list[np.ndarray] = field(default_factory=list)
    residual_sq: np.ndarray | None = None


def encode(x: np.ndarray, codebooks: list[np.ndarray], residual: str = "plain",
           beam: int = 1, *, kept: Kept | None = None) -> np.ndarray:
    """Codes (N, L) of ``x`` against fixed codebooks, exactly as :func:`train` assigns them
    with the same residual mode and ``beam`` (a version's ``params``).

    ``kept``, an empty :class:`Kept`, receives what the beam search computed that
    nearest-free starts from."""
    if residual not in RESIDUAL_MODES:
        raise InputError(f"unknown residual mode {residual!r}", param="codebooks")
    if not 1 <= beam <= MAX_BEAM or (beam > 1 and residual != "plain"):
        raise InputError(f"beam width {beam} does not apply to {residual} residuals",
                         param="codebooks")
    data = prepare(x)
    codebooks = _check_codebooks(codebooks, data.shape[1])
    codes = np.empty((data.shape[0], len(codebooks)), dtype=np.int64)
    levels = len(codebooks) if beam == 1 else 1
    for level, cb in enumerate(codebooks[:levels]):
        labels, _ = kmeans.nearest(data, cb)
        codes[:, level] = labels
        step_residual(data, cb, labels, residual)
    if levels < len(codebooks):
        keep = sq = None
        wanted = data.shape[0] * sum(cb.shape[0] for cb in codebooks[1:]) * 4
        if kept is not None and len(codebooks) >= 3 and wanted <= PRODUCTS_MAX_BYTES:
            keep = [np.empty((data.shape[0], cb.shape[0]), dtype=np.float32)
                    for cb in codebooks[1:]]
            sq = np.empty(data.shape[0], dtype=np.float32)
            kept.products, kept.residual_sq = keep, sq
        kmeans.encode_deeper(data, codes, codebooks, beam, products=keep, final=False,
                             residual_sq=sq)
    return codes


def decode(codes: np.ndarray, codebooks: list[np.ndarray], residual: str = "plain") -> np.ndarray:
    """Reconstruct normalized vectors from codes: the sum of the chosen centroids (plain mode)."""
    if residual != "plain":
        raise InputError("codes of a 'normalized' residual version cannot be decoded: each "
                         "level was rescaled", param="codes")
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2 or codes.shape[1] != len(codebooks):
        raise InputError(f"codes must have shape (N, {len(codebooks)}), got {codes.shape}",
                         param="codes")
    codebooks = _check_codebooks(codebooks, np.asarray(codebooks[0]).shape[1])
    out = np.zeros((codes.shape[0], codebooks[0].shape[1]), dtype=np.float32)
    for level, cb in enumerate(codebooks):
        col = codes[:, level]
        if col.size and (col.min() < 0 or col.max() >= cb.shape[0]):
            raise InputError(f"level {level + 1} codes out of range 0..{cb.shape[0] - 1}",
                             param="codes")
        out += cb[col]
    return out

