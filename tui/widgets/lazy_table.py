"""A keyboard-first table that renders only the rows on screen.

Textual's DataTable measures every cell when rows are added (≈0.4 s for 10,000 rows here), which
breaks the half-second budget for a long timeline. LazyTable keeps the row *items* (view models)
and formats a row only when it is drawn, so opening, filtering and sorting cost O(rows) cheap
Python work and drawing costs O(rows visible).

Every table sorts by any column (a click on its header, or s / S), and copies the row under the
cursor (c). Filtering and export are the screen's (tui/screens/base.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.events import Click, MouseMove
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = "str | Text"


@dataclass
class Column:
    key: str                      # identifies the column (sorting, tests)
    label: str                    # header text
    width: int = 0                # fixed width in cells; 0 = fit the widest value (capped by max_width)
    max_width: int = 24           # cap for fitted columns
    flex: int = 0                 # a share of the width left over (at least `width`); content is truncated
    justify: str = "left"         # "left" or "right"
    sort_key: Callable[[Any], Any] | None = None   # item -> sort key (default: the cell's text, numbers as numbers)
    help: str = ""                # what the column shows and its unit (the help legend)


NUMBER = re.compile(r"^[+−-]?\d+(\.\d+)?(e[+-]?\d+)?")


def text_key(text: str) -> tuple:
    """Sort key of a cell's text: numbers (with a sign, "−" included) before words; empty last."""
    t = text.strip().lstrip("v✗✓⚑")
    m = NUMBER.match(t)
    if m:
        return (0, float(m.group(0).replace("−", "-")), "")
    return (1 if t and t != "–" else 2, 0.0, t.lower())


