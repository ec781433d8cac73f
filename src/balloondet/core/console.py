"""The console a long step shows: a progress bar (text on a console, one line updated in place in
Jupyter), and the quiet console that notebooks train under (mmengine's log to its file only)."""
from __future__ import annotations

import contextlib
import io
import logging
import sys
import warnings
from typing import TYPE_CHECKING, Iterator, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm


def in_notebook() -> bool:
    """True inside a Jupyter kernel (tqdm.autonotebook's test)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(total: int, desc: str, unit: str = "it", initial: int = 0, file: TextIO | None = None,
                 mininterval: float = 1.0) -> tqdm:
    """A tqdm bar with ETA: tqdm's text on ``file`` (stderr) on a console, one line updated in place in Jupyter."""
    from tqdm import tqdm

    notebook = in_notebook()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=NotebookLine() if notebook else file,
                ncols=110 if notebook else None, dynamic_ncols=not notebook, mininterval=mininterval)


class NotebookLine:
    """A file for tqdm that shows only its latest frame, as one notebook output updated in place."""

    encoding = "utf-8"  # tqdm draws its unicode blocks into files that say so

    def __init__(self) -> None:
        from IPython.display import display

        self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def write(self, text: str) -> int:
        frames = [f for f in text.replace("\r", "\n").split("\n") if f.strip()]
        if frames:
            self.handle.update({"text/plain": frames[-1].rstrip()}, raw=True)
        return len(text)

    def flush(self) -> None:
        pass


class QuietConsole:
    """What ``quiet_console`` yields: call ``attach(runner.logger)`` once the Runner exists."""

    def __init__(self, enabled: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.enabled = enabled
        self.stdout = stdout  # the console's own streams, for what should still be shown
        self.stderr = stderr
        self.captured = io.StringIO()  # print()s of mmengine, mmdet and pycocotools while quiet
        self.logger: logging.Logger | None = None
        self.pending: list[str] = []  # warnings from before the Runner's log file existed

    def attach(self, logger: logging.Logger) -> None:
        """Keep ``logger``'s file handler; its console handler shows errors only."""
        if not self.enabled:
            return
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.ERROR)
                handler.setStream(self.stderr)
        self.logger = logger
        for text in self.pending:
            logger.warning(text)
        self.pending.clear()

    def showwarning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: TextIO | None = None, line: str | None = None) -> None:
        """``warnings.showwarning`` while quiet: into the log file instead of stderr."""
        text = warnings.formatwarning(message, category, filename, lineno, line).rstrip()
        if self.logger is not None:
            self.logger.warning(text)
        else:
            self.pending.append(text)


@contextlib.contextmanager
def quiet_console(enabled: bool = True) -> Iterator[QuietConsole]:
    """Inside the block (when ``enabled``), nothing of mmengine's reaches the console.

    mmengine's logger binds its console handler to ``sys.stdout`` when the Runner is built, and
    logs the environment and the whole config right then; building it under a redirected stdout
    sends those to the log file only. ``attach`` then limits the console handler to errors, so
    the per-iteration lines, the hook table, parameter-wise options and "Saving checkpoint" lines
    go to the log file only. Plain ``print``s (pycocotools' evaluation chatter) land in
    ``captured``, Python warnings in the log file. stderr stays free for a progress bar.
    """
    console = QuietConsole(enabled, sys.stdout, sys.stderr)
    if not enabled:
        yield console
        return
    with warnings.catch_warnings(), contextlib.redirect_stdout(console.captured):
        warnings.showwarning = console.showwarning
        yield console
