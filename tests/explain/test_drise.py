"""D-RISE and the pointing games: on hand-made maps and a "detector" that only looks at a known region,
then on the smoke model."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from balloondet.core import defaults
from balloondet.core.errors import ConfigError, DataError
from balloondet.explain.drise import DRISE, DRiseTarget, rise_masks
from balloondet.explain.localisation import chance, energy_pointing_game, pointing_game, union_mask

# --- the pointing games, exact values ------------------------------------------------------
BOX = np.array([[20, 10, 40, 30]], np.float32)  # x1, y1, x2, y2 in a 50 x 80 (h x w) map: 20 x 20 = 400 px


def test_pointing_game_hits_misses_tolerance_and_ties():
    heatmap = np.zeros((50, 80))
    heatmap[15, 25] = 1  # inside
    assert pointing_game(heatmap, BOX) == 1
    heatmap[15, 25], heatmap[15, 70] = 0, 1  # 30 px right of the box: beyond 15 px
    assert pointing_game(heatmap, BOX) == 0
    heatmap[15, 70], heatmap[15, 50] = 0, 1  # 10 px right: within the tolerance, not with none
    assert pointing_game(heatmap, BOX) == 1
    assert pointing_game(heatmap, BOX, tolerance=0) == 0
    heatmap[15, 50], heatmap[45, 75], heatmap[20, 30] = 0, 1, 1  # a tie: one of the maxima inside is a hit
    assert pointing_game(heatmap, BOX, tolerance=0) == 1
    assert pointing_game(heatmap, BOX[:0], tolerance=0) == 0  # no box: nothing to hit
    two = np.array([[0, 0, 5, 5], [20, 10, 40, 30]])  # several boxes explained by one map: their union
    assert pointing_game(heatmap, two, tolerance=0) == 1
    assert math.isnan(pointing_game(np.full((50, 80), 0.3), BOX))  # a constant map points nowhere
    assert defaults.POINTING_TOLERANCE == 15  # Zhang et al.'s


def test_energy_pointing_game_is_the_share_inside():
    heatmap = np.ones((50, 80))
    assert energy_pointing_game(heatmap, BOX) == pytest.approx(400 / 4000)  # uniform: the box's share
    assert energy_pointing_game(heatmap, BOX) == pytest.approx(chance(BOX, heatmap.shape))
    heatmap[10:30, 20:40] = 7  # 400 px at 7 inside, 3600 px at 1 outside
    assert energy_pointing_game(heatmap, BOX) == pytest.approx(2800 / 6400)
    heatmap[:] = -1
    heatmap[10:30, 20:40] = 2  # negative values carry no energy
    assert energy_pointing_game(heatmap, BOX) == 1
    assert math.isnan(energy_pointing_game(np.zeros((50, 80)), BOX))
    with pytest.raises(DataError, match="2-D map"):
        energy_pointing_game(np.ones((2, 5, 5)), BOX)


def test_union_mask_and_chance():
    mask = union_mask(np.array([[1, 2, 4, 3], [3, 0, 5, 1]]), (4, 6))  # pixel (x, y) covers [x, x + 1)
    assert mask.astype(int).tolist() == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 0, 0],
                                         [0, 0, 0, 0, 0, 0]]
    assert chance(BOX, (50, 80)) == pytest.approx(0.1)
    assert chance(BOX, (50, 80), tolerance=15) == pytest.approx(50 * 45 / 4000)  # x 5-55, y 0-45 (cut at the edge)


def test_a_map_without_information_scores_chance():
    """``chance`` is what a map that knows nothing scores: i.i.d. noise maps (their maximum anywhere)
    hit the grown boxes as often as the boxes' grown share of the image, and put that share of their
    energy inside the boxes themselves. (grad-cam's RandomCAM is not such a map: it weights the layer's
    activations at random, and the activations are the objects', so it scores above chance.)"""
    rng = np.random.default_rng(0)
    boxes, shape, n = np.array([[5, 8, 25, 20], [50, 30, 70, 48]]), (50, 80), 4000
    hits = np.mean([pointing_game(rng.random(shape), boxes) for _ in range(n)])
    p = chance(boxes, shape, tolerance=15)
    assert 0.3 < p < 0.9  # not a trivial share
    assert abs(hits - p) < 4 * np.sqrt(p * (1 - p) / n), (hits, p)  # within 4 binomial standard errors
    energy = np.mean([energy_pointing_game(rng.random(shape), boxes) for _ in range(200)])
    assert energy == pytest.approx(chance(boxes, shape), abs=0.005)


# --- D-RISE on a region "detector" ---------------------------------------------------------
H, W = 48, 64
REGION = (slice(12, 24), slice(36, 52))  # rows, columns: what the "detector" looks at
REGION_BOX = np.array([[36, 12, 52, 24]])


def region_score(batch: torch.Tensor) -> torch.Tensor:
    """A detector whose score is the mean of the image over REGION: one score per image."""
    return batch[:, :, REGION[0], REGION[1]].mean(dim=(1, 2, 3))


def region_map(n_masks: int, seed: int = 0, grid: int = 8) -> np.ndarray:
    image = torch.ones(1, 3, H, W)  # masked pixels become 0: the score is the mask's mean over REGION
    return DRISE(region_score, n_masks=n_masks, grid=grid, seed=seed, batch_size=64)(image, [lambda s: s])[0]


def test_rise_masks_are_smooth_seeded_and_keep_p_of_the_pixels():
    masks = rise_masks(200, (H, W), grid=8, p=0.5, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (200, 1, H, W) and masks.min() >= 0 and masks.max() <= 1
    assert masks.mean() == pytest.approx(0.5, abs=0.03)
    assert ((masks > 0) & (masks < 1)).float().mean() > 0.3  # bilinear: soft edges, not a binary lattice
    again = rise_masks(200, (H, W), grid=8, p=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)


def test_drise_map_lies_on_the_region_the_detector_uses():
    heatmap = region_map(1000)
    assert heatmap.shape == (H, W) and heatmap.min() == 0 and heatmap.max() == pytest.approx(1)
    assert pointing_game(heatmap, REGION_BOX, tolerance=0) == 1
    # the region is 6 % of the image; masks are smooth over a cell (8 px), so grow it by one cell
    assert energy_pointing_game(heatmap, REGION_BOX) > 0.4  # measured 0.52
    assert energy_pointing_game(heatmap, REGION_BOX + [-8, -8, 8, 8]) > 0.85  # 0.92
    inside = union_mask(REGION_BOX, (H, W))
    assert heatmap[inside].mean() > 5 * heatmap[~union_mask(REGION_BOX + [-8, -8, 8, 8], (H, W))].mean()


def test_more_masks_come_closer_to_a_long_run():
    reference = region_map(4000, seed=123)  # other masks than the runs compared with it
    corr = [np.corrcoef(region_map(n).ravel(), reference.ravel())[0, 1] for n in (30, 300, 2000)]
    assert corr[0] < corr[1] < corr[2], corr  # measured 0.77, 0.98, 0.99
    assert corr[2] > 0.97, corr


def test_drise_is_seeded_masks_only_the_image_region_and_checks_its_arguments():
    assert np.array_equal(region_map(100, seed=5), region_map(100, seed=5))
    assert not np.array_equal(region_map(100, seed=5), region_map(100, seed=6))
    padded = torch.ones(1, 3, H + 16, W + 16)
    seen = []

    def model(batch):
        seen.append(batch[:, :, H:, :].min().item())  # the padding below the image is never masked
        return region_score(batch)

    heatmap = DRISE(model, n_masks=8, grid=8)(padded, [lambda s: s], size=(H, W))[0]
    assert heatmap.shape == (H + 16, W + 16) and heatmap[H:].max() == 0 and min(seen) == 1
    flat = DRISE(lambda b: torch.zeros(len(b)), n_masks=8)(torch.ones(1, 3, 8, 8), [lambda s: s])
    assert flat.shape == (1, 8, 8) and flat.max() == 0  # no mask moved the score: no map
    with pytest.raises(ConfigError, match="n_masks >= 2"):
        DRISE(region_score, n_masks=1)
    with pytest.raises(ConfigError, match="0 < p < 1"):
        DRISE(region_score, p=1)
    with pytest.raises(ConfigError, match="one per image"):
        DRISE(region_score, n_masks=8)(torch.ones(2, 3, H, W), [lambda s: s])


def test_drise_target_is_iou_times_the_same_label_score():
    target = DRiseTarget(torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), torch.tensor([0, 0]))
    pred = SimpleNamespace(bboxes=torch.tensor([[0.0, 0, 10, 5], [0, 0, 10, 10], [20, 20, 30, 30]]),
                           scores=torch.tensor([0.9, 0.4, 0.8]), labels=torch.tensor([0, 0, 1]))
    # box 1: max(IoU 0.5 x 0.9, 1 x 0.4) = 0.45; box 2: its only match has another label: 0
    assert float(target(pred)) == pytest.approx((0.45 + 0) / 2)
    nothing = SimpleNamespace(bboxes=torch.zeros(0, 4), scores=torch.zeros(0), labels=torch.zeros(0, dtype=torch.long))
    assert float(target(nothing)) == 0


def test_an_uninformative_map_points_at_chance():
    """The chance the table's ``pointing_chance`` states: i.i.d. noise maps hit the boxes as often as their
    grown share of the image (1000 maps, 3 sd of a binomial: 0.047)."""
    rng = np.random.default_rng(0)
    hits, shares = [], []
    for _ in range(1000):
        x1, y1 = rng.integers(0, 60), rng.integers(0, 30)
        box = np.array([[x1, y1, x1 + rng.integers(5, 20), y1 + rng.integers(5, 20)]])
        hits.append(pointing_game(rng.random((50, 80)), box))
        shares.append(chance(box, (50, 80), defaults.POINTING_TOLERANCE))
    assert np.mean(hits) == pytest.approx(np.mean(shares), abs=0.047)


# --- on the smoke model --------------------------------------------------------------------
MASKS = 96  # enough for the smoke model's large balloons at 192 px; the default is for 640 px photos


@pytest.mark.train
def test_drise_in_cam_and_cam_eval(smoke_detector, synthetic_root, tmp_path, monkeypatch):
    """``cam --method drise`` draws a map of the image (layer "image"); ``cam-eval --methods drise`` adds one row
    with layer "image", whose seconds per image include the map, and whose energy lies in the boxes."""
    import json

    from balloondet.explain.cam import box_cam
    from balloondet.explain.cam_eval import cam_eval

    monkeypatch.setattr(defaults, "DRISE_MASKS", MASKS)
    image = sorted((synthetic_root / "val").glob("*.jpg"))[0]
    result = box_cam(smoke_detector, image, method="drise")
    assert result.layer == "image" and result.heatmap.shape == result.image.shape[:2] and result.heatmap.max() > 0
    assert energy_pointing_game(result.heatmap, result.boxes) > chance(result.boxes, result.heatmap.shape)
    evaluation = cam_eval(smoke_detector, synthetic_root / "val", methods=["drise"], layers=["neck.out_convs.0"],
                          step=0.25, max_images=2, randomisation=False, out=tmp_path)
    rows = {(r["method"], r["layer"]): r for r in evaluation.rows}
    assert list(rows) == [("drise", "image"), ("randomcam", "neck.out_convs.0"), ("sobel", "image")]
    drise, sobel = rows["drise", "image"], rows["sobel", "image"]
    assert drise["stride"] is None and drise["images"] == 2
    assert drise["seconds_per_image"] > 5 * sobel["seconds_per_image"]  # 96 forward passes more than Sobel's map
    assert drise["energy_pointing_game"] > drise["pointing_chance"]  # the grown share; 0.85 > 0.60 on the first image
    doc = json.loads((tmp_path / "cam_eval.json").read_text())
    assert {"pointing_game", "energy_pointing_game", "pointing_chance"} <= set(doc["rows"][0])
    assert "| drise | image | – |" in (tmp_path / "cam_eval.md").read_text()
    assert doc["drise_masks"] == MASKS


@pytest.mark.train
def test_drise_masks_is_how_many_masked_images_are_detected(smoke_detector, synthetic_root, monkeypatch):
    """``drise_masks`` reaches D-RISE from ``box_cam`` (``cam --drise-masks``); a count below 2 is refused by
    ``cam_eval`` before any map is drawn."""
    from balloondet.explain import drise
    from balloondet.explain.cam import box_cam
    from balloondet.explain.cam_eval import cam_eval

    drawn = []
    monkeypatch.setattr(drise, "rise_masks", lambda n, *args: drawn.append(n) or rise_masks(n, *args))
    image = sorted((synthetic_root / "val").glob("*.jpg"))[0]
    few = box_cam(smoke_detector, image, method="drise", drise_masks=10)
    assert sum(drawn) == 10 and max(drawn) <= defaults.INFERENCE_BATCH
    drawn.clear()
    more = box_cam(smoke_detector, image, method="drise", drise_masks=MASKS)
    assert sum(drawn) == MASKS and not np.allclose(few.heatmap, more.heatmap)
    with pytest.raises(ConfigError, match="--drise-masks 1"):
        cam_eval(smoke_detector, synthetic_root / "val", methods=["drise"], drise_masks=1, out=None)
