"""The package's errors: the CLI prints any ``BalloonDetError`` as one line and exits with 2.

- ``DataError``: bad or missing input data (archives, VIA files, images, logs); the message
  names the file and the entry. ``BalloonDataError`` is the old name, kept as an alias.
- ``ConfigError``: a config, a device or an option that cannot be used.
- ``ModelError``: a checkpoint, a layer or a method that does not fit the model.
- ``TrainError``: a run that cannot start (e.g. its pretrained weights cannot be fetched).
"""
from __future__ import annotations


class BalloonDetError(Exception):
    """Base of every error this package raises on purpose; the message says what to do."""


class DataError(BalloonDetError, ValueError):
    """Bad input data; the message names the file and the entry."""


BalloonDataError = DataError  # the name used before the hierarchy existed


class ConfigError(BalloonDetError, ValueError):
    """A config, a device or an option that cannot be used as given."""


class ModelError(BalloonDetError, ValueError):
    """A checkpoint, a layer name or a CAM method that does not fit the model."""


class TrainError(BalloonDetError, RuntimeError):
    """A run that cannot start; the message says what to do."""
