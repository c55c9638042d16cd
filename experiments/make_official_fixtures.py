"""Regenerate the reference fixtures in tests/fixtures/official/ from the official code.

    python experiments/make_official_fixtures.py --vonenet <checkout of dicarlolab/vonenet> \
        --cornet <checkout of dicarlolab/CORnet> [--out tests/fixtures/official]

The official packages are imported from the two checkouts (run them from a
folder outside this project); nothing of their code is copied here. Each
.npz records the commit it was made from (``git rev-parse HEAD`` of the
checkout, or ``--vonenet-commit``/``--cornet-commit`` for exported trees).

Written fixtures (small configurations, a few MB in all):

* ``vone_bank_seed{0,3}.npz``: the untrained official bank at the published
  configuration (256 simple + 256 complex, 224 px, 8 deg) for
  ``gabor_seed = torch seed = s``: parameters as the official code keeps them
  (sf c/deg, theta and phase in degrees, nx, ny), the colour of every q0 and
  q1 filter, and the first kernels.
* ``vone_block.npz``: a 16 + 16 channel block (64 px, 2 deg): parameters,
  single-colour kernels with their colours, an input batch and the outputs
  without noise, with frozen neuronal noise (``fix_noise(2, seed=7)``) and
  with frozen Gaussian noise (``fix_noise(2, seed=8)``).
* ``cornet_{z,r,s}.npz`` and ``vone_{resnet50,cornets,alexnet}.npz``: state-dict
  names, shapes and checksums of the stand-in weights of
  ``tests/models/_official_weights.py``, the input, the logits, and the
  channel means of each area's output (V1/V2/V4/IT) computed by the official
  model with those weights; the VOne files add the official Gabor banks
  (kernels + colours) and the checkpoint ``flags``.

Runtime notes for current torch/numpy: the official code runs unchanged; its
``torch.meshgrid`` call (no ``indexing=``) warns and keeps "ij" indexing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "models"))
from _official_weights import checksum, synthetic_state_dict  # noqa: E402

WEIGHT_SEED = 0


def commit_of(path: Path, given: str | None) -> str:
    if given:
        return given
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        raise SystemExit(f"{path} is not a git checkout; pass its commit with "
                         "--vonenet-commit/--cornet-commit") from exc


def single_colour(dense: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Dense official bank (n, 3, k, k) -> kernels (n, k, k) and the colour each filter reads."""
    energy = dense.abs().flatten(2).sum(2)
    if bool(((energy > 0).sum(1) != 1).any()):
        raise RuntimeError("an official filter reads more or fewer than one colour channel")
    colour = energy.argmax(1)
    return dense[torch.arange(dense.shape[0]), colour].numpy(), colour.numpy()


