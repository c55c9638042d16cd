"""Presets that reproduce published scoring protocols exactly (docs/protocols.md).

- ``"neuroreg"`` (default): neuroreg's own settings.
- ``"conwell"``: Conwell et al. (2024), as their released code (DeepNSD) computes
  cRSA and veRSA (:mod:`neuroreg.scoring.protocols.conwell`).
- ``"brainscore"``: Brain-Score's neural predictivity (PLS, stratified splits,
  split-half ceiling, the named version's normalisation)
  (:mod:`neuroreg.scoring.protocols.brainscore`).

Every score table says which one made it in its ``protocol`` column.
"""

from __future__ import annotations

from neuroreg.errors import UnknownNameError

__all__ = ["PROTOCOLS", "check_protocol"]

#: Which presets each scorer offers.
PROTOCOLS = {"crsa": ("neuroreg", "conwell"), "versa": ("neuroreg", "conwell"),
             "predictivity": ("neuroreg", "brainscore")}


def check_protocol(protocol: str | None, scorer: str) -> str:
    """The protocol's name (None -> ``"neuroreg"``); unknown names raise."""
    name = "neuroreg" if protocol is None else protocol
    allowed = PROTOCOLS[scorer]
    if name not in allowed:
        raise UnknownNameError(f"protocol for {scorer} must be one of {list(allowed)} (or None); got {protocol!r}")
    return name
