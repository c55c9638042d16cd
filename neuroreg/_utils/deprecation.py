"""Renamed keyword arguments: the old name keeps working, with a DeprecationWarning."""

from __future__ import annotations

import warnings
from typing import Any


def renamed_argument(new_value: Any, old_value: Any, *, new: str, old: str, where: str) -> Any:
    """The value of argument ``new``, taking the deprecated ``old`` when only it was given.

    Raises TypeError when both are given with different values.
    """
    if old_value is None:
        return new_value
    warnings.warn(f"{where}: {old}= is deprecated; use {new}= (the name timm and the rest of neuroreg use)",
                  DeprecationWarning, stacklevel=3)
    if new_value is not None and new_value != old_value:
        raise TypeError(f"{where}: got {new}={new_value!r} and the deprecated {old}={old_value!r}; give only {new}")
    return old_value
