"""The network without post-processing, in ONNX Runtime: what cam-eval scores its perturbed copies with."""
import copy

import torch


def test_onnx_network_returns_the_heads_outputs_at_any_size(smoke_model):
    """Exported once at one size, the ONNX Runtime session gives the head's outputs for another batch size and
    another (non-square) image size, to float rounding; in a channels-last layout too."""
    from balloondet.engine.compat import fold_batch_norms
    from balloondet.engine.network import HeadOutputs, OnnxNetwork

    model = fold_batch_norms(copy.deepcopy(smoke_model).eval())
    network = OnnxNetwork(model, torch.zeros(1, 3, 96, 128), threads=1)
    torch.manual_seed(0)
    batch = torch.randn(3, 3, 160, 64)
    cls_scores, bbox_preds = network(batch.contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        want = HeadOutputs(model)(batch)
    assert network.levels == 3 and len(cls_scores) == len(bbox_preds) == 3
    for got, ref in zip([*cls_scores, *bbox_preds], want, strict=True):
        assert got.shape == ref.shape and got.shape[0] == 3
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    assert cls_scores[0].shape[-2:] == (20, 8) and cls_scores[2].shape[-2:] == (5, 2)  # strides 8 and 32
