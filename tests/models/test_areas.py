"""Model inspection lives in neuroreg.models.areas; models and brain need no cycle-dodging local imports."""

import ast
from pathlib import Path

import pytest
import torch
from torchvision.models import alexnet, resnet18

import neuroreg
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


@pytest.mark.parametrize("package", ["models", "brain"])
def test_no_function_local_neuroreg_imports(package):
    root = Path(neuroreg.__file__).parent / package
    found = []
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith("neuroreg"):
                        found.append(f"{path.name}:{inner.lineno} {inner.module}")
    assert found == []
