"""Loaders for neural data on disk, gathered in one place.

- :func:`load_nsd` (``brain/nsd.py``): the Natural Scenes Dataset, per-session HDF5 betas.
"""

from neuroreg.brain.nsd import NSDDesign, NSDImages, load_nsd, read_nsd_design

__all__ = ["load_nsd", "read_nsd_design", "NSDDesign", "NSDImages"]
