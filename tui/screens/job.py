"""Run an editledger command from inside the TUI, the way lazygit runs git: the audit and the
probes need the model and the simulator, which the TUI never imports, so the CLI does the work
in a subprocess. Its output streams into this dialog (a progress bar's carriage-return updates
on one line, other lines in a log); when it ends the app re-reads the ledger."""
from __future__ import annotations

import asyncio
import os
import shlex

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Log, Static

MISSING_COMMAND = "invalid choice"   # argparse's words for an unknown command
PROBE_HINT = "this editledger's CLI has no `probe RUN@STEP` command yet"


def split_output(buf: str) -> tuple[list[tuple[str, str]], str]:
    """Cut streamed output at newlines and carriage returns: ([(piece, separator)], rest)."""
    out = []
    while True:
        cuts = [i for i in (buf.find("\n"), buf.find("\r")) if i >= 0]
        if not cuts:
            return out, buf
        i = min(cuts)
        out.append((buf[:i], buf[i]))
        buf = buf[i + 1:]


class JobScreen(ModalScreen[int | None]):
    """Dismisses with the command's exit code (None when it could not start)."""

    BINDINGS = [
        Binding("escape,enter", "close", "Close"),
        Binding("k", "stop", "Stop"),
    ]

    def __init__(self, title: str, argv: list[str], *, missing_hint: str = "") -> None:
        super().__init__()
        self.title_text, self.argv, self.missing_hint = title, list(argv), missing_hint
        self.lines: list[str] = []         # every full line of output (tests read it)
        self.progress = ""                 # the last carriage-return update (a tqdm bar)
        self.returncode: int | None = None
        self.running = False
        self._proc: asyncio.subprocess.Process | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog job"):
            yield Label(self.title_text, id="dialog-title")
            yield Static("$ " + shlex.join(self.argv[2:] if self.argv[1:2] == ["-m"] else self.argv),
                         id="job-command", markup=False)
            yield Log(id="job-log", max_lines=2000)
            yield Static("", id="job-progress", markup=False)
            yield Static("starting…", id="job-status", markup=False)

    def on_mount(self) -> None:
        self.run_command()

    @work(exclusive=True, group="job")
    async def run_command(self) -> None:
        log = self.query_one("#job-log", Log)
        progress = self.query_one("#job-progress", Static)
        status = self.query_one("#job-status", Static)
        env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS=str(max(40, self.size.width - 8)))
        try:
            self._proc = proc = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, env=env)
        except OSError as e:
            status.update(f"could not start: {e}")
            self.dismiss(None)
            return
        self.running = True
        status.update("running… (k stops it)")
        buf, last = "", "\n"
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(4096):
            pieces, buf = split_output(buf + chunk.decode(errors="replace"))
            for piece, sep in pieces:
                if sep == "\r" or last == "\r":    # a bar's updates, and its last state (ended by \n)
                    if piece.strip():
                        self.progress = piece
                        progress.update(piece)
                if sep == "\n" and (piece.strip() or last != "\r"):   # not the bare end of a bar
                    self.lines.append(piece)
                    log.write_line(piece)
                last = sep
        if buf:
            self.lines.append(buf)
            log.write_line(buf)
        self.returncode = rc = await proc.wait()
        self.running = False
        out = "\n".join(self.lines)
        if rc == 0:
            status.update("done · Esc closes")
        elif rc == 2 and MISSING_COMMAND in out and self.missing_hint:
            status.update(f"not available: {self.missing_hint} · Esc closes")
        elif rc < 0:
            status.update(f"stopped (signal {-rc}) · Esc closes")
        else:
            status.update(f"failed (exit {rc}) · Esc closes")
        self.app.poll_ledger()     # what the command recorded shows on the screens below

    def action_stop(self) -> None:
        if self.running and self._proc is not None:
            self._proc.terminate()

    def action_close(self) -> None:
        if self.running:
            self.notify("still running: k stops it", severity="warning")
            return
        self.dismiss(self.returncode)
