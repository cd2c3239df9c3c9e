"""Alembic environment of the registry.

``registry init`` runs the migrations on its own connection (passed in
``config.attributes["connection"]``); the ``alembic`` command line in a checkout uses
``sqlalchemy.url`` from alembic.ini, or ``$REGISTRY_DB`` when it is set.
"""

from __future__ import annotations

import os

from alembic import context

from registry.store.db import make_engine
from registry.store.schema import ddl_metadata

config = context.config


def _configure(dialect: str, **kwargs) -> None:
    context.configure(target_metadata=ddl_metadata(dialect), compare_type=True, **kwargs)


def run_offline() -> None:
    url = os.environ.get("REGISTRY_DB") or config.get_main_option("sqlalchemy.url")
    sqlite = url.startswith("sqlite")
    _configure("sqlite" if sqlite else "postgresql", url=url, literal_binds=True,
               render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection.dialect.name, connection=connection,
                   render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("REGISTRY_DB") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url, create=True)
    with engine.connect() as conn:
        _configure(conn.dialect.name, connection=conn,
                   render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