class LazyTable(ScrollView, can_focus=True):
    """Rows are ``items``; ``formatter(item)`` returns one cell (str or rich Text) per column."""

    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
        Binding("s", "sort_next", "Sort", show=False),
        Binding("S", "sort_reverse", "Reverse sort", show=False),
        Binding("c", "copy_row", "Copy row", show=False),
    ]

    COMPONENT_CLASSES = {
        "lazy-table--header",
        "lazy-table--cursor",
        "lazy-table--marked",
        "lazy-table--hover",
    }

    DEFAULT_CSS = """
    LazyTable { height: 1fr; background: $surface; }
    LazyTable > .lazy-table--header { text-style: bold; background: $panel; color: $text; }
    LazyTable > .lazy-table--cursor { background: $block-cursor-blurred-background; }
    LazyTable:focus > .lazy-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    LazyTable > .lazy-table--marked { background: $accent 30%; }
    LazyTable > .lazy-table--hover { background: $boost; }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True)

    class RowHighlighted(Message):
        def __init__(self, table: "LazyTable", index: int, item: Any) -> None:
            super().__init__()
            self.table, self.index, self.item = table, index, item

        @property
        def control(self) -> "LazyTable":
            return self.table

    class RowSelected(RowHighlighted):
        pass

    class Sorted(Message):
        """The rows were sorted (the screen updates its title)."""
        def __init__(self, table: "LazyTable") -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> "LazyTable":
            return self.table

    class HeaderClicked(Message):
        def __init__(self, table: "LazyTable", column: "Column") -> None:
            super().__init__()
            self.table, self.column = table, column

        @property
        def control(self) -> "LazyTable":
            return self.table

    def __init__(self, columns: Sequence[Column], formatter: Callable[[Any], Sequence[Any]],
                 *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = list(columns)
        self.formatter = formatter
        self.items: list[Any] = []          # all rows, in display order after sorting
        self.rows: list[Any] = []           # the rows shown (after the filter)
        self.marked: set[Any] = set()       # mark_key(item) of the rows the user marked (space)
        self.mark_key: Callable[[Any], Any] = lambda item: item
        self._filter: Callable[[Any], bool] | None = None
        self._widths: list[int] = [c.width or len(c.label) for c in self.columns]
        self._hover = -1
        self.sort_column: int | None = None   # index into columns; None: the order the rows came in
        self.sort_reverse = False
        self.copy_text: Callable[[Any], str] | None = None   # what c copies (default: the row's cells)
        self.copied = ""                                      # the last text copied (tests)

    # ----- data ------------------------------------------------------------------------------
    def set_items(self, items: Sequence[Any], *, keep_cursor: bool = True) -> None:
        """Replace all rows. The cursor stays on the same item when ``keep_cursor`` and it is
        still present (rows compared by ``mark_key``), else on the same index."""
        old = self.current_item if keep_cursor else None
        self.items = list(items)
        if self.sort_column is not None:
            self.items.sort(key=self._sort_key(self.sort_column), reverse=self.sort_reverse)
        self._apply(old)

    def append_items(self, items: Sequence[Any]) -> None:
        """Add rows at the end (the live timeline), leaving the cursor where it is."""
        old = self.current_item
        follow = self.rows and self.cursor_row == len(self.rows) - 1
        self.items.extend(items)
        self._apply(old)
        if follow:  # a cursor parked on the last row follows new rows, like `tail -f`
            self.cursor_row = len(self.rows) - 1

    def set_filter(self, predicate: Callable[[Any], bool] | None) -> None:
        old = self.current_item
        self._filter = predicate
        self._apply(old)

    def sort(self, key: Callable[[Any], Any], reverse: bool = False) -> None:
        old = self.current_item
        self.items.sort(key=key, reverse=reverse)
        self._apply(old)

    def _sort_key(self, index: int) -> Callable[[Any], Any]:
        col = self.columns[index]
        if col.sort_key is not None:
            key = col.sort_key

            def keyed(it: Any) -> tuple:
                k = key(it)
                return (k is None or k != k, k if k is not None and k == k else 0)   # missing and NaN last
            return keyed
        fmt = self.formatter
        return lambda it: text_key(_plain(fmt(it)[index]))

    def sort_by(self, index: int | None, reverse: bool = False) -> None:
        """Sort the rows by column ``index`` (None: stop sorting; later rows come in their own order)."""
        self.sort_column, self.sort_reverse = index, reverse
        if index is not None:
            self.sort(self._sort_key(index), reverse=reverse)
        self.post_message(self.Sorted(self))

    @property
    def sort_label(self) -> str:
        if self.sort_column is None:
            return ""
        col = self.columns[self.sort_column]
        return f"{col.label or col.key}{' ↓' if self.sort_reverse else ' ↑'}"

    def action_sort_next(self) -> None:
        """s: sort by the next column (cycling through all of them)."""
        n = len(self.columns)
        nxt = 0 if self.sort_column is None else (self.sort_column + 1) % n
        self.sort_by(nxt, self.sort_reverse)

    def action_sort_reverse(self) -> None:
        self.sort_by(self.sort_column if self.sort_column is not None else 0, not self.sort_reverse)

    def row_record(self, index: int) -> dict[str, str]:
        cells = self.cell_texts(index)
        return {(c.label or c.key): v for c, v in zip(self.columns, cells)}

    def action_copy_row(self) -> None:
        """c: the row under the cursor, "column: value" per line, to the clipboard (OSC 52)."""
        if not self.rows:
            return
        if self.copy_text is not None:
            text = self.copy_text(self.rows[self.cursor_row])
        else:
            text = "\n".join(f"{k}: {v}" for k, v in self.row_record(self.cursor_row).items())
        self.copied = text
        self.app.copy_to_clipboard(text)
        self.notify("copied to the clipboard (terminals with OSC 52 support)", timeout=3)

    def _apply(self, old_item: Any) -> None:
        self.rows = [it for it in self.items if self._filter(it)] if self._filter else list(self.items)
        self._fit_columns()
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)
        index = self.cursor_row
        if old_item is not None:
            key = self.mark_key(old_item)
            # search near the old position first: cheap for appends and live refreshes
            for i in range(min(index, len(self.rows) - 1), -1, -1):
                if self.mark_key(self.rows[i]) == key:
                    index = i
                    break
            else:
                for i, it in enumerate(self.rows):
                    if self.mark_key(it) == key:
                        index = i
                        break
        self.cursor_row = max(0, min(index, len(self.rows) - 1))
        self.refresh()

    def _fit_columns(self) -> None:
        """Fit columns without a fixed width to their widest value, looking at up to 600 rows
        (the first 100 and the last 500: ids and steps grow) so that a 10,000-row timeline does
        not format every row; a wider value elsewhere is truncated with an ellipsis."""
        fit = [i for i, c in enumerate(self.columns) if not c.width and not c.flex]
        if not fit:
            return
        sample = self.rows if len(self.rows) <= 600 else self.rows[:100] + self.rows[-500:]
        widths = {i: len(self.columns[i].label) for i in fit}
        for item in sample:
            cells = self.formatter(item)
            for i in fit:
                cell = cells[i]
                n = cell.cell_len if isinstance(cell, Text) else len(str(cell))
                if n > widths[i]:
                    widths[i] = n
        for i in fit:
            self._widths[i] = min(widths[i], self.columns[i].max_width)

    @property
    def current_item(self) -> Any:
        if 0 <= self.cursor_row < len(self.rows):
            return self.rows[self.cursor_row]
        return None

    def cell_texts(self, index: int) -> list[str]:
        """The plain text of a shown row's cells (for tests, copy and export)."""
        return self.cell_texts_of(self.rows[index])

    def cell_texts_of(self, item: Any) -> list[str]:
        return [_plain(c) for c in self.formatter(item)]

    # ----- cursor ----------------------------------------------------------------------------
    @property
    def _page(self) -> int:
        return max(1, self.size.height - 1)

    def watch_cursor_row(self, old: int, new: int) -> None:
        if not self.rows:
            return
        top = round(self.scroll_y)
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + self._page:
            self.scroll_to(y=new - self._page + 1, animate=False, immediate=True)
        self.refresh()
        self.post_message(self.RowHighlighted(self, new, self.rows[new]))

    def move_to(self, index: int) -> None:
        if self.rows:
            self.cursor_row = max(0, min(index, len(self.rows) - 1))

    def action_cursor_up(self) -> None:
        self.move_to(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_to(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_to(self.cursor_row - self._page)

    def action_page_down(self) -> None:
        self.move_to(self.cursor_row + self._page)

    def action_first(self) -> None:
        self.move_to(0)

    def action_last(self) -> None:
        self.move_to(len(self.rows) - 1)

    def action_select(self) -> None:
        if self.rows:
            self.post_message(self.RowSelected(self, self.cursor_row, self.rows[self.cursor_row]))

    def _row_at(self, y: int) -> int:
        if y < 1:
            return -1
        i = round(self.scroll_y) + y - 1
        return i if 0 <= i < len(self.rows) else -1

    def column_at(self, x: int) -> Column | None:
        pos = 1
        for col, w in zip(self.columns, self._layout_widths(self.scrollable_content_region.width)):
            if pos <= x < pos + w:
                return col
            pos += w + 1
        return None

    def on_click(self, event: Click) -> None:
        if event.y == 0:
            col = self.column_at(event.x)
            if col is not None:   # sort by it; a second click reverses
                index = self.columns.index(col)
                self.sort_by(index, not self.sort_reverse if index == self.sort_column else False)
                self.post_message(self.HeaderClicked(self, col))
            return
        i = self._row_at(event.y)
        if i < 0:
            return
        if i == self.cursor_row and event.chain >= 2:
            self.action_select()
        self.cursor_row = i

    def on_mouse_move(self, event: MouseMove) -> None:
        i = self._row_at(event.y)
        if i != self._hover:
            self._hover = i
            self.refresh()

    def on_leave(self) -> None:
        self._hover = -1
        self.refresh()

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)

    # ----- drawing ---------------------------------------------------------------------------
    def _layout_widths(self, width: int) -> list[int]:
        widths = list(self._widths)
        flex = [i for i, c in enumerate(self.columns) if c.flex]
        used = sum(w for i, w in enumerate(widths) if i not in flex) + (len(widths) - 1) + 2
        if flex:
            left = max(0, width - used)
            shares = sum(int(self.columns[i].flex) for i in flex)
            for i in flex:
                widths[i] = max(self.columns[i].width, left * int(self.columns[i].flex) // shares)
        return widths

    def _line(self, cells: Sequence[Any], widths: list[int], width: int, style: Style) -> Strip:
        console = self.app.console
        segments: list[Segment] = [Segment(" ", style)]
        for i, (cell, w) in enumerate(zip(cells, widths)):
            text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            if self.columns[i].justify == "right":
                if text.cell_len < w:
                    text.pad_left(w - text.cell_len)
            text.truncate(w, overflow="ellipsis", pad=True)
            # Text.render yields only the spans' styles: the text's own style (Text("−0.2",
            # style="red"), the usual way a cell is coloured) has to be laid under them here
            cell_style = style + console.get_style(text.style) if text.style else style
            segments.extend(Segment(s.text, cell_style + s.style if s.style else cell_style)
                            for s in text.render(console))
            segments.append(Segment(" ", style))
        strip = Strip(segments)
        return strip.crop_extend(0, width, style)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width    # without the scrollbar
        widths = self._layout_widths(width)
        base = self.rich_style
        if y == 0:
            style = base + self.get_component_rich_style("lazy-table--header")
            return self._line([c.label for c in self.columns], widths, width, style)
        i = self._row_at(y)
        if i < 0:
            return Strip.blank(width, base)
        style = base
        item = self.rows[i]
        if self.marked and self.mark_key(item) in self.marked:
            style = style + self.get_component_rich_style("lazy-table--marked")
        if i == self._hover:
            style = style + self.get_component_rich_style("lazy-table--hover")
        if i == self.cursor_row:
            style = style + self.get_component_rich_style("lazy-table--cursor")
        return self._line(self.formatter(item), widths, width, style)


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)
