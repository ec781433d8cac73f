"""The CLI: shared arguments come from one place, --cfg-options is mmengine's DictAction, errors are one line."""
import subprocess
import sys

import pytest
from conftest import REPO

from balloondet.cli import build_parser, main, parse_value
from balloondet.core import defaults
from balloondet.core.errors import BalloonDataError, BalloonDetError, ConfigError, DataError, ModelError, TrainError
from balloondet.detect import curves


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_shared_arguments_have_one_default():
    from balloondet.explain.methods import CAM_METHODS

    for verb in (["train", "c"], ["test", "c", "k"], ["predict", "c", "k", "i"], ["featmap", "c", "k", "i"],
                 ["cam", "c", "k", "i"], ["figures", "w"]):
        assert parse(*verb).device == defaults.DEVICE, verb
        assert parse(*verb, "--device", "cpu").device == "cpu"
    for verb in (["predict", "c", "k", "i"], ["cam", "c", "k", "i"], ["figures", "w"]):
        assert parse(*verb).score_thr == defaults.SCORE_THR
    cam = parse("cam", "c", "k", "i")
    assert (cam.method, cam.target_layer, cam.topk) == (defaults.CAM_METHOD, defaults.CAM_LAYER, defaults.CAM_TOPK)
    assert parse("figures", "w", "--method", "eigencam").method == "eigencam"
    for method in CAM_METHODS:
        assert parse("cam", "c", "k", "i", "--method", method).method == method
    for verb in (["data"], ["plot-dataset"], ["figures", "w"]):
        assert parse(*verb).data_root == defaults.DATA_ROOT
    assert parse("data", "--root", "data/synthetic").data_root == "data/synthetic"  # the older spelling
    assert parse("train", "c").data_root is None  # train/test: None keeps the config's dataset
    for verb in (["train", "c"], ["test", "c", "k"]):
        assert parse(*verb).image_cache is defaults.IMAGE_CACHE is True
        assert parse(*verb, "--no-image-cache").image_cache is False
    assert parse("train", "c", "--load-from", "coco.pth").load_from == "coco.pth"
    assert parse("train", "c").load_from is None
    for verb in (["cam", "c", "k", "i"], ["cam-eval", "c", "k", "f"]):
        assert parse(*verb).drise_masks is None  # None: defaults.DRISE_MASKS, read where D-RISE runs
        assert parse(*verb, "--drise-masks", "200").drise_masks == 200


def test_unknown_choices_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as err:
        parse("cam", "c", "k", "i", "--method", "scorecam")
    assert err.value.code == 2
    assert "invalid choice: 'scorecam'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse("train", "c", "--local-rank", "0")  # torchrun passes LOCAL_RANK in the environment


def test_cfg_options_are_parsed_like_mmengine(capsys):
    args = parse("train", "c", "--cfg-options", "train_dataloader.batch_size=4", "load_from=None",
                 "model.test_cfg.score_thr=0.05", "custom_imports.imports=[a,b]", "x.flag=true", "name=text")
    assert args.cfg_options == {"train_dataloader.batch_size": 4, "load_from": None,
                                "model.test_cfg.score_thr": 0.05, "custom_imports.imports": ["a", "b"],
                                "x.flag": True, "name": "text"}
    assert parse("test", "c", "k").cfg_options is None
    with pytest.raises(SystemExit) as err:
        parse("test", "c", "k", "--cfg-options", "load_from")
    assert err.value.code == 2
    assert "--cfg-options takes KEY=VALUE pairs, got 'load_from'" in capsys.readouterr().err


@pytest.mark.parametrize("text, value", [("3", 3), ("0.5", 0.5), ("True", True), ("false", False), ("None", None),
                                         ("[1, 2]", [1, 2]), ("data/synthetic", "data/synthetic"), ("'7'", "7")])
def test_notebook_parameters_are_literals_or_text(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize("error", [DataError, BalloonDataError, ConfigError, ModelError, TrainError])
def test_every_package_error_is_one_line_and_exit_2(error, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise error("what went wrong, and what to do")

    monkeypatch.setattr(curves, "plot_curves", fail)
    assert main(["curves", "some/work_dir"]) == 2
    assert capsys.readouterr().err == "balloondet curves: error: what went wrong, and what to do\n"


def test_other_errors_are_not_hidden(monkeypatch):
    def fail(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(curves, "plot_curves", fail)
    with pytest.raises(KeyError, match="a bug"):
        main(["curves", "some/work_dir"])


def test_error_hierarchy():
    assert BalloonDataError is DataError
    for error in (DataError, ConfigError, ModelError, TrainError):
        assert issubclass(error, BalloonDetError)
    assert issubclass(DataError, ValueError)  # what BalloonDataError was, for older callers


def test_building_the_parser_imports_no_torch():
    """`balloondet data` and `--help` stay quick: the CAM method names are loaded when needed."""
    code = ("import sys; from balloondet.cli import build_parser; p = build_parser(); "
            "p.parse_args(['data']); print(sorted(m for m in ('torch', 'mmdet') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
