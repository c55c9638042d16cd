"""The README's models section runs as written."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def _models_section() -> str:
    text = README.read_text()
    start = text.index("### Models (`neuroreg.models`")
    return text[start:text.index("\n### ", start + 1)]


def test_models_code_block_runs():
    section = _models_section()
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    assert scope["nr"].area_layers(scope["model"])["IT"] == "backbone.IT"


def test_inline_feature_api_calls_run():
    import timm
    import neuroreg as nr
    section = _models_section()
    assert 'timm.create_model("cornet_s", features_only=True, out_indices=(1, 3))' in section
    feats = timm.create_model("cornet_s", features_only=True, out_indices=(1, 3))
    assert feats.feature_info.module_name() == ["V2", "IT"]
    model = nr.create_model("cornet_z")
    maps = model.forward_intermediates(torch.rand(1, 3, 64, 64), indices=[0, 1], intermediates_only=True)
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in model.feature_info[:2]]
