"""Helpers for driving the TUI through Textual's Pilot in tests (no async pytest plugin needed)."""
from __future__ import annotations

import asyncio
import functools

from tui.app import EditLedgerApp
from tui.data import LedgerData
from tui.widgets.lazy_table import LazyTable

SIZE = (100, 30)


def run_async(test):
    """Run an async test with asyncio.run; pytest still sees the test's fixtures through functools.wraps."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


async def settle(pilot) -> None:
    """Let the app process its messages and finish its workers (the timeline's harm columns)."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def make_app(db: str, run_id=None) -> EditLedgerApp:
    data = LedgerData.open(db, label="ledger.db")
    data.db_arg = db
    return EditLedgerApp(data, run_id, poll_interval=0)


def table(app, selector="#main") -> LazyTable:
    return app.screen.query_one(selector, LazyTable)


def shown(app, selector="#main") -> list[list[str]]:
    t = table(app, selector)
    return [t.cell_texts(i) for i in range(len(t.rows))]


def column(app, key: str, selector="#main") -> int:
    return [c.key for c in table(app, selector).columns].index(key)


def text_of(app, selector) -> str:
    return str(app.screen.query_one(selector).render())


def title(app) -> str:
    return text_of(app, "#title")
