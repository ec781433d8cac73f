"""Checkpoint loading that is safe on both stacks: :func:`safe_load`, and mmengine routed through it.

:func:`safe_load` reads a checkpoint file with the allow-list of ``engine.unpickler`` on every torch
version; anything else a file asks for is refused with :class:`UnsafeCheckpointError`, naming the
file and the global, before it runs.

:func:`allow_mmengine_checkpoints` registers :func:`safe_load` with mmengine's ``CheckpointLoader``
for local paths and http(s) URLs (downloads verified by ``engine.download``), and a refusal for its
other schemes, so ``Runner.resume``, ``Runner.load_checkpoint`` (``load_from``), ``init_detector``
and ``init_cfg`` pretrained weights all load through it. Whether a checkpoint fits a model is
``engine.checkpoint_fit``'s question.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import re
from pathlib import Path
from typing import Any

from balloondet.core.errors import CheckpointError, UnsafeCheckpointError
from balloondet.engine.compat import checkpoint_loader_schemes, torch_version
from balloondet.engine.download import download_checkpoint
from balloondet.engine.unpickler import RefusedGlobal, mmengine_checkpoint_globals, restricted_pickle


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


def safe_load(path: str | Path, map_location: Any = "cpu") -> Any:
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
        if torch_version() >= (2, 6) or forced:  # torch < 2.6 refuses a pickle_module when forced
            with allowed_for_weights_only():
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
    return checkpoint


def allowed_for_weights_only() -> contextlib.AbstractContextManager:
    """Inside the block, torch's weights-only unpickler (torch >= 2.6) also allows the mmengine
    checkpoint globals; a no-op on older torch, whose weights-only unpickler takes no additions."""
    import torch.serialization

    if torch_version() < (2, 6):  # (object, name) pairs and weights-only by default both came in 2.6
        return contextlib.nullcontext()
    return torch.serialization.safe_globals(mmengine_checkpoint_globals())


def load_from_safe_local(filename: str, map_location: Any = None) -> Any:
    """mmengine ``CheckpointLoader`` scheme for local files (mmengine logs "safe_local")."""
    return safe_load(filename, map_location)


def load_from_safe_http(filename: str, map_location: Any = None) -> Any:
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


def _refuse_scheme(filename: str, map_location: Any = None) -> Any:
    raise CheckpointError(
        f"{filename}: balloondet loads checkpoints only from local files and http(s) URLs, through its "
        f"safe loader; download the file and pass its path (or its https:// URL)")


def allow_mmengine_checkpoints() -> None:
    """Route every checkpoint mmengine loads through :func:`safe_load` (idempotent: registering again
    registers the same loaders).

    torch >= 2.6: adds the allow-list to torch's weights-only unpickler. All torch versions:
    registers :func:`load_from_safe_local` for local paths and :func:`load_from_safe_http` for
    http(s) URLs with mmengine's ``CheckpointLoader`` (which ``Runner.resume``,
    ``Runner.load_checkpoint``, ``init_detector`` and ``init_cfg`` use), and refuses its other
    schemes (pavi://, s3://, open-mmlab://, torchvision://, ...), whose loaders call
    ``torch.load`` directly.
    """
    import torch.serialization
    from mmengine.runner.checkpoint import CheckpointLoader

    if torch_version() >= (2, 6):
        torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
    others = [p for p in checkpoint_loader_schemes() if p not in ("", "http://", "https://")]
    if others:
        CheckpointLoader.register_scheme(prefixes=others, loader=_refuse_scheme, force=True)
    CheckpointLoader.register_scheme(prefixes=("http://", "https://"), loader=load_from_safe_http, force=True)
    CheckpointLoader.register_scheme(prefixes="", loader=load_from_safe_local, force=True)
