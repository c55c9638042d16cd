"""Read the official-code fixtures (tests/fixtures/official, made by experiments/make_official_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from _official_weights import checksum, synthetic_state_dict

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"


def load(name: str) -> dict:
    with np.load(FIXTURES / f"{name}.npz") as f:
        return {k: f[k] for k in f.files}


def rel_diff(ours, ref) -> float:
    """Largest absolute difference relative to the largest reference magnitude."""
    ours = ours.detach().cpu().double().numpy() if isinstance(ours, torch.Tensor) else np.asarray(ours, float)
    ref = np.asarray(ref, dtype=float)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def dense_bank(kernels: np.ndarray, colour: np.ndarray, in_channels: int = 3) -> torch.Tensor:
    """Single-colour kernels (n, k, k) + colours -> the official dense layout (n, in_channels, k, k)."""
    n, k, _ = kernels.shape
    dense = torch.zeros(n, in_channels, k, k)
    dense[torch.arange(n), torch.from_numpy(colour)] = torch.from_numpy(kernels)
    return dense


def official_state_dict(fx: dict) -> dict[str, torch.Tensor]:
    """Rebuild the state dict the official model ran with (stand-in weights + stored Gabor banks)."""
    names = [str(n) for n in fx["weight_names"]]
    dims = fx["weight_ndim"].tolist()
    flat = fx["weight_shapes"].tolist()
    shapes, i = [], 0
    for d in dims:
        shapes.append(tuple(flat[i:i + d]))
        i += d
    given = {}
    if "kernels_q0" in fx:
        given["vone_block.simple_conv_q0.weight"] = dense_bank(fx["kernels_q0"], fx["colour_q0"])
        given["vone_block.simple_conv_q1.weight"] = dense_bank(fx["kernels_q1"], fx["colour_q1"])
    state = synthetic_state_dict(names, shapes, seed=int(fx["weight_seed"]), given=given)
    sums = np.array([checksum(state[n]) for n in names])
    if not np.allclose(sums, fx["weight_checksums"], rtol=1e-6, atol=1e-6):
        pytest.fail("the stand-in weight recipe no longer reproduces the fixture's weights; regenerate the "
                    "fixtures with experiments/make_official_fixtures.py")
    return state


def write_official_checkpoint(fx: dict, path: Path) -> Path:
    """Save the official way: ``{"flags": ..., "state_dict": {"module." + key: tensor}}``."""
    state = {"module." + k: v for k, v in official_state_dict(fx).items()}
    ckpt = {"epoch": 70, "state_dict": state}
    if "flags" in fx:
        ckpt["flags"] = json.loads(str(fx["flags"]))
    torch.save(ckpt, path)
    return path


def last_outputs(model: torch.nn.Module, modules: dict[str, str], x: torch.Tensor):
    """Logits and the channel mean (B, C) of the last call of each named module."""
    found = dict(model.named_modules())
    last = {}
    handles = [found[m].register_forward_hook(lambda _m, _i, out, key=key: last.__setitem__(key, out.detach()))
               for key, m in modules.items()]
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        for h in handles:
            h.remove()
    return logits, {k: v.mean(dim=(2, 3)) for k, v in last.items()}
