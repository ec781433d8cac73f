"""The allow-list and the restricted unpickler (torch < 2.6's road, exercised on any torch)."""
from __future__ import annotations

import io
import pickle

import pytest
import torch
from conftest import mmengine_like_checkpoint, save_malicious

from balloondet.engine.unpickler import RefusedGlobal, RestrictedUnpickler, history_buffer_getattr, restricted_pickle

TORCH = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2])


def test_getattr_stand_in_hands_out_only_statistics_methods():
    from mmengine.logging.history_buffer import HistoryBuffer

    assert history_buffer_getattr(HistoryBuffer, "min") is HistoryBuffer.min
    for obj, name in ((HistoryBuffer, "__init__"), (HistoryBuffer, "update"), (pickle, "loads")):
        with pytest.raises(pickle.UnpicklingError, match="not allow-listed"):
            history_buffer_getattr(obj, name)


# Hand-written protocol-2 pickles that use only allow-listed globals in ways a checkpoint never
# does; the restricted unpickler (torch < 2.6) must refuse each before it takes effect.
HB = b"cmmengine.logging.history_buffer\nHistoryBuffer\n"


@pytest.mark.parametrize("payload, what", [
    (HB + b"N}X\x03\x00\x00\x00minK\x01s\x86b.", "state of"),  # BUILD on the class: setattr(HistoryBuffer, ...)
    (b"c__builtin__\nset\nK\x01a.", "append to"),  # APPEND onto a class
    (b"c__builtin__\ngetattr\n" + HB + b"X\x08\x00\x00\x00__init__\x86R.", "not allow-listed"),
    (b"(cmmengine.logging.history_buffer\nHistoryBuffer\no.", "OBJ"),  # protocol-0/1 opcodes
    (b"\x82\x01.", "EXT1"),
    (b"cposix\nsystem\nX\x04\x00\x00\x00trueR.", "posix.system"),
])
def test_restricted_unpickler_refuses_crafted_pickles(payload, what):
    from mmengine.logging.history_buffer import HistoryBuffer

    with pytest.raises(pickle.UnpicklingError, match=what):
        RestrictedUnpickler(io.BytesIO(b"\x80\x02" + payload)).load()
    assert HistoryBuffer.min is not None and not isinstance(HistoryBuffer.min, int)


def test_restricted_pickle_module_works_through_torch_load(tmp_path):
    """The torch < 2.6 path, exercised on any torch: torch.load(..., pickle_module=...)."""
    marker = tmp_path / "ran"
    torch.save(mmengine_like_checkpoint(), tmp_path / "ok.pth")
    save_malicious(tmp_path / "evil.pth", marker)
    kw = {"weights_only": False} if TORCH >= (2, 6) else {}
    assert "message_hub" in torch.load(tmp_path / "ok.pth", pickle_module=restricted_pickle, **kw)
    with pytest.raises(RefusedGlobal, match="posix.system"):
        torch.load(tmp_path / "evil.pth", pickle_module=restricted_pickle, **kw)
    assert not marker.exists()
