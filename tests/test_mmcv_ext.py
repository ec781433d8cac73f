"""mmcv._ext from torchvision (mmcv_ext/): mmcv's nms contract, a clear error for every other op, in every process."""
import subprocess
import sys
import textwrap
import zipfile

import mmcv._ext as ext
import pytest
import torch
from conftest import REPO
from mmcv.ops import batched_nms, nms


def iou_row(boxes: torch.Tensor, i: int, offset: int = 0) -> torch.Tensor:
    """IoU of box ``i`` with every box, in float64 (mmcv's formula; ``offset=1``: its legacy pixel widths)."""
    b = boxes.double()
    area = (b[:, 2] - b[:, 0] + offset).clamp(min=0) * (b[:, 3] - b[:, 1] + offset).clamp(min=0)
    wh = (torch.min(b[i, 2:], b[:, 2:]) - torch.max(b[i, :2], b[:, :2]) + offset).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    return inter / (area[i] + area - inter).clamp(min=1e-12)


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float, offset: int = 0) -> list[int]:
    """Greedy NMS as mmcv's CPU kernel computes it: highest score first, suppress IoU > thr."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    removed = torch.zeros(len(scores), dtype=torch.bool)
    kept = []
    for i in order:
        if removed[i]:
            continue
        kept.append(i)
        removed |= iou_row(boxes, i, offset) > thr
    return kept


def is_valid_nms(boxes, scores, kept, thr):
    """Ties may be broken either way; any valid greedy result keeps no overlapping pair and suppresses
    each other box with a kept box of at least its score."""
    kept_set = set(kept)
    for i in range(len(scores)):
        overlaps = [k for k in kept if k != i and float(iou_row(boxes, i)[k]) > thr]
        if i in kept_set and overlaps:
            return False
        if i not in kept_set and not any(scores[k] >= scores[i] for k in overlaps):
            return False
    return True


def random_boxes(n: int, seed: int, size: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 4 + 1
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_keeps_what_greedy_nms_keeps(seed, thr):
    boxes, scores = random_boxes(300, seed)
    dets, keep = nms(boxes, scores, thr)
    assert keep.dtype == torch.long
    assert keep.tolist() == reference_nms(boxes, scores, thr)  # the same boxes, highest score first
    assert torch.equal(dets[:, :4], boxes[keep]) and torch.equal(dets[:, 4], scores[keep])


def test_ties_give_a_valid_result():
    boxes, _ = random_boxes(200, 7)
    scores = torch.randint(0, 4, (200,)).float() / 4  # four score levels: many ties
    _, keep = nms(boxes, scores, 0.4)
    assert is_valid_nms(boxes, scores, keep.tolist(), 0.4)


def test_empty_and_zero_area_boxes():
    dets, keep = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == torch.long and dets.shape == (0, 5)
    boxes = torch.tensor([[5., 5., 5., 5.], [5., 5., 5., 5.], [0., 0., 10., 10.], [3., 3., 3., 9.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    _, keep = nms(boxes, scores, 0.5)
    assert keep.tolist() == reference_nms(boxes, scores, 0.5) == [0, 1, 2, 3]  # no area: overlaps nothing


def test_legacy_offset_and_other_dtypes():
    boxes, scores = random_boxes(200, 3)
    boxes = boxes.round()
    assert ext.nms(boxes, scores, iou_threshold=0.5, offset=1).tolist() == reference_nms(boxes, scores, 0.5, offset=1)
    want = ext.nms(boxes, scores, iou_threshold=0.5).tolist()
    assert ext.nms(boxes.double(), scores.double(), iou_threshold=0.5).tolist() == want
    for dtype in (torch.half, torch.bfloat16):  # compared in fp32: the caller's indices, its boxes as they are
        low = boxes.to(dtype)
        assert ext.nms(low, scores.to(dtype), iou_threshold=0.5).tolist() == \
            ext.nms(low.float(), scores.to(dtype).float(), iou_threshold=0.5).tolist()
    with pytest.raises(ValueError, match="offset"):
        ext.nms(boxes, scores, iou_threshold=0.5, offset=2)


def reference_batched(boxes, scores, labels, thr, agnostic=False):
    kept = []
    for c in ([None] if agnostic else labels.unique().tolist()):
        idx = torch.arange(len(scores)) if c is None else (labels == c).nonzero().flatten()
        kept += [int(idx[i]) for i in reference_nms(boxes[idx], scores[idx], thr)]
    return sorted(kept, key=lambda i: -float(scores[i]))


@pytest.mark.parametrize("agnostic", [False, True])
def test_batched_nms_split_path_and_class_agnostic(agnostic):
    """Over 10,000 boxes mmcv's batched_nms runs nms class by class (its split path)."""
    boxes, scores = random_boxes(12_000, 11, size=2000.0)
    labels = torch.randint(0, 3, (12_000,), generator=torch.Generator().manual_seed(1))
    cfg = dict(type="nms", iou_threshold=0.5, class_agnostic=agnostic)
    _, keep = batched_nms(boxes, scores, labels, cfg)
    # mmcv's split path runs class by class even when asked for class-agnostic NMS (its own behaviour)
    assert sorted(keep.tolist()) == sorted(reference_batched(boxes, scores, labels, 0.5))
    small = slice(0, 3000)  # under the split threshold: one call with per-class offsets
    _, keep = batched_nms(boxes[small], scores[small], labels[small], cfg)
    assert sorted(keep.tolist()) == sorted(reference_batched(boxes[small], scores[small], labels[small], 0.5, agnostic))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_nms_on_cuda_matches_the_cpu():
    boxes, scores = random_boxes(2000, 5)
    _, keep = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert keep.is_cuda and keep.cpu().tolist() == nms(boxes, scores, 0.5)[1].tolist()
    _, keep = nms(boxes.cuda().half(), scores.cuda().half(), 0.5)
    assert keep.is_cuda


