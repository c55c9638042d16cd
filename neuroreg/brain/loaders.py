"""Loaders for neural data on disk, gathered in one place.

- :func:`load_nsd` (``brain/nsd.py``): the Natural Scenes Dataset, per-session HDF5 betas.
- :func:`load_algonauts2023` (``brain/algonauts2023.py``): the Algonauts 2023 challenge layout.
- :func:`load_responses`, :func:`load_rdms` (``brain/generic.py``): npz/HDF5/CSV
  responses and RDM files (MATLAB RSA toolbox .mat, rsatoolbox HDF5, Net2Brain .npz).
"""

from neuroreg.brain.algonauts2023 import algonauts2023_images, load_algonauts2023, read_roi_mapping
from neuroreg.brain.generic import load_rdms, load_responses, load_stimulus_folder
from neuroreg.brain.nsd import NSDDesign, NSDImages, load_nsd, read_nsd_design

__all__ = ["load_nsd", "read_nsd_design", "NSDDesign", "NSDImages",
           "load_algonauts2023", "algonauts2023_images", "read_roi_mapping",
           "load_responses", "load_rdms", "load_stimulus_folder"]
