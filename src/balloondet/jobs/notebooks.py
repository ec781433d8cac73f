"""The main job: execute run.ipynb then analyse.ipynb top to bottom (papermill), in place."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from balloondet.core import defaults
from balloondet.core.files import display_path

if TYPE_CHECKING:
    from nbformat import NotebookNode

NOTEBOOKS = ("run.ipynb", "analyse.ipynb")


def run_notebook(path: str | Path, parameters: dict[str, Any] | None = None, out: str | Path | None = None,
                 cwd: str | Path | None = None, log_output: bool = True) -> NotebookNode:
    """Execute one notebook with papermill; ``out`` defaults to the notebook itself."""
    import logging

    import nbformat
    import papermill

    if log_output and not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")  # papermill streams cell output via logging
    path = Path(path)
    out = Path(out) if out else path
    print(f"=== executing {display_path(path)} -> {display_path(out)}")
    nb = papermill.execute_notebook(str(path), str(out), parameters=parameters or {}, cwd=str(cwd or path.parent),
                                    log_output=log_output, progress_bar=not log_output, kernel_name="python3")
    # papermill records where it read and wrote: as printed paths, not this machine's absolute ones
    meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = display_path(meta[key])
    nbformat.write(nb, str(out))
    return nb


def run_notebooks(parameters: dict[str, Any] | None = None, names: Sequence[str] = NOTEBOOKS,
                  folder: str | Path = defaults.SOURCE_ROOT, out_dir: str | Path | None = None,
                  log_output: bool = True) -> list[Path]:
    """Execute the notebooks in order with shared ``parameters``; returns the written paths."""
    written = []
    for name in names:
        src = Path(folder) / name
        out = Path(out_dir) / name if out_dir else src
        run_notebook(src, parameters, out, cwd=folder, log_output=log_output)
        written.append(out)
    return written