def test_another_op_names_itself_and_the_way_to_compiled_ops():
    from mmcv.ops import RoIAlign

    roi_align = RoIAlign((7, 7), spatial_scale=1.0)
    with pytest.raises(ext.MissingCompiledOp, match=r"mmcv op 'roi_align_forward'.*MMCV=compiled"):
        roi_align(torch.rand(1, 4, 16, 16), torch.tensor([[0., 0., 0., 8., 8.]]))
    assert not hasattr(ext, "__path__")  # a module, not a package: importlib's probes get AttributeError


def run(*args: str) -> str:
    """stdout of a new interpreter of this venv run with ``args``."""
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.subprocess
def test_a_bare_interpreter_imports_mmcv_ops():
    out = run("-c", "import mmcv.ops, mmcv._ext, torch; print(mmcv._ext.BACKEND, "
                    "mmcv.ops.nms(torch.tensor([[0., 0, 1, 1]]), torch.tensor([1.]), 0.5)[1].tolist())")
    assert out.startswith("torchvision") and out.strip().endswith("[0]")


@pytest.mark.subprocess
def test_nms_in_a_spawned_dataloader_worker_and_a_torchrun_child(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent("""
        import os, torch
        from torch.utils.data import DataLoader, Dataset
        class Kept(Dataset):
            def __len__(self): return 2
            def __getitem__(self, i):
                from mmcv.ops import nms  # imported in the worker process
                boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
                return nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)[1]
        if __name__ == "__main__":
            loader = DataLoader(Kept(), num_workers=1, multiprocessing_context="spawn", batch_size=None)
            print("rank", os.environ.get("RANK", "-"), [k.tolist() for k in loader])
    """))
    assert "rank - [[0, 2], [0, 2]]" in run(str(script))
    out = run("-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", "29541", str(script))
    assert "rank 0 [[0, 2], [0, 2]]" in out


@pytest.mark.subprocess
def test_the_distribution_holds_only_mmcv_ext(tmp_path):
    """pip uninstall balloondet-mmcv-ext removes mmcv/_ext.py and nothing of mmcv-lite's."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(REPO / "mmcv_ext")], check=True, capture_output=True, timeout=300)
    wheel, = tmp_path.glob("balloondet_mmcv_ext-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if not n.startswith("balloondet_mmcv_ext-")] == ["mmcv/_ext.py"]
    record = next(n for n in names if n.endswith("RECORD"))
    assert "mmcv/_ext.py" in zipfile.ZipFile(wheel).read(record).decode()


def reference_ext_nms(bboxes, scores, iou_threshold, offset=0):
    """``ext_module.nms`` in pure Python (the greedy reference above): no compiled code at all."""
    return torch.tensor(reference_nms(bboxes.float(), scores.float(), iou_threshold, offset), dtype=torch.long)


def other_nms_backends() -> dict:
    """The nms implementations this venv can swap in beside the installed ``mmcv._ext``.

    The pure-Python reference always; where a compiled mmcv is installed (``make setup
    MMCV=compiled``), its ``_ext.*.so`` is what ``mmcv._ext`` is, and the torchvision-backed
    file of mmcv_ext/ is loaded beside it by path, so the two real backends meet too.
    """
    import importlib.util

    backends = {"python reference": reference_ext_nms}
    if not ext.__file__.endswith(".py"):  # a compiled extension shadows mmcv_ext's file
        path = REPO / "mmcv_ext" / "mmcv" / "_ext.py"
        spec = importlib.util.spec_from_file_location("balloondet_mmcv_ext_file", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        backends["torchvision (mmcv_ext)"] = module.nms
    return backends


def detections(detector, images) -> list[torch.Tensor]:
    """Every kept box of every image, score-ordered: [x1, y1, x2, y2, score, label] rows, no threshold."""
    out = []
    for image in images:
        pred = detector.predict(image).pred_instances
        rows = torch.cat([pred.bboxes, pred.scores[:, None], pred.labels[:, None].float()], 1)
        out.append(rows[torch.argsort(pred.scores, descending=True, stable=True)])
    return out


NMS_BACKENDS = other_nms_backends()


@pytest.mark.parametrize("backend", list(NMS_BACKENDS))
def test_smoke_detections_do_not_depend_on_the_nms_backend(backend, smoke_detector, val_images, monkeypatch):
    """The trained smoke model's detections on the val images, every box and score, are the same
    whichever nms mmcv's heads call (mmdet's ``batched_nms`` -> ``ext_module.nms``)."""
    images = val_images[:4]
    installed = detections(smoke_detector, images)
    calls = []
    nms_impl = NMS_BACKENDS[backend]

    def swapped(*args, **kwargs):
        calls.append(1)
        return nms_impl(*args, **kwargs)

    monkeypatch.setattr(ext, "nms", swapped)
    swapped_dets = detections(smoke_detector, images)
    assert len(calls) >= len(images)  # the swap was really on the path
    assert sum(len(d) for d in installed) > len(images)  # boxes to keep or suppress, not an empty model
    for a, b in zip(installed, swapped_dets, strict=True):
        assert torch.equal(a, b)
