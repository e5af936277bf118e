"""Modal dialogs: a yes/no confirmation, a text box with an optional copy action, a one-line prompt."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True (y / the confirm button) or False (n, Esc, cancel)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, message: str, confirm_label: str = "Yes (y)") -> None:
        super().__init__()
        self.title_text, self.message, self.confirm_label = title, message, confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.message, id="dialog-message", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button(self.confirm_label, variant="warning", id="yes")
                yield Button("No (n)", variant="default", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()   # the safe choice has the focus

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class InfoScreen(ModalScreen[None]):
    """Shows a text (e.g. the CLI command that exports weights); c copies ``copy``."""

    BINDINGS = [
        Binding("escape,enter,q", "close", "Close"),
        Binding("c", "copy", "Copy"),
    ]

    def __init__(self, title: str, message: str, copy: str | None = None) -> None:
        super().__init__()
        self.title_text, self.message, self.copy_text = title, message, copy

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.message, id="dialog-message", markup=False)
            with Horizontal(id="dialog-buttons"):
                if self.copy_text:
                    yield Button("Copy (c)", id="copy")
                yield Button("Close (Esc)", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "copy":
            self.action_copy()
        else:
            self.dismiss(None)

    def action_copy(self) -> None:
        if self.copy_text:
            self.app.copy_to_clipboard(self.copy_text)
            self.notify("copied to the clipboard (terminals with OSC 52 support)")

    def action_close(self) -> None:
        self.dismiss(None)


class PromptScreen(ModalScreen[str | None]):
    """One line of input (e.g. a file name); Enter dismisses with the text, Esc with None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, label: str, value: str = "") -> None:
        super().__init__()
        self.title_text, self.label, self.value = title, label, value

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.label, id="dialog-message", markup=False)
            yield Input(self.value, id="prompt")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
