"""In a notebook a saved figure shows as the saved file's bytes (io.save_figure), not as matplotlib's
full-colour PNG: a real kernel with the inline backend runs a figure step and the outputs are compared
with the files written."""
import base64
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import balloondet

SRC = Path(balloondet.__file__).resolve().parents[1]  # the package under test, not an installed copy


def execute(cells: list[str], cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"import sys; sys.path.insert(0, {str(SRC)!r})"),
                                         *map(nbformat.v4.new_code_cell, cells)])
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def images(cell: nbformat.NotebookNode) -> list[tuple[str, bytes]]:
    """(mime type, decoded bytes) of every image the cell displayed."""
    found = []
    for out in cell.outputs:
        assert out.output_type != "error", out
        found += [(mime, base64.b64decode(data)) for mime, data in out.get("data", {}).items()
                  if mime.startswith("image/")]
    return found


@pytest.mark.notebook  # starts a kernel
def test_figure_step_in_a_notebook_embeds_the_saved_file(synthetic_root, tmp_path):
    nb = execute([
        "%matplotlib inline\nfrom balloondet.data.plot import plot_dataset\n"
        f"plot_dataset({str(synthetic_root)!r}, n=4, out='dataset.png');",
        # a figure saved and closed in the cell (cam's one figure per image) is not shown
        "import matplotlib.pyplot as plt\nfrom balloondet.core.images import save_figure\n"
        "fig, ax = plt.subplots()\nax.plot([0, 1], [1, 0])\nplt.close(save_figure(fig, 'closed.png'))",
        "fig, ax = plt.subplots()\nax.imshow([[0, 1], [1, 0]])\nsave_figure(fig, 'photo.jpg');",
        "fig, ax = plt.subplots()\nax.plot([0, 1])\nsave_figure(fig, None);",  # unsaved: matplotlib's own PNG
    ], tmp_path)
    dataset, closed, photo, unsaved = nb.cells[1:]
    assert images(dataset) == [("image/png", (tmp_path / "dataset.png").read_bytes())]
    assert (tmp_path / "closed.png").is_file() and images(closed) == []
    assert images(photo) == [("image/jpeg", (tmp_path / "photo.jpg").read_bytes())]
    [(mime, png)] = images(unsaved)
    assert mime == "image/png" and png.startswith(b"\x89PNG")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_saved_figure_displays_its_file(tmp_path, monkeypatch, suffix):
    """Without a kernel: under the inline backend the figure's IPython display is the saved file's bytes."""
    import matplotlib
    import matplotlib.pyplot as plt
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from balloondet.core.images import save_figure

    monkeypatch.setattr(matplotlib, "get_backend", lambda: "module://matplotlib_inline.backend_inline")
    fig, ax = plt.subplots()
    try:
        ax.plot([0, 1])
        save_figure(fig, tmp_path / f"fig{suffix}")
        shell = InteractiveShell.instance()  # before capture_output, which hooks the running shell's display
        with capture_output() as captured:
            format_dict, _ = shell.display_formatter.format(fig)
    finally:
        plt.close(fig)
    assert format_dict == {}  # the figure handed its display over
    [shown] = captured.outputs
    mime = "image/png" if suffix == ".png" else "image/jpeg"
    assert base64.b64decode(shown.data[mime]) == (tmp_path / f"fig{suffix}").read_bytes()
