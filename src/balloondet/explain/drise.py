"""D-RISE (Petsiuk et al., "Black-box explanation of object detectors via saliency maps", CVPR 2021).

A black-box map: no layer, no gradient. The image is seen through many random masks; each
masked copy goes through the detector, and each mask is weighted by how well the detections on
it still reproduce the boxes to explain. The map is the weighted sum of the masks.

- ``DRISE``: the method, built like a grad-cam class (``DRISE(model)(input_tensor, targets)``):
  ``model`` maps a batch of images to one output per image, and ``targets[i]`` turns image i's
  output on a masked copy into the mask's weight. Any callables do: the tests explain a "detector"
  whose score is the mean of a known region, without mmdet.
- ``DRiseTarget``: the paper's similarity for detections (``bboxes``, ``scores``, ``labels``).
- ``rise_masks``: RISE's masks (Petsiuk et al., BMVC 2018): a coarse random binary grid, upsampled
  bilinearly to (grid + 1) cells and cropped at a random shift, so the masks are smooth and their
  edges fall anywhere, not on a fixed lattice.

Nothing here imports mmdet: ``cam.explain`` wraps the detector (``cam.DetectorWrapper``) for it.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch

from balloondet.core import defaults
from balloondet.core.errors import ConfigError


def rise_masks(n: int, size: tuple[int, int], grid: int = defaults.DRISE_GRID, p: float = defaults.DRISE_P,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` RISE masks (n, 1, h, w) in [0, 1]: 1 keeps a pixel, 0 replaces it.

    Each cell of a ``grid`` x ``grid`` binary grid is 1 with probability ``p``; the grid is
    upsampled bilinearly to (grid + 1) x cell size and cropped at a random shift within a cell.
    """
    h, w = size
    cell_h, cell_w = math.ceil(h / grid), math.ceil(w / grid)
    cells = (torch.rand(n, 1, grid, grid, generator=generator) < p).float()
    up = torch.nn.functional.interpolate(cells, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear",
                                         align_corners=False).clamp_(0, 1)  # bilinear may overshoot 1 by an ulp
    dy = torch.randint(0, cell_h, (n,), generator=generator).tolist()
    dx = torch.randint(0, cell_w, (n,), generator=generator).tolist()
    return torch.stack([up[i, :, y:y + h, x:x + w] for i, (y, x) in enumerate(zip(dy, dx, strict=True))])


class DRiseTarget:
    """A mask's weight from the detections on it: the mean over the boxes to explain of
    max over the detections of IoU(box, detection) x similarity of their classes.

    The paper's similarity is IoU x objectness x cosine of the class-probability vectors. A
    one-stage head with sigmoid scores (RTMDet) has neither objectness nor a probability vector
    per box: each (prior, class) pair is a detection with one score. The cosine of a box's label
    (one-hot) with such a detection is 1 for the same label and 0 otherwise, so the similarity
    kept is IoU x the detection's score for the box's label: 0 for other labels, and lower the
    less sure the detector is (a one-class cosine alone would always be 1).
    """

    def __init__(self, bboxes: torch.Tensor, labels: torch.Tensor) -> None:
        self.bboxes, self.labels = bboxes, labels

    def __call__(self, pred: Any) -> torch.Tensor:
        from torchvision.ops import box_iou

        if len(pred.bboxes) == 0 or len(self.bboxes) == 0:
            return torch.zeros((), device=pred.bboxes.device)
        ious = box_iou(self.bboxes.to(pred.bboxes), pred.bboxes)  # (K, D)
        same = self.labels.to(pred.labels.device)[:, None] == pred.labels[None]
        return (ious * pred.scores[None] * same).max(dim=1).values.mean()


