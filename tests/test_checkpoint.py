"""Our checkpoints load under torch's weights-only unpickler once the allow-list is in place."""
import pickle

import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from balloondet.checkpoint import allow_mmengine_checkpoints, history_buffer_getattr

TORCH = tuple(int(p) for p in torch.__version__.split(".")[:2])


def test_getattr_stand_in_hands_out_only_statistics_methods():
    assert history_buffer_getattr(HistoryBuffer, "min") is HistoryBuffer.min
    for obj, name in ((HistoryBuffer, "__init__"), (HistoryBuffer, "update"), (pickle, "loads")):
        with pytest.raises(pickle.UnpicklingError, match="not allow-listed"):
            history_buffer_getattr(obj, name)


@pytest.mark.slow
@pytest.mark.skipif(TORCH < (2, 6), reason=f"torch {torch.__version__}: weights-only loading is opt-in before 2.6")
def test_training_checkpoint_loads_weights_only(trained_smoke):
    path = trained_smoke["work_dir"] / f"epoch_{trained_smoke['epochs']}.pth"  # with optimizer and message hub
    allow_mmengine_checkpoints()
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert {"state_dict", "message_hub", "optimizer", "meta"} <= set(ckpt)
    assert ckpt["meta"]["epoch"] == trained_smoke["epochs"]
