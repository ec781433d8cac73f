"""Checkpoint loading that is safe on both stacks, refuses files that do not fit the model,
and verifies downloads.

**Safe unpickling.** A PyTorch checkpoint is a pickle, and a pickle can name any Python
function and call it. Our checkpoints (written by mmengine) hold, besides tensors, a few plain
Python objects: mmengine's ``HistoryBuffer`` (the message hub's logged values), references to
its statistics methods (pickled as ``getattr(HistoryBuffer, "min")``), and numpy scalars,
arrays and dtypes. Exactly those are allow-listed, ``getattr`` being replaced by a function
that only hands out HistoryBuffer's statistics methods; anything else a file asks for is
refused with :class:`UnsafeCheckpointError`, naming the file and the global, before it runs.

- torch >= 2.6: torch's own weights-only unpickler, with the allow-list added through
  ``torch.serialization.add_safe_globals``.
- torch < 2.6 (the default stack's 2.1.2): torch's weights-only unpickler cannot be extended,
  so ``torch.load`` gets :data:`restricted_pickle` as its ``pickle_module``: a pure-Python
  unpickler that resolves globals from the same allow-list (plus torch's own tensor, storage
  and dtype globals) and, like torch's weights-only unpickler, calls (REDUCE/NEWOBJ) only
  allow-listed globals, sets state (BUILD) only on instances of allow-listed types, and
  refuses the opcodes torch never writes.

:func:`allow_mmengine_checkpoints` registers :func:`safe_load` with mmengine's
``CheckpointLoader`` for local paths and http(s) URLs, and a refusal for its other schemes,
so ``Runner.resume``, ``Runner.load_checkpoint`` (``load_from``), ``init_detector`` and
``init_cfg`` pretrained weights all load through it.

**Fit.** :func:`check_fits` compares a checkpoint's tensors with a model's;
:class:`CheckpointFitHook` does it inside mmengine's Runner, before the weights are copied.

**Downloads.** :func:`verify_hash_prefix` checks a file whose name carries the first hex
digits of its SHA-256 (``..._20220902_112414-78e30dcc.pth``, torch.hub's convention) and
deletes it on a mismatch.
"""
from __future__ import annotations

import hashlib
import logging
import os
import os.path as osp
import pickle
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from .errors import ModelError

HISTORY_BUFFER_STATISTICS = ("mean", "max", "min", "current")
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's: the hash prefix sits between '-' and '.'
MIN_HASH_DIGITS = 8
_done = False
_last_loaded: dict = {"path": None, "shapes": None}  # what safe_load read last, for check_fits


