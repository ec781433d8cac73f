"""The dataset figure."""
from balloondet.data.plot import plot_dataset


def test_plot_dataset_writes_figure(tmp_path, synthetic_root):
    fig = plot_dataset(synthetic_root, n=4, out=tmp_path / "dataset.png")
    assert (tmp_path / "dataset.png").stat().st_size > 10_000
    drawn = [ax for ax in fig.axes if ax.images]
    assert len(drawn) == 4
    assert all(ax.patches for ax in drawn if "(0 balloons)" not in ax.get_title())
