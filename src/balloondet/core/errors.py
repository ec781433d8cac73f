"""The package's errors: the CLI prints any ``BalloonDetError`` as one line and exits with 2.

- ``DataError``: bad or missing input data (archives, VIA files, images, logs); the message
  names the file and the entry. ``BalloonDataError`` is the old name, kept as an alias.
  ``DownloadError``: a download that failed or stopped early (nothing of it is kept).
- ``ConfigError``: a config, a device or an option that cannot be used.
- ``ModelError``: a checkpoint, a layer or a method that does not fit the model; its checkpoint
  kinds: ``CheckpointError`` (unreadable), ``UnsafeCheckpointError`` (asks for a Python global
  outside the allow-list), ``CheckpointMismatchError`` (tensors that do not fit the model),
  ``CheckpointHashError`` (a download that fails the hash prefix in its name).
- ``TrainError``: a run that cannot start (e.g. its pretrained weights cannot be fetched).
"""
from __future__ import annotations

from pathlib import Path


class BalloonDetError(Exception):
    """Base of every error this package raises on purpose; the message says what to do."""


class DataError(BalloonDetError, ValueError):
    """Bad input data; the message names the file and the entry."""


BalloonDataError = DataError  # the name used before the hierarchy existed


class DownloadError(DataError):
    """A download that was refused, failed or stopped early; nothing of it was kept. Names the URL."""


class ConfigError(BalloonDetError, ValueError):
    """A config, a device or an option that cannot be used as given."""


class ModelError(BalloonDetError, ValueError):
    """A checkpoint, a layer name or a CAM method that does not fit the model."""


class TrainError(BalloonDetError, RuntimeError):
    """A run that cannot start; the message says what to do."""


class CheckpointError(ModelError):
    """A checkpoint that cannot be used: unreadable, unsafe, or not for this model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that asks for a Python global outside the allow-list; nothing of it ran."""

    def __init__(self, path: str | Path, global_name: str) -> None:
        self.path, self.global_name = str(path), global_name
        super().__init__(
            f"{path}: refusing to load this checkpoint: it asks for the Python global {global_name!r}, "
            f"which is not on the checkpoint allow-list (tensors, mmengine's HistoryBuffer, numpy arrays); "
            f"it was not run. Only load checkpoints from sources you trust.")


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose tensors do not fit the model."""


class CheckpointHashError(CheckpointError):
    """A downloaded file whose SHA-256 does not match the hash prefix in its name."""
