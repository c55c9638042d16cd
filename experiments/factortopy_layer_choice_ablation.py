"""Which features make FactorTopy's ridge layer choice lose voxels: an ablation on one recovery-matrix cell.

FactorTopy is fitted once with its defaults on a cell of ``factortopy_recovery_matrix.py`` (cached,
``--cache``); then the ridge layer choice is recomputed with the SAME rows, folds, penalty grid and
candidate windows (per voxel and layer: the learned window, the learned position with the narrowest
window, the correlation peak with the narrowest window; each voxel and layer keeps its best), reading
different features:

* ``... unshifted float32 sums``: the statistics as accumulated before the third pass (raw
  float32 ``X'X``, see :class:`neuroreg.scoring.factortopy.ridge._RidgeStats`);
* ``trained B_l, normalised pyramid``: what the layer choice reads (layers with ``C_l > D`` through
  the trained ``D``-channel alignment ``B_l``, every level of the blur pyramid divided by its
  per-channel SD); reproduces ``cv_r_``;
* ``trained B_l, unnormalised pyramid``: the same without the per-level SDs (b);
* ``raw channels, normalised pyramid`` / ``raw channels, unnormalised pyramid``: all ``C_l``
  channels of every layer (no alignment) (a);
* ``untrained B_l`` / ``PCA-D``: ``C_l > D`` layers projected to ``D`` channels by the initial
  orthonormal ``B_l`` (before training) or by their top ``D`` principal components;
* ``raw map, bilinear / Gaussian window``: the raw maps read as the offline ridge reads them, the
  bilinear sample at the candidate position (narrowest windows) or the normalised Gaussian window
  of the learned SD (c);
* ``oracle``: raw maps at the TRUE position and read-out.

    python experiments/factortopy_layer_choice_ablation.py --voxels 80 --threads 2

Prints, for voxels with SNR >= 1, the layer accuracy overall and per true layer and where the
``layer2`` voxels go. Only the layer choice is recomputed; the fit is shared by all rows.
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _matrix():
    spec = importlib.util.spec_from_file_location("factortopy_recovery_matrix", HERE / "factortopy_recovery_matrix.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cv_scores(x: torch.Tensor, y: torch.Tensor, folds: np.ndarray, n_folds: int, alphas,
               shift: bool = True) -> np.ndarray:
    """``(n,)`` best cross-validated r over ``alphas``, from the package's streamed statistics.

    shift=False: the raw float32 sums the layer choice accumulated before the third pass."""
    from neuroreg.scoring.factortopy.ridge import _RidgeStats

    st = _RidgeStats(x.shape[1], x.shape[2], n_folds, x.device, shift=shift)
    for f in range(n_folds):
        rows = torch.as_tensor(np.flatnonzero(folds == f))
        for s in range(0, len(rows), 64):
            sub = rows[s:s + 64]
            st.add(f, x[sub], y[sub])
    return torch.stack([st.cv_r(float(a)) for a in np.atleast_1d(alphas)]).amax(0).numpy()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--readout", default="point")
    parser.add_argument("--stimuli", type=int, default=600)
    parser.add_argument("--voxels", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--block", type=int, default=40, help="voxels whose features are held at once")
    parser.add_argument("--cache", type=Path, default=None,
                        help="pickle of the fitted FactorTopy (default experiments/results/ablation_<cell>.pkl)")
    parser.add_argument("--refit", action="store_true", help="ignore the cache")
    parser.add_argument("--variants", default=None, help="comma-separated subset of the variant keys")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    m = _matrix()
    from neuroreg.features.extraction import extract
    from neuroreg.scoring import FactorTopy
    from neuroreg.scoring.factortopy.network import FactorTopyNet
    from neuroreg.scoring.factortopy.pooling import pooled_features, scale_to_sd

    model, layers = m.make_model(args.arch)
    images = m.make_stimuli(args.stimuli, args.size, args.seed)
    feats = {k: v.float() for k, v in extract(model, images, layers, progress=False).items()}
    brain, truth = m.simulate(feats, layers, args.readout, args.voxels, args.seed)
    cell = f"{args.arch}_{args.size}_{args.readout}_{args.stimuli}_{args.voxels}_{args.seed}"
    cache = args.cache or HERE / "results" / f"ablation_{cell}.pkl"
    if cache.exists() and not args.refit:
        with open(cache, "rb") as f:
            ft, fit_s = pickle.load(f)
    else:
        tic = time.process_time()
        ft = FactorTopy(layers, random_state=args.seed, progress=False).fit(feats, brain)
        fit_s = time.process_time() - tic
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "wb") as f:
            pickle.dump((ft, fit_s), f)
    print(f"cell {cell}: fit {fit_s:.0f} CPU s, epochs {ft.n_epochs_}, timings "
          + ", ".join(f"{k} {v:.0f} s" for k, v in ft.timings_.items()), flush=True)

    n_vox, n_layers, d = args.voxels, len(layers), ft.d
    rows = np.concatenate([ft.train_index_, ft.val_index_])
    folds = np.random.default_rng(ft.random_state + 1).permutation(len(rows)) % ft.cv_folds
    y = torch.as_tensor((brain.responses - ft.y_mean_) / ft.y_std_, dtype=torch.float32)[rows]
    normed = ft._normalise({k: feats[k][rows] for k in layers})
    raw = [feats[k][rows] for k in layers]
    widths = [normed[k].shape[1] for k in range(n_layers)]
    level_std = [ft.level_std_[k] for k in layers]
    trained = [a.detach() for a in ft.net_.align]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ft.random_state)
        init = FactorTopyNet(widths, n_vox, ft.encoding_.shape[1], d, ft.hidden, ft.pooling, ft.per_layer_space)
    untrained = [a.detach() for a in init.align]
    eye = [torch.eye(c) for c in widths]
    pca = []
    for x, c in zip(normed, widths):
        if c <= d:
            pca.append(torch.eye(c))
            continue
        flat = x[torch.as_tensor(np.isin(rows, ft.train_index_))].permute(0, 2, 3, 1).reshape(-1, c).double()
        flat = flat - flat.mean(0)
        _, vec = torch.linalg.eigh(flat.T @ flat)
        pca.append(vec[:, -d:].T.float().contiguous())
    space, scale = torch.as_tensor(ft.space_layers_).float(), torch.as_tensor(ft.scale_layers_).float()
    peaks = torch.as_tensor(ft.init_space_).float()
    candidates = [(space, scale), (space, torch.zeros_like(scale)), (peaks, torch.zeros_like(scale))]

    def pyramid(align, normalise):
        def get(layer, sp, sc):
            return pooled_features([normed[layer]], [align[layer]], sp, sc, pooling="gaussian",
                                   level_std=[level_std[layer]] if normalise else None)[0]
        return get

    def direct(align):
        """Maps read directly (no pyramid): bilinear sample for the narrowest windows, else the
        normalised Gaussian window of the learned SD; ``align`` None: the raw maps."""
        def get(layer, sp, sc):
            fmap = raw[layer]
            if align is not None and widths[layer] > d:
                fmap = torch.einsum("dc,bchw->bdhw", align[layer], normed[layer])
            if float(sc.abs().max()) == 0.0:
                return m.read_out(fmap, sp.double().numpy(), None)
            sd = scale_to_sd(sc)
            return torch.cat([m.read_out(fmap, sp[i:i + 1].double().numpy(), float(sd[i])) for i in range(len(sp))], 1)
        return get

    variants = {
        "before": ("trained B_l, normalised pyramid, unshifted float32 sums (second pass)", pyramid(trained, True)),
        "current": ("trained B_l, normalised pyramid", pyramid(trained, True)),
        "b": ("(b) trained B_l, unnormalised pyramid", pyramid(trained, False)),
        "a": ("(a) raw channels, normalised pyramid", pyramid(eye, True)),
        "ab": ("(a+b) raw channels, unnormalised pyramid", pyramid(eye, False)),
        "init": ("untrained orthonormal B_l, normalised pyramid", pyramid(untrained, True)),
        "pca": ("PCA-D of C_l > D layers, normalised pyramid", pyramid(pca, True)),
        "c": ("(a+c) raw map, bilinear / Gaussian window", direct(None)),
        "c_aligned": ("(c) trained B_l, map read directly: bilinear / Gaussian window", direct(trained)),
    }
    keys = list(variants) if args.variants is None else args.variants.split(",")
    good = truth["snr"] >= 1.0
    true_layer = truth["layer"]
    results = {}
    for key in keys:
        label, get = variants[key]
        tic = time.process_time()
        scores = np.full((len(candidates), n_vox, n_layers), -np.inf)
        for layer in range(n_layers):
            for start in range(0, n_vox, args.block):
                sl = slice(start, min(start + args.block, n_vox))
                for ci, (sp, sc) in enumerate(candidates):
                    with torch.no_grad():
                        x = get(layer, sp[sl, layer], sc[sl, layer]).float()
                    scores[ci, sl, layer] = _cv_scores(x, y[:, sl], folds, ft.cv_folds, ft.ridge_alpha,
                                                       shift=key != "before")
        best = scores.max(0)
        results[key] = (label, best.argmax(1), time.process_time() - tic, best)
        print(f"  {key} vs the fit's cv_r_: max |diff| {np.abs(best - ft.cv_r_).max():.2e}", flush=True)
        print(f"  {label}: {(best.argmax(1) == true_layer)[good].mean():.2f} ({results[key][2]:.0f} CPU s)",
              flush=True)
    # the oracle: raw maps at the true position and read-out, same rows, folds and penalties
    o = np.zeros((n_vox, n_layers))
    for layer in range(n_layers):
        for start in range(0, n_vox, args.block):
            sl = slice(start, min(start + args.block, n_vox))
            x = m.read_out(raw[layer], truth["position"][sl], truth["sd"]).float()
            o[sl, layer] = _cv_scores(x, y[:, sl], folds, ft.cv_folds, ft.ridge_alpha)
    results["oracle"] = ("oracle: raw map at the true window", o.argmax(1), 0.0, o)
    # the package's layer choice as it is now, on the same fit
    from neuroreg.scoring.factortopy.layer_choice import ridge_layer_choice
    from neuroreg.scoring.factortopy.sources import _DictSource

    y_all = torch.as_tensor((brain.responses - ft.y_mean_) / ft.y_std_, dtype=torch.float32)
    now = ridge_layer_choice(ft, ft.net_, _DictSource(feats, layers, args.stimuli), y_all, ft.encoding_, rows,
                             torch.device("cpu")).cv_r
    results["package"] = ("the package's layer choice now (same fit)", now.argmax(1), 0.0, now)

    def row(label, pick):
        hit = pick == true_layer
        per = [hit[good & (true_layer == k)].mean() for k in range(n_layers)]
        l2 = good & (true_layer == 1)
        goes = np.bincount(pick[l2], minlength=n_layers)
        return (f"| {label} | {hit[good].mean():.2f} | {' '.join(f'{a:.2f}' for a in per)} | "
                f"{' '.join(map(str, goes))} |")

    print(f"\n{int(good.sum())} voxels with SNR >= 1 ({' '.join(str(int((good & (true_layer == k)).sum())) for k in range(n_layers))} per layer)")
    print("| layer-choice features (best of the three windows) | accuracy | per layer (1-4) | layer2 voxels chosen as 1/2/3/4 |")
    print("|---|---|---|---|")
    print(row("the fit's `best_layer_` (layer choice when it was fitted)", ft.best_layer_))
    for key, (label, pick, _, _) in results.items():
        print(row(label, pick))


if __name__ == "__main__":
    main()
