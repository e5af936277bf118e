"""A one-line key bar: the screen's shown bindings as "key Description" pairs; a click on a pair
runs its action. One widget instead of Textual's Footer (a widget per key), which halves the cost
of opening a screen."""
from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.widget import Widget

KEY_NAMES = {"slash": "/", "question_mark": "?", "escape": "esc", "enter": "⏎", "space": "space",
             "pageup": "PgUp", "pagedown": "PgDn"}


def key_label(key: str) -> str:
    first = key.split(",")[0].strip()
    return KEY_NAMES.get(first, first)


class KeyBar(Widget):
    DEFAULT_CSS = """
    KeyBar { height: 1; dock: bottom; background: $panel; color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[tuple[int, int, str, bool]] = []   # start, end, action, on the app?

    def bindings(self) -> list[tuple[Binding, bool]]:
        screen = self.screen
        out, seen = [], set()
        for owner_is_app, source in ((False, screen.BINDINGS), (True, self.app.BINDINGS)):
            for b in source:
                if isinstance(b, Binding) and b.show and b.action not in seen:
                    seen.add(b.action)
                    out.append((b, owner_is_app))
        return out

    def render(self) -> Text:
        text = Text(" ")
        self._spans = []
        for b, on_app in self.bindings():
            start = text.cell_len
            text.append(key_label(b.key), style="bold")
            text.append(f" {b.description}")
            self._spans.append((start, text.cell_len, b.action, on_app))
            text.append("  ")
        return text

    async def on_click(self, event: Click) -> None:
        for start, end, action, on_app in self._spans:
            if start <= event.x < end:
                if on_app:
                    await self.app.run_action(action)
                else:
                    await self.screen.run_action(action)
                return
