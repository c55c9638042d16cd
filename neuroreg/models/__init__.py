"""Brain-constrained models, registered in timm's registry on import.

>>> import timm, neuroreg
>>> model = timm.create_model("cornet_s", num_classes=10)
>>> neuroreg.area_layers(model)
{'V1': 'V1', 'V2': 'V2', 'V4': 'V4', 'IT': 'IT'}
"""

from neuroreg.models.cornet import CORnetR, CORnetS, CORnetZ
from neuroreg.models.pretrained import OFFICIAL_WEIGHTS
from neuroreg.models.retina import Retina, foveate, foveation_grid
from neuroreg.models.vone import VOneBlock, gabor_kernel, sample_gabor_params, vone_block, vone_noise
from neuroreg.models.vonenet import VOneNet, strip_stem
from neuroreg.models.zoo import NEUROREG_MODELS, area_layers, create_model, list_models

__all__ = ["create_model", "list_models", "area_layers", "NEUROREG_MODELS", "OFFICIAL_WEIGHTS",
           "CORnetZ", "CORnetR", "CORnetS", "VOneBlock", "VOneNet", "vone_block", "vone_noise", "gabor_kernel",
           "sample_gabor_params", "strip_stem", "Retina", "foveate", "foveation_grid"]