def images(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Inputs normalized like VOneNet (mean = std = 0.5): uniform in [-1, 1]."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def weights_record(model: torch.nn.Module, given: dict | None = None) -> dict:
    sd = model.state_dict()
    names = list(sd)
    shapes = [tuple(v.shape) for v in sd.values()]
    state = synthetic_state_dict(names, shapes, seed=WEIGHT_SEED, given=given)
    model.load_state_dict(state)
    return {"weight_names": np.array(names), "weight_ndim": np.array([len(s) for s in shapes]),
            "weight_shapes": np.array([d for s in shapes for d in s], dtype=np.int64),
            "weight_checksums": np.array([checksum(state[n]) for n in names]), "weight_seed": WEIGHT_SEED}


def area_means(model: torch.nn.Module, modules: dict[str, str], x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Logits and the channel mean (B, C) of the last call of each named module."""
    found = dict(model.named_modules())
    last: dict[str, torch.Tensor] = {}
    handles = [found[m].register_forward_hook(lambda _m, _i, out, key=key: last.__setitem__(key, out.clone()))
               for key, m in modules.items()]
    try:
        logits = model(x.clone())
    finally:
        for h in handles:
            h.remove()
    out = {}
    for key, act in last.items():
        out[f"area_{key}"] = act.mean(dim=(2, 3)).numpy()
        out[f"area_{key}_shape"] = np.array(act.shape)
    return logits, out


def save(out_dir: Path, name: str, **arrays) -> None:
    path = out_dir / f"{name}.npz"
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


def make_vone(out_dir: Path, VOneNet, meta: dict) -> None:
    for seed in (0, 3):
        torch.manual_seed(seed)
        block = VOneNet(model_arch=None, gabor_seed=seed)
        gp = block.gabor_params
        k0, c0 = single_colour(block.simple_conv_q0.weight.detach())
        k1, c1 = single_colour(block.simple_conv_q1.weight.detach())
        save(out_dir, f"vone_bank_seed{seed}", **meta, gabor_seed=seed, torch_seed=seed,
             simple_channels=256, complex_channels=256, image_size=224, visual_degrees=8.0, sf_corr=0.75,
             sf_max=9.0, sf=gp["sf"], theta_deg=gp["theta"], phase_deg=gp["phase"], nx=gp["nx"], ny=gp["ny"],
             colour_q0=c0, colour_q1=c1, kernels_q0_first=k0[:8], kernels_q1_complex_first=k1[256:264])

    cfg = dict(simple_channels=16, complex_channels=16, image_size=64, visual_degrees=2.0, ksize=25, stride=4,
               k_exc=25.0)
    torch.manual_seed(1)
    block = VOneNet(model_arch=None, gabor_seed=1, noise_mode=None, **cfg)
    gp = block.gabor_params
    k0, c0 = single_colour(block.simple_conv_q0.weight.detach())
    k1, c1 = single_colour(block.simple_conv_q1.weight.detach())
    x = images(11, (2, 3, 64, 64))
    clean = block(x.clone())
    block.set_noise_mode("neuronal", 0.35, 0.07)
    block.fix_noise(batch_size=2, seed=7)
    neuronal = block(x.clone())
    block.set_noise_mode("gaussian", 0.5, 0.0)
    block.fix_noise(batch_size=2, seed=8)
    gaussian = block(x.clone())
    save(out_dir, "vone_block", **meta, **cfg, gabor_seed=1, torch_seed=1, sf_corr=0.75, sf_max=9.0,
         sf=gp["sf"], theta_deg=gp["theta"], phase_deg=gp["phase"], nx=gp["nx"], ny=gp["ny"],
         kernels_q0=k0, colour_q0=c0, kernels_q1=k1, colour_q1=c1, input=x.numpy(), output_clean=clean.numpy(),
         output_neuronal_seed7=neuronal.numpy(), noise_scale_neuronal=0.35, noise_level_neuronal=0.07,
         output_gaussian_seed8=gaussian.numpy(), noise_scale_gaussian=0.5)


def make_cornet(out_dir: Path, cornet, meta: dict) -> None:
    areas = {a: f"{a}.output" for a in ("V1", "V2", "V4", "IT")}
    for letter, build, size, batch in (("z", lambda: cornet.CORnet_Z(), 64, 2),
                                       ("r", lambda: cornet.CORnet_R(times=5), 224, 1),
                                       ("s", lambda: cornet.CORnet_S(), 64, 2)):
        torch.manual_seed(0)
        model = build()
        rec = weights_record(model)
        model.eval()
        x = images(20, (batch, 3, size, size))
        logits, means = area_means(model, areas, x)
        save(out_dir, f"cornet_{letter}", **meta, **rec, **means, input=x.numpy(), logits=logits.numpy(),
             times=5 if letter == "r" else 0)


def make_vonenets(out_dir: Path, VOneNet, meta: dict) -> None:
    specs = {"resnet50": (64, 2, {"vone_block": "vone_block", "V2": "model.layer2", "V4": "model.layer3",
                                  "IT": "model.layer4", "layer1": "model.layer1"}),
             "cornets": (64, 2, {"vone_block": "vone_block", "V2": "model.V2.output", "V4": "model.V4.output",
                                 "IT": "model.IT.output"}),
             "alexnet": (224, 1, {"vone_block": "vone_block", "V2": "model.features.2", "V4": "model.features.6",
                                  "IT": "model.features.9"})}
    for arch, (size, batch, modules) in specs.items():
        flags = dict(arch=arch, simple_channels=16, complex_channels=16, k_exc=25.0, noise_mode=None,
                     noise_scale=0.35, noise_level=0.07, stride=4, ksize=25, gabor_seed=2, sf_corr=0.75,
                     sf_max=9.0, sf_min=0.0, visual_degrees=8.0, rand_param=False)
        torch.manual_seed(2)
        model = VOneNet(model_arch=arch, simple_channels=16, complex_channels=16, image_size=size,
                        visual_degrees=8, gabor_seed=2, noise_mode=None, k_exc=25, stride=4, ksize=25)
        q0 = model.vone_block.simple_conv_q0.weight.detach().clone()
        q1 = model.vone_block.simple_conv_q1.weight.detach().clone()
        rec = weights_record(model, given={"vone_block.simple_conv_q0.weight": q0,
                                           "vone_block.simple_conv_q1.weight": q1})
        model.eval()
        k0, c0 = single_colour(q0)
        k1, c1 = single_colour(q1)
        x = images(30, (batch, 3, size, size))
        logits, means = area_means(model, modules, x)
        save(out_dir, f"vone_{arch}", **meta, **rec, **means, flags=json.dumps(flags), image_size=size,
             kernels_q0=k0, colour_q0=c0, kernels_q1=k1, colour_q1=c1, input=x.numpy(), logits=logits.numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vonenet", type=Path, required=True, help="checkout of github.com/dicarlolab/vonenet")
    parser.add_argument("--cornet", type=Path, required=True, help="checkout of github.com/dicarlolab/CORnet")
    parser.add_argument("--vonenet-commit", default=None)
    parser.add_argument("--cornet-commit", default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "official")
    args = parser.parse_args()
    meta = {"vonenet_commit": commit_of(args.vonenet, args.vonenet_commit),
            "cornet_commit": commit_of(args.cornet, args.cornet_commit),
            "torch_version": torch.__version__, "numpy_version": np.__version__}
    sys.path.insert(0, str(args.vonenet.resolve()))
    sys.path.insert(0, str(args.cornet.resolve()))
    import cornet
    from vonenet.vonenet import VOneNet
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # torch.meshgrid without indexing=
        make_vone(args.out, VOneNet, meta)
        make_cornet(args.out, cornet, meta)
        make_vonenets(args.out, VOneNet, meta)


if __name__ == "__main__":
    main()
