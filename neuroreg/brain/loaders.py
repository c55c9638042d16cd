"""Loaders for neural data on disk, gathered in one place.

- :func:`load_nsd` (``brain/nsd.py``): the Natural Scenes Dataset, per-session HDF5 betas.
- :func:`load_algonauts2023` (``brain/algonauts2023.py``): the Algonauts 2023 challenge layout.
"""

from neuroreg.brain.algonauts2023 import algonauts2023_images, load_algonauts2023, read_roi_mapping
from neuroreg.brain.nsd import NSDDesign, NSDImages, load_nsd, read_nsd_design

__all__ = ["load_nsd", "read_nsd_design", "NSDDesign", "NSDImages",
           "load_algonauts2023", "algonauts2023_images", "read_roi_mapping"]
