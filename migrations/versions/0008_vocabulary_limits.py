"""Each version's disambiguation limit in its parameters, and its training figures under the
names they have now.

The limit is the largest disambiguation number a version may issue; it fixes the version's
token vocabulary (``export --vocab``), which never grows. Versions trained since take it at
train time. Those from before get here, when frozen or retired, the largest number they
have issued: their vocabulary as an export wrote it until now, which no assign can grow from
here on; a draft, unpublished, gets the default rule over its training's figure.

Their stored training figures: ``max_disambiguation`` (the largest number training gave)
becomes ``largest_disambiguation``, and ``collision_rate`` (of the codes as issued, after
collision handling) goes: that name now belongs to the raw rate, before handling, which
these versions did not record.

The database refuses to change a published version's parameters (migration 0004): its
guard is lifted for this one statement per version and put back as it was.

Revision ID: 0008_vocabulary_limits
Revises: 0007_not_live_index
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0008_vocabulary_limits"
down_revision = "0007_not_live_index"
branch_labels = None
depends_on = None

_versions = sa.table("versions", sa.column("id", sa.Integer), sa.column("state", sa.String),
                     sa.column("params", sa.JSON), sa.column("stats", sa.JSON))


def _loaded(value):
    return json.loads(value) if isinstance(value, str) else (value or {})


def _default_limit(sizes: list[int], largest: int) -> int:
    # registry.ids.default_max_disambiguation as of this revision
    return max(sizes[-1] - 1, 2 * largest + 1)


def upgrade() -> None:
    conn = op.get_bind()
    changes = []
    for number, state, params, stats in conn.execute(
            sa.select(_versions.c.id, _versions.c.state, _versions.c.params,
                      _versions.c.stats)).all():
        params, stats = _loaded(params), _loaded(stats)
        new_stats = dict(stats)
        if "max_disambiguation" in new_stats:
            new_stats["largest_disambiguation"] = new_stats.pop("max_disambiguation")
        new_stats.pop("collision_rate", None)
        new_params = dict(params)
        if "max_disambiguation" not in params:
            if state == "draft":
                limit = _default_limit(params["codebook_sizes"],
                                       int(new_stats.get("largest_disambiguation", 0)))
            else:
                limit = conn.execute(sa.text(
                    "SELECT coalesce(max(disamb), 0) FROM assignments WHERE version_id = :v"),
                    {"v": number}).scalar()
            new_params["max_disambiguation"] = int(limit)
        if (new_params, new_stats) != (params, stats):
            changes.append((number, new_params, new_stats))
    if not changes:
        return
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE versions DISABLE TRIGGER guard_versions")
    else:  # SQLite cannot switch a trigger off: it is dropped and made again as it was
        guard = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                                     "AND name = 'guard_versions_update'").scalar()
        if guard is not None:
            conn.exec_driver_sql("DROP TRIGGER guard_versions_update")
    for number, params, stats in changes:
        conn.execute(sa.update(_versions).where(_versions.c.id == number)
                     .values(params=params, stats=stats))
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE versions ENABLE TRIGGER guard_versions")
    elif guard is not None:
        conn.exec_driver_sql(guard)


def downgrade() -> None:
    # the limits and names stay: versions of this data read them, and older code ignores
    # parameters it does not know
    pass
