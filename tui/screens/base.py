"""What every ledger screen shares: a title line, tables that filter (/), sort (s, a header click),
copy (c) and export (e), live reload on view, and the key bar."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, Static

from tui.export import write_table
from tui.filters import Field, FilterError, compile_filter
from tui.screens.dialogs import PromptScreen
from tui.widgets.keybar import KeyBar
from tui.widgets.lazy_table import LazyTable, text_key


class LedgerScreen(Screen):
    """Subclasses fill ``reload()``; the app calls it when the ledger changed (``stale``)."""

    HELP = ""            # one paragraph shown by `?` above the key list
    EXPORT_NAME = "table"   # default export file name stem

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("e", "export", "Export", show=False),
    ]

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

    # ----- tables ----------------------------------------------------------------------------
    def active_table(self) -> LazyTable | None:
        """The focused table, else the screen's main one (the first table)."""
        focused = self.focused
        if isinstance(focused, LazyTable):
            return focused
        tables = self.query(LazyTable)
        return tables.first() if tables else None

    def tables_help(self) -> list[tuple[str, str]]:
        """(column, meaning) of every column of the screen's tables, for the help legend."""
        out, seen = [], set()
        for t in self.query(LazyTable):
            for c in t.columns:
                name = c.label or c.key
                if c.help and name not in seen:
                    seen.add(name)
                    out.append((name, c.help))
        return out

    def action_export(self) -> None:
        """e: the active table as shown (filtered and sorted) to a CSV or JSON file."""
        table = self.active_table()
        if table is None or not table.rows:
            self.notify("nothing to export here", severity="warning")
            return
        default = f"editledger-{self.EXPORT_NAME}.csv"

        def done(path: str | None) -> None:
            if not path:
                return
            try:
                out = write_table(Path(path), table)
            except (OSError, ValueError) as e:
                self.notify(str(e), title="not exported", severity="error", timeout=8)
                return
            self.notify(f"{len(table.rows)} rows written to {out}", title="exported")
        self.app.push_screen(PromptScreen("Export the table", "File (.csv or .json):", default), done)


class FilterableScreen(LedgerScreen):
    """A screen whose tables filter by the text typed after `/` (tui/filters.py's tokens). The
    filter applies to the table that had the focus when `/` was pressed (the main one otherwise)."""

    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back"),
    ]

    filter_text = ""
    filter_error = ""
    _filter_target: LazyTable | None = None

    async def filter_input(self) -> Input:
        """The filter box, created on the first `/` (an Input costs time to open a screen with)."""
        existing = self.query("#filter")
        if existing:
            return existing.first(Input)
        inp = Input(placeholder="filter: words, field:word, field<number (e.g. flag:forgetting eff<1); Esc clears",
                    id="filter")
        await self.mount(inp, after=self.query_one("#title"))
        return inp

    def filter_has_focus(self) -> bool:
        found = self.query("#filter")
        return bool(found) and found.first().has_focus

    @property
    def table(self) -> LazyTable:
        return self.query_one("#main", LazyTable)

    def filter_table(self) -> LazyTable:
        return self._filter_target or self.active_table()

    def filter_fields(self) -> list[Field]:
        """The fields a filter token can name: the filtered table's columns (subclasses add theirs)."""
        table = self.filter_table()
        fields = []
        for i, c in enumerate(table.columns if table is not None else []):
            if c.key and c.key.replace("/", "_").isidentifier():
                fields.append(Field(c.key, lambda it, i=i, t=table: _cell_value(t, it, i)))
        return fields

    async def action_filter(self) -> None:
        await self.start_filter(self.active_table())

    async def start_filter(self, target: LazyTable | None) -> None:
        if target is not self._filter_target and self.filter_text:
            self.apply_filter("")                 # one filter at a time: clear the other table's
        self._filter_target = target
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
            self.filter_table().focus()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        table = self.filter_table()
        try:
            keep = compile_filter(self.filter_text, self.filter_fields(),
                                  lambda it: " ".join(table.cell_texts_of(it)) + " " + self.filter_haystack(it))
        except FilterError as e:
            self.filter_error = str(e)
            self.after_filter()
            return
        self.filter_error = ""
        table.set_filter(keep)
        self.after_filter()

    def filter_haystack(self, item: Any) -> str:
        """Extra searchable text for a row beyond its cells (subclasses)."""
        return ""

    def after_filter(self) -> None:
        pass

    def filter_status(self) -> str:
        """The title's part about the filter."""
        if not self.filter_text:
            return ""
        if self.filter_error:
            return f"filter: {self.filter_text} ({self.filter_error})"
        return f"filter: {self.filter_text} ({len(self.filter_table().rows)} shown)"

    def on_lazy_table_sorted(self, event: LazyTable.Sorted) -> None:
        self.after_filter()

    def action_back(self) -> None:
        if self.filter_has_focus() or self.filter_text:
            inp = self.query_one("#filter", Input)
            inp.value = ""
            self.apply_filter("")
            inp.display = False
            self.filter_table().focus()
            return
        super().action_back()


def _cell_value(table: LazyTable, item: Any, index: int) -> Any:
    """A cell as a filter field: its number when it reads as one, else its text."""
    text = table.cell_texts_of(item)[index]
    kind, number, _word = text_key(text)
    return number if kind == 0 else (text if text.strip() not in ("", "–") else None)
