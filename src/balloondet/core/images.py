"""Images and figures: list, read and measure images as mmcv's loader sees them (EXIF-aware), save
figures small enough for a README page."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from balloondet.core import defaults
from balloondet.core.errors import ConfigError, DataError
from balloondet.core.files import atomic_path

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
JPEG = {".jpg", ".jpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(source: str | Path) -> list[Path]:
    """The images of a folder (sorted by name), or ``[source]`` for one image file."""
    source = Path(source)
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{source}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return images
    if not source.is_file():
        raise DataError(f"image not found: {source}")
    return [source]


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8, EXIF rotation applied like mmcv's loader; a clear error when unreadable."""
    import mmcv

    if not Path(path).is_file():
        raise DataError(f"image not found: {path}")
    try:
        img = mmcv.imread(str(path), channel_order="rgb")
    except Exception as err:  # noqa: BLE001  (mmcv raises several types)
        raise DataError(f"unreadable image {path} ({err})") from None
    if img is None:
        raise DataError(f"unreadable image {path}")
    return img


def image_size(path: str | Path, where: str = "") -> tuple[int, int]:
    """(width, height) as mmcv's loader sees the image: EXIF rotation applied."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    prefix = f"{where}: " if where else ""
    if not path.is_file():
        raise DataError(f"{prefix}image not found: {path}")
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    except (UnidentifiedImageError, OSError) as err:
        raise DataError(f"{prefix}unreadable image {path} ({err})") from None
    if orientation in TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return width, height


FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")  # what save_figure writes (the format from the suffix)


def check_figure_path(out: str | Path | None) -> None:
    """A ``ConfigError`` in one line unless ``out`` (a figure's file) ends in one of ``FIGURE_SUFFIXES``."""
    if out is not None and Path(out).suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError(f"--out {out}: a figure's file name must end in {', '.join(FIGURE_SUFFIXES)} "
                          f"(e.g. {Path(out).with_suffix('.png').name if Path(out).name else 'figure.png'})")


def save_figure(fig: Figure, out: str | Path | None, dpi: int = 80) -> Figure:
    """Save a matplotlib figure (atomically) unless ``out`` is None.

    PNGs are written with a 256-colour palette: photographs with heat maps on them were 0.6 MB
    each as full-colour PNGs, about a third of that with a palette (what a README page loads).
    Outside Jupyter's inline backend the figure is also released from pyplot, so scripts and
    tests do not pile up open figures; in a notebook pyplot shows it at the end of the cell (unless
    closed before), and a saved figure shows as the saved file's bytes, not as matplotlib's
    full-colour PNG (a notebook then weighs what the figures folder weighs).
    """
    import matplotlib
    import matplotlib.pyplot as plt

    check_figure_path(out)
    if out is not None:
        out = Path(out)
        with atomic_path(out, suffix=out.suffix) as tmp:
            if out.suffix.lower() == ".png":
                _save_png_256(fig, tmp, dpi)
            else:
                fig.savefig(tmp, dpi=dpi, **({"pil_kwargs": {"quality": 85}} if out.suffix.lower() in JPEG else {}))
    if "inline" not in matplotlib.get_backend():
        plt.close(fig)
    elif out is not None and out.suffix.lower() in EMBEDDED:
        show_saved(fig, out)
    return fig


EMBEDDED = JPEG | {".png"}  # the formats a notebook shows as they were saved


def show_saved(fig: Figure, path: Path) -> None:
    """Make IPython display ``fig`` as the bytes saved at ``path`` (read now), wherever it would display
    the figure: the inline backend's end-of-cell show and a cell's last expression both call
    ``_ipython_display_`` before any PNG formatter."""
    from IPython.display import Image, display

    image = Image(data=path.read_bytes(), format="jpeg" if path.suffix.lower() in JPEG else "png")
    fig._ipython_display_ = lambda: display(image)  # an instance attribute: this figure only


def _save_png_256(fig: Figure, path: Path, dpi: int) -> None:
    """The figure as a palette PNG (256 colours, dithered)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(path, format="PNG", optimize=True)


def write_preview(src: str | Path, dst: str | Path, max_side: int = defaults.PREVIEW_MAX_SIDE) -> Path:
    """A copy of the image ``src`` at most ``max_side`` px on its longer side, as a JPEG (quality 85), atomically."""
    import cv2

    image = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"{src}: not an image OpenCV can read")
    scale = max_side / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    dst = Path(dst)
    with atomic_path(dst, suffix=".jpg") as tmp:
        if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, 85]):
            raise DataError(f"{dst}: could not write the image")
    return dst
