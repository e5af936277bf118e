"""What every ledger screen shares: a title line, a table, a filter box, live reload on view."""
from __future__ import annotations

from typing import Any, Callable

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Static

from tui.widgets.keybar import KeyBar
from tui.widgets.lazy_table import LazyTable


class LedgerScreen(Screen):
    """Subclasses fill ``reload()``; the app calls it when the ledger changed (``stale``)."""

    HELP = ""            # one paragraph shown by `?` above the key list

    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self.stale = False   # set by the app's poll when the ledger changed while hidden

    @property
    def data(self):
        return self.app.data

    def title_bar(self) -> Static:
        return Static("", id="title", markup=False)

    def set_title(self, text: str) -> None:
        self.query_one("#title", Static).update(text)

    def on_screen_resume(self) -> None:
        if self.stale:
            self.reload()

    def reload(self) -> None:
        self.stale = False

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def footer(self) -> KeyBar:
        return KeyBar()


class FilterableScreen(LedgerScreen):
    """A screen with one main LazyTable and a `/` filter over its rows' text."""

    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back"),
    ]

    filter_text = ""

    async def filter_input(self) -> Input:
        """The filter box, created on the first `/` (an Input costs time to open a screen with)."""
        existing = self.query("#filter")
        if existing:
            return existing.first(Input)
        inp = Input(placeholder="filter: words that must all appear (Enter to keep, Esc to clear)",
                    id="filter")
        await self.mount(inp, after=self.query_one("#title"))
        return inp

    def filter_has_focus(self) -> bool:
        found = self.query("#filter")
        return bool(found) and found.first().has_focus

    @property
    def table(self) -> LazyTable:
        return self.query_one("#main", LazyTable)

    async def action_filter(self) -> None:
        inp = await self.filter_input()
        inp.display = True
        inp.value = self.filter_text
        inp.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.input.display = bool(self.filter_text)
            self.table.focus()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        words = self.filter_text.lower().split()
        if not words:
            self.table.set_filter(None)
        else:
            fmt = self.table.formatter
            def keep(item: Any, fmt: Callable = fmt) -> bool:
                hay = " ".join(c.plain if hasattr(c, "plain") else str(c) for c in fmt(item)).lower()
                hay += " " + self.filter_haystack(item)
                return all(w in hay for w in words)
            self.table.set_filter(keep)
        self.after_filter()

    def filter_haystack(self, item: Any) -> str:
        """Extra searchable text for a row beyond its cells (subclasses)."""
        return ""

    def after_filter(self) -> None:
        pass

    def action_back(self) -> None:
        if self.filter_has_focus() or self.filter_text:
            inp = self.query_one("#filter", Input)
            inp.value = ""
            self.apply_filter("")
            inp.display = False
            self.table.focus()
            return
        super().action_back()
