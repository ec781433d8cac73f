"""Checkpoint loading that works on both stacks.

torch >= 2.6 loads checkpoints weights-only by default, and mmengine 0.10.7 does not ask
otherwise. Our checkpoints (written by mmengine) hold, besides tensors, a few plain Python
objects: mmengine's ``HistoryBuffer`` (message hub), numpy scalars and dtypes (logged
values, the seed). Rather than switching weights-only loading off for the whole process,
we allow-list exactly those classes; on torch < 2.6 this is a no-op.
"""
from __future__ import annotations

_done = False


def mmengine_checkpoint_globals() -> list:
    """The non-tensor classes that mmengine 0.10.7 + mmdet 3.3.0 checkpoints contain."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    try:  # numpy >= 2 moved the private module; checkpoints name whichever wrote them
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, *dtypes]


def allow_mmengine_checkpoints() -> None:
    """Allow-list mmengine's checkpoint contents for torch's weights-only loader."""
    global _done
    if _done:
        return
    import torch.serialization

    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(mmengine_checkpoint_globals())
    _done = True
