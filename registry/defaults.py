"""Every default a user meets, in one place: the library's functions and the command line's
help both read them from here. Plain constants, nothing imported: the command line loads
this at start-up.
"""

from __future__ import annotations

# train: the code space, the random seed, how residuals are taken and collisions handled
LEVELS = 3
CODEBOOK_SIZE = 256
SEED = 0
RESIDUAL = "plain"
COLLISIONS = "nearest-free"
# train: k-means rounds per level, and passes that then refine levels 2..L together (plain
# residuals, cold training): tuned on the Debian catalog in bench/bench_quality.py
NITER = 16
REFINE = 3
# a warm start (train --from) needs few rounds; more only let the centroids wander off
WARM_NITER = 5
# code paths kept while encoding levels 2..L (plain residuals, no balance)
BEAM = 2
# k-means trains on at most this many points per code (a sample)
MAX_POINTS_PER_CENTROID = 256
# train --from: an item keeps its code while that centroid is within this share of the
# nearest one's squared distance
STICKINESS = 0.02
# assign: new items get IDs this many consecutive item ids at a time (see
# registry.assigning.block_end): large enough that allocating block by block costs nothing
# measurable (BENCHMARKS.md, "Allocation blocks and batch sizes")
ALLOCATION_BLOCK = 8192
# assign: items per transaction; larger batches write the code index in fewer, denser
# commits (BENCHMARKS.md, Design figures: assign batch size)
ASSIGN_BATCH = 50_000
# assign: processes sharing the work
WORKERS = 1
# add: how texts are embedded, how vectors are stored, how many items go per transaction
DEVICE = "cpu"
EMBED_BATCH = 64
BACKEND = "torch"
DTYPE = "float32"
COMMIT_EVERY = 2048
# the alias consumers read, which activate and rollback move
ALIAS = "active"
# lookup: items listed under a prefix; items and history: rows listed; stats: items whose
# neighbours are compared
LOOKUP_LIMIT = 20
ITEMS_LIMIT = 20
HISTORY_LIMIT = 50
STATS_SAMPLE = 1000

# registry serve: where it listens, and the most one request may carry (each configurable)
SERVE_HOST = "127.0.0.1"
SERVE_PORT = 8000
SERVE_WORKERS = 1
SERVE_MAX_BODY = 8 * 1024 * 1024  # bytes of a request body
SERVE_MAX_IDS = 10_000  # inputs of one POST /v1/resolve
SERVE_MAX_ITEMS = 1_000  # items of one POST /v1/items
SERVE_PAGE = 100  # items of one page of GET /v1/prefixes/{prefix}
SERVE_MAX_PAGE = 10_000