class DRISE:
    """D-RISE: ``DRISE(model)(input_tensor, targets)`` -> (N, H, W) maps in [0, 1], one per image.

    ``model``: a batch (B, C, H, W) -> B outputs (a list, or a tensor with one row per image);
    ``targets``: one callable per input image, output -> a scalar weight. ``fill``: what a masked
    pixel becomes (a number or a tensor like the input); RISE's 0 is, on a normalised input, the
    normalisation's mean colour. ``size`` (h, w): mask only the image's top-left region (the rest
    is padding), the map is 0 outside it.

    The map is sum_i (w_i - mean w) M_i: the paper's sum_i w_i M_i less mean(w) x sum_i M_i. Each
    pixel is kept with the same probability p, so the term removed is a constant plus noise; the same
    map up to that constant, with less noise for as many masks, and 0 where a pixel does not matter.
    Its negative part (pixels whose presence lowers the weight) is cut, as Grad-CAM's ReLU cuts it.
    Seeded: the same seed draws the same masks (the randomisation check compares two models on them).
    """

    def __init__(self, model: Callable[[torch.Tensor], Sequence[Any]], n_masks: int = defaults.DRISE_MASKS,
                 grid: int = defaults.DRISE_GRID, p: float = defaults.DRISE_P,
                 batch_size: int = defaults.INFERENCE_BATCH, seed: int = defaults.DRISE_SEED,
                 fill: float | torch.Tensor = 0.0) -> None:
        if n_masks < 2 or grid < 1 or not 0 < p < 1 or batch_size < 1:
            raise ConfigError(f"D-RISE needs n_masks >= 2, grid >= 1, 0 < p < 1 and batch_size >= 1 "
                              f"(got n_masks={n_masks}, grid={grid}, p={p}, batch_size={batch_size})")
        self.model, self.n_masks, self.grid, self.p = model, n_masks, grid, p
        self.batch_size, self.seed, self.fill = batch_size, seed, fill

    def __call__(self, input_tensor: torch.Tensor, targets: Sequence[Callable[[Any], torch.Tensor]],
                 size: tuple[int, int] | None = None) -> np.ndarray:
        if len(targets) != len(input_tensor):
            raise ConfigError(f"D-RISE: {len(input_tensor)} image(s) but {len(targets)} target(s): give one per image")
        return np.stack([self.explain_one(input_tensor[i:i + 1], targets[i], size) for i in range(len(targets))])

    def explain_one(self, image: torch.Tensor, target: Callable[[Any], torch.Tensor],
                    size: tuple[int, int] | None = None) -> np.ndarray:
        """The (H, W) map of one image (1, C, H, W)."""
        H, W = image.shape[-2:]
        h, w = size or (H, W)
        generator = torch.Generator().manual_seed(self.seed)
        fill = self.fill if isinstance(self.fill, torch.Tensor) else torch.full_like(image, float(self.fill))
        weighted = torch.zeros(h, w, dtype=torch.float64)
        mask_sum = torch.zeros(h, w, dtype=torch.float64)
        total = 0.0
        for start in range(0, self.n_masks, self.batch_size):
            masks = rise_masks(min(self.batch_size, self.n_masks - start), (h, w), self.grid, self.p, generator)
            full = torch.ones(len(masks), 1, H, W)
            full[:, :, :h, :w] = masks
            full = full.to(image.device, image.dtype)
            outputs = self.model(fill + full * (image - fill))  # kept pixels from the image, the others `fill`
            weights = torch.stack([torch.as_tensor(target(out)).float().reshape(()) for out in outputs]).cpu()
            masks = masks[:, 0].double()
            weighted += torch.einsum("n,nhw->hw", weights.double(), masks)
            mask_sum += masks.sum(0)
            total += float(weights.sum())
        # > 0 where keeping the pixel raised the weight on average; ReLU'd and scaled by the maximum, as
        # grad-cam scales its maps (min-max of the raw sum would lift the noise outside the boxes instead)
        saliency = np.clip((weighted - total / self.n_masks * mask_sum).numpy(), 0, None)
        out = np.zeros((H, W), np.float32)
        if saliency.max() > 0:  # else no mask moved the score: no map (zeros)
            out[:h, :w] = saliency / saliency.max()
        return out
