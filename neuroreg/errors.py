"""Exception types raised by neuroreg.

Every error subclasses :class:`NeuroregError`; most also subclass the builtin
a caller would expect (``ValueError``, ``KeyError``, ``RuntimeError``) so that
``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "NeuroregError",
    "ConfigError",
    "ShapeError",
    "NonFiniteError",
    "StimulusMismatchError",
    "UnknownNameError",
    "CheckpointError",
    "NotAvailableError",
    "DataFormatError",
]


class NeuroregError(Exception):
    """Base class of every neuroreg error."""


class ShapeError(NeuroregError, ValueError):
    """An array or tensor has the wrong number of dimensions or sizes."""


class NonFiniteError(NeuroregError, ValueError):
    """Data contain NaN or inf where finite numbers are required."""


class StimulusMismatchError(NeuroregError, ValueError):
    """Two inputs describe different stimuli (counts or ids do not match)."""


class UnknownNameError(NeuroregError, KeyError, ValueError):
    """A name (metric, model, layer, area, attack, ...) is not known."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(NeuroregError, RuntimeError):
    """A checkpoint is missing, corrupted or does not match the model."""


class DataFormatError(NeuroregError, ValueError):
    """A file on disk does not have the expected format."""


class NotAvailableError(NeuroregError, RuntimeError):
    """A feature needs an optional dependency or is not available yet."""


class ConfigError(NeuroregError, ValueError):
    """A configuration file or mapping is missing keys, names unknown things or points at missing files."""
