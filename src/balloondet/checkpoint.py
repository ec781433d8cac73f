"""Checkpoint loading that works on both stacks.

torch >= 2.6 loads checkpoints weights-only by default, and mmengine 0.10.7 does not ask
otherwise. Our checkpoints (written by mmengine) hold, besides tensors, a few plain Python
objects: mmengine's ``HistoryBuffer`` (the message hub's logged values), references to its
statistics methods (pickled as ``getattr(HistoryBuffer, "min")``), and numpy scalars,
arrays and dtypes. Rather than switching weights-only loading off for the whole process,
we allow-list exactly those; ``getattr`` is replaced by a function that only hands out
HistoryBuffer's statistics methods. On torch < 2.6 this is a no-op.
"""
from __future__ import annotations

import pickle

HISTORY_BUFFER_STATISTICS = ("mean", "max", "min", "current")
_done = False


def history_buffer_getattr(obj, name: str):
    """The only ``getattr`` a checkpoint may call: ``HistoryBuffer.<statistics method>``."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"checkpoint asks for getattr({obj!r}, {name!r}), which is not allow-listed")


def mmengine_checkpoint_globals() -> list:
    """The non-tensor globals that mmengine 0.10.7 + mmdet 3.3.0 checkpoints contain."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    try:  # numpy >= 2 moved the private module; checkpoints name whichever wrote them
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    allowed = [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, *dtypes,
               (history_buffer_getattr, "builtins.getattr"), (history_buffer_getattr, "__builtin__.getattr")]
    if int(np.__version__.split(".")[0]) >= 2:  # checkpoints written under numpy 1 name numpy.core
        allowed += [(_reconstruct, "numpy.core.multiarray._reconstruct"), (scalar, "numpy.core.multiarray.scalar")]
    return allowed


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint contents for torch's weights-only loader."""
    global _done
    if _done:
        return
    import torch
    import torch.serialization

    major, minor = (int(p) for p in torch.__version__.split(".")[:2])
    if (major, minor) >= (2, 6):  # (object, name) pairs and weights-only by default both came in 2.6
        torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    _done = True
