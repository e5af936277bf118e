"""`?`: what the screen below shows, every key it answers to, a legend of every column of its
tables with its unit, and the fields its filter understands."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

GLOBAL_KEYS = [("?", "this help"), ("q", "quit"), ("ctrl+p", "command palette: every action of this screen by name"),
               ("ctrl+r", "reload from the ledger now"),
               ("↑ ↓ PgUp PgDn Home End", "move in a table"), ("tab", "next pane or table"),
               ("s / S", "sort a table by the next column / reverse (or click a header)"),
               ("c", "copy the row (the finding, on the audit screen)"),
               ("e", "export the table as shown to .csv or .json"),
               ("mouse", "click a row, double-click opens")]
FILTER_HELP = ("Filter (/): words must all appear; field:word matches one field; field<number compares "
               "(< <= > >= = !=). Fields here: ")


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, below: Screen) -> None:
        super().__init__()
        self.below = below

    def help_text(self) -> str:
        lines = []
        about = getattr(self.below, "HELP", "")
        if about:
            lines += [about, ""]
        seen = set()
        for b in getattr(self.below, "BINDINGS", []):
            if isinstance(b, tuple):
                continue
            key = b.key_display or " ".join(
                self.app.get_key_display(Binding(k.strip(), "")) for k in b.key.split(","))
            if b.description and b.action not in seen:
                seen.add(b.action)
                lines.append(f"  {key:<24} {b.description}")
        lines.append("")
        lines += [f"  {k:<24} {d}" for k, d in GLOBAL_KEYS]
        legend = self.below.tables_help() if hasattr(self.below, "tables_help") else []
        if legend:
            lines += ["", "Columns"]
            lines += [f"  {name:<10} {meaning}" for name, meaning in legend]
        if hasattr(self.below, "filter_fields"):
            names = sorted({f.name for f in self.below.filter_fields()})
            if names:
                lines += ["", FILTER_HELP + ", ".join(names)]
        return "\n".join(lines)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog help"):
            yield Label(f"Help — {type(self.below).__name__.removesuffix('Screen')}", id="dialog-title")
            with VerticalScroll():
                yield Static(self.help_text(), id="help-text", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