class CheckpointError(ModelError):
    """A checkpoint that cannot be used: unreadable, unsafe, or not for this model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that asks for a Python global outside the allow-list; nothing of it ran."""

    def __init__(self, path, global_name: str):
        self.path, self.global_name = str(path), global_name
        super().__init__(
            f"{path}: refusing to load this checkpoint: it asks for the Python global {global_name!r}, "
            f"which is not on the checkpoint allow-list (tensors, mmengine's HistoryBuffer, numpy arrays); "
            f"it was not run. Only load checkpoints from sources you trust.")


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose tensors do not fit the model."""


class CheckpointHashError(CheckpointError):
    """A downloaded file whose SHA-256 does not match the hash prefix in its name."""


# --------------------------------------------------------------------------- the allow-list

def history_buffer_getattr(obj, name: str):
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


def _torch_version() -> tuple[int, int]:
    import torch

    return tuple(int(re.match(r"\d+", p).group()) for p in torch.__version__.split(".")[:2])


def allowed_globals() -> dict:
    """``"module.name" -> object`` for the restricted unpickler (torch < 2.6).

    torch's own weights-only globals (tensor and storage classes, dtypes, the tensor rebuild
    functions, OrderedDict), the few builtins that protocol-2 pickles use for bytes, sets and
    complex numbers (as torch >= 2.6 allows by default), and :func:`mmengine_checkpoint_globals`.
    """
    import _codecs
    import collections

    import torch
    from torch import _weights_only_unpickler

    rc = dict(_weights_only_unpickler._get_allowed_globals())
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


# ------------------------------------------------------------- the restricted unpickler (torch < 2.6)

class RefusedGlobal(pickle.UnpicklingError):
    """Raised inside the unpickler; :func:`safe_load` turns it into :class:`UnsafeCheckpointError`."""

    def __init__(self, global_name: str):
        self.global_name = global_name
        super().__init__(f"global {global_name!r} is not allow-listed")


def _refuse_opcode(name):
    def refuse(self):
        raise RefusedGlobal(f"<pickle opcode {name}>")
    return refuse


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be vetted
    """``pickle.Unpickler`` that only builds what :func:`allowed_globals` lists."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._allowed = allowed_globals()
        self._allowed_ids = {id(v) for v in self._allowed.values()}

    def find_class(self, module, name):
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

    def _check_callable(self, obj, what):
        if id(obj) not in self._allowed_ids:
            raise RefusedGlobal(f"{what} of {_describe(obj)}")

    def load_reduce(self):
        self._check_callable(self.stack[-2], "call")
        pickle._Unpickler.load_reduce(self)

    def load_newobj(self):
        self._check_callable(self.stack[-2], "construction")
        pickle._Unpickler.load_newobj(self)

    def load_newobj_ex(self):
        self._check_callable(self.stack[-3], "construction")
        pickle._Unpickler.load_newobj_ex(self)

    def load_build(self):
        import torch

        inst = self.stack[-2]
        if not (isinstance(inst, torch.Tensor) or id(type(inst)) in self._allowed_ids):
            raise RefusedGlobal(f"state of {_describe(inst)}")
        pickle._Unpickler.load_build(self)

    def _top_below_mark(self):
        return self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None

    def load_append(self):
        if not isinstance(self.stack[-2], list):
            raise RefusedGlobal(f"append to {_describe(self.stack[-2])}")
        pickle._Unpickler.load_append(self)

    def load_appends(self):
        if not isinstance(self._top_below_mark(), list):
            raise RefusedGlobal(f"append to {_describe(self._top_below_mark())}")
        pickle._Unpickler.load_appends(self)

    def load_setitem(self):
        if not isinstance(self.stack[-3], dict):
            raise RefusedGlobal(f"item assignment to {_describe(self.stack[-3])}")
        pickle._Unpickler.load_setitem(self)

    def load_setitems(self):
        if not isinstance(self._top_below_mark(), dict):
            raise RefusedGlobal(f"item assignment to {_describe(self._top_below_mark())}")
        pickle._Unpickler.load_setitems(self)

    def load_additems(self):
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


