"""Alembic environment for the editledger ledger.

Configured programmatically by ``ledger.migrate`` (no alembic.ini needed): it passes an open
connection in ``config.attributes["connection"]``, or a URL in ``config.attributes["url"]``.
SQLite uses batch mode (ALTER TABLE there means copy-and-rename).
"""
from __future__ import annotations

from alembic import context

from ledger.engine import make_engine
from ledger.schema import metadata

config = context.config


def _configure(**kw) -> None:
    context.configure(target_metadata=metadata, compare_type=True, **kw)


def run_migrations_offline() -> None:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"),
               dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
