"""Layer-wise RSA of a trained network, the same network untrained, and a fixed V1 model, on real brain data.

The layer-wise RSA profiles of Gupta, Lazarova, Nabeel & Pateria (seed 002: CNN
layers against early visual cortex and higher regions) and the trained-vs-random
gap of Conwell et al. (seed 000), on the real neural data neuroreg ships:

- ``algonauts2019_78``: 78 images, EVC and IT fMRI RDMs of 15 subjects;
- ``kriegeskorte92``: 92 images, monkey IT (1 RDM) and human IT (4 subjects x 2 sessions).

Models: the ImageNet-trained EfficientNet-Lite0 (``efficientnet_lite0_imagenet``,
weights from its pip package), the same architecture randomly initialised
(``--random-seeds``), and the untrained VOneBlock alone (a biologically fixed V1
front end; its 512 x 56 x 56 maps are reduced by a seeded sparse random
projection to 5,920 dimensions, which preserves RDMs to JL precision).

Every layer (stem, every MBConv block, head) is scored with cRSA: the stimuli
split in two halves by sorted stimulus id, the best layer chosen per brain RDM
on the train half and reported on the test half; 95% bootstrap intervals over
stimuli (per RDM) and over subjects (mean rows); Nili lower/upper noise ceilings
on the test half; and the trained-minus-random difference at each model's
chosen layers with a hierarchical bootstrap (random seeds, then subjects, then
test stimuli, each drawn with replacement), so the spread over random
initialisations enters its interval.

    python experiments/reproduce_layer_rsa.py --quick          # smoke run: 1 random seed, 112 px
    python experiments/reproduce_layer_rsa.py                  # 3 random seeds, 1,000 resamples

Writes ``results/reproduce/layer_rsa/`` (``--quick``: ``results/reproduce/layer_rsa/quick/``):
``scores.csv`` (every row), ``best_layers.{csv,md}``, ``difference.{csv,md}`` and one profile
figure per data set. Every table has a ``mode`` column (``full`` or ``quick``); quick tables and
figures say so in their header and title: a smoke run's numbers are not the result.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

OUT = Path("results/reproduce/layer_rsa")


def efficientnet_layers(model) -> dict[str, str]:
    """Stem, every MBConv block and the head of a timm EfficientNet, shallow to deep."""
    names = ["conv_stem"]
    for i, stage in enumerate(model.blocks):
        names += [f"blocks.{i}.{j}" for j in range(len(stage))]
    names.append("conv_head")
    return {n: n for n in names}


def score_model(name: str, model, layers, sets, *, pool, seed: int, image_size: int):
    import neuroreg as nr
    from neuroreg.data.preprocessing import preprocessing_of
    from neuroreg.scoring import crsa

    prep = preprocessing_of(model)
    rows, rdms = [], {}
    for data in sets:
        feats = nr.extract(model, data.images_tensor(), layers, batch_size=16, pool=pool, seed=seed,
                           transform=prep.with_size(image_size),
                           stimulus_ids=data.stimulus_ids, progress=False)
        table = crsa(feats, data, model=name, seed=seed, progress=False)
        df = table.to_pandas()
        df["dataset"] = data.name
        df["depth"] = df["layer_index"] / max(len(layers) - 1, 1)
        rows.append(df)
        rdms[data.name] = {layer: feats.flat(layer).double().numpy() for layer in layers}
    return pd.concat(rows, ignore_index=True), rdms


def test_positions(data) -> np.ndarray:
    """Rows of the test half: odd positions in sorted stimulus-id order, as cRSA splits."""
    return np.sort(np.argsort(np.asarray(data.stimulus_ids), kind="stable")[1::2])


def best_with_intervals(scores: pd.DataFrame, feats: dict, sets, *, n_boot: int) -> pd.DataFrame:
    """Test score of every brain RDM at its train-chosen layer, with a bootstrap interval over test stimuli."""
    from neuroreg.scoring import bootstrap_rdm_comparison, rdm
    from neuroreg.scoring._inputs import brain_rdms

    out = []
    for data in sets:
        targets = {t.name: t for t in brain_rdms(data, data.stimulus_ids)}
        test = test_positions(data)
        ids = np.asarray(data.stimulus_ids)[test]
        for model_name, by_set in feats.items():
            best = scores[(scores["model"] == model_name) & (scores["dataset"] == data.name)
                          & (scores["split"] == "test") & scores["is_best"]]
            model_rdms = {}
            for r in best.itertuples():
                if r.layer not in model_rdms:
                    model_rdms[r.layer] = rdm(by_set[data.name][r.layer][test])
                brain = targets[r.rdm].rdm[np.ix_(test, test)]
                ci = bootstrap_rdm_comparison(model_rdms[r.layer], brain, n_boot=n_boot, seed=0, stimulus_ids=ids)
                out.append({**r._asdict(), "ci_low": ci.low, "ci_high": ci.high})
    return pd.DataFrame(out).drop(columns=["Index"], errors="ignore")


def region_table(best: pd.DataFrame, *, n_boot: int) -> pd.DataFrame:
    """Per data set x region x model: mean over subjects (sessions averaged within a subject first) of the
    best-layer test scores, with a bootstrap interval over subjects (or over stimuli for a single RDM)."""
    from neuroreg.scoring import bootstrap_mean

    rows = []
    for (dataset, rdm_set, region, model), grp in best.groupby(["dataset", "rdm_set", "region", "model"], sort=False):
        per_subject = grp.groupby(grp["subject"].astype(str), sort=False)["score"].mean()
        if len(per_subject) >= 2:
            ci = bootstrap_mean(per_subject.to_numpy(), n_boot=n_boot, seed=0)
            lo, hi, over = ci.low, ci.high, "subjects"
        else:
            lo, hi, over = float(grp["ci_low"].iloc[0]), float(grp["ci_high"].iloc[0]), "stimuli"
        layers = grp["layer"].value_counts()
        rows.append(dict(dataset=dataset, rdm_set=rdm_set, region=region, model=model,
                         score=float(per_subject.mean()), ci_low=lo, ci_high=hi, ci_over=over,
                         n_subjects=len(per_subject), n_rdms=len(grp),
                         layers=", ".join(f"{k} x{v}" if v > 1 else k for k, v in layers.items()),
                         ceiling_lower=grp["ceiling_r_lower"].iloc[0] if "ceiling_r_lower" in grp else np.nan,
                         ceiling_upper=grp["ceiling_r"].iloc[0] if "ceiling_r" in grp else np.nan))
    return pd.DataFrame(rows)


def paired_difference(trained_feats, random_feats_list, trained_best, random_best_list, data, *, n_boot: int,
                      seed: int) -> dict:
    """Trained minus random (mean over random seeds) test score, mean over subjects, with a hierarchical
    bootstrap over what varies in the claim: random seeds, subjects, then test stimuli.

    Each model is scored at its own train-chosen layer per RDM. One resample draws the random seeds with
    replacement, the subjects with replacement (a subject's sessions averaged first; a region with one RDM
    has nothing to draw here) and the test stimuli with replacement (pairs of a stimulus with its own copy
    left out, as :func:`neuroreg.scoring.bootstrap_rdm_comparison` does); the statistic is the mean over the
    drawn subjects of (trained - mean over the drawn seeds). Seeds and subjects are drawn in sorted order
    and stimuli by position in sorted-id order, so the interval does not depend on row order.
    """
    from neuroreg.scoring import compare_vectors, rdm
    from neuroreg.scoring._inputs import brain_rdms

    targets = brain_rdms(data, data.stimulus_ids)
    test = test_positions(data)
    n = len(test)
    iu = np.triu_indices(n, 1)
    n_seeds = len(random_feats_list)
    rng = np.random.default_rng(seed)
    out = {}
    for source, region in dict.fromkeys((t.source, t.region) for t in targets):
        group = [t for t in targets if (t.source, t.region) == (source, region)]
        subjects = sorted({str(t.subject) for t in group})
        rows_of = [[k for k, t in enumerate(group) if str(t.subject) == s] for s in subjects]
        m_tr = np.stack([rdm(trained_feats[trained_best[t.name]][test]) for t in group])
        m_rd = np.stack([np.stack([rdm(f[b[t.name]][test]) for t in group])
                         for f, b in zip(random_feats_list, random_best_list)])
        brains = np.stack([t.rdm[np.ix_(test, test)] for t in group])

        def per_subject(i, j):
            """(subjects,) trained and (seeds, subjects) random scores on the pairs (i, j)."""
            tr = np.array([compare_vectors(m_tr[k][i, j][None], brains[k][i, j][None])[0, 0]
                           for k in range(len(group))])
            rd = np.array([[compare_vectors(m_rd[s, k][i, j][None], brains[k][i, j][None])[0, 0]
                            for k in range(len(group))] for s in range(n_seeds)])
            return (np.array([tr[r].mean() for r in rows_of]),
                    np.stack([rd[:, r].mean(axis=1) for r in rows_of], axis=1))

        tr0, rd0 = per_subject(*iu)
        point = float(np.mean(tr0 - rd0.mean(axis=0)))
        values, degenerate = [], 0
        for _ in range(int(n_boot)):
            seeds_b = rng.integers(0, n_seeds, size=n_seeds)
            subj_b = rng.integers(0, len(subjects), size=len(subjects))
            idx = rng.integers(0, n, size=n)
            if np.unique(idx).size < 3:
                degenerate += 1
                continue
            i, j = idx[iu[0]], idx[iu[1]]
            keep = i != j
            tr, rd = per_subject(i[keep], j[keep])
            v = float(np.mean(tr[subj_b] - rd[seeds_b][:, subj_b].mean(axis=0)))
            if np.isfinite(v):
                values.append(v)
            else:
                degenerate += 1
        lo, hi = np.quantile(values, [0.025, 0.975])
        seed_spread = rd0.mean(axis=1)  # each random seed's mean over subjects
        out[(source, region)] = dict(point=point, ci_low=float(lo), ci_high=float(hi), n_rdms=len(group),
                                     n_subjects=len(subjects), random_seed_min=float(seed_spread.min()),
                                     random_seed_max=float(seed_spread.max()), n_boot_valid=len(values),
                                     n_boot_degenerate=degenerate)
    return out


def plot_profiles(df: pd.DataFrame, dataset: str, path: Path, *, mode: str = "full") -> Path:
    from matplotlib.figure import Figure

    from neuroreg.results.figures import save_figure

    sub = df[(df["dataset"] == dataset) & (df["split"] == "test")]
    regions = list(dict.fromkeys(zip(sub["rdm_set"], sub["region"])))
    fig = Figure(figsize=(5.2 * len(regions), 4.0), layout="constrained")
    axes = fig.subplots(1, len(regions), squeeze=False)[0]
    for ax, (rdm_set, region) in zip(axes, regions):
        part = sub[(sub["rdm_set"] == rdm_set) & (sub["region"] == region)]
        ceil = part.dropna(subset=["ceiling_r"]) if "ceiling_r" in part else part.iloc[:0]
        if len(ceil):
            ax.axhspan(float(ceil["ceiling_r_lower"].iloc[0]), float(ceil["ceiling_r"].iloc[0]), color="0.85",
                       label="noise ceiling (lower-upper)")
        for model, grp in part.groupby("model", sort=False):
            per_subject = grp.groupby(["depth", grp["subject"].astype(str)])["score"].mean()
            prof = per_subject.groupby(level=0).mean()
            ax.plot(prof.index, prof.values, marker="o", ms=3, label=model)
        ax.axhline(0, color="k", lw=0.5)
        ax.set(title=f"{dataset}: {rdm_set} {region}", xlabel="relative layer depth",
               ylabel="cRSA (Pearson r, test half)")
        ax.legend(fontsize=7)
    if mode != "full":
        fig.suptitle(f"{mode.upper()} smoke run: not the result", color="tab:red")
    return save_figure(fig, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="1 random seed, 100 bootstrap resamples, 112 px images (a smoke run, not the result)")
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default {OUT}, or {OUT}/quick with --quick)")
    args = parser.parse_args(argv)
    seeds = 1 if args.quick else args.random_seeds
    n_boot = 100 if args.quick else args.n_boot
    size = 112 if args.quick else 224
    mode = "quick" if args.quick else "full"
    banner = (f"QUICK smoke run ({seeds} random seed, {n_boot} resamples, {size} px): not the result"
              if args.quick else f"full run ({seeds} random seeds, {n_boot} resamples, {size} px)")
    if args.out is None:
        args.out = OUT / "quick" if args.quick else OUT
    import neuroreg as nr
    from neuroreg.brain import load_algonauts2019_78, load_kriegeskorte92
    from neuroreg.models import VOneBlock
    from neuroreg.results.report import markdown_table

    t0 = time.perf_counter()
    sets = [load_algonauts2019_78(), load_kriegeskorte92()]
    args.out.mkdir(parents=True, exist_ok=True)
    trained_name = "efficientnet_lite0 (ImageNet)"
    trained = nr.create_model("efficientnet_lite0_imagenet", pretrained=True).eval()
    layers = efficientnet_layers(trained)
    frames, feats = [], {}
    df, feats[trained_name] = score_model(trained_name, trained, layers, sets, pool=None, seed=0, image_size=size)
    frames.append(df)
    random_names = []
    for s in range(seeds):
        torch.manual_seed(s)
        model = nr.create_model("efficientnet_lite0_imagenet", pretrained=False).eval()
        name = f"efficientnet_lite0 (random init, seed {s})"
        df, feats[name] = score_model(name, model, layers, sets, pool=None, seed=0, image_size=size)
        frames.append(df)
        random_names.append(name)
    vone_name = "VOneBlock (untrained, fixed V1)"
    vone = torch.nn.Sequential()
    vone.add_module("vone", VOneBlock(image_size=size, noise_mode=None, seed=0))
    setattr(vone, "pretrained_cfg", {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "input_size": (3, size, size)})
    df, feats[vone_name] = score_model(vone_name, vone.eval(), {"vone": "vone"}, sets, pool="srp", seed=0,
                                       image_size=size)
    frames.append(df)
    scores = pd.concat(frames, ignore_index=True)
    best = best_with_intervals(scores, feats, sets, n_boot=n_boot)
    table = region_table(best, n_boot=n_boot)

    diffs = []
    for data in sets:
        def chosen(model_name, data=data):
            b = best[(best["model"] == model_name) & (best["dataset"] == data.name)]
            return {r.rdm: r.layer for r in b.itertuples()}
        res = paired_difference(feats[trained_name][data.name], [feats[n][data.name] for n in random_names],
                                chosen(trained_name), [chosen(n) for n in random_names], data, n_boot=n_boot,
                                seed=0)
        for (rdm_set, region), r in res.items():
            diffs.append(dict(dataset=data.name, rdm_set=rdm_set, region=region, trained_minus_random=r["point"],
                              ci_low=r["ci_low"], ci_high=r["ci_high"],
                              ci_over="random seeds, subjects, test stimuli" if r["n_subjects"] > 1
                              else "random seeds, test stimuli",
                              n_rdms=r["n_rdms"], n_subjects=r["n_subjects"], n_random_seeds=seeds,
                              random_seed_min=r["random_seed_min"], random_seed_max=r["random_seed_max"],
                              n_boot=r["n_boot_valid"]))
    diff = pd.DataFrame(diffs)
    for frame in (scores, best, table, diff):
        frame["mode"] = mode
    scores.to_csv(args.out / "scores.csv", index=False)
    best.to_csv(args.out / "best_per_rdm.csv", index=False)
    table.to_csv(args.out / "best_layers.csv", index=False)
    (args.out / "best_layers.md").write_text(f"{banner}\n\n" + markdown_table(table) + "\n")
    diff.to_csv(args.out / "difference.csv", index=False)
    (args.out / "difference.md").write_text(f"{banner}\n\n" + markdown_table(diff) + "\n")
    figs = [plot_profiles(scores, d.name, args.out / f"profile_{d.name.split()[0]}.png", mode=mode)
            for d in sets]
    print(banner)
    print(table.to_string(index=False))
    print(diff.to_string(index=False))
    print(f"[{mode}] wrote {args.out}/ (scores.csv, best_per_rdm.csv, best_layers.*, difference.*, "
          f"{', '.join(f.name for f in figs)}) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
