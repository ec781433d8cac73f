"""Images and figures: palette PNGs and previews small enough for a README page."""
import numpy as np
import pytest

from balloondet.core.errors import DataError


def test_figures_for_a_readme_page_are_small(tmp_path):
    """A photo-with-heat-map PNG is written with a 256-colour palette (a third of the bytes), and the
    prediction figure's copy is at most PREVIEW_MAX_SIDE px, a JPEG; a file that is not an image is refused."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from balloondet.core.defaults import PREVIEW_MAX_SIDE
    from balloondet.core.images import save_figure, write_preview

    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 255, (600, 900, 3), dtype=np.uint8), (0, 0), 3)
    fig, ax = plt.subplots(figsize=(9, 6))
    ax.imshow(photo)
    ax.imshow(rng.random((20, 30)), alpha=0.4, cmap="jet", extent=(0, 900, 600, 0))
    save_figure(fig, tmp_path / "palette.png")
    fig.savefig(tmp_path / "full.png", dpi=80)
    with Image.open(tmp_path / "palette.png") as png:
        assert png.mode == "P" and png.size == (720, 480)
    assert (tmp_path / "palette.png").stat().st_size < 0.6 * (tmp_path / "full.png").stat().st_size

    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((1536, 2048, 3), np.uint8))
    preview = write_preview(tmp_path / "big.png", tmp_path / "preview.jpg")
    assert cv2.imread(str(preview)).shape == (PREVIEW_MAX_SIDE * 3 // 4, PREVIEW_MAX_SIDE, 3)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="broken.jpg: not an image"):
        write_preview(tmp_path / "broken.jpg", tmp_path / "out.jpg")
    assert not (tmp_path / "out.jpg").exists()
