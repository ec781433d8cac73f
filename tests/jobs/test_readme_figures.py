"""`balloondet figures WORK_DIR`: every README figure from a run's work dir."""
import pytest


@pytest.mark.train
def test_figures_regenerates_the_readme_figures(trained_smoke, synthetic_root, tmp_path, capsys):
    """`balloondet figures WORK_DIR`: every README figure from a run's work dir (cam-eval's copied when there)."""
    import shutil

    from balloondet.core import defaults
    from balloondet.jobs.readme_figures import make_figures

    work = tmp_path / "run"  # a copy: make_figures writes into the work dir (test detections, CAM folders)
    shutil.copytree(trained_smoke["work_dir"], work, ignore=shutil.ignore_patterns("*.pth", "cam_eval", "cam_missed"))
    written = make_figures(work, synthetic_root, out=tmp_path / "figs", device="cpu")
    names = {p.name for p in written}
    assert {defaults.DATASET_FIGURE, defaults.CURVES_FIGURE, defaults.PREDICTION_FIGURE, defaults.CAM_FIGURE,
            defaults.GT_VS_PRED_FIGURE, defaults.PR_FIGURE, defaults.BOX_SIZES_FIGURE} <= names
    assert all(p.stat().st_size > 5_000 for p in written)
    assert f"for {defaults.CAM_EVAL_FIGURE}" in capsys.readouterr().out  # no cam-eval run yet: said, not faked

    (work / "cam_eval").mkdir()
    shutil.copyfile(tmp_path / "figs" / defaults.PR_FIGURE, work / "cam_eval" / defaults.CAM_EVAL_FIGURE)
    assert defaults.CAM_EVAL_FIGURE in {p.name for p in make_figures(work, synthetic_root, out=tmp_path / "figs",
                                                                        device="cpu")}