def _describe(obj) -> str:
    if isinstance(obj, type) or callable(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    return f"a {type(obj).__module__}.{type(obj).__qualname__} object"


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


restricted_pickle = types.ModuleType("balloondet_restricted_pickle", "pickle, restricted to the allow-list")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError


# ------------------------------------------------------------------------------ loading

def _refused_global(err: BaseException) -> str | None:
    """The global (or operation) a refused load asked for, from our unpickler's or torch's error;
    None when the file is merely unreadable."""
    for e in (err, err.__cause__, err.__context__):
        if isinstance(e, RefusedGlobal):
            return e.global_name
    text = str(err)
    if "Weights only load failed" not in text:
        return None
    for pattern in (r"GLOBAL (\S+) was not an allowed global", r"unsupported GLOBAL (\S+) whose module",
                    r"GLOBAL ([\w.]+)",
                    r"call reduce for unrecognized function (.+?)(?:\n|$)",
                    r"Can only (?:build|create new object)[^\n]*?got (.+?)(?:\n|$)"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip()
    return None


def safe_load(path, map_location="cpu"):
    """``torch.load`` of a checkpoint file, restricted to the allow-list on every torch version.

    Raises :class:`UnsafeCheckpointError` (naming the file and the global) for anything else,
    :class:`CheckpointError` for a missing or unreadable file.
    """
    import torch

    path = osp.expanduser(str(path))
    if not osp.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    forced = os.getenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true")
    try:
        if _torch_version() >= (2, 6) or forced:  # torch < 2.6 refuses a pickle_module when forced
            allow_mmengine_checkpoints()
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        else:
            checkpoint = torch.load(path, map_location=map_location, pickle_module=restricted_pickle)
    except Exception as err:  # noqa: BLE001  (torch raises RuntimeError, UnpicklingError, EOFError, ...)
        name = _refused_global(err)
        if name is not None:
            raise UnsafeCheckpointError(path, name) from None
        detail = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (damaged, or not written by "
                              f"torch.save: {detail})") from None
    _last_loaded.update(path=osp.abspath(path), shapes=_tensor_shapes(checkpoint))
    return checkpoint


def _tensor_shapes(checkpoint) -> dict | None:
    import torch

    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state_dict, Mapping):
        return None
    return {_strip_module(k): tuple(v.shape) for k, v in state_dict.items() if isinstance(v, torch.Tensor)}


def _strip_module(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


def load_from_safe_local(filename, map_location=None):
    """mmengine ``CheckpointLoader`` scheme for local files (mmengine logs "safe_local")."""
    return safe_load(filename, map_location)


def load_from_safe_http(filename, map_location=None):
    """mmengine ``CheckpointLoader`` scheme for http(s) URLs: download into torch's hub cache,
    verify a hash prefix in the file name, then :func:`safe_load` (mmengine logs "safe_http")."""
    from mmengine.dist import get_dist_info

    rank, world_size = get_dist_info()
    if rank == 0:
        cached = download_checkpoint(filename)
    if world_size > 1:
        import torch.distributed

        torch.distributed.barrier()
        if rank > 0:
            cached = download_checkpoint(filename)
    return safe_load(cached, map_location)


def _refuse_scheme(filename, map_location=None):
    raise CheckpointError(
        f"{filename}: balloondet loads checkpoints only from local files and http(s) URLs, through its "
        f"safe loader; download the file and pass its path (or its https:// URL)")


def allow_mmengine_checkpoints() -> None:
    """Route every checkpoint mmengine loads through :func:`safe_load` (idempotent).

    torch >= 2.6: adds the allow-list to torch's weights-only unpickler. All torch versions:
    registers :func:`load_from_safe_local` for local paths and :func:`load_from_safe_http` for
    http(s) URLs with mmengine's ``CheckpointLoader`` (which ``Runner.resume``,
    ``Runner.load_checkpoint``, ``init_detector`` and ``init_cfg`` use), and refuses its other
    schemes (pavi://, s3://, open-mmlab://, torchvision://, ...), whose loaders call
    ``torch.load`` directly.
    """
    global _done
    if _done:
        return
    import torch.serialization
    from mmengine.runner.checkpoint import CheckpointLoader

    if _torch_version() >= (2, 6):  # (object, name) pairs and weights-only by default both came in 2.6
        torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    others = [p for p in CheckpointLoader._schemes if p not in ("", "http://", "https://")]
    if others:
        CheckpointLoader.register_scheme(prefixes=others, loader=_refuse_scheme, force=True)
    CheckpointLoader.register_scheme(prefixes=("http://", "https://"), loader=load_from_safe_http, force=True)
    CheckpointLoader.register_scheme(prefixes="", loader=load_from_safe_local, force=True)
    _done = True


install_safe_checkpoint_loading = allow_mmengine_checkpoints  # the name says more of what it does now


# ------------------------------------------------------------------------------ downloads

def hash_prefix(name) -> str | None:
    """The SHA-256 prefix in a file name (``...-78e30dcc.pth`` -> ``78e30dcc``), if it has one.

    torch.hub's regex (``-([a-f0-9]*)\\.``), counted only with at least 8 hex digits, so that
    names like ``model-face.pth`` do not count; the last such match wins.
    """
    found = [m.group(1) for m in HASH_REGEX.finditer(Path(str(name).split("?")[0]).name)]
    found = [h for h in found if len(h) >= MIN_HASH_DIGITS]
    return found[-1] if found else None


def sha256(path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_hash_prefix(path, source: str | None = None) -> bool:
    """Check ``path`` against the hash prefix in its name; delete it and raise on a mismatch.

    Returns True when the name carries a prefix and the file matches it, False when the name
    carries none (nothing to check). Only call this on downloaded copies: it deletes the file.
    """
    prefix = hash_prefix(path)
    if prefix is None:
        return False
    digest = sha256(path)
    if not digest.startswith(prefix):
        Path(path).unlink(missing_ok=True)
        origin = f" (from {source})" if source else ""
        raise CheckpointHashError(
            f"{path}{origin}: SHA-256 starts with {digest[:len(prefix)]}, but the file name says {prefix}: "
            f"the download is damaged or not the published file, so it was deleted. Download it again; "
            f"if this repeats, do not use that source.")
    return True


def hub_cache_path(url: str) -> Path:
    """Where torch.hub (and mmengine) keep a downloaded checkpoint: ``<hub dir>/checkpoints/<name>``."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / osp.basename(url.split("?")[0])


def download_checkpoint(url: str, progress: bool | None = None) -> Path:
    """The verified local copy of a checkpoint URL in torch's hub cache, downloading it if needed.

    A cached copy is verified before use, a fresh download right after it; a file failing its
    hash prefix is deleted (:class:`CheckpointHashError`).
    """
    import torch.hub

    cache = hub_cache_path(url)
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        progress = os.isatty(2) if progress is None else progress
        torch.hub.download_url_to_file(url, str(cache), progress=progress)  # temp file, then renamed
    verify_hash_prefix(cache, source=url)
    return cache


# ------------------------------------------------------------------------------ fit

@dataclass
class FitReport:
    """How a checkpoint's tensors compare with a model's (keys without a ``module.`` prefix)."""

    path: str
    total: int  # model tensors (parameters and persistent buffers, without BN's num_batches_tracked)
    missing: list = field(default_factory=list)
    mismatched: list = field(default_factory=list)  # (key, checkpoint shape, model shape)
    skipped_head: list = field(default_factory=list)  # class-count-dependent head tensors (fine-tuning)

    def summary(self) -> str:
        text = (f"{self.path}: {len(self.missing)} of {self.total} model tensors missing, "
                f"{len(self.mismatched)} shape mismatches")
        examples = [f"missing {k}" for k in self.missing[:2]]
        examples += [f"{k}: {list(c)} in the checkpoint, {list(m)} in the model" for k, c, m in self.mismatched[:2]]
        return text + (f" (e.g. {'; '.join(examples)})" if examples else "")

    def skipped_line(self) -> str:
        names = sorted({re.sub(r"\.\d+\.", ".*.", k).rsplit(".", 1)[0] for k, _, _ in self.skipped_head})
        c, m = self.skipped_head[0][1][0], self.skipped_head[0][2][0]
        return (f"{self.path}: not loading {len(self.skipped_head)} class-count-dependent head tensors "
                f"({', '.join(names)}: {c} class outputs in the checkpoint, {m} in the model); "
                f"they start from their initialisation")


def _is_class_count_dependent(key: str, ckpt_shape: tuple, model_shape: tuple) -> bool:
    """A head classifier tensor that differs from the model's only in its output (class) count."""
    module = key.rsplit(".", 1)[0]
    return (key.startswith("bbox_head.") and "cls" in module and len(ckpt_shape) == len(model_shape)
            and len(model_shape) >= 1 and ckpt_shape[1:] == model_shape[1:])


def check_fits(model, state_dict, path, allow_head_mismatch: bool = False) -> FitReport:
    """Refuse a checkpoint that does not fit ``model``; returns the :class:`FitReport`.

    ``state_dict``: the checkpoint's state dict, the whole checkpoint (with ``state_dict``),
    or None for the tensors :func:`safe_load` read last from ``path`` (loading it otherwise).

    Loading a trained model (``allow_head_mismatch=False``): any missing or shape-mismatched
    model tensor raises :class:`CheckpointMismatchError`. Fine-tuning
    (``allow_head_mismatch=True``): head classifier tensors that differ only in the class count
    are reported in ``skipped_head``; the rest raises only when most of the model (more than
    half of its tensors) would stay unloaded.
    """
    import torch

    path = str(path)
    if state_dict is None:
        shapes = _last_loaded["shapes"] if _last_loaded["path"] == osp.abspath(osp.expanduser(path)) else None
        if shapes is None:
            shapes = _tensor_shapes(safe_load(path))
    elif isinstance(state_dict, Mapping):
        shapes = _tensor_shapes(state_dict)
    else:
        shapes = None
    if shapes is None:
        raise CheckpointMismatchError(f"{path}: holds no state dict (got {type(state_dict).__name__}); "
                                      f"is this a model checkpoint?")
    model = getattr(model, "module", model)  # DDP / model wrappers
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                if isinstance(v, torch.Tensor) and not k.endswith("num_batches_tracked")}
    report = FitReport(path=path, total=len(expected))
    for key, shape in expected.items():
        if key not in shapes:
            report.missing.append(key)
        elif shapes[key] != shape:
            entry = (key, shapes[key], shape)
            if allow_head_mismatch and _is_class_count_dependent(key, shapes[key], shape):
                report.skipped_head.append(entry)
            else:
                report.mismatched.append(entry)
    bad = len(report.missing) + len(report.mismatched)
    if bad and (not allow_head_mismatch or bad > report.total // 2):
        hint = "is this a checkpoint of this config?"
        if allow_head_mismatch:
            hint = "most of the model would stay unloaded; " + hint
        raise CheckpointMismatchError(f"{report.summary()}; {hint}")
    return report


def _make_fit_hook():
    from mmengine.hooks import Hook
    from mmengine.logging import print_log

    class CheckpointFitHook(Hook):
        """Runs :func:`check_fits` when mmengine's Runner has read a checkpoint, before it copies
        the weights into the model (``after_load_checkpoint``, called by ``Runner.load_checkpoint``
        for ``load_from``, ``test`` and ``resume``).

        ``allow_head_mismatch=True`` (training from ``load_from``): class-count-dependent head
        tensors are dropped from the checkpoint and reported in one line; resuming is always
        strict.
        """

        priority = "VERY_HIGH"  # before EMAHook copies the state dict

        def __init__(self, allow_head_mismatch: bool = False):
            self.allow_head_mismatch = allow_head_mismatch

        def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
            path = _last_loaded["path"] or getattr(runner, "_load_from", None) or "checkpoint"
            fine_tune = self.allow_head_mismatch and not getattr(runner, "_resume", False)
            model = runner.model.module if hasattr(runner.model, "module") else runner.model
            report = check_fits(model, checkpoint, path, allow_head_mismatch=fine_tune)
            if report.skipped_head:
                state_dict = checkpoint.get("state_dict", checkpoint)
                skip = {k for k, _, _ in report.skipped_head}
                for key in [k for k in state_dict if _strip_module(k) in skip]:
                    del state_dict[key]  # so mmengine neither tries to copy them nor lists each one
                print_log(report.skipped_line(), logger="current")
            if report.missing or report.mismatched:  # only reached when fine-tuning
                print_log(report.summary() + "; those keep their initialisation", logger="current",
                          level=logging.WARNING)

    return CheckpointFitHook


def fit_check_hook(allow_head_mismatch: bool = False):
    """A :class:`CheckpointFitHook` for ``runner.register_hook(...)``."""
    return __getattr__("CheckpointFitHook")(allow_head_mismatch=allow_head_mismatch)


def __getattr__(name):  # CheckpointFitHook needs mmengine, which this module only imports when used
    if name == "CheckpointFitHook":
        cls = _make_fit_hook()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
