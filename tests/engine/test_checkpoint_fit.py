"""Does a checkpoint fit a model: missing and mismatched tensors, the class-count-dependent head when fine-tuning."""
from __future__ import annotations

import types

import pytest
import torch

from balloondet.core import defaults
from balloondet.core.errors import CheckpointMismatchError
from balloondet.engine.checkpoint import safe_load
from balloondet.engine.checkpoint_fit import CheckpointFitHook, check_fits

SMOKE = "rtmdet_tiny_smoke_synthetic"


def test_check_fits_counts_missing_and_mismatched(smoke_model, coco_head_state_dict, tmp_path):
    state_dict = smoke_model.state_dict()
    assert check_fits(smoke_model, {"state_dict": state_dict}, "x.pth").missing == []
    assert check_fits(smoke_model, {f"module.{k}": v for k, v in state_dict.items()}, "x.pth").mismatched == []
    partial = {k: v for k, v in state_dict.items() if not k.startswith("neck.")}
    n_neck = len([k for k in state_dict if k.startswith("neck.") and not k.endswith("num_batches_tracked")])
    with pytest.raises(CheckpointMismatchError, match=rf"x.pth: {n_neck} of \d+ model tensors missing, 0 shape"):
        check_fits(smoke_model, partial, "x.pth")
    with pytest.raises(CheckpointMismatchError, match="6 shape mismatches"):
        check_fits(smoke_model, coco_head_state_dict, "coco.pth")
    report = check_fits(smoke_model, coco_head_state_dict, "coco.pth", allow_head_mismatch=True)
    assert len(report.skipped_head) == 6 and not report.missing and not report.mismatched
    assert report.skipped_line() == ("coco.pth: not loading 6 class-count-dependent head tensors "
                                     "(bbox_head.rtm_cls.*: 80 class outputs in the checkpoint, 1 in the model); "
                                     "they start from their initialisation")
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2)).state_dict()
    for lenient in (False, True):  # another model: refused even for fine-tuning
        with pytest.raises(CheckpointMismatchError, match="is this a checkpoint of this (config|model)"):
            check_fits(smoke_model, other, "other.pth", allow_head_mismatch=lenient)
    with pytest.raises(CheckpointMismatchError, match="holds no state dict"):
        check_fits(smoke_model, [1, 2], "list.pth")


def test_fine_tuning_needs_most_of_the_backbone_and_of_the_neck(smoke_model, coco_head_state_dict):
    """At least PRETRAINED_FIT of each part's tensors must fit; the head may differ. Said in one line either way."""
    neck = [k for k in coco_head_state_dict if k.startswith("neck.") and not k.endswith("num_batches_tracked")]

    def without(share):
        drop = set(neck[:round(share * len(neck))])
        return {k: v for k, v in coco_head_state_dict.items() if k not in drop}

    assert defaults.PRETRAINED_FIT == 0.9
    report = check_fits(smoke_model, without(0.05), "coco.pth", allow_head_mismatch=True)  # 95 % of the neck
    assert report.part_share("backbone") == 1.0 and 0.9 < report.part_share("neck") < 1.0
    assert report.fit_line().startswith(f"coco.pth: backbone 100 % ({report.parts['backbone'][1]} of ")
    with pytest.raises(CheckpointMismatchError, match=r"neck 80 % .*needs at least 90 % of the neck to fit"):
        check_fits(smoke_model, without(0.2), "coco.pth", allow_head_mismatch=True)
    with pytest.raises(CheckpointMismatchError):  # a trained model to load for analysis must fit entirely
        check_fits(smoke_model, without(0.05), "coco.pth")


def test_check_fits_takes_what_safe_load_read(smoke_model, fitting_checkpoint):
    report = check_fits(smoke_model, safe_load(fitting_checkpoint), fitting_checkpoint)
    assert report.total > 200 and not report.missing and not report.mismatched
    assert report.path == str(fitting_checkpoint)


def test_fit_hook_drops_class_count_dependent_head_tensors_when_fine_tuning(smoke_model, coco_head_state_dict):
    hook = CheckpointFitHook(allow_head_mismatch=True)
    runner = types.SimpleNamespace(model=smoke_model, _resume=False, _load_from="coco.pth")
    checkpoint = {"state_dict": dict(coco_head_state_dict)}
    hook.after_load_checkpoint(runner, checkpoint)
    assert not any("rtm_cls" in k for k in checkpoint["state_dict"])
    assert len(checkpoint["state_dict"]) == len(coco_head_state_dict) - 6
    runner._resume = True  # resuming is strict
    with pytest.raises(CheckpointMismatchError):
        hook.after_load_checkpoint(runner, {"state_dict": dict(coco_head_state_dict)})
    with pytest.raises(CheckpointMismatchError):  # test / load_from for evaluation are strict
        CheckpointFitHook().after_load_checkpoint(runner, {"state_dict": dict(coco_head_state_dict)})


@pytest.mark.train
def test_fine_tuning_skips_the_class_count_dependent_head_in_one_line(coco_head_state_dict, synthetic_root, tmp_path):
    """load_from a COCO-like (80-class) checkpoint into the 1-class model: one epoch."""
    from balloondet.detect.train import train

    torch.save({"state_dict": coco_head_state_dict, "meta": {}}, tmp_path / "coco80.pth")
    work_dir = tmp_path / "fine_tuned"
    train(SMOKE, work_dir=work_dir, device="cpu", epochs=1, data_root=synthetic_root,
          cfg_options={"load_from": str(tmp_path / "coco80.pth")})
    log = "\n".join(p.read_text() for p in work_dir.rglob("*.log"))
    lines = [line for line in log.splitlines() if "class-count-dependent head tensors" in line]
    assert len(lines) == 1
    assert "not loading 6" in lines[0] and "80 class outputs in the checkpoint, 1 in the model" in lines[0]
    assert (work_dir / "epoch_1.pth").is_file()
