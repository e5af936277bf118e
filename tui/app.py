"""The editledger TUI: a Textual app over the ledger (read-mostly; reset/revert are the only writes,
and the audit and probes run as CLI subprocesses).

No torch here: the app only talks to ``tui.data.LedgerData`` (which uses the Ledger API), so it
opens instantly on a machine without a model. While a replay writes to the same ledger the app
polls a cheap change token every ``poll_interval`` seconds and refreshes the screen on view.
"""
from __future__ import annotations

from typing import Any, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from tui.data import LedgerData
from tui.screens.help import HelpScreen
from tui.screens.runs import RunsScreen
from tui.screens.timeline import TimelineScreen


class EditLedgerApp(App[None]):
    TITLE = "editledger"
    CSS_PATH = "styles/app.tcss"

    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+r", "reload", "Reload", show=False),
    ]

    def __init__(self, data: LedgerData, run_id: int | None = None, *,
                 poll_interval: float = 2.0) -> None:
        super().__init__()
        self.data = data
        self.start_run = run_id
        self.poll_interval = poll_interval      # seconds between change checks; 0 disables polling
        self._token: Any = None

    def on_mount(self) -> None:
        self.push_screen(RunsScreen())
        if self.start_run is not None:
            self.push_screen(TimelineScreen(self.start_run))
        self._token = self.data.change_token()
        if self.poll_interval > 0:
            self.set_interval(self.poll_interval, self.poll_ledger, name="ledger-poll")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette (ctrl+p) offers every action of the screen by its description."""
        yield from super().get_system_commands(screen)
        seen = set()
        for b in getattr(screen, "BINDINGS", []):
            if isinstance(b, Binding) and b.description and b.action not in seen and b.action != "back":
                seen.add(b.action)
                key = b.key.split(",")[0]
                yield SystemCommand(f"{b.description} ({key})", f"{type(screen).__name__.removesuffix('Screen')}: "
                                    f"{b.description}", lambda a=b.action, s=screen: self.call_later(s.run_action, a))

    def poll_ledger(self) -> bool:
        """Refresh the visible screen when the ledger changed; returns whether it did."""
        token = self.data.change_token()
        if token == self._token:
            return False
        self._token = token
        for screen in self.screen_stack:
            if hasattr(screen, "stale"):
                screen.stale = True
        self.refresh_screen()
        return True

    def refresh_screen(self) -> None:
        screen = self.screen
        if hasattr(screen, "reload"):
            screen.reload()

    def action_reload(self) -> None:
        self._token = self.data.change_token()
        self.refresh_screen()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))
