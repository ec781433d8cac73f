"""Unpickling a checkpoint that may hold nothing but tensors and the few plain objects mmengine writes.

A PyTorch checkpoint is a pickle, and a pickle can name any Python function and call it. Our
checkpoints (written by mmengine) hold, besides tensors, a few plain Python objects: mmengine's
``HistoryBuffer`` (the message hub's logged values), references to its statistics methods
(pickled as ``getattr(HistoryBuffer, "min")``), and numpy scalars, arrays and dtypes. Exactly
those are allow-listed (``mmengine_checkpoint_globals``), ``getattr`` being replaced by a
function that only hands out HistoryBuffer's statistics methods.

- torch >= 2.6: torch's own weights-only unpickler reads checkpoints, with that allow-list added
  (``engine.checkpoint``).
- torch < 2.6 (the default stack's 2.1.2): torch's weights-only unpickler cannot be extended, so
  ``torch.load`` gets :data:`restricted_pickle` as its ``pickle_module``: a pure-Python unpickler
  that resolves globals from the same allow-list (plus torch's own tensor, storage and dtype
  globals) and, like torch's weights-only unpickler, calls (REDUCE/NEWOBJ) only allow-listed
  globals, sets state (BUILD) only on instances of allow-listed types, and refuses the opcodes
  torch never writes. What it refuses raises :class:`RefusedGlobal`.
"""
from __future__ import annotations

import pickle
import types
from typing import IO, Any, Callable

from balloondet.engine.compat import torch_weights_only_globals

HISTORY_BUFFER_STATISTICS = ("mean", "max", "min", "current")


# --------------------------------------------------------------------------- the allow-list

def history_buffer_getattr(obj: Any, name: str) -> Callable:
    """The only ``getattr`` a checkpoint may call: ``HistoryBuffer.<statistics method>``."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f"checkpoint asks for getattr({obj!r}, {name!r}), which is not allow-listed")


def mmengine_checkpoint_globals() -> list:
    """The non-tensor globals that mmengine 0.10.7 + mmdet 3.3.0 checkpoints contain.

    Objects, or ``(object, "module.name")`` pairs where the pickled name differs.
    """
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


def allowed_globals() -> dict:
    """``"module.name" -> object`` for the restricted unpickler (torch < 2.6).

    torch's own weights-only globals (tensor and storage classes, dtypes, the tensor rebuild
    functions, OrderedDict), the few builtins that protocol-2 pickles use for bytes, sets and
    complex numbers (as torch >= 2.6 allows by default), and :func:`mmengine_checkpoint_globals`.
    """
    import _codecs
    import collections

    import torch

    rc = torch_weights_only_globals()
    rc.update({
        "collections.OrderedDict": collections.OrderedDict,
        "torch.device": torch.device,
        "_codecs.encode": _codecs.encode,
        "builtins.bytearray": bytearray,
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.complex": complex,
    })
    for entry in mmengine_checkpoint_globals():
        obj, name = entry if isinstance(entry, tuple) else (entry, f"{entry.__module__}.{entry.__qualname__}")
        rc[name] = obj
    from mmengine.logging.history_buffer import HistoryBuffer

    for stat in HISTORY_BUFFER_STATISTICS:  # protocol >= 4 names methods by their dotted qualname
        rc[f"{HistoryBuffer.__module__}.HistoryBuffer.{stat}"] = getattr(HistoryBuffer, stat)
    return rc



# --------------------------------------------------------------------------- the restricted unpickler

class RefusedGlobal(pickle.UnpicklingError):
    """Raised inside the unpickler; :func:`safe_load` turns it into :class:`UnsafeCheckpointError`."""

    def __init__(self, global_name: str):
        self.global_name = global_name
        super().__init__(f"global {global_name!r} is not allow-listed")


def _refuse_opcode(name: str) -> Callable[[pickle._Unpickler], None]:
    def refuse(self: pickle._Unpickler) -> None:
        raise RefusedGlobal(f"<pickle opcode {name}>")
    return refuse


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be vetted
    """``pickle.Unpickler`` that only builds what :func:`allowed_globals` lists."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._allowed = allowed_globals()
        self._allowed_ids = {id(v) for v in self._allowed.values()}

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # protocol 2 (torch.save's) writes Python 2 names
            import _compat_pickle

            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        full = f"{module}.{name}"
        if full not in self._allowed:
            raise RefusedGlobal(full)
        return self._allowed[full]

    def _check_callable(self, obj: Any, what: str) -> None:
        if id(obj) not in self._allowed_ids:
            raise RefusedGlobal(f"{what} of {_describe(obj)}")

    def load_reduce(self) -> None:
        self._check_callable(self.stack[-2], "call")
        pickle._Unpickler.load_reduce(self)

    def load_newobj(self) -> None:
        self._check_callable(self.stack[-2], "construction")
        pickle._Unpickler.load_newobj(self)

    def load_newobj_ex(self) -> None:
        self._check_callable(self.stack[-3], "construction")
        pickle._Unpickler.load_newobj_ex(self)

    def load_build(self) -> None:
        import torch

        inst = self.stack[-2]
        if not (isinstance(inst, torch.Tensor) or id(type(inst)) in self._allowed_ids):
            raise RefusedGlobal(f"state of {_describe(inst)}")
        pickle._Unpickler.load_build(self)

    def _top_below_mark(self) -> Any:
        return self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None

    def load_append(self) -> None:
        if not isinstance(self.stack[-2], list):
            raise RefusedGlobal(f"append to {_describe(self.stack[-2])}")
        pickle._Unpickler.load_append(self)

    def load_appends(self) -> None:
        if not isinstance(self._top_below_mark(), list):
            raise RefusedGlobal(f"append to {_describe(self._top_below_mark())}")
        pickle._Unpickler.load_appends(self)

    def load_setitem(self) -> None:
        if not isinstance(self.stack[-3], dict):
            raise RefusedGlobal(f"item assignment to {_describe(self.stack[-3])}")
        pickle._Unpickler.load_setitem(self)

    def load_setitems(self) -> None:
        if not isinstance(self._top_below_mark(), dict):
            raise RefusedGlobal(f"item assignment to {_describe(self._top_below_mark())}")
        pickle._Unpickler.load_setitems(self)

    def load_additems(self) -> None:
        if not isinstance(self._top_below_mark(), set):
            raise RefusedGlobal(f"add to {_describe(self._top_below_mark())}")
        pickle._Unpickler.load_additems(self)

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.APPEND[0]] = load_append
    dispatch[pickle.APPENDS[0]] = load_appends
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.ADDITEMS[0]] = load_additems
    for _name in ("INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID"):  # torch never writes these
        dispatch[getattr(pickle, _name)[0]] = _refuse_opcode(_name)
    del _name


def _describe(obj: Any) -> str:
    if isinstance(obj, type) or callable(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def _restricted_load(file: IO[bytes], **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


restricted_pickle = types.ModuleType("balloondet_restricted_pickle", "pickle, restricted to the allow-list")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError


