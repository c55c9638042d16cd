"""Model inspection lives in neuroreg.models.areas.

That models and brain (and the whole package) need no cycle-dodging local imports is checked in
tests/test_module_imports.py.
"""

import pytest
import torch
from torchvision.models import alexnet, resnet18

from neuroreg.errors import UnknownNameError
from neuroreg.models import area_layers, create_model
from neuroreg.models import areas as areas_module
from neuroreg.models import zoo


def test_one_implementation_reachable_from_the_old_places():
    assert area_layers is areas_module.area_layers is zoo.area_layers


def test_torchvision_defaults_and_vonenet_composition():
    assert area_layers(alexnet()) == {"V1": "features.2", "V2": "features.5", "V4": "features.9", "IT": "features.12"}
    assert area_layers(resnet18()) == {"V1": "layer1", "V2": "layer2", "V4": "layer3", "IT": "layer4"}
    vone = create_model("vone_resnet50", num_classes=3, simple_channels=4, complex_channels=4)
    assert area_layers(vone) == {"V1": "vone_block", "V2": "backbone.layer2", "V4": "backbone.layer3",
                                 "IT": "backbone.layer4"}


def test_unknown_model_names_the_fix():
    with pytest.raises(UnknownNameError, match="mapping="):
        area_layers(torch.nn.Linear(2, 2))
